import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import images, tiny_image_base

import tfl
from tfl.lr_finder import LRFindResult, lr_find

TRUE_W = np.array([1.0, -2.0, 0.5, 3.0], "float32")


def _regression(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = x @ TRUE_W + 0.1 * rng.normal(size=n).astype("float32")
    return x, y


def _linear(lr=0.01):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(lr), loss="mse")
    return model


def _bn_dropout_classifier():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def _values(variables):
    return [np.array(v.numpy()) for v in variables]


def _assert_same(before, after):
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_restores_weights_statistics_seeds_and_optimizer_state():
    x, _ = _regression()
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0)
    model = _bn_dropout_classifier()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # the optimizer now has state
    optimizer, loss, train_function = model.optimizer, model.loss, model.train_function
    variables, opt_variables = _values(model.variables), _values(optimizer.variables)

    result = lr_find(model, (x, y), start_lr=1e-4, end_lr=1.0, num_steps=12, batch_size=16)

    assert not np.allclose(result.raw_losses[0], result.raw_losses[-1])  # it did train
    assert model.optimizer is optimizer and model.loss is loss
    assert model.train_function is train_function
    _assert_same(variables, _values(model.variables))  # incl. BN statistics, seed state
    _assert_same(opt_variables, _values(optimizer.variables))
    assert float(optimizer.learning_rate) == pytest.approx(1e-2)


def _train_after(use_lr_find):
    keras.utils.set_random_seed(0)
    x, _ = _regression()
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0)
    model = _bn_dropout_classifier()
    if use_lr_find:
        lr_find(model, (x, y), num_steps=10, end_lr=1.0, batch_size=16)
    history = model.fit(x, y, batch_size=16, epochs=2, shuffle=True, verbose=0)
    return history.history["loss"], _values(model.weights)


def test_following_fit_is_the_same_as_without_lr_find():
    losses, weights = _train_after(use_lr_find=False)
    losses_after, weights_after = _train_after(use_lr_find=True)
    assert losses == losses_after
    _assert_same(weights, weights_after)


def test_each_step_logs_one_batch_loss_at_exponentially_spaced_rates():
    x, y = _regression(n=32)
    model = _linear()
    w0, b0 = (v.numpy() for v in model.weights)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # 2 batches, repeated
    result = lr_find(model, dataset, start_lr=1e-3, end_lr=1e-1, num_steps=5, stop_factor=None)

    np.testing.assert_allclose(result.learning_rates, np.geomspace(1e-3, 1e-1, 5), rtol=1e-12)
    assert len(result.raw_losses) == len(result.losses) == 5 and not result.stopped_early
    # Step 0: batch 0 at the initial weights. Step 1: batch 1 after one SGD step at 1e-3.
    xa, ya, xb, yb = x[:16], y[:16], x[16:], y[16:]
    err = xa @ w0[:, 0] + b0[0] - ya
    np.testing.assert_allclose(result.raw_losses[0], np.mean(err**2), rtol=1e-5)
    w1 = w0[:, 0] - 1e-3 * 2 * xa.T @ err / 16
    b1 = b0[0] - 1e-3 * 2 * err.mean()
    np.testing.assert_allclose(result.raw_losses[1], np.mean((xb @ w1 + b1 - yb) ** 2), rtol=1e-4)
    # Bias-corrected moving average: the first smoothed value is the first loss.
    assert result.losses[0] == pytest.approx(result.raw_losses[0])
    expected_1 = (0.98 * 0.02 * result.raw_losses[0] + 0.02 * result.raw_losses[1]) / (1 - 0.98**2)
    assert result.losses[1] == pytest.approx(expected_1)


def test_stops_on_divergence_and_suggests_a_rate_that_trains(tmp_path):
    x, y = _regression()
    start, end = 1e-5, 100.0
    result = lr_find(
        _linear(),
        (x, y),
        start_lr=start,
        end_lr=end,
        num_steps=60,
        batch_size=16,
        plot_path=str(tmp_path / "plots" / "lr.png"),
    )
    assert isinstance(result, LRFindResult)
    assert result.stopped_early and len(result.learning_rates) < 60
    diverged_at = result.learning_rates[-1]
    assert result.losses[-1] > 4 * np.min(result.losses[:-1])
    assert start <= result.suggestion < result.min_loss_lr < diverged_at

    def final_loss(lr):
        keras.utils.set_random_seed(1)
        model = _linear(lr)
        initial = model.evaluate(x, y, verbose=0)
        model.fit(x, y, batch_size=16, epochs=3, verbose=0)
        return initial, model.evaluate(x, y, verbose=0)

    initial, trained = final_loss(result.suggestion)
    assert trained < 0.05 * initial
    _, exploded = final_loss(end)
    assert not np.isfinite(exploded) or exploded > initial

    with open(result.plot_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(result.plot_path).shape == (400, 600, 4)


def test_tfl_task_with_short_dataset_is_restored():
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    model.compile(keras.optimizers.SGD(0.01))
    x, y = images(8), np.arange(8) % 3
    before = _values(model.variables)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)  # 2 batches for 6 steps
    result = lr_find(model, dataset, start_lr=1e-4, end_lr=1e-2, num_steps=6, stop_factor=None)
    assert len(result.raw_losses) == 6 and np.isfinite(result.raw_losses).all()
    _assert_same(before, _values(model.variables))
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # trains with the compiled optimizer
    assert int(model.optimizer.iterations) == 2


def test_errors_are_clear():
    x, y = _regression(n=8)
    uncompiled = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="needs a compiled model.*model.compile"):
        lr_find(uncompiled, (x, y))
    model = _linear()
    with pytest.raises(ValueError, match="end_lr=1e-08; expected a number larger"):
        lr_find(model, (x, y), end_lr=1e-8)
    with pytest.raises(ValueError, match="num_steps=1"):
        lr_find(model, (x, y), num_steps=1)
    with pytest.raises(ValueError, match="stop_factor=0.5"):
        lr_find(model, (x, y), stop_factor=0.5)
    with pytest.raises(TypeError, match="Received data of type ndarray"):
        lr_find(model, x)
