"""Test-time augmentation: the mean of the model's predictions over flips and crops."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import images, tiny_bert, tiny_image_base

import tfl
from tfl.tta import CROP, with_tta


def _views(x):
    """The 12 views of flip + crops, computed with tf.image: the image and 5 crops (centre,
    corners) resized back, each also mirrored."""
    size = x.shape[1]
    side = int(round(CROP * size))
    edge, mid = size - side, (size - side) // 2
    crops = [
        tf.image.resize(tf.image.crop_to_bounding_box(x, top, left, side, side), (size, size))
        for top, left in [(mid, mid), (0, 0), (0, edge), (edge, 0), (edge, edge)]
    ]
    views = [tf.constant(x), *crops]
    return views + [tf.image.flip_left_right(v) for v in views]


def test_tta_output_is_the_mean_of_the_augmented_predictions():
    # Any Keras image model: here one whose outputs depend on where things are in the image.
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(4, 5, strides=2),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    x = images(3) / 255.0
    expected = np.mean([model.predict(v, verbose=0) for v in _views(x)], axis=0)
    got = with_tta(model, ["flip", "crops"]).predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got - model.predict(x, verbose=0)).max() > 1e-4  # the views matter
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)  # still probabilities


def test_tta_is_refused_for_text_models():
    model = tfl.TextClassifier(tiny_bert(), 2)
    with pytest.raises(ValueError, match="Test-time augmentation .* is for image models"):
        with_tta(model, ["flip"])
    with pytest.raises(ValueError, match=r"TTA transforms \['zoom'\]"):
        with_tta(tfl.ImageClassifier(tiny_image_base(), 2), ["zoom"])
