"""The trap linter: BatchNorm that would train, 0-1 or preprocessed pixels, nothing trainable,
a learning rate too high for fine-tuning; one warning per trap and model."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import images, tiny_image_base

import tfl
from tfl.linter import TransferWarning, lint


def _model(lr=0.1):
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(lr), "mse")
    return model


def _transfer_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, TransferWarning)]


def _assert_weights_equal(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


def _plain_model(call_training, freeze_batchnorm=False):
    """A keras.io-guide style model: a small pretrained-like base nested in a functional model."""
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    h = keras.layers.BatchNormalization()(h)
    base = keras.Model(inputs, keras.layers.ReLU()(h), name="base")
    if freeze_batchnorm:
        base.layers[2].trainable = False
    x = keras.Input((8, 8, 3))
    features = base(x, training=False) if call_training is False else base(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(features))
    return keras.Model(x, outputs), base.layers[2]


def _stats(bn):
    return [bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()]


@pytest.mark.parametrize("call_training", [None, False])
def test_lint_batchnorm_trap_fires_on_an_unfrozen_base_and_matches_fit(call_training):
    model, bn = _plain_model(call_training)
    data = np.random.default_rng(0).uniform(0, 255, (8, 8, 8, 3)).astype("float32")
    before = _stats(bn)
    messages, warned = _transfer_warnings(lint, model, data)
    assert len(warned) == 1 and "BatchNormalization" in warned[0] and "freeze" in warned[0]
    assert messages == warned
    _assert_weights_equal(_stats(bn), before)  # the probe restored the statistics exactly
    # The trap is real, also with base(x, training=False) (Keras 3 passes fit's flag down):
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    model.fit(data, np.zeros((8, 2)), verbose=0)
    assert not np.array_equal(_stats(bn)[1], before[1])
    # Linting the same state again returns the message but does not warn again.
    messages, warned = _transfer_warnings(lint, model, data)
    assert len(messages) == 1 and warned == []


def test_lint_batchnorm_silent_when_batchnorm_is_frozen_or_the_base_is():
    model, bn = _plain_model(False, freeze_batchnorm=True)
    assert _transfer_warnings(lint, model)[1] == []  # random probe inputs without data
    model, bn = _plain_model(None)
    model.layers[1].trainable = False  # the whole base frozen
    assert _transfer_warnings(lint, model)[1] == []


def test_lint_batchnorm_silent_for_tfl_image_models_even_with_trainable_batchnorm():
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    tfl.unfreeze(model, top_n="all", train_batchnorm=True)
    model.compile()
    bns = [
        layer
        for layer in model.backbone._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    assert bns  # BatchNorm layers are trainable, yet ImageBackbone runs them in inference mode
    assert _transfer_warnings(lint, model, images(4))[1] == []


@pytest.fixture(scope="module")
def frozen_classifier():
    keras.utils.set_random_seed(0)
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    tfl.freeze(model)
    model.compile()
    return model


def test_lint_input_range(frozen_classifier):
    model = frozen_classifier
    pixels = images(8)
    labels = np.arange(8) % 3
    assert lint(model, pixels) == []
    assert lint(model, pixels.astype("uint8")) == []

    unit = pixels / 255.0
    dataset = tf.data.Dataset.from_tensor_slices((unit, labels)).batch(4)
    messages, warned = _transfer_warnings(lint, model, dataset)
    assert len(warned) == 1 and "[0, 1]" in warned[0] and "0-255" in warned[0]
    # Already reported for this model, whatever form the data takes:
    assert _transfer_warnings(lint, model, (unit, labels, np.ones(8)))[1] == []

    negative = pixels / 127.5 - 1.0
    messages, warned = _transfer_warnings(lint, model, negative)
    assert len(warned) == 1 and "negatives" in warned[0] and "[0, 255]" in warned[0]
    assert _transfer_warnings(lint, model, negative)[1] == []


def test_lint_nothing_trainable():
    model = _model(lr=0.01)
    assert lint(model) == []
    model.trainable = False
    messages, warned = _transfer_warnings(lint, model)
    assert len(warned) == 1 and "no trainable weights" in warned[0]
    assert _transfer_warnings(lint, model)[1] == []
    assert lint(model, warn=False) == messages


def _tiny_transfer_model():
    """A plain Keras model with a nested base and no BatchNorm (for the learning-rate trap)."""
    inputs = keras.Input((4,))
    base = keras.Model(inputs, keras.layers.Dense(4, name="pretrained")(inputs), name="base")
    x = keras.Input((4,))
    return keras.Model(x, keras.layers.Dense(2, name="head")(base(x)))


def _lr_messages(optimizer, base_trainable=True):
    model = _tiny_transfer_model()
    model.layers[1].trainable = base_trainable
    model.compile(optimizer, "mse")
    return lint(model, warn=False)


def test_lint_learning_rate_too_high_for_fine_tuning():
    (message,) = _lr_messages(keras.optimizers.Adam(1e-2))
    assert "Adam reaches 0.01" in message and "1e-5 to 1e-4" in message
    assert _lr_messages(keras.optimizers.Adam(1e-3)) == []
    assert _lr_messages(keras.optimizers.Adam(1e-2), base_trainable=False) == []  # head only
    assert _lr_messages(keras.optimizers.SGD(0.05, momentum=0.9)) == []
    assert "SGD reaches 0.1" in _lr_messages(keras.optimizers.SGD(0.1))[0]
    assert "Lion reaches 0.001" in _lr_messages(keras.optimizers.Lion(1e-3))[0]
    # A schedule counts with its peak (end of warm-up), not its first value:
    warmup = keras.optimizers.schedules.CosineDecay(
        1e-6, decay_steps=1000, warmup_target=5e-3, warmup_steps=300
    )
    assert "reaches 0.005" in _lr_messages(keras.optimizers.AdamW(warmup))[0]
    # tfl's per-block multipliers scale the base's rate:
    scaled = keras.optimizers.Adam(5e-3)
    scaled.lr_multiplier = lambda variable: 0.1 if "pretrained" in variable.path else 1.0
    assert _lr_messages(scaled) == []


def test_lint_warns_once_per_state_and_per_model():
    model = _tiny_transfer_model()
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    assert len(_transfer_warnings(lint, model)[1]) == 1
    assert _transfer_warnings(lint, model)[1] == []
    model.compile(keras.optimizers.Adam(5e-2), "mse")  # a new state: warned again
    (warned,) = _transfer_warnings(lint, model)[1]
    assert "0.05" in warned
    other = _tiny_transfer_model()
    other.compile(keras.optimizers.Adam(1e-2), "mse")
    assert len(_transfer_warnings(lint, other)[1]) == 1


def test_the_old_name_in_tfl_callbacks_still_works_and_warns():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from tfl.callbacks import lint as old_lint
    assert old_lint is lint is tfl.lint
    assert [w.category for w in caught] == [DeprecationWarning]
    assert "tfl.linter.lint" in str(caught[0].message)
    assert tfl.callbacks.TransferWarning is TransferWarning is tfl.TransferWarning
