import keras
import numpy as np
import pytest

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
