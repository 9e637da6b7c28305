"""Image data for tfl models: folders of files, arrays, and the pipeline under TFDS loaders.

Every loader returns a `tfl.data.splits.DataSplits` of batched `(images, labels)` datasets:
images are RGB float32 in 0–255 (tfl models preprocess inside, so nothing here rescales),
labels are int64 class indices (float32 soft labels on the training split with mixup/cutmix).

- `from_folder`: `root/<class>/*` (split by a hash of each path, so adding images never moves
  old ones between splits) or `root/<split>/<class>/*` (used as given). Files that cannot be
  decoded are found up front, skipped and reported, so an epoch never crashes half way.
- `from_arrays`: images (or feature vectors) and labels already in memory.
- `image_pipeline`: decoded images -> resized, batched, augmented, prefetched dataset; the
  TFDS loader builds on it.
- `decode_image`, `resize_image`: the per-image steps, for use in your own pipelines.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfl.data.splits import (
    SPLIT_NAMES,
    BadInputReport,
    DataSplits,
    LabelMap,
    MaxPerClass,
    as_fractions,
    cap_splits,
    check_split_classes,
    hash_split,
    make_fingerprint,
    mark,
    resolve_max_per_class,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
RESIZE_POLICIES = ("crop", "resize", "pad")
# Folder names accepted for each split in the `root/<split>/<class>/*` layout.
SPLIT_DIRS = {
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
}
# Bumped when the pipeline changes what it produces, so old cached features are not reused.
_PIPELINE_VERSION = "tfl.data.images/1"
_MAX_REASONS = 50


def _augmentation_layers(seed: int) -> dict[str, Any]:
    return {
        "flip": lambda: keras.layers.RandomFlip("horizontal", seed=seed),
        "rotation": lambda: keras.layers.RandomRotation(0.1, seed=seed),
        "zoom": lambda: keras.layers.RandomZoom(0.1, seed=seed),
        "translation": lambda: keras.layers.RandomTranslation(0.1, 0.1, seed=seed),
        "contrast": lambda: keras.layers.RandomContrast(0.2, seed=seed),
        "brightness": lambda: keras.layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed),
        "randaugment": lambda: keras.layers.RandAugment(value_range=(0, 255), seed=seed),
    }


AUGMENTATIONS = tuple(_augmentation_layers(0))


# --------------------------------------------------------------------------------------------
# Per-image steps
# --------------------------------------------------------------------------------------------


def decode_image(contents: tf.Tensor | bytes) -> tf.Tensor:
    """Decodes JPEG, PNG, GIF (first frame) or BMP bytes to RGB float32 `(h, w, 3)` in 0–255.

    Grey images get three equal channels; the alpha channel of RGBA images is dropped.

    Example:
    >>> import tensorflow as tf
    >>> from tfl.data.images import decode_image
    >>> png = tf.io.encode_png(tf.fill([2, 3, 1], tf.constant(7, tf.uint8)))
    >>> image = decode_image(png)
    >>> tuple(image.shape), image.dtype.name, float(image[0, 0, 2])
    ((2, 3, 3), 'float32', 7.0)
    """
    image = tf.io.decode_image(contents, channels=3, expand_animations=False, dtype=tf.uint8)
    image = tf.cast(image, tf.float32)
    image.set_shape([None, None, 3])
    return image


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
    """`(h, w, c)` with c in 1, 3, 4 (or `(h, w)`) -> float32 `(h, w, 3)`."""
    image = tf.cast(image, tf.float32)
    if image.shape.rank == 2:
        image = image[..., None]
    channels = image.shape[-1]
    if channels == 1:
        return tf.tile(image, [1, 1, 3])
    if channels in (3, 4):
        return image[..., :3]
    if channels is not None:
        raise ValueError(
            f"Received images with {channels} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA)."
        )
    image = tf.cond(
        tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image[..., :3]
    )
    image.set_shape([None, None, 3])
    return image


def resize_image(image: tf.Tensor, size: tuple[int, int], policy: str = "crop") -> tf.Tensor:
    """Resizes one float image `(h, w, c)` to `size` = `(height, width)`.

    Policies:
        "crop": cut the largest centred region with the target's aspect ratio, then resize
            (the same as resizing the short side and centre-cropping, as ImageNet evaluation
            and fastai do): no distortion, a little of the border may be lost.
        "resize": stretch to the target size (Keras' default); distorts the aspect ratio.
        "pad": letterbox: resize to fit inside and pad with black (zero) bands.

    All use bilinear interpolation with antialiasing (like PIL, which made most pretrained
    weights' training data), so downscaled photos do not alias.

    Example:
    >>> import tensorflow as tf
    >>> from tfl.data.images import resize_image
    >>> wide = tf.concat([tf.zeros([20, 10, 3]), tf.ones([20, 20, 3]), tf.zeros([20, 10, 3])], 1)
    >>> float(tf.reduce_min(resize_image(wide, (10, 10), "crop")))  # only the middle is kept
    1.0
    """
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"Received resize={policy!r}; expected one of {list(RESIZE_POLICIES)}.")
    target_h, target_w = int(size[0]), int(size[1])
    if policy == "resize":
        out = tf.image.resize(image, (target_h, target_w), antialias=True)
    elif policy == "pad":
        out = tf.image.resize_with_pad(image, target_h, target_w, antialias=True)
    else:
        shape = tf.shape(image)
        h, w = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
        crop_h = tf.minimum(h, tf.round(w * target_h / target_w))
        crop_w = tf.minimum(w, tf.round(h * target_w / target_h))
        crop_h = tf.cast(tf.maximum(crop_h, 1.0), tf.int32)
        crop_w = tf.cast(tf.maximum(crop_w, 1.0), tf.int32)
        top = (shape[0] - crop_h) // 2
        left = (shape[1] - crop_w) // 2
        image = image[top : top + crop_h, left : left + crop_w]
        out = tf.image.resize(image, (target_h, target_w), antialias=True)
    out = tf.clip_by_value(tf.cast(out, tf.float32), 0.0, 255.0)
    out.set_shape([target_h, target_w, image.shape[-1]])
    return out


def _image_size(image_size: Any) -> tuple[int, int] | None:
    """int, (h, w), (h, w, 3), a tfl model or an ImageBackbone -> (h, w)."""
    if image_size is None:
        return None
    source = image_size
    shape = None
    if hasattr(image_size, "backbone") and hasattr(image_size.backbone, "image_shape"):
        shape = tuple(image_size.backbone.image_shape)
    elif hasattr(image_size, "image_shape"):
        shape = tuple(image_size.image_shape)
    elif isinstance(image_size, keras.Model):
        input_shape = image_size.input_shape
        if isinstance(input_shape, list):
            input_shape = input_shape[0]
        shape = tuple(input_shape[1:3])
    if shape is not None:
        if len(shape) < 2 or shape[0] is None or shape[1] is None:
            raise ValueError(
                f"Received image_size={type(source).__name__} whose input shape {shape} has no "
                "fixed height and width; pass image_size=(height, width) instead."
            )
        return int(shape[0]), int(shape[1])
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif isinstance(image_size, (tuple, list)) and len(image_size) in (2, 3):
        if len(image_size) == 3 and image_size[2] != 3:
            raise ValueError(
                f"Received image_size={tuple(image_size)}; tfl images have 3 channels (RGB), "
                "so expected (height, width) or (height, width, 3)."
            )
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(
            f"Received image_size={image_size!r}; expected an int, (height, width), "
            "(height, width, 3), or a tfl model / ImageBackbone to read it from."
        )
    if min(size) < 1:
        raise ValueError(f"Received image_size={image_size!r}; expected positive sizes.")
    return size


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------


def _augment_layers(augment: Any, seed: int) -> list[Any]:
    if augment is None:
        return []
    if isinstance(augment, keras.layers.Layer):
        return [augment]
    if isinstance(augment, str):
        augment = [augment]
    factories = _augmentation_layers(seed)
    layers = []
    for item in augment:
        if isinstance(item, keras.layers.Layer):
            layers.append(item)
        elif isinstance(item, str) and item.lower() in factories:
            layers.append(factories[item.lower()]())
        else:
            raise ValueError(
                f"Received augment item {item!r}; expected names from {list(AUGMENTATIONS)} "
                "or keras layers (e.g. keras.layers.RandomFlip())."
            )
    return layers


def _describe_augment(augment: Any) -> Any:
    if augment is None:
        return None
    items = [augment] if isinstance(augment, (str, keras.layers.Layer)) else list(augment)
    out = []
    for item in items:
        if isinstance(item, keras.layers.Layer):
            try:
                out.append([type(item).__name__, item.get_config()])
            except Exception:  # noqa: BLE001 - a custom layer without get_config
                out.append(repr(item))
        else:
            out.append(str(item).lower())
    return out


def _check_mix(name: str, value: float, upper: float | None = None) -> float:
    value = float(value)
    if value < 0 or (upper is not None and value > upper):
        bound = f"in [0, {upper}]" if upper is not None else ">= 0"
        raise ValueError(
            f"Received {name}={value}; expected a Beta-distribution alpha {bound} (0 = off; "
            f"{'1.0' if name == 'cutmix' else '0.2'} is a common choice)."
        )
    return value


def _mixer(mixup: float, cutmix: float, num_classes: int | None, seed: int):
    """A batch function `(x, y) -> (x, soft y)`; with both on each batch uses one of them."""
    if not mixup and not cutmix:
        return None
    if not num_classes:
        raise ValueError(
            f"Received mixup={mixup}, cutmix={cutmix} without num_classes; mixing needs it to "
            "make one-hot labels. Pass num_classes=."
        )
    mix_up = keras.layers.MixUp(alpha=mixup, seed=seed) if mixup else None
    cut_mix = keras.layers.CutMix(factor=(cutmix, cutmix), seed=seed) if cutmix else None

    def apply(layer, x, y):
        out = layer({"images": x, "labels": y}, training=True)
        return tf.cast(out["images"], tf.float32), tf.cast(out["labels"], tf.float32)

    def mix(x, y):
        y = tf.one_hot(tf.cast(y, tf.int32), num_classes, dtype=tf.float32)
        if mix_up is None:
            return apply(cut_mix, x, y)
        if cut_mix is None:
            return apply(mix_up, x, y)
        return tf.cond(
            tf.random.uniform([]) < 0.5,
            lambda: apply(mix_up, x, y),
            lambda: apply(cut_mix, x, y),
        )

    return mix


# --------------------------------------------------------------------------------------------
# Pipeline
# --------------------------------------------------------------------------------------------


def _finish(
    ds: tf.data.Dataset,
    size: tuple[int, int] | None,
    *,
    batch_size: int,
    resize: str,
    training: bool,
    augment: Any,
    mixup: float,
    cutmix: float,
    num_classes: int | None,
    seed: int,
    fingerprint: str,
    to_rgb: bool = True,
) -> tf.data.Dataset:
    """Unbatched (image, label) -> resized, batched, augmented, prefetched, marked."""
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"Received resize={resize!r}; expected one of {list(RESIZE_POLICIES)}.")
    if int(batch_size) < 1:
        raise ValueError(f"Received batch_size={batch_size}; expected a positive integer.")
    mixup = _check_mix("mixup", mixup)
    cutmix = _check_mix("cutmix", cutmix, upper=1.0)
    layers = _augment_layers(augment, seed) if training else []
    mix = _mixer(mixup, cutmix, num_classes, seed) if training else None

    def prepare(image, label):
        image = _to_rgb(image)
        if size is not None:
            image = resize_image(image, size, resize)
        return image, tf.cast(label, tf.int64)

    if to_rgb:
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(int(batch_size))
    if layers:

        def augment_batch(x, y):
            for layer in layers:
                x = tf.cast(layer(x, training=True), tf.float32)
            return x, y

        ds = ds.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
    if mix is not None:
        ds = ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    config = {
        "version": _PIPELINE_VERSION,
        "image_size": size,
        "resize": resize,
        "batch_size": int(batch_size),
        "training": bool(training),
        "augment": _describe_augment(augment) if training else None,
        "mixup": mixup if training else 0.0,
        "cutmix": cutmix if training else 0.0,
        "seed": int(seed) if training else None,
    }
    final = make_fingerprint(fingerprint, config) if fingerprint else ""
    return mark(ds, augmented=bool(layers or mix), fingerprint=final)


def _shuffle_buffer(ds: tf.data.Dataset, shuffle_buffer: int | None) -> int:
    if shuffle_buffer is not None:
        return int(shuffle_buffer)
    n = int(ds.cardinality())
    return min(n, 4096) if n > 0 else 1024


def image_pipeline(
    ds: tf.data.Dataset,
    image_size: Any,
    *,
    batch_size: int = 32,
    resize: str = "crop",
    training: bool = False,
    augment: Any = None,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    num_classes: int | None = None,
    seed: int = 0,
    fingerprint: str = "",
    shuffle_buffer: int | None = None,
) -> tf.data.Dataset:
    """Turns an unbatched `(image, label)` dataset into one a tfl image model trains on.

    Images `(h, w, c)` (uint8 or float in 0–255, c = 1, 3 or 4) become RGB float32 of
    `image_size`, labels int64; then the data is batched and prefetched. With `training=True`
    it is also shuffled each epoch (seeded) and augmented: `augment` layers, then mixup/cutmix,
    which make the labels float32 one-hot soft vectors (needs `num_classes`).

    Args:
        ds: unbatched `(image, label)` pairs.
        image_size: int, `(h, w)`, `(h, w, 3)`, a tfl model or an `ImageBackbone`; None keeps
            the size (all images must then have the same size).
        batch_size: examples per batch.
        resize: "crop" (default, no distortion), "resize" (stretch) or "pad"; see
            `resize_image`.
        training: shuffle and augment.
        augment: None, names from `AUGMENTATIONS` or keras layers; training only.
        mixup: MixUp's Beta alpha (0 = off, 0.2 is common); training only.
        cutmix: CutMix's Beta alpha in [0, 1] (0 = off, 1.0 is the paper's); training only.
            With both on, each batch uses one of them at random.
        num_classes: number of classes, for the one-hot labels of mixup/cutmix.
        seed: seed of the shuffle and the augmentation layers.
        fingerprint: identity of the source data (e.g. a hash of the file list); the result's
            `_tfl_fingerprint` combines it with these settings. Empty: the result's fingerprint
            is "" (unknown; feature caches must not reuse it).
        shuffle_buffer: examples in the shuffle buffer; default all up to 4096.

    Returns:
        A batched, prefetched `tf.data.Dataset` marked with `_tfl_augmented` and
        `_tfl_fingerprint` (see `tfl.data.splits.mark`).

    Example:
    >>> import tensorflow as tf
    >>> from tfl.data.images import image_pipeline
    >>> raw = tf.data.Dataset.from_tensor_slices((tf.zeros([5, 28, 28, 1], tf.uint8), [0] * 5))
    >>> ds = image_pipeline(raw, 32, batch_size=4)
    >>> x, y = next(iter(ds))
    >>> tuple(x.shape), x.dtype.name, y.dtype.name, ds._tfl_augmented
    ((4, 32, 32, 3), 'float32', 'int64', False)
    """
    size = _image_size(image_size)
    if training:
        ds = ds.shuffle(
            _shuffle_buffer(ds, shuffle_buffer), seed=seed, reshuffle_each_iteration=True
        )
    return _finish(
        ds,
        size,
        batch_size=batch_size,
        resize=resize,
        training=training,
        augment=augment,
        mixup=mixup,
        cutmix=cutmix,
        num_classes=num_classes,
        seed=seed,
        fingerprint=fingerprint,
    )


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------


def _visible(name: str) -> bool:
    return not name.startswith(".") and not name.startswith("__")


def _subdirs(path: str) -> list[str]:
    return sorted(
        e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=True) and _visible(e.name)
    )


def _list_class_files(class_dir: str) -> tuple[list[str], list[str]]:
    """(image files, other files) under `class_dir`, recursively, sorted."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(path)
            elif _visible(name):
                others.append(path)
    return images, others


def _decode_error(path: str) -> str:
    """Why `path` cannot be decoded (eagerly, for the report)."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        decode_image(tf.io.read_file(path))
    except (tf.errors.OpError, OSError) as e:
        message = (getattr(e, "message", None) or str(e)).strip().splitlines()[0]
        # Drop TensorFlow's op decorations: "{{function_node ...}} <reason> [Op:DecodeImage]".
        message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)
        message = re.sub(r"\s*\[Op:[^\]]*\].*$", "", message)
        return f"cannot be decoded: {message[:200]}"
    return "could not be decoded"


def _find_bad_files(paths: list[str]) -> list[int]:
    """Indices of files that fail to decode, found in parallel inside tf.data."""
    if not paths:
        return []

    def check(index, path):
        image = decode_image(tf.io.read_file(path))
        # Using the decoded pixels makes sure the whole image is really decoded.
        return index, tf.reduce_min(tf.shape(image))

    ds = tf.data.Dataset.from_tensor_slices(paths).enumerate()
    ds = ds.map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors().map(lambda i, _: i).batch(4096)
    good = np.zeros(len(paths), dtype=bool)
    for indices in ds.as_numpy_iterator():
        good[indices] = True
    return np.flatnonzero(~good).tolist()


def _warn_missing_classes(problems: list[str], what: str) -> None:
    """One warning for all classes missing from a split (the full list is in `info`)."""
    if not problems:
        return
    more = (
        f" (and {len(problems) - 3} more; see info['class_warnings'])" if len(problems) > 3 else ""
    )
    warnings.warn(
        f"{'; '.join(problems[:3])}{more}. Add {what} of these classes or change the split.",
        stacklevel=3,
    )


def _file_identity(path: str) -> list[Any]:
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def _folder_layout(root: str) -> tuple[str, dict[str, str]]:
    """("split", {split: dir}) or ("class", {})."""
    subdirs = _subdirs(root)
    if subdirs and all(d.lower() in SPLIT_DIRS for d in subdirs):
        found: dict[str, str] = {}
        for d in subdirs:
            split = SPLIT_DIRS[d.lower()]
            if split in found:
                raise ValueError(
                    f"{root} has two folders for the {split} split: {found[split]!r} and {d!r}; "
                    "keep one (merge or rename the other)."
                )
            found[split] = d
        return "split", found
    return "class", {}


def from_folder(
    root: str,
    image_size: Any,
    *,
    batch_size: int = 32,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    resize: str = "crop",
    augment: Any = None,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    class_names: Sequence[str] | None = None,
    verify: bool = True,
    max_per_class: MaxPerClass = None,
    run_dir: str | None = None,
) -> DataSplits:
    """Image classification data from a folder with one subfolder per class.

    Two layouts are detected automatically:

    - `root/<class>/...`: the files are split into train / validation / test by
      `tfl.data.splits.hash_split` of each path relative to `root`, so a file stays in its split
      when images are added or removed (a test image never leaks into training).
    - `root/<split>/<class>/...` with split folders among `train`, `validation` (or `val`,
      `valid`) and `test`: the splits are used as given (`splits` is ignored; a missing split
      folder gives None). The classes are the union over the splits.

    Files ending in .jpg, .jpeg, .png, .gif (first frame) or .bmp (any case) are read, in
    subfolders too; other files are ignored and counted in `info["ignored_files"]`. With
    `verify=True` every image is decoded once up front (in parallel); files that fail (empty,
    truncated, not an image) are skipped, listed in `report`, warned about once and saved to
    `run_dir/bad_inputs.txt`.

    Images come out as RGB float32 in 0–255 (grey and RGBA become RGB) of `image_size`. The
    default `resize="crop"` resizes the short side and centre-crops, as ImageNet evaluation
    does, so objects keep their shape; "resize" stretches (Keras' default), "pad" letterboxes.

    Args:
        root: the data folder.
        image_size: int, `(h, w)`, `(h, w, 3)`, or the tfl model / `ImageBackbone` to feed.
        batch_size: examples per batch.
        splits: fractions (train, validation[, test]) for the class layout; 0 skips a split.
        seed: seed of the split, the shuffle and the augmentation.
        resize: "crop", "resize" or "pad"; see `resize_image`.
        augment: None, names from `AUGMENTATIONS`, or keras layers; training split only.
        mixup: MixUp alpha (0 = off); training labels become float32 soft vectors.
        cutmix: CutMix alpha in [0, 1] (0 = off); likewise.
        class_names: the classes to use, in index order (default: all subfolders, sorted):
            e.g. a run's `labels.json` names. Classes without a folder are allowed (data
            for some of the classes, as when evaluating on new images) and are listed in
            `info["class_warnings"]`; folders not in `class_names` are left out (a warning).
        verify: find undecodable files up front (costs one decode of every image).
        max_per_class: at most this many examples of each class per split: an int for every
            split, or e.g. `{"train": 50, "validation": 50, "test": 100}` (a split left out or
            None is not capped); None keeps all. Applied after the split is decided (a cap
            never moves an example between splits) and before shuffling, so every epoch sees
            the same subset. Within a class the examples whose path relative to `root` hashes smallest are kept
            (`tfl.data.splits.cap_per_class`): each class keeps min(cap, available), and added
            data only swaps in examples that hash smaller. `info["max_per_class"]` has the
            counts per class before and after.
        run_dir: if given, `labels.json`, `data.json` and `bad_inputs.txt` are written there.

    Returns:
        `DataSplits`; `info` holds the counts per split and class, the fingerprints and the
        settings.

    Example:
    >>> import os, tempfile
    >>> import tensorflow as tf
    >>> from tfl.data.images import from_folder
    >>> root = tempfile.mkdtemp()
    >>> for name in ["cat", "dog"]:
    ...     os.makedirs(os.path.join(root, name))
    ...     for i in range(10):
    ...         png = tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8))
    ...         tf.io.write_file(os.path.join(root, name, f"{i}.png"), png)
    >>> data = from_folder(root, 16, batch_size=4, splits=(0.6, 0.4))
    >>> train, val, test = data
    >>> data.labels.names, test is None, tuple(next(iter(train))[0].shape)
    (['cat', 'dog'], True, (4, 16, 16, 3))
    """
    root = os.fspath(root)
    resolve_max_per_class(max_per_class)  # bad caps fail before any file is read
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Received root={root!r}, which is not a folder; expected a folder with one "
            "subfolder of images per class."
        )
    size = _image_size(image_size)
    if size is None:
        raise ValueError(
            "Received image_size=None; images from files differ in size, so expected an int, "
            "(height, width), or the tfl model / ImageBackbone to feed."
        )
    layout, split_dirs = _folder_layout(root)
    if layout == "split":
        split_roots = {s: os.path.join(root, d) for s, d in split_dirs.items()}
        if as_fractions(splits) != (0.8, 0.1, 0.1):
            warnings.warn(
                f"{root} has split folders {sorted(split_dirs.values())}, which are used as "
                f"given; splits={tuple(splits)} is ignored.",
                stacklevel=2,
            )
    else:
        split_roots = {"all": root}
        fractions = list(as_fractions(splits))

    found_classes = sorted({c for d in split_roots.values() for c in _subdirs(d)})
    if class_names is None:
        names = found_classes
    else:
        names = [str(c) for c in class_names]
        missing = [c for c in names if c not in found_classes]
        unknown = [c for c in found_classes if c not in names]
        if unknown:
            warnings.warn(
                f"The class folders {unknown} under {root} are not in class_names and are left "
                "out.",
                stacklevel=2,
            )
        if len(missing) == len(names):
            raise ValueError(
                f"Received class_names with {missing}, which have no folder under {root}; the "
                f"class folders are {found_classes}."
            )
    if not names:
        raise ValueError(
            f"No class folders in {root}; expected {root}/<class>/<images> or "
            f"{root}/<train|validation|test>/<class>/<images>."
        )
    labels = LabelMap(names)

    # List files per (split folder, class).
    paths: list[str] = []
    path_labels: list[int] = []
    path_split: list[str] = []
    ignored: list[str] = []
    for split, split_root in split_roots.items():
        for index, name in enumerate(names):
            class_dir = os.path.join(split_root, name)
            if not os.path.isdir(class_dir):
                continue
            images, others = _list_class_files(class_dir)
            ignored += others
            if not images:
                raise ValueError(
                    f"The class folder {class_dir} has no images ({', '.join(IMAGE_EXTENSIONS)}"
                    "); delete it or add images."
                )
            paths += images
            path_labels += [index] * len(images)
            path_split += [split] * len(images)
    if not paths:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}.")

    report = BadInputReport(total=len(paths))
    bad = _find_bad_files(paths) if verify else []
    for n, i in enumerate(bad):
        reason = _decode_error(paths[i]) if n < _MAX_REASONS else "could not be decoded"
        report.add(paths[i], reason)
    keep = np.ones(len(paths), dtype=bool)
    keep[bad] = False
    if report.count:
        warnings.warn(
            f"{report.summary()} They are left out"
            + (f"; see {os.path.join(run_dir, 'bad_inputs.txt')}." if run_dir else "."),
            stacklevel=2,
        )

    paths_arr = np.array(paths, dtype=object)[keep]
    y = np.array(path_labels, dtype=np.int64)[keep]
    rel = [os.path.relpath(p, root).replace(os.sep, "/") for p in paths_arr]
    split_of = np.array(path_split, dtype=object)[keep]

    members: dict[str, np.ndarray] = {}
    if layout == "split":
        for split in split_roots:
            members[split] = np.flatnonzero(split_of == split)
            if not len(members[split]):
                raise ValueError(
                    f"The {split} split ({split_roots[split]}) has no usable images; add "
                    f"images to its class folders or remove the folder."
                )
    else:
        parts = hash_split(rel, fractions, seed=seed)
        for split, fraction, idx in zip(SPLIT_NAMES, fractions, parts, strict=True):
            if fraction == 0:
                continue
            if not len(idx):
                raise ValueError(
                    f"The {split} split is empty: {len(rel)} images with splits="
                    f"{tuple(splits)}. Add images, give the {split} split a larger fraction, "
                    f"or set its fraction to 0 to go without it."
                )
            members[split] = idx

    # Capping comes after the split (so it never moves a file between splits) and before the
    # shuffle (so every epoch sees the same files); the fingerprints hash the capped lists.
    members, cap_info = cap_splits(members, y, rel, max_per_class, seed, labels)
    present = [s for s in SPLIT_NAMES if s in members]
    counts, problems = check_split_classes(y, [members[s] for s in present], present, labels)
    _warn_missing_classes(problems, "images")

    datasets: dict[str, tf.data.Dataset | None] = dict.fromkeys(SPLIT_NAMES)
    fingerprints = {}
    for split in present:
        idx = members[split]
        source = make_fingerprint(
            "folder",
            names,
            [[rel[i], int(y[i]), *_file_identity(paths_arr[i])] for i in idx],
        )
        training = split == "train"
        ds = tf.data.Dataset.from_tensor_slices(
            (np.array([paths_arr[i] for i in idx], dtype=str), y[idx])
        )
        if training:
            ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)

        def load(path, label):
            image = resize_image(decode_image(tf.io.read_file(path)), size, resize)
            return image, label

        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        # Safety net: a file that breaks after the check is skipped (and logged), not an epoch
        # crash; the epoch is topped up from the next pass so it keeps its known length (Keras
        # warns "ran out of data" on datasets of unknown length).
        ds = ds.ignore_errors(log_warning=True).repeat().take(len(idx))
        ds = ds.apply(tf.data.experimental.assert_cardinality(len(idx)))
        ds = _finish(
            ds,
            size,
            batch_size=batch_size,
            resize=resize,
            training=training,
            augment=augment,
            mixup=mixup,
            cutmix=cutmix,
            num_classes=len(labels),
            seed=seed,
            fingerprint=source,
            to_rgb=False,
        )
        datasets[split] = ds
        fingerprints[split] = ds._tfl_fingerprint

    info = {
        "source": "folder",
        "root": root,
        "layout": layout,
        "classes": names,
        "num_examples": {s: len(members[s]) for s in present},
        "counts": counts,
        "skipped": report.count,
        "ignored_files": len(ignored),
        "ignored_examples": [os.path.relpath(p, root) for p in ignored[:10]],
        "class_warnings": problems,
        "max_per_class": cap_info,
        "fingerprint": fingerprints,
        "settings": {
            "image_size": size,
            "batch_size": batch_size,
            "splits": None if layout == "split" else fractions,
            "split_dirs": split_dirs or None,
            "seed": seed,
            "resize": resize,
            "augment": _describe_augment(augment),
            "mixup": mixup,
            "cutmix": cutmix,
            "verify": verify,
        },
    }
    data = DataSplits(
        datasets["train"], datasets["validation"], datasets["test"], labels, report, info
    )
    if run_dir is not None:
        data.save(run_dir)
    return data


# --------------------------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------------------------


def _example_keys(x: np.ndarray) -> list[str]:
    flat = np.ascontiguousarray(x).reshape(len(x), -1)
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in flat]


def _as_split(name: str, data: Any) -> tuple[np.ndarray, Any]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"Received {name}={type(data).__name__}; expected a tuple (x, y).")
    return np.asarray(data[0]), data[1]


def from_arrays(
    x: Any,
    y: Any,
    image_size: Any = None,
    *,
    labels: LabelMap | Sequence[str] | None = None,
    batch_size: int = 32,
    splits: Sequence[float] | str | None = None,
    validation_data: tuple[Any, Any] | None = None,
    test_data: tuple[Any, Any] | None = None,
    seed: int = 0,
    resize: str = "crop",
    augment: Any = None,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    max_per_class: MaxPerClass = None,
    run_dir: str | None = None,
) -> DataSplits:
    """Classification data from arrays in memory: images (or feature vectors) and labels.

    Images `(N, H, W)` or `(N, H, W, 1|3|4)`, uint8 or float in 0–255, become RGB float32 in
    0–255 (resized to `image_size` if given). Rank-2 arrays `(N, features)` pass through as
    float32 (no resizing or augmentation). Labels are ints or strings (lists work too); the
    `LabelMap` is built from them unless `labels` is given.

    The split hashes each example's bytes (not its row number, which changes when rows are
    inserted), so an example keeps its split when data is added; identical examples share a
    split, so duplicates cannot leak from training into test.

    Args:
        x: images or features, first axis = examples.
        y: class labels, one per example.
        image_size: int, `(h, w)`, `(h, w, 3)`, a tfl model or `ImageBackbone`; None keeps
            the size.
        labels: a `LabelMap` or the class names in index order.
        batch_size: examples per batch.
        splits: fractions (train, validation[, test]); default (0.8, 0.1, 0.1), or "none" when
            `validation_data` / `test_data` are given (then all of `x` is training data).
            "none" without them: everything is training data.
        validation_data: `(x, y)` used as the validation split.
        test_data: `(x, y)` used as the test split.
        seed: seed of the split, the shuffle and the augmentation.
        resize: "crop", "resize" or "pad"; see `resize_image`.
        augment: None, names from `AUGMENTATIONS`, or keras layers; training only.
        mixup: MixUp alpha (0 = off).
        cutmix: CutMix alpha in [0, 1] (0 = off).
        max_per_class: at most this many examples of each class per split: an int for every
            split, or e.g. `{"train": 50, "validation": 50, "test": 100}` (a split left out or
            None is not capped); None keeps all. Applied after the split is decided (a cap
            never moves an example between splits) and before shuffling, so every epoch sees
            the same subset. Within a class the examples whose bytes (sha256) hashes smallest are kept
            (`tfl.data.splits.cap_per_class`): each class keeps min(cap, available), and added
            data only swaps in examples that hash smaller. `info["max_per_class"]` has the
            counts per class before and after.
        run_dir: if given, the labels and info are written there.

    Example:
    >>> from tfl.data.images import from_arrays
    >>> x = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    >>> y = ["odd", "even"] * 25
    >>> data = from_arrays(x, y, 32, batch_size=8, splits=(0.5, 0.5))
    >>> images, classes = next(iter(data.train))
    >>> data.labels.names, tuple(images.shape)
    (['even', 'odd'], (8, 32, 32, 3))
    """
    resolve_max_per_class(max_per_class)
    given = validation_data is not None or test_data is not None
    if splits is None:
        splits = "none" if given else (0.8, 0.1, 0.1)
    if isinstance(splits, str):
        if splits != "none":
            raise ValueError(f"Received splits={splits!r}; expected fractions or 'none'.")
        fractions = [1.0, 0.0, 0.0]
    else:
        if given:
            raise ValueError(
                f"Received splits={splits!r} together with validation_data/test_data; "
                "pass one or the other (splits='none' keeps all of x for training)."
            )
        fractions = list(as_fractions(splits))

    x = np.asarray(x)
    y_values = list(np.asarray(y, dtype=object).reshape(-1))
    if len(x) != len(y_values):
        raise ValueError(
            f"Received x with {len(x)} examples and y with {len(y_values)} labels; expected "
            "one label per example."
        )
    extra = {"validation": validation_data, "test": test_data}
    extra = {k: _as_split(f"{k}_data", v) for k, v in extra.items() if v is not None}

    is_image = x.ndim in (3, 4)
    if x.ndim not in (2, 3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3, 4)):
        raise ValueError(
            f"Received x of shape {x.shape}; expected images (N, H, W) or (N, H, W, 1|3|4), "
            "or features (N, D)."
        )
    if not is_image and (augment or mixup or cutmix):
        raise ValueError(
            f"Received augment={augment!r}, mixup={mixup}, cutmix={cutmix} for feature vectors "
            f"of shape {x.shape}; augmentation works on images only."
        )
    if is_image and x.dtype.kind == "f" and x.size and float(np.max(x)) <= 1.0:
        warnings.warn(
            "The images in x are floats in [0, 1]; tfl models expect 0–255 pixels (they "
            "preprocess inside). Pass x * 255.",
            stacklevel=2,
        )

    if labels is None:
        all_values = y_values + [v for _, yy in extra.values() for v in np.ravel(yy)]
        label_map = LabelMap.from_values(all_values)
    else:
        label_map = labels if isinstance(labels, LabelMap) else LabelMap(labels)
    size = _image_size(image_size) if is_image else None

    arrays: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    keys = _example_keys(x)
    y_all = label_map.encode(y_values, where=[f"y[{i}]" for i in range(len(y_values))])
    parts = hash_split(keys, fractions, seed=seed)
    for split, fraction, idx in zip(SPLIT_NAMES, fractions, parts, strict=True):
        if fraction == 0:
            continue
        if not len(idx):
            raise ValueError(
                f"The {split} split is empty: {len(x)} examples ({len(set(keys))} distinct; "
                f"identical examples share a split) with splits={tuple(splits)}. Give it a "
                f"larger fraction, add data, or set its fraction to 0."
            )
        arrays[split] = (x[idx], y_all[idx], [keys[i] for i in idx])
    for split, (xs, ys) in extra.items():
        ys = list(np.asarray(ys, dtype=object).reshape(-1))
        if len(xs) != len(ys) or xs.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"Received {split}_data with x of shape {xs.shape} and {len(ys)} labels; "
                f"expected examples shaped like x {x.shape[1:]} and one label each."
            )
        where = [f"{split}_data y[{i}]" for i in range(len(ys))]
        arrays[split] = (xs, label_map.encode(ys, where=where), _example_keys(xs))

    # Cap each split (after splitting, before shuffling); the fingerprints hash the kept keys.
    kept, cap_info = cap_splits(
        {s: np.arange(len(a[1])) for s, a in arrays.items()},
        {s: a[1] for s, a in arrays.items()},
        {s: a[2] for s, a in arrays.items()},
        max_per_class,
        seed,
        label_map,
    )
    for split, idx in kept.items():
        xs, ys, split_keys = arrays[split]
        if len(idx) < len(ys):
            arrays[split] = (xs[idx], ys[idx], [split_keys[i] for i in idx])
    present = [s for s in SPLIT_NAMES if s in arrays]
    ys_present = np.concatenate([arrays[s][1] for s in present])
    offsets = np.cumsum([0] + [len(arrays[s][1]) for s in present])
    ranges = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(present))]
    counts, problems = check_split_classes(ys_present, ranges, present, label_map)
    _warn_missing_classes(problems, "examples")

    datasets: dict[str, tf.data.Dataset | None] = dict.fromkeys(SPLIT_NAMES)
    for split in present:
        xs, ys, split_keys = arrays[split]
        training = split == "train"
        source = make_fingerprint("arrays", label_map.names, split_keys, ys)
        if is_image:
            ds = tf.data.Dataset.from_tensor_slices((xs, ys))
            datasets[split] = image_pipeline(
                ds,
                size,
                batch_size=batch_size,
                resize=resize,
                training=training,
                augment=augment,
                mixup=mixup,
                cutmix=cutmix,
                num_classes=len(label_map),
                seed=seed,
                fingerprint=source,
                shuffle_buffer=len(xs),
            )
        else:
            ds = tf.data.Dataset.from_tensor_slices((xs.astype(np.float32), ys))
            if training:
                ds = ds.shuffle(len(xs), seed=seed, reshuffle_each_iteration=True)
            ds = ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)
            config = {"version": _PIPELINE_VERSION, "features": True, "batch_size": batch_size}
            if training:
                config["seed"] = seed
            datasets[split] = mark(ds, False, make_fingerprint(source, config))

    info = {
        "source": "arrays",
        "kind": "images" if is_image else "features",
        "shape": list(x.shape[1:]),
        "classes": label_map.names,
        "num_examples": {s: len(arrays[s][1]) for s in present},
        "counts": counts,
        "skipped": 0,  # arrays are checked whole: a bad array is an error, not a skip
        "class_warnings": problems,
        "max_per_class": cap_info,
        "fingerprint": {s: datasets[s]._tfl_fingerprint for s in present},
        "settings": {
            "image_size": size,
            "batch_size": batch_size,
            "splits": fractions if not given else "given",
            "seed": seed,
            "resize": resize,
            "augment": _describe_augment(augment),
            "mixup": mixup,
            "cutmix": cutmix,
        },
    }
    data = DataSplits(
        datasets["train"],
        datasets["validation"],
        datasets["test"],
        label_map,
        BadInputReport(total=len(x), kind="examples"),
        info,
    )
    if run_dir is not None:
        data.save(run_dir)
    return data
