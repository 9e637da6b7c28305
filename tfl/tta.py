"""Test-time augmentation (TTA): average an image model's predictions over flips and crops.

A model predicts each image several times, each time transformed a little (mirrored,
cropped and scaled back to the input size), and the predictions are averaged: the average of
several views is often more accurate and better calibrated than one view, at the price of one
forward pass per view. Which views help depends on the data: a mirrored digit is another
shape, so `"flip"` suits photos, not digits or text in images. Measure it
(`benchmarks/robustness.py`).

Views (`TRANSFORMS`):

- `"flip"`: the image mirrored left-right (with `"crops"`, each crop is mirrored too);
- `"crops"`: five crops of `CROP` (87.5%) of each side, the centre and the four corners,
  each resized back to the input size (bilinear).

The original image is always one of the views: `["flip"]` gives 2 views, `["crops"]` 6 and
`["flip", "crops"]` 12. `with_tta(model, transforms)` is a Keras model that does this in its
graph, so `predict`, `evaluate` and `tfl.evaluate.evaluate_model` work on it as on the
model; `tfl predict --tta` and `evaluate.tta` use it. Text models have no such views: they are
refused.

Example:
>>> from tfl.tta import with_tta
>>> model = ImageClassifier(ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None), 3)
>>> x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
>>> tta = with_tta(model, ["flip"])
>>> expected = (model(x) + model(x[:, :, ::-1])) / 2
>>> bool(np.allclose(tta(x), expected, atol=1e-6))
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import keras
from keras import ops

TRANSFORMS = ("flip", "crops")
CROP = 0.875  # the side of a crop, as a fraction of the image's


def check_transforms(transforms: Sequence[str] | str | None) -> tuple[str, ...]:
    """`transforms` as a tuple of known names (a comma-separated string is split).

    Example:
    >>> from tfl.tta import check_transforms
    >>> check_transforms("flip,crops"), check_transforms(None)
    (('flip', 'crops'), ())
    """
    if transforms is None:
        return ()
    if isinstance(transforms, str):
        transforms = [t.strip() for t in transforms.split(",") if t.strip()]
    transforms = tuple(transforms)
    unknown = [t for t in transforms if t not in TRANSFORMS]
    if unknown or len(set(transforms)) != len(transforms):
        raise ValueError(
            f"Received TTA transforms {list(transforms)!r}; expected distinct names from "
            f"{list(TRANSFORMS)} (e.g. ['crops'] for digits, ['flip', 'crops'] for photos)."
        )
    return transforms


def _crops(images, height: int, width: int) -> list:
    h, w = int(round(CROP * height)), int(round(CROP * width))
    top, left = (height - h) // 2, (width - w) // 2
    corners = [(top, left), (0, 0), (0, width - w), (height - h, 0), (height - h, width - w)]
    return [
        ops.image.resize(images[:, y : y + h, x : x + w, :], (height, width)) for y, x in corners
    ]


def tta_views(images, transforms: Sequence[str]) -> list:
    """The views of a batch of NHWC images: the images first, then the transformed ones.

    Works on tensors, arrays and Keras symbolic inputs alike (Keras ops only).

    Example:
    >>> from tfl.tta import tta_views
    >>> [tuple(v.shape) for v in tta_views(np.zeros((1, 8, 8, 3), "float32"), ["flip", "crops"])][:2]
    [(1, 8, 8, 3), (1, 8, 8, 3)]
    >>> len(tta_views(np.zeros((1, 8, 8, 3), "float32"), ["flip", "crops"]))
    12
    """
    transforms = check_transforms(transforms)
    height, width = int(images.shape[1]), int(images.shape[2])
    views = [images]
    if "crops" in transforms:
        views += _crops(images, height, width)
    if "flip" in transforms:
        views += [ops.flip(v, axis=2) for v in views]
    return views


def _image_input(model: keras.Model):
    inputs = model.inputs
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[-1] != 3:
        kind = "text" if any(str(i.dtype) in ("string", "int32") for i in inputs) else "these"
        raise ValueError(
            f"Test-time augmentation (flips, crops) is for image models; this model takes "
            f"{kind} inputs ({[tuple(i.shape) for i in inputs]}). Predict it without TTA "
            "(drop --tta / set evaluate.tta: [])."
        )
    return inputs[0]


def with_tta(model: keras.Model, transforms: Sequence[str] | str = ("flip", "crops")):
    """A Keras model that averages `model`'s outputs over the TTA views of its input.

    Args:
        model: an image model (one NHWC input): a tfl task or any Keras model.
        transforms: names from `TRANSFORMS`.

    Returns:
        A functional model with the same input and outputs (a dict for a multi-task model),
        each output the mean over the views. It shares `model`'s layers (no new weights)
        and carries its `head` / `heads`, so evaluation knows what the outputs are.

    Raises:
        ValueError: a model that does not take one batch of RGB images (e.g. text), or
            unknown transforms.
    """
    transforms = check_transforms(transforms)
    if not transforms:
        return model
    source = _image_input(model)
    strategy = getattr(model, "_distribute_strategy", None)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        inputs = keras.Input(tuple(source.shape[1:]), dtype=source.dtype, name="images")
        views = tta_views(inputs, transforms)
        # One call on all views stacked along the batch: the model's graph appears once.
        outputs = model(ops.concatenate(views, axis=0))

        def mean(out):
            out = ops.reshape(out, (len(views), -1, *out.shape[1:]))
            return ops.mean(out, axis=0)

        wrapped = keras.Model(
            inputs, keras.tree.map_structure(mean, outputs), name=f"{model.name}_tta"
        )
    for name in ("head", "heads"):
        if getattr(model, name, None) is not None:
            object.__setattr__(wrapped, name, getattr(model, name))
    return wrapped


__all__ = ["CROP", "TRANSFORMS", "check_transforms", "tta_views", "with_tta"]
