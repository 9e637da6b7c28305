"""From unbatched `(image, label)` pairs to the batched dataset a tfl image model trains on.

- `image_pipeline`: shuffle (training), then `finish_pipeline`; returns the dataset.
  `image_split` does the same and returns a `tfl.data.splits.Split`: the dataset, its
  fingerprint and whether it is randomly augmented (the TFDS and array loaders use it).
- `finish_pipeline`: RGB, resize, batch, augment and mixup / cutmix (training), prefetch; a
  `Split`. The folder loader calls it on images it has decoded and resized itself.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfl.data.images.augment import augment_layers, check_mix, describe_augment, mixer
from tfl.data.images.decode import RESIZE_POLICIES, parse_image_size, resize_image, to_rgb
from tfl.data.splits import Split, make_fingerprint

# Bumped when the pipeline changes what it produces, so old cached features are not reused.
PIPELINE_VERSION = "tfl.data.images/1"


def finish_pipeline(
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
    prepared: bool = False,
) -> Split:
    """Unbatched (image, label) -> resized, batched, augmented, prefetched: a `Split` whose
    fingerprint combines `fingerprint` with these settings ("" stays unknown).

    `prepared=True`: the images are already RGB float32 at `size` and the labels int64 (the
    folder loader decodes and resizes as it reads), so they are batched as they are.
    """
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"Received resize={resize!r}; expected one of {list(RESIZE_POLICIES)}.")
    if int(batch_size) < 1:
        raise ValueError(f"Received batch_size={batch_size}; expected a positive integer.")
    mixup = check_mix("mixup", mixup)
    cutmix = check_mix("cutmix", cutmix, upper=1.0)
    layers = augment_layers(augment, seed) if training else []
    mix = mixer(mixup, cutmix, num_classes, seed) if training else None

    def prepare(image, label):
        image = to_rgb(image)
        if size is not None:
            image = resize_image(image, size, resize)
        return image, tf.cast(label, tf.int64)

    if not prepared:
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
        "version": PIPELINE_VERSION,
        "image_size": size,
        "resize": resize,
        "batch_size": int(batch_size),
        "training": bool(training),
        "augment": describe_augment(augment) if training else None,
        "mixup": mixup if training else 0.0,
        "cutmix": cutmix if training else 0.0,
        "seed": int(seed) if training else None,
    }
    final = make_fingerprint(fingerprint, config) if fingerprint else ""
    return Split(ds, final, augmented=bool(layers or mix))


def _shuffle_buffer(ds: tf.data.Dataset, shuffle_buffer: int | None) -> int:
    if shuffle_buffer is not None:
        return int(shuffle_buffer)
    n = int(ds.cardinality())
    return min(n, 4096) if n > 0 else 1024


def image_split(
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
) -> Split:
    """`image_pipeline` as a `tfl.data.splits.Split`: the dataset, its fingerprint (the
    source's `fingerprint` combined with the settings; "" when that is empty) and whether it
    is randomly augmented."""
    size = parse_image_size(image_size)
    if training:
        ds = ds.shuffle(
            _shuffle_buffer(ds, shuffle_buffer), seed=seed, reshuffle_each_iteration=True
        )
    return finish_pipeline(
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
        fingerprint: identity of the source data (e.g. a hash of the file list); `image_split`
            combines it with these settings into the split's fingerprint. Empty: unknown
            (feature caches must not reuse it).
        shuffle_buffer: examples in the shuffle buffer; default all up to 4096.

    Returns:
        A batched, prefetched `tf.data.Dataset`.

    Example:
    >>> import tensorflow as tf
    >>> from tfl.data.images import image_pipeline
    >>> raw = tf.data.Dataset.from_tensor_slices((tf.zeros([5, 28, 28, 1], tf.uint8), [0] * 5))
    >>> ds = image_pipeline(raw, 32, batch_size=4)
    >>> x, y = next(iter(ds))
    >>> tuple(x.shape), x.dtype.name, y.dtype.name
    ((4, 32, 32, 3), 'float32', 'int64')
    """
    return image_split(
        ds,
        image_size,
        batch_size=batch_size,
        resize=resize,
        training=training,
        augment=augment,
        mixup=mixup,
        cutmix=cutmix,
        num_classes=num_classes,
        seed=seed,
        fingerprint=fingerprint,
        shuffle_buffer=shuffle_buffer,
    ).dataset


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------
