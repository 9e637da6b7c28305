"""One image at a time: decode file bytes, make RGB, resize; read an image size off a model.

- `decode_image`: JPEG / PNG / GIF (first frame) / BMP / WebP bytes -> RGB float32 in 0–255.
- `to_rgb`: grey, RGB or RGBA arrays -> RGB float32.
- `resize_image`: to a target size by one of `RESIZE_POLICIES` ("crop", "resize", "pad").
- `parse_image_size`: an int, `(h, w)`, `(h, w, 3)`, a tfl model or an `ImageBackbone` ->
  `(h, w)`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
RESIZE_POLICIES = ("crop", "resize", "pad")


def decode_image(contents: tf.Tensor | bytes) -> tf.Tensor:
    """Decodes JPEG, PNG, GIF (first frame), BMP or WebP bytes to RGB float32 `(h, w, 3)`, 0–255.

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


def to_rgb(image: tf.Tensor) -> tf.Tensor:
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


def parse_image_size(image_size: Any) -> tuple[int, int] | None:
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
