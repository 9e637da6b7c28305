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


def _as_class_targets(y_true, y_pred):
    """Integer labels `(batch,)` / `(batch, 1)` → one-hot; `(batch, K)` soft labels unchanged.

    Dispatches on the static ranks at trace time: labels with one axis less than the
    predictions (or a trailing axis of 1) are class indices, labels shaped like the predictions
    are per-class targets (one-hot, or soft from mixup / cutmix). Keras has already cast both
    to the loss dtype.
    """
    num_classes = y_pred.shape[-1]
    rank, pred_rank = len(y_true.shape), len(y_pred.shape)
    if rank == pred_rank and y_true.shape[-1] == 1 and num_classes != 1:
        y_true = ops.squeeze(y_true, axis=-1)
        rank -= 1
    if rank == pred_rank - 1:
        return ops.one_hot(ops.cast(y_true, "int32"), num_classes, dtype=y_pred.dtype)
    if rank == pred_rank and y_true.shape[-1] in (None, num_classes):
        return ops.cast(y_true, y_pred.dtype)
    raise ValueError(
        f"Received labels of shape {tuple(y_true.shape)} for predictions of shape "
        f"{tuple(y_pred.shape)}; expected integer class indices of shape (batch,) or "
        f"(batch, 1), or one-hot / soft labels of shape (batch, {num_classes})."
    )


