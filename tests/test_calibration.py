"""Temperature scaling: fitted on validation data, it lowers the NLL and lives in the model."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import images, tiny_image_base

import tfl
from tfl.calibration import (
    calibrate,
    fit_temperature,
    negative_log_likelihood,
    rescale,
    set_temperature,
)
from tfl.heads import ClassificationHead, Head


@pytest.fixture(scope="module")
def overconfident():
    """A tiny classifier sure of one class (p = 0.98) on data where each class is a third."""
    keras.utils.set_random_seed(0)
    model = tfl.ImageClassifier(tiny_image_base(), 3)
    model.head.output_dense.bias.assign([4.6, 0.0, 0.0])
    x, y = images(24, seed=3), np.arange(24) % 3
    return model, x, y


def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_at():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6000, 4)) * 4
    truth = rescale(np.exp(logits), 2.5)
    y = np.array([rng.choice(4, p=p) for p in truth])
    assert fit_temperature(rescale(np.exp(logits), 1.0), y) == pytest.approx(2.5, rel=0.08)
    # Already calibrated probabilities keep (about) temperature 1.
    assert fit_temperature(truth, y) == pytest.approx(1.0, rel=0.08)


def test_calibration_lowers_validation_nll_keeps_the_argmax_and_survives_save_load(
    overconfident, tmp_path
):
    model, x, y = overconfident
    before = np.asarray(model(x, training=False))
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    result = calibrate(model, data)[None]
    after = np.asarray(model(x, training=False))

    temperature = model.head.temperature
    assert temperature == result["temperature"] > 1  # overconfident: softened
    assert negative_log_likelihood(after, y) < negative_log_likelihood(before, y) - 0.5
    assert result["after"]["nll"] == pytest.approx(negative_log_likelihood(after, y), rel=1e-4)
    np.testing.assert_array_equal(after.argmax(1), before.argmax(1))
    np.testing.assert_allclose(after, rescale(before, temperature), atol=1e-5)
    # predict (a traced step) sees the temperature set after the model was first run.
    np.testing.assert_allclose(model.predict(x, verbose=0), after, atol=1e-6)

    path = os.path.join(tmp_path, "calibrated.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert restored.head.temperature == temperature
    np.testing.assert_allclose(np.asarray(restored(x, training=False)), after, atol=1e-6)
    set_temperature(model, 1.0)  # the fixture back as it was
    np.testing.assert_allclose(np.asarray(model(x, training=False)), before, atol=1e-6)


def test_a_head_config_without_temperature_is_the_old_head():
    head = ClassificationHead(3)
    config = head.get_config()
    del config["temperature"]  # what a .keras file of an earlier tfl holds
    assert ClassificationHead.from_config(config).temperature == 1.0
    with pytest.raises(ValueError, match="temperature scaling is for softmax or sigmoid"):
        Head(2, temperature=2.0)  # raw scores have no temperature
    with pytest.raises(ValueError, match="expected a number > 0"):
        ClassificationHead(2, temperature=0)


def test_calibrate_leaves_score_heads_alone():
    model = tfl.ImageClassifier(tiny_image_base(), 2, head="svm")
    data = tf.data.Dataset.from_tensor_slices((images(4), np.arange(4) % 2)).batch(4)
    assert calibrate(model, data) == {}
