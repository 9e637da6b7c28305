import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_keras_round_trip, images, tiny_image_base

import tfl
from tfl.heads import get_head


@pytest.mark.parametrize(
    "head, activation_check",
    [
        (tfl.ClassificationHead(4), lambda y: np.allclose(y.sum(-1), 1.0, atol=1e-5)),
        (tfl.MLPHead(4, hidden_units=(8, 6)), lambda y: np.allclose(y.sum(-1), 1.0, atol=1e-5)),
        (tfl.MultiLabelHead(4), lambda y: ((y > 0) & (y < 1)).all()),
        (tfl.RegressionHead(4), lambda y: (y < 0).any()),
        (tfl.SVMHead(4), lambda y: (y < 0).any()),
    ],
)
def test_heads_shapes_outputs_and_config_round_trip(head, activation_check):
    x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32") * 3
    y = head(x).numpy()
    assert y.shape == (16, 4)
    assert y.dtype == np.float32
    assert activation_check(y)
    clone = keras.layers.deserialize(keras.layers.serialize(head))
    assert type(clone) is type(head)
    assert clone.get_config() == head.get_config()


def test_mlp_head_has_hidden_layers_and_dropout():
    head = tfl.MLPHead(3, hidden_units=(8,), dropout=0.5)
    head.build((None, 5))
    assert [w.shape for w in head.trainable_weights] == [(5, 8), (8,), (8, 3), (3,)]
    x = np.ones((64, 5), "float32")
    assert not np.allclose(head(x, training=True).numpy(), head(x, training=False).numpy())


def test_squared_hinge_matches_hand_computation():
    scores = np.array([[2.0, -0.5, 0.3]], "float32")
    loss = tfl.SquaredHinge(3)(np.array([0]), scores).numpy()
    # targets +1, -1, -1: margins max(0, 1-2)=0, max(0, 1-0.5)=0.5, max(0, 1+0.3)=1.3
    np.testing.assert_allclose(loss, (0 + 0.25 + 1.69) / 3, rtol=1e-6)
    plain = tfl.SquaredHinge(3, squared=False)(np.array([0]), scores).numpy()
    np.testing.assert_allclose(plain, (0 + 0.5 + 1.3) / 3, rtol=1e-6)


def test_svm_head_learns_separable_features():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 4
    labels = np.repeat(np.arange(3), 40)
    x = (centers[labels] + rng.normal(size=(120, 8))).astype("float32")
    inputs = keras.Input((8,))
    head = tfl.SVMHead(3)
    model = keras.Model(inputs, head(inputs))
    model.compile(
        keras.optimizers.Adam(0.05), loss=head.default_loss(), metrics=head.default_metrics()
    )
    model.fit(x, labels, epochs=20, batch_size=16, verbose=0)
    assert model.evaluate(x, labels, verbose=0)[1] > 0.95


def test_get_head_errors_name_the_value():
    with pytest.raises(ValueError, match="head='softmax'"):
        get_head("softmax", 3)
    with pytest.raises(ValueError, match="needs the number of outputs"):
        get_head("classification")
    with pytest.raises(ValueError, match="units=0"):
        tfl.Head(0)
    with pytest.raises(ValueError, match="dropout=1.5"):
        tfl.ClassificationHead(3, dropout=1.5)


@pytest.mark.parametrize("eps", [0.1, 0.3])
@pytest.mark.parametrize("from_logits", [False, True])
def test_smoothed_sparse_crossentropy_matches_keras_on_one_hot_labels(eps, from_logits):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=8)
    scores = rng.normal(size=(8, 4)).astype("float32")
    y_pred = scores if from_logits else keras.ops.softmax(scores).numpy()
    expected = keras.losses.CategoricalCrossentropy(label_smoothing=eps, from_logits=from_logits)(
        np.eye(4)[labels], y_pred
    )
    loss = tfl.heads.SmoothedSparseCategoricalCrossentropy(eps, from_logits=from_logits)
    np.testing.assert_allclose(loss(labels, y_pred), expected, rtol=1e-6)
    np.testing.assert_allclose(loss(labels[:, None], y_pred), expected, rtol=1e-6)  # (batch, 1)