@keras.saving.register_keras_serializable(package="tfl")
class ClassificationCrossentropy(keras.losses.Loss):
    """Cross-entropy for integer labels *and* one-hot / soft labels, with label smoothing.

    The loss `ClassificationHead` compiles with. Training labels from mixup / cutmix are
    float vectors `(batch, K)` while validation labels stay integers `(batch,)`; one loss
    object takes both. Integer labels (one axis less than the predictions, or a trailing axis
    of 1) are one-hot encoded in the graph; labels shaped like the predictions are used as
    targets as given. Either way the targets are then smoothed to (1 − ε)·y + ε/K (K = the
    last axis of the predictions). With ε = 0 and integer labels this equals Keras'
    `SparseCategoricalCrossentropy`; with one-hot labels, `CategoricalCrossentropy`.

    Args:
        label_smoothing: ε in [0, 1).
        from_logits: whether the predictions are logits (True) or probabilities (False,
            what `ClassificationHead` outputs).
        name, reduction, dtype: as for any `keras.losses.Loss`.

    Example:
    >>> from tfl.heads import ClassificationCrossentropy
    >>> loss = ClassificationCrossentropy()
    >>> probs = np.array([[0.2, 0.8]])
    >>> # integer label 1 and the one-hot label (0, 1) give the same -log 0.8
    >>> round(float(loss(np.array([1]), probs)), 4), round(float(loss(np.array([[0.0, 1.0]]), probs)), 4)
    (0.2231, 0.2231)
    >>> # a mixup label (0.3, 0.7): -(0.3·log 0.2 + 0.7·log 0.8)
    >>> round(float(loss(np.array([[0.3, 0.7]]), probs)), 4)
    0.639
    """

    def __init__(
        self,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
        name: str = "classification_crossentropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = _check_label_smoothing(label_smoothing)
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        targets = _as_class_targets(ops.convert_to_tensor(y_true), y_pred)
        return keras.losses.categorical_crossentropy(
            targets, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        config = super().get_config()
        config.update(label_smoothing=self.label_smoothing, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="tfl")
class SmoothedSparseCategoricalCrossentropy(ClassificationCrossentropy):
    """`ClassificationCrossentropy` with ε = 0.1 by default (the name earlier tfl versions used).

    Kept so that code and saved models that name it still work; it accepts integer and
    one-hot / soft labels like its parent.

    Args:
        label_smoothing: ε in [0, 1); 0.1 (Szegedy et al., Inception-v3) by default.
        from_logits: whether the predictions are logits.
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
        super().__init__(label_smoothing, from_logits=from_logits, name=name, **kwargs)


def classification_accuracy(y_true, y_pred):
    """Per-example 1.0 / 0.0: does argmax(y_pred) equal the label (or argmax of a soft label)?"""
    y_pred = ops.convert_to_tensor(y_pred)
    targets = _as_class_targets(ops.convert_to_tensor(y_true), y_pred)
    hits = ops.equal(ops.argmax(targets, axis=-1), ops.argmax(y_pred, axis=-1))
    return ops.cast(hits, y_pred.dtype)


@keras.saving.register_keras_serializable(package="tfl")
class ClassificationAccuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy for integer labels and one-hot / soft labels (mixup, cutmix) alike.

    The predicted class is argmax of the predictions; the true class is the integer label, or
    the argmax of a `(batch, K)` label (for a mixup label the class with the larger share).

    Example:
    >>> from tfl.heads import ClassificationAccuracy
    >>> metric = ClassificationAccuracy()
    >>> metric.update_state(np.array([[0.3, 0.7], [0.9, 0.1]]), np.array([[0.2, 0.8], [0.4, 0.6]]))
    >>> metric.update_state(np.array([1]), np.array([[0.1, 0.9]]))
    >>> float(metric.result())
    0.6666666865348816
    """

    def __init__(self, name: str = "accuracy", dtype=None):
        super().__init__(fn=classification_accuracy, name=name, dtype=dtype)
        # Higher is better (EarlyStopping / ModelCheckpoint with mode="auto" read this).
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


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
        temperature: the output layer's logits are divided by it before the activation
            (temperature scaling, Guo et al. 2017: > 1 softens overconfident
            probabilities, the argmax never changes). 1.0 (default) leaves them as they
            are; `tfl.calibration.calibrate` fits it on validation data. Only for heads with
            a softmax or sigmoid activation.

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
        temperature: float = 1.0,
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
        self.temperature = temperature

        self.hidden_layers = [
            keras.layers.Dense(u, activation=hidden_activation, name=f"hidden_{i}")
            for i, u in enumerate(hidden_units)
        ]
        self.dropout_layers = [
            keras.layers.Dropout(dropout, name=f"dropout_{i}") for i in range(len(hidden_units) + 1)
        ]
        # The activation is applied in `call`, after the temperature (same values as a Dense
        # with that activation when the temperature is 1; the weights are the same).
        self.output_activation = keras.activations.get(activation)
        self.output_dense = keras.layers.Dense(
            units,
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
        logits = self.output_dense(self.dropout_layers[-1](x, training=training))
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return self.output_activation(logits)

    @property
    def temperature(self) -> float:
        """The divisor of the output logits (see the class docstring); 1.0: none.

        Set it on a built model with `tfl.calibration.set_temperature`, which also makes the
        model trace its predict and evaluate steps again.
        """
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not 0.0 < float(value) < float("inf")
        ):
            raise ValueError(f"Received temperature={value!r}; expected a number > 0.")
        if float(value) != 1.0 and self.activation not in ("softmax", "sigmoid"):
            raise ValueError(
                f"Received temperature={value!r} for a head with activation="
                f"{self.activation!r}; temperature scaling is for softmax or sigmoid outputs."
            )
        self._temperature = float(value)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    @property
    def output_kind(self) -> str:
        """What the head outputs, one of `OUTPUT_KINDS`: the one place that decides it.

        `"probabilities"` (a softmax over classes), `"scores"` (class scores without a softmax:
        logits or SVM margins, whose argmax is the class), `"multilabel"` (one sigmoid per
        label) or `"values"` (regression). Evaluation, prediction and export read it.

        Example:
        >>> from tfl.heads import ClassificationHead, RegressionHead, SVMHead
        >>> [h.output_kind for h in (ClassificationHead(3), SVMHead(3), RegressionHead())]
        ['probabilities', 'scores', 'values']
        """
        return PROBABILITIES if self.activation == "softmax" else SCORES

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
            temperature=self.temperature,
        )
        return config


@keras.saving.register_keras_serializable(package="tfl")
class ClassificationHead(Head):
    """Single-label classification: softmax probabilities; integer or soft labels.

    `compile(loss="auto", metrics="auto")` gives `ClassificationCrossentropy` and
    `ClassificationAccuracy` ("accuracy"), which take integer labels `(batch,)` and one-hot /
    soft labels `(batch, K)` alike, so a training set with mixup / cutmix (float labels) and a
    validation set with integer labels work with one compile.

    Example:
    >>> from tfl.heads import ClassificationHead
    >>> loss = ClassificationHead(10).default_loss(label_smoothing=0.1)
    >>> type(loss).__name__, loss.label_smoothing
    ('ClassificationCrossentropy', 0.1)
    >>> [m.name for m in ClassificationHead(10).default_metrics()]
    ['accuracy']
    """

    def __init__(self, num_classes: int = None, activation="softmax", **kwargs):
        units = kwargs.pop("units", num_classes)
        super().__init__(units=units, activation=activation, **kwargs)

    @property
    def num_classes(self) -> int:
        return self.units

    def default_loss(self, label_smoothing=0.0):
        label_smoothing = _check_label_smoothing(label_smoothing)
        # The names earlier tfl versions gave these losses (code may read `model.loss.name`).
        name = "smoothed_" * bool(label_smoothing) + "sparse_categorical_crossentropy"
        return ClassificationCrossentropy(
            label_smoothing, from_logits=self.activation != "softmax", name=name
        )

    def default_metrics(self):
        return [ClassificationAccuracy(name="accuracy")]


@keras.saving.register_keras_serializable(package="tfl")
class MLPHead(ClassificationHead):
    """Classification through hidden layers: `hidden_units=(256,)`, `dropout=0.2` by default."""

    def __init__(self, num_classes: int = None, hidden_units=(256,), dropout=0.2, **kwargs):
        super().__init__(num_classes, hidden_units=hidden_units, dropout=dropout, **kwargs)


@keras.saving.register_keras_serializable(package="tfl")
class MultiLabelHead(Head):
    """Multi-label classification: one sigmoid per label, multi-hot 0/1 targets."""

    output_kind = "multilabel"

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

    output_kind = "values"

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
    """One-vs-rest (squared) hinge loss for class labels: a linear SVM's loss.

    For class scores s and label y, each class c has target t_c = +1 if c == y else -1 and
    contributes max(0, 1 - t_c · s_c)² (or without the square, `squared=False`).

    Labels are integer class indices `(batch,)` / `(batch, 1)` or one-hot / soft vectors
    `(batch, K)`. A hinge loss has no soft-target form, so a soft label counts as its argmax
    class (for a mixup / cutmix label, the class with the larger share). Mixup then only
    decides which class a blended input belongs to; to train on the blend itself use a
    probability head (`ClassificationHead`, `MLPHead`).

    Example:
    >>> from tfl.heads import SquaredHinge
    >>> scores = np.array([[2.0, -0.5]])
    >>> # targets (+1, -1): max(0, 1 - 2)² = 0 and max(0, 1 - 0.5)² = 0.25, mean 0.125
    >>> float(SquaredHinge(2)(np.array([0]), scores)), float(SquaredHinge(2)(np.array([[0.6, 0.4]]), scores))
    (0.125, 0.125)
    """

    def __init__(self, num_classes: int, squared: bool = True, name="squared_hinge", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.squared = squared

    def call(self, y_true, y_pred):
        y_true = _as_class_targets(y_true, y_pred)
        hard = ops.one_hot(ops.argmax(y_true, axis=-1), self.num_classes, dtype=y_pred.dtype)
        targets = 2.0 * hard - 1.0
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
    the predicted class is their argmax. Soft labels (mixup / cutmix) count as their argmax
    class (see `SquaredHinge`); prefer a probability head to train on blended targets.
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
        return [ClassificationAccuracy(name="accuracy")]

    def get_config(self):
        config = super().get_config()
        config.update(squared=self.squared)
        return config


PROBABILITIES, SCORES, MULTILABEL, VALUES = "probabilities", "scores", "multilabel", "values"
OUTPUT_KINDS = (PROBABILITIES, SCORES, MULTILABEL, VALUES)
# Heads whose outputs name one class per example (their argmax).
SINGLE_LABEL_KINDS = (PROBABILITIES, SCORES)


def output_kind(head) -> str | None:
    """`head.output_kind` for a tfl `Head`; None for anything else (not known).

    Example:
    >>> from tfl.heads import SVMHead, output_kind
    >>> output_kind(SVMHead(2)), output_kind(None)
    ('scores', None)
    """
    return head.output_kind if isinstance(head, Head) else None


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
