"""The ImageNet preprocessing of the `keras.applications` families, as a Keras layer.

A family's preprocessing is one of four modes (`PREPROCESSING_MODES`); `ImagePreprocessing`
applies it inside a model's graph, so a saved or exported model takes raw 0-255 RGB pixels.
"""

from __future__ import annotations

import keras
from keras import ops

PREPROCESSING_MODES = ("caffe", "tf", "torch", "none")

# `preprocess_input(mode="caffe")` works in BGR order; the other modes in RGB.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


def check_preprocessing_mode(mode: str) -> None:
    """Raise `ValueError` unless `mode` is one of `PREPROCESSING_MODES`.

    Example:
    >>> check_preprocessing_mode("torch")
    """
    if mode not in PREPROCESSING_MODES:
        raise ValueError(
            f"Received preprocessing mode={mode!r}; expected one of {PREPROCESSING_MODES}."
        )


@keras.saving.register_keras_serializable(package="tfl")
class ImagePreprocessing(keras.layers.Layer):
    """The ImageNet preprocessing of a `keras.applications` family, as a layer.

    Takes raw RGB pixels in [0, 255] (float or integer, channels last) and returns exactly what
    `keras.applications.imagenet_utils.preprocess_input(x, mode=mode)` returns. Built from
    `keras.ops`, so it is part of the graph of a saved or exported model.

    Args:
        mode: `"caffe"` (RGB to BGR, then subtract the ImageNet mean per channel), `"tf"`
            (scale to [-1, 1]), `"torch"` (scale to [0, 1], then normalise with the ImageNet
            mean and std) or `"none"` (identity; for families that rescale inside the network).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    >>> layer = ImagePreprocessing("tf")
    >>> layer(keras.ops.array([[[[0.0, 127.5, 255.0]]]])).numpy().tolist()
    [[[[-1.0, 0.0, 1.0]]]]
    """

    def __init__(self, mode: str = "tf", **kwargs):
        check_preprocessing_mode(mode)
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(TORCH_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(TORCH_STD, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