def test_smoothed_sparse_crossentropy_hand_computation_and_config():
    loss = tfl.heads.SmoothedSparseCategoricalCrossentropy(label_smoothing=0.3)
    # K=3, label 1: targets (0.1, 0.8, 0.1) against predictions (0.2, 0.5, 0.3).
    expected = -(0.1 * np.log(0.2) + 0.8 * np.log(0.5) + 0.1 * np.log(0.3))
    got = loss(np.array([1]), np.array([[0.2, 0.5, 0.3]], "float32"))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()


def test_default_loss_label_smoothing_per_head():
    # epsilon = 0 keeps the previous losses exactly.
    plain = tfl.ClassificationHead(3).default_loss()
    # (ClassificationCrossentropy: the sparse loss for integer labels, also soft labels.)
    assert type(plain) is tfl.heads.ClassificationCrossentropy and plain.label_smoothing == 0.0
    assert plain.get_config() == tfl.ClassificationHead(3).default_loss(0.0).get_config()
    assert type(tfl.MultiLabelHead(3).default_loss()) is keras.losses.BinaryCrossentropy

    for head in (tfl.ClassificationHead(3), tfl.MLPHead(3)):
        loss = head.default_loss(label_smoothing=0.2)
        assert isinstance(loss, tfl.heads.ClassificationCrossentropy)
        assert loss.label_smoothing == 0.2 and not loss.from_logits
    assert tfl.ClassificationHead(3, activation=None).default_loss(0.2).from_logits

    multi = tfl.MultiLabelHead(3).default_loss(label_smoothing=0.2)
    # Binary targets (0, 1) become (0.1, 0.9): equal to the unsmoothed loss on those targets.
    y, p = np.array([[0.0, 1.0, 1.0]]), np.array([[0.3, 0.6, 0.9]], "float32")
    unsmoothed = keras.losses.BinaryCrossentropy()(np.array([[0.1, 0.9, 0.9]]), p)
    np.testing.assert_allclose(multi(y, p), unsmoothed, rtol=1e-6)


def test_label_smoothing_errors_name_head_and_value():
    for head in (tfl.RegressionHead(1), tfl.SVMHead(3), tfl.Head(2)):
        with pytest.raises(ValueError, match=f"{type(head).__name__}.*for classification"):
            head.default_loss(label_smoothing=0.1)
        assert head.default_loss(label_smoothing=0.0) is not None
    for bad in (-0.1, 1.0, "0.1"):
        with pytest.raises(ValueError, match=r"label_smoothing=.*expected a number in \[0, 1\)"):
            tfl.ClassificationHead(3).default_loss(label_smoothing=bad)
    with pytest.raises(ValueError, match="label_smoothing=1.5"):
        tfl.MultiLabelHead(3).default_loss(label_smoothing=1.5)


