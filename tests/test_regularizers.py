import keras
import numpy as np
import pytest
from helpers import assert_keras_round_trip, images, tiny_image_base
from keras import ops

import tfl
from tfl.regularizers import L2SP, apply_l2sp, l2sp_penalty, remove_l2sp


def _zero_loss(y_true, y_pred):
    """A data loss that is 0 with zero gradient: only the regularisers train."""
    return 0.0 * ops.sum(y_pred, axis=-1)


def _loss(model, x, y):
    return model.evaluate(x, y, verbose=0, return_dict=True)["loss"]


def _base_weights(model):
    """(variable, is_bn_statistic) for every weight of the model's base."""
    stats = {
        id(w)
        for layer in model.backbone._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
        for w in (layer.moving_mean, layer.moving_variance)
    }
    return [(w, id(w) in stats) for w in model.backbone.weights]


def _first(model, layer_type):
    return next(
        layer for layer in model.backbone._flatten_layers() if isinstance(layer, layer_type)
    )


def _distance2(model, anchors):
    return sum(
        float(np.sum((w.numpy() - a) ** 2))
        for w, a in zip(model.backbone.trainable_weights, anchors, strict=True)
    )


def test_penalty_matches_hand_computation_and_is_counted_once():
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    apply_l2sp(model, alpha=0.3, beta=0.2)
    head_kernel = model.head.output_dense.kernel.numpy()
    head_term = 0.2 * float(np.sum(head_kernel**2))
    # Right after apply_l2sp the base sits at its anchors: only the head's L2 remains.
    np.testing.assert_allclose(l2sp_penalty(model), head_term, rtol=1e-5)

    conv = _first(model, keras.layers.Conv2D)
    bn = _first(model, keras.layers.BatchNormalization)
    rng = np.random.default_rng(0)
    d_kernel = rng.normal(size=conv.kernel.shape).astype("float32") * 0.1
    d_gamma = rng.normal(size=bn.gamma.shape).astype("float32") * 0.1
    conv.kernel.assign(conv.kernel.numpy() + d_kernel)
    bn.gamma.assign(bn.gamma.numpy() + d_gamma)
    bn.moving_mean.assign(bn.moving_mean.numpy() + 5.0)  # statistics are not penalised

    expected = 0.3 * float(np.sum(d_kernel**2) + np.sum(d_gamma**2)) + head_term
    np.testing.assert_allclose(l2sp_penalty(model), expected, rtol=1e-4)
    # What Keras adds to the training loss: the same sum, the nested base counted once.
    np.testing.assert_allclose(float(ops.sum(model.losses)), expected, rtol=1e-4)

    for w, is_stat in _base_weights(model):
        assert isinstance(w.regularizer, L2SP) != is_stat, w.path
    assert model.head.output_dense.bias.regularizer is None


def test_frozen_base_adds_no_penalty_until_unfrozen_and_recompiled():
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    tfl.freeze(model)
    apply_l2sp(model, alpha=0.5, beta=0.0)
    conv = _first(model, keras.layers.Conv2D)
    delta = np.full(conv.kernel.shape, 0.1, "float32")
    conv.kernel.assign(conv.kernel.numpy() + delta)
    x, y = images(4), np.array([0, 1, 2, 0])
    model.compile(keras.optimizers.SGD(0.1), loss=_zero_loss)

    assert l2sp_penalty(model) == 0.0
    assert _loss(model, x, y) == 0.0  # the loss Keras trains on

    tfl.unfreeze(model, top_n="all")
    model.compile(keras.optimizers.SGD(0.1), loss=_zero_loss)
    expected = 0.5 * float(np.sum(delta**2))
    np.testing.assert_allclose(l2sp_penalty(model), expected, rtol=1e-4)
    np.testing.assert_allclose(_loss(model, x, y), expected, rtol=1e-4)


