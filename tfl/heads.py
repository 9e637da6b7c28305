"""Heads: what sits on a pretrained base's feature vector.

Each head is a serialisable Keras layer that also knows its default loss and metrics, so a
task model can `compile()` with nothing but an optimizer. The last Dense layer always computes
in float32 (stable losses under mixed precision).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras
from keras import ops


def _check_label_smoothing(value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= float(value) < 1.0
    ):
        raise ValueError(f"Received label_smoothing={value!r}; expected a number in [0, 1).")
    return float(value)


def _no_label_smoothing(head: Head, label_smoothing) -> None:
    if _check_label_smoothing(label_smoothing):
        raise ValueError(
            f"Received label_smoothing={label_smoothing!r} for a {type(head).__name__}; label "
            "smoothing is for classification heads (ClassificationHead, MLPHead, "
            "MultiLabelHead). Use label_smoothing=0.0."
        )


@keras.saving.register_keras_serializable(package="tfl")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy for integer labels against smoothed targets (1 − ε)·onehot + ε/K.

    Keras' `SparseCategoricalCrossentropy` has no `label_smoothing`; this is
    `CategoricalCrossentropy(label_smoothing=ε)` on the one-hot encoding of integer labels
    (labels of shape `(batch,)` or `(batch, 1)`), without materialising one-hot targets
    in the data pipeline. K is the number of classes (the last axis of the predictions).

    Args:
        label_smoothing: ε in [0, 1); 0.1 (Szegedy et al., Inception-v3) by default.
        from_logits: whether the predictions are logits (True) or probabilities (False,
            what `ClassificationHead` outputs).
        name, reduction, dtype: as for any `keras.losses.Loss`.

    Example:
    >>> from tfl.heads import SmoothedSparseCategoricalCrossentropy
    >>> loss = SmoothedSparseCategoricalCrossentropy(label_smoothing=0.2)
    >>> # target (0.9, 0.1) against prediction (0.5, 0.5): -(0.9 + 0.1)·log 0.5 = log 2
    >>> round(float(loss(np.array([0]), np.array([[0.5, 0.5]]))), 4)
    0.6931
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        from_logits: bool = False,
        name: str = "smoothed_sparse_categorical_crossentropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = _check_label_smoothing(label_smoothing)
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        one_hot = ops.one_hot(ops.cast(y_true, "int32"), y_pred.shape[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        config = super().get_config()
        config.update(label_smoothing=self.label_smoothing, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="tfl")
class Head(keras.layers.Layer):
    """Dropout → optional hidden Dense layers → output Dense.

    Args:
        units: number of outputs.
        hidden_units: sizes of hidden Dense layers (an MLP head); empty for a linear head.
        dropout: dropout rate before each Dense layer, in [0, 1).
        hidden_activation: activation of the hidden layers.
        activation: activation of the output layer (None gives logits / raw scores).
        l2: L2 penalty on the output kernel (0 for none).

    Example:
    >>> head = Head(3, hidden_units=(8,), activation="softmax")
    >>> head(np.ones((2, 5))).shape
    TensorShape([2, 3])
    """

    def __init__(
        self,
        units: int,
        hidden_units: Sequence[int] = (),
        dropout: float = 0.0,
        hidden_activation: str = "relu",
        activation: str | None = None,
        l2: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"Received units={units!r}; expected a positive integer.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Received dropout={dropout!r}; expected a rate in [0, 1).")
        hidden_units = tuple(int(u) for u in hidden_units)
        if any(u < 1 for u in hidden_units):
            raise ValueError(f"Received hidden_units={hidden_units!r}; sizes must be positive.")
        self.units = units
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.hidden_activation = hidden_activation
        self.activation = activation
        self.l2 = l2

        self.hidden_layers = [
            keras.layers.Dense(u, activation=hidden_activation, name=f"hidden_{i}")
            for i, u in enumerate(hidden_units)
        ]
        self.dropout_layers = [
            keras.layers.Dropout(dropout, name=f"dropout_{i}") for i in range(len(hidden_units) + 1)
        ]
        self.output_dense = keras.layers.Dense(
            units,
            activation=activation,
            kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
            dtype="float32",
            name="output",
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.hidden_layers:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.output_dense.build(shape)

    def call(self, inputs, training=None):
        x = inputs
        # One more dropout than hidden layers: the last one feeds the output layer.
        for dropout, dense in zip(self.dropout_layers[:-1], self.hidden_layers, strict=True):
            x = dense(dropout(x, training=training))
        return self.output_dense(self.dropout_layers[-1](x, training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def default_loss(self, label_smoothing: float = 0.0) -> keras.losses.Loss:
        """The loss `compile(loss="auto")` uses with this head.

        Args:
            label_smoothing: ε in [0, 1) for classification heads: targets become
                (1 − ε)·onehot + ε/K (K classes) for single-label heads and
                (1 − ε)·y + ε/2 for multi-label heads. Regression and SVM heads accept
                only 0.0.
        """
        _no_label_smoothing(self, label_smoothing)
        return keras.losses.MeanSquaredError()

    def default_metrics(self) -> list:
        """The metrics `compile(metrics="auto")` uses with this head."""
        return []

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            hidden_activation=self.hidden_activation,
            activation=self.activation,
            l2=self.l2,
        )
        return config


@keras.saving.register_keras_serializable(package="tfl")
class ClassificationHead(Head):
    """Single-label classification: softmax probabilities, integer labels.

    Example:
    >>> ClassificationHead(10).default_loss().name
    'sparse_categorical_crossentropy'
    >>> ClassificationHead(10).default_loss(label_smoothing=0.1).name
    'smoothed_sparse_categorical_crossentropy'
    """

    def __init__(self, num_classes: int = None, activation="softmax", **kwargs):
        units = kwargs.pop("units", num_classes)
        super().__init__(units=units, activation=activation, **kwargs)

    @property
    def num_classes(self) -> int:
        return self.units

    def default_loss(self, label_smoothing=0.0):
        from_logits = self.activation != "softmax"
        if _check_label_smoothing(label_smoothing):
            return SmoothedSparseCategoricalCrossentropy(label_smoothing, from_logits=from_logits)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)

    def default_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


@keras.saving.register_keras_serializable(package="tfl")
class MLPHead(ClassificationHead):
    """Classification through hidden layers: `hidden_units=(256,)`, `dropout=0.2` by default."""

    def __init__(self, num_classes: int = None, hidden_units=(256,), dropout=0.2, **kwargs):
        super().__init__(num_classes, hidden_units=hidden_units, dropout=dropout, **kwargs)


@keras.saving.register_keras_serializable(package="tfl")
class MultiLabelHead(Head):
    """Multi-label classification: one sigmoid per label, multi-hot 0/1 targets."""

    def __init__(self, num_labels: int = None, activation="sigmoid", **kwargs):
        units = kwargs.pop("units", num_labels)
        super().__init__(units=units, activation=activation, **kwargs)

    def default_loss(self, label_smoothing=0.0):
        return keras.losses.BinaryCrossentropy(
            from_logits=self.activation != "sigmoid",
            label_smoothing=_check_label_smoothing(label_smoothing),
        )

    def default_metrics(self):
        return [
            keras.metrics.BinaryAccuracy(name="binary_accuracy"),
            keras.metrics.AUC(multi_label=True, num_labels=self.units, name="auc"),
        ]


@keras.saving.register_keras_serializable(package="tfl")
class RegressionHead(Head):
    """Regression: linear outputs, mean squared error, mean absolute error metric."""

    def __init__(self, num_outputs: int = 1, **kwargs):
        units = kwargs.pop("units", num_outputs)
        super().__init__(units=units, **kwargs)

    def default_loss(self, label_smoothing=0.0):
        _no_label_smoothing(self, label_smoothing)
        return keras.losses.MeanSquaredError()

    def default_metrics(self):
        return [keras.metrics.MeanAbsoluteError(name="mae")]


@keras.saving.register_keras_serializable(package="tfl")
class SquaredHinge(keras.losses.Loss):
    """One-vs-rest (squared) hinge loss for integer class labels: a linear SVM's loss.

    For class scores s and label y, each class c has target t_c = +1 if c == y else -1 and
    contributes max(0, 1 - t_c · s_c)² (or without the square, `squared=False`).
    """

    def __init__(self, num_classes: int, squared: bool = True, name="squared_hinge", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.squared = squared

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        targets = 2.0 * ops.one_hot(y_true, self.num_classes, dtype=y_pred.dtype) - 1.0
        margins = ops.relu(1.0 - targets * y_pred)
        if self.squared:
            margins = ops.square(margins)
        return ops.mean(margins, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, squared=self.squared)
        return config


@keras.saving.register_keras_serializable(package="tfl")
class SVMHead(Head):
    """A linear SVM on the features: raw scores, (squared) hinge loss, L2 on the weights.

    `l2` plays the role of 1/C in a classic SVM. The outputs are margins, not probabilities;
    the predicted class is their argmax.
    """

    def __init__(self, num_classes: int = None, l2: float = 1e-4, squared: bool = True, **kwargs):
        units = kwargs.pop("units", num_classes)
        kwargs.pop("activation", None)
        super().__init__(units=units, activation=None, l2=l2, **kwargs)
        self.squared = squared

    def default_loss(self, label_smoothing=0.0):
        _no_label_smoothing(self, label_smoothing)
        return SquaredHinge(self.units, squared=self.squared)

    def default_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def get_config(self):
        config = super().get_config()
        config.update(squared=self.squared)
        return config


HEADS = {
    "classification": ClassificationHead,
    "mlp": MLPHead,
    "multilabel": MultiLabelHead,
    "regression": RegressionHead,
    "svm": SVMHead,
}


def get_head(head: str | Head, num_outputs: int | None = None, **kwargs) -> Head:
    """A head from a name in `HEADS` (with `num_outputs`) or a `Head` instance, unchanged.

    Example:
    >>> get_head("svm", 4).units
    4
    """
    if isinstance(head, Head):
        return head
    if head not in HEADS:
        raise ValueError(f"Received head={head!r}; expected a Head or one of {sorted(HEADS)}.")
    if num_outputs is None:
        raise ValueError(f"head={head!r} needs the number of outputs (num_classes=...).")
    return HEADS[head](num_outputs, **kwargs)