def test_classifier_trains_with_smoothed_loss_and_saves(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 4
    labels = np.repeat(np.arange(3), 20)
    x = (centers[labels] + rng.normal(size=(60, 8))).astype("float32")
    inputs = keras.Input((8,))
    head = tfl.ClassificationHead(3)
    model = keras.Model(inputs, head(inputs))
    model.compile(keras.optimizers.Adam(0.05), loss=head.default_loss(label_smoothing=0.2))
    model.fit(x, labels, epochs=30, batch_size=20, verbose=0)
    probs = model.predict(x, verbose=0)
    assert (probs.argmax(-1) == labels).mean() > 0.95
    # Smoothing keeps the model from full confidence: the optimum puts 1 - 0.2 + 0.2/3 on
    # the true class.
    assert probs.max() < 0.95
    path = str(tmp_path / "smoothed.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.loss, tfl.heads.ClassificationCrossentropy)
    np.testing.assert_allclose(
        restored.evaluate(x, labels, verbose=0), model.evaluate(x, labels, verbose=0), rtol=1e-5
    )


# --- Soft labels (mixup / cutmix): one loss and one accuracy for float and integer labels ---


@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("from_logits", [False, True])
def test_classification_loss_one_hot_labels_equal_sparse_labels(eps, from_logits):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=8)
    scores = rng.normal(size=(8, 4)).astype("float32")
    y_pred = scores if from_logits else keras.ops.softmax(scores).numpy()
    loss = tfl.ClassificationHead(4, activation=None if from_logits else "softmax").default_loss(
        eps
    )
    assert loss.from_logits == from_logits
    one_hot = np.eye(4, dtype="float32")[labels]
    # One-hot float labels give the same loss as the integer labels (int or float dtype).
    np.testing.assert_allclose(loss(one_hot, y_pred), loss(labels, y_pred), rtol=1e-6)
    np.testing.assert_allclose(loss(labels.astype("float32"), y_pred), loss(labels, y_pred))
    # Both equal Keras' categorical loss with the same smoothing on the one-hot targets ...
    keras_loss = keras.losses.CategoricalCrossentropy(label_smoothing=eps, from_logits=from_logits)
    np.testing.assert_allclose(loss(labels, y_pred), keras_loss(one_hot, y_pred), rtol=1e-6)
    # ... and, unsmoothed, Keras' sparse loss on the integer labels.
    sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)(labels, y_pred)
    assert np.isclose(float(loss(labels, y_pred)), float(sparse), rtol=1e-6) == (eps == 0.0)


def test_classification_loss_soft_labels_match_hand_computation():
    probs = np.array([[0.2, 0.8], [0.6, 0.4]], "float32")
    soft = np.array([[0.3, 0.7], [0.5, 0.5]], "float32")
    loss = tfl.heads.ClassificationCrossentropy()
    expected = -(soft * np.log(probs)).sum(-1).mean()
    np.testing.assert_allclose(loss(soft, probs), expected, rtol=1e-6)
    # Smoothing eps=0.2 with K=2: (0.3, 0.7) -> (0.34, 0.66).
    smoothed = tfl.heads.ClassificationCrossentropy(0.2)(soft[:1], probs[:1])
    np.testing.assert_allclose(smoothed, -(0.34 * np.log(0.2) + 0.66 * np.log(0.8)), rtol=1e-6)
    # The legacy class takes soft labels too.
    legacy = tfl.heads.SmoothedSparseCategoricalCrossentropy(0.2)(soft[:1], probs[:1])
    np.testing.assert_allclose(legacy, smoothed, rtol=1e-6)


def test_classification_loss_rejects_labels_of_the_wrong_width():
    loss = tfl.heads.ClassificationCrossentropy()
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*\(batch, 2\)"):
        loss(np.ones((2, 3)), np.full((2, 2), 0.5))


def test_classification_accuracy_on_int_and_soft_labels():
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1]], "float32")
    soft = np.array([[0.3, 0.7], [0.45, 0.55], [0.7, 0.3], [1.0, 0.0]], "float32")
    # argmax(soft) = 1, 1, 0, 0 vs predicted 1, 0, 1, 0: two of four.
    metric = tfl.ClassificationHead(2).default_metrics()[0]
    assert metric.name == "accuracy"
    metric.update_state(soft, probs)
    assert float(metric.result()) == 0.5
    metric.reset_state()
    metric.update_state(np.array([1, 0, 0, 1]), probs)  # hits 1, 1, 0, 0
    metric.update_state(np.array([[1], [1]]), probs[:2])  # (batch, 1): hits 1, 0
    assert float(metric.result()) == pytest.approx(3 / 6)
    clone = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert type(clone) is tfl.heads.ClassificationAccuracy and clone.name == "accuracy"


