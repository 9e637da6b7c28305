"""Image data for tfl models: folders of files, arrays, and the pipeline under TFDS loaders.

Every loader returns a `tfl.data.splits.DataSplits` of batched `(images, labels)` datasets:
images are RGB float32 in 0–255 (tfl models preprocess inside, so nothing here rescales),
labels are int64 class indices (float32 soft labels on the training split with mixup/cutmix).

- `from_folder` (`folders`): `root/<class>/*` (split by a hash of each path, so adding images
  never moves old ones between splits) or `root/<split>/<class>/*` (used as given). Files
  that cannot be decoded are found up front, skipped and reported, so an epoch never crashes
  half way.
- `from_arrays` (`arrays`): images (or feature vectors) and labels already in memory.
- `image_pipeline` (`pipeline`): decoded images -> resized, batched, augmented, prefetched
  dataset; the TFDS loader builds on it.
- `decode_image`, `resize_image` (`decode`): the per-image steps, for use in your own
  pipelines.
- `AUGMENTATIONS`, `describe_augment` (`augment`): the augmentation names and their
  description in `info`.
"""

from tfl.data.images.arrays import from_arrays
from tfl.data.images.augment import AUGMENTATIONS, describe_augment
from tfl.data.images.decode import (
    IMAGE_EXTENSIONS,
    RESIZE_POLICIES,
    decode_image,
    parse_image_size,
    resize_image,
)
from tfl.data.images.folders import SPLIT_DIRS, folder_layout, from_folder
from tfl.data.images.pipeline import image_pipeline, image_split

__all__ = [
    "AUGMENTATIONS",
    "IMAGE_EXTENSIONS",
    "RESIZE_POLICIES",
    "SPLIT_DIRS",
    "decode_image",
    "describe_augment",
    "folder_layout",
    "from_arrays",
    "from_folder",
    "image_pipeline",
    "image_split",
    "parse_image_size",
    "resize_image",
]