def test_sgd_pulls_base_back_to_anchor_by_the_expected_factor():
    lr, alpha, beta, steps = 0.1, 0.5, 0.25, 3
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    x, y = images(4), np.array([0, 1, 2, 0])
    model.compile(keras.optimizers.SGD(lr), loss=_zero_loss)
    model.fit(x, y, epochs=1, verbose=0)  # trace a training step before L2-SP exists

    apply_l2sp(model, alpha=alpha, beta=beta)  # drops the traced step: no recompile needed
    conv = _first(model, keras.layers.Conv2D)
    anchor = conv.kernel.numpy()
    delta = np.random.default_rng(1).normal(size=anchor.shape).astype("float32") * 0.1
    conv.kernel.assign(anchor + delta)
    head_kernel = model.head.output_dense.kernel.numpy()
    model.fit(x, y, batch_size=4, epochs=steps, verbose=0)

    # Gradient of alpha·‖θ − θ₀‖² is 2·alpha·(θ − θ₀): each SGD step scales the offset.
    np.testing.assert_allclose(
        conv.kernel.numpy() - anchor, (1 - 2 * lr * alpha) ** steps * delta, atol=1e-6
    )
    np.testing.assert_allclose(
        model.head.output_dense.kernel.numpy(),
        (1 - 2 * lr * beta) ** steps * head_kernel,
        atol=1e-6,
    )


def _fine_tune_distance(alpha):
    keras.utils.set_random_seed(0)
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    anchors = [w.numpy() for w in model.backbone.trainable_weights]
    if alpha:
        apply_l2sp(model, alpha=alpha, beta=0.0)
    model.compile(keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    x = images(16, seed=3)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype("int32")
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    return _distance2(model, anchors)


def test_fit_with_l2sp_ends_closer_to_the_pretrained_weights():
    free = _fine_tune_distance(alpha=0.0)
    pulled = _fine_tune_distance(alpha=5.0)
    assert free > 0
    assert pulled < 0.5 * free


def test_reapply_reanchors_and_remove_restores_previous_regularizers():
    head = tfl.ClassificationHead(3, hidden_units=(4,), l2=0.05)
    model = tfl.ImageClassifier(tiny_image_base(), head=head)
    own = head.output_dense.kernel.regularizer
    apply_l2sp(model, alpha=0.2, beta=0.1)
    assert head.output_dense.kernel.regularizer is own  # the head's own L2 is kept
    assert isinstance(head.hidden_layers[0].kernel.regularizer, keras.regularizers.L2)

    conv = _first(model, keras.layers.Conv2D)
    conv.kernel.assign(conv.kernel.numpy() + 1.0)
    moved = l2sp_penalty(model)
    apply_l2sp(model, alpha=0.2, beta=0.1)  # re-anchor at the moved weights
    np.testing.assert_allclose(moved - l2sp_penalty(model), 0.2 * conv.kernel.numpy().size)

    remove_l2sp(model)
    assert l2sp_penalty(model) == 0.0
    assert conv.kernel.regularizer is None
    assert head.hidden_layers[0].kernel.regularizer is None
    assert head.output_dense.kernel.regularizer is own


def test_save_load_with_l2sp_attached(tmp_path):
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    apply_l2sp(model)
    conv = _first(model, keras.layers.Conv2D)
    conv.kernel.assign(conv.kernel.numpy() + 0.1)
    model.compile(keras.optimizers.Adam(1e-3))
    restored = assert_keras_round_trip(model, images(2), tmp_path)
    # Anchors are a training-time attachment: not saved, so not restored.
    assert l2sp_penalty(restored) == 0.0
    assert l2sp_penalty(model) > 0.0

    config = keras.regularizers.serialize(conv.kernel.regularizer)
    rebuilt = keras.regularizers.deserialize(config)
    assert isinstance(rebuilt, L2SP) and rebuilt.strength == 0.01 and rebuilt.anchor is None
    with pytest.raises(ValueError, match="no anchor"):
        rebuilt(conv.kernel)


def test_errors_name_the_value():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="alpha=-1"):
        apply_l2sp(model, alpha=-1)
    with pytest.raises(ValueError, match="beta='x'"):
        apply_l2sp(model, beta="x")
    with pytest.raises(ValueError, match=r"shape \(3,\).*anchored to shape \(2,\)"):
        L2SP(np.zeros(2))(np.zeros(3, "float32"))