def test_squared_hinge_takes_soft_labels_as_their_argmax_class():
    scores = np.array([[2.0, -0.5, 0.3], [0.1, 0.4, -1.0]], "float32")
    hinge = tfl.SquaredHinge(3)
    soft = np.array([[0.6, 0.4, 0.0], [0.2, 0.3, 0.5]], "float32")
    np.testing.assert_allclose(hinge(soft, scores), hinge(np.array([0, 2]), scores), rtol=1e-6)
    assert float(hinge(soft, scores)) != float(hinge(np.array([0, 1]), scores))


@pytest.mark.parametrize("head_cls", [tfl.ClassificationHead, tfl.MLPHead])
def test_auto_compile_fits_soft_labels_and_evaluates_int_labels(head_cls, tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 4
    labels = np.repeat(np.arange(3), 20)
    x = (centers[labels] + rng.normal(size=(60, 8))).astype("float32")
    # Mixup-style training labels: each example mixed with a shuffled partner.
    lam = rng.uniform(0.6, 1.0, size=(60, 1)).astype("float32")
    partner = rng.permutation(60)
    one_hot = np.eye(3, dtype="float32")
    soft = lam * one_hot[labels] + (1 - lam) * one_hot[labels[partner]]
    x_mix = lam * x + (1 - lam) * x[partner]
    train = tf.data.Dataset.from_tensor_slices((x_mix, soft)).batch(20)
    val = tf.data.Dataset.from_tensor_slices((x, labels)).batch(20)

    inputs = keras.Input((8,))
    head = head_cls(3, dropout=0.0) if head_cls is tfl.MLPHead else head_cls(3)
    model = keras.Model(inputs, head(inputs))
    model.compile(
        keras.optimizers.Adam(0.05),
        loss=head.default_loss(label_smoothing=0.1),
        metrics=head.default_metrics(),
    )
    before = model.evaluate(val, verbose=0, return_dict=True)
    history = model.fit(train, validation_data=val, epochs=15, verbose=0)
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.history)
    after = model.evaluate(val, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] and after["accuracy"] > 0.9
    # Training accuracy compares with argmax of the soft labels.
    probs = model.predict(x_mix, verbose=0)
    expected_train_acc = (probs.argmax(-1) == soft.argmax(-1)).mean()
    np.testing.assert_allclose(
        model.evaluate(x_mix, soft, verbose=0, return_dict=True)["accuracy"], expected_train_acc
    )

    path = str(tmp_path / "soft.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored.loss) is tfl.heads.ClassificationCrossentropy
    assert restored.loss.label_smoothing == 0.1
    np.testing.assert_allclose(
        restored.evaluate(val, verbose=0), model.evaluate(val, verbose=0), rtol=1e-5
    )
    np.testing.assert_allclose(
        restored.evaluate(x_mix, soft, verbose=0), model.evaluate(x_mix, soft, verbose=0), rtol=1e-5
    )


def test_image_classifier_auto_compile_trains_on_soft_labels_and_round_trips(tmp_path):
    x = images(8)
    labels = np.arange(8) % 3
    soft = 0.7 * np.eye(3, dtype="float32")[labels] + 0.3 * np.eye(3, dtype="float32")[::-1][labels]
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    model.compile(label_smoothing=0.1)  # loss="auto", metrics="auto"
    head_kernel = model.head.output_dense.kernel.numpy().copy()
    model.fit(x, soft, batch_size=4, epochs=1, verbose=0)
    assert not np.allclose(model.head.output_dense.kernel.numpy(), head_kernel)
    results = model.evaluate(x, labels, batch_size=4, verbose=0, return_dict=True)
    predicted = model.predict(x, verbose=0).argmax(-1)
    np.testing.assert_allclose(results["accuracy"], (predicted == labels).mean())
    restored = assert_keras_round_trip(model, x, tmp_path)
    np.testing.assert_allclose(
        restored.evaluate(x, soft, batch_size=4, verbose=0),
        model.evaluate(x, soft, batch_size=4, verbose=0),
        rtol=1e-5,
    )
