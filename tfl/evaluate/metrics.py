"""Classification metrics: accuracy, per-class P/R/F1, confusion, top-k, calibration, log loss.

- `classification_metrics(y_true, probs)`: the numbers, from labels and class probabilities
  (numpy only), with the expected calibration error and its per-bin reliability table.
- `evaluate_model(model, dataset)`: one pass over a `tf.data` dataset of `(x, y)` batches,
  then `classification_metrics`.
- `predict_arrays(model, x)`: `model.predict` on in-memory inputs through `tf.data`.
- `softmax(scores)`: row-wise softmax (what stands in for probabilities of a scoring head).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfl.heads import MULTILABEL, SCORES, VALUES, output_kind

ECE_BINS = 15
_EPS = 1e-15  # log loss clips probabilities to [_EPS, 1], as scikit-learn did for float64
_PROB_ATOL = 1e-3  # how far a row of probabilities may sum from 1 (float32 softmax rounding)


def _class_names(labels, num_classes: int) -> list[str]:
    if labels is None:
        return [str(i) for i in range(num_classes)]
    names = list(getattr(labels, "names", labels))
    names = [str(n) for n in names]
    if len(names) != num_classes:
        raise ValueError(
            f"Received {len(names)} label names for {num_classes} classes (probs has "
            f"{num_classes} columns); expected one name per column."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"Received label names with duplicates {names!r}; expected unique names.")
    return names


def _class_indices(y_true, num_classes: int) -> np.ndarray:
    """Integer labels `(N,)` / `(N, 1)`, or one-hot / soft `(N, K)` → class indices `(N,)`."""
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] == num_classes and num_classes > 1:
        if not np.issubdtype(y.dtype, np.number):
            raise ValueError(f"Received y_true of dtype {y.dtype}; expected numbers.")
        return np.argmax(y, axis=1)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"Received y_true with shape {y.shape}; expected integer labels (N,) or one-hot / "
            f"soft labels (N, {num_classes})."
        )
    if y.size and not np.issubdtype(y.dtype, np.number):
        raise ValueError(
            f"Received y_true of dtype {y.dtype}; expected integer class indices (encode names "
            "with a tfl.data.splits.LabelMap)."
        )
    if y.size and not np.all(np.equal(np.mod(y, 1), 0)):
        raise ValueError(
            f"Received y_true with non-integer values (e.g. {y[np.mod(y, 1) != 0][0]!r}); "
            f"expected class indices, or soft labels of shape (N, {num_classes})."
        )
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        raise ValueError(
            f"Received y_true with class index {int(y[bad][0])}; expected indices in "
            f"[0, {num_classes}) for probs with {num_classes} columns."
        )
    return y


def _check_probs(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(
            f"Received probs with shape {p.shape}; expected (N, K) class probabilities with "
            "K >= 2 (for one sigmoid output p, pass np.stack([1 - p, p], axis=1))."
        )
    if not np.all(np.isfinite(p)):
        raise ValueError("Received probs with NaN or infinite values; expected probabilities.")
    sums = p.sum(axis=1)
    if (p < 0).any() or (p.size and np.abs(sums - 1).max() > _PROB_ATOL):
        raise ValueError(
            f"Received probs whose rows are not probabilities (min value {p.min():.4g}, row sums "
            f"in [{sums.min():.4g}, {sums.max():.4g}]); expected non-negative rows that sum to "
            "1. For logits or SVM scores apply a softmax first (evaluate_model does this)."
        )
    return p


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def _reliability(confidence: np.ndarray, correct: np.ndarray, bins: int):
    """ECE over `bins` equal-width bins of the confidence, and the per-bin table."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in (edges[i], edges[i + 1]] (a confidence of 0 goes to bin 0).
    which = np.digitize(confidence, edges[1:-1], right=True)
    table, ece, n = [], 0.0, len(confidence)
    for i in range(bins):
        inside = which == i
        count = int(inside.sum())
        row = {
            "lower": float(edges[i]),
            "upper": float(edges[i + 1]),
            "count": count,
            "confidence": None,
            "accuracy": None,
        }
        if count:
            conf, acc = float(confidence[inside].mean()), float(correct[inside].mean())
            row.update(confidence=conf, accuracy=acc)
            ece += count / n * abs(acc - conf)
        table.append(row)
    return float(ece), table


def classification_metrics(
    y_true,
    probs,
    labels=None,
    top_k: Sequence[int] = (5,),
) -> dict:
    """Accuracy, per-class P/R/F1, confusion matrix, top-k, calibration and log loss.

    Definitions follow scikit-learn with `labels=range(K)`: a class that is never predicted
    has precision 0, one that never occurs has recall 0 (and both F1 0); macro averages weigh
    every class equally, weighted averages by support. The predicted class is the argmax
    (the first one in a tie). Expected calibration error (Guo et al. 2017): the confidence
    (largest probability) of each example falls in one of 15 equal-width bins `(i/15,
    (i+1)/15]`, and ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b|. Log loss is the
    mean of −log p(true class), with p clipped to [1e-15, 1].

    Args:
        y_true: integer class indices `(N,)`, or one-hot / soft labels `(N, K)` (their argmax
            is the class, for every metric).
        probs: predicted class probabilities `(N, K)`, rows summing to 1 (apply a softmax to
            logits or SVM scores first).
        labels: class names: a `tfl.data.splits.LabelMap` or a list of K names (default
            "0".."K-1").
        top_k: the k of each top-k accuracy; reported as `top_<k>_accuracy` only when K > k.

    Returns:
        A JSON-friendly dict: `num_examples`, `num_classes`, `names`, `accuracy`,
        `top_<k>_accuracy`, `per_class` (name → precision, recall, f1, support), `macro_avg`
        and `weighted_avg` (precision, recall, f1), `confusion_matrix` (a list of rows, row =
        true class, column = predicted), `ece`, `reliability` (one row per bin: lower, upper,
        count, confidence, accuracy; None for empty bins) and `log_loss`.

    Example:
    >>> from tfl.evaluate import classification_metrics
    >>> probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    >>> m = classification_metrics([0, 1, 1, 1], probs, labels=["cat", "dog"])
    >>> m["accuracy"], m["confusion_matrix"], m["per_class"]["cat"]["precision"]
    (0.75, [[1, 0], [1, 2]], 0.5)
    >>> round(m["ece"], 4), round(m["log_loss"], 4)
    (0.3, 0.4004)
    """
    p = _check_probs(probs)
    n, k = p.shape
    y = _class_indices(y_true, k)
    if len(y) != n:
        raise ValueError(
            f"Received {len(y)} labels and {n} rows of probs; expected one label per row."
        )
    if n == 0:
        raise ValueError("Received no examples (N = 0); expected at least one.")
    names = _class_names(labels, k)
    ks = [top_k] if isinstance(top_k, int) else list(top_k)
    for value in ks:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"Received top_k={top_k!r}; expected positive integers, e.g. (5,).")

    pred = np.argmax(p, axis=1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    per_class, rows = {}, []
    for i, name in enumerate(names):
        precision = _ratio(tp[i], predicted[i])
        recall = _ratio(tp[i], support[i])
        f1 = _ratio(2 * precision * recall, precision + recall)
        row = (precision, recall, f1)
        rows.append(row)
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(support[i]),
        }
    rows = np.array(rows)
    weights = support / support.sum()
    macro = rows.mean(axis=0)
    weighted = (rows * weights[:, None]).sum(axis=0)

    metrics: dict[str, Any] = {
        "num_examples": int(n),
        "num_classes": int(k),
        "names": names,
        "accuracy": float(np.mean(pred == y)),
    }
    order = np.argsort(-p, axis=1, kind="stable")
    for value in sorted(set(int(v) for v in ks)):
        if k > value:
            hit = (order[:, :value] == y[:, None]).any(axis=1)
            metrics[f"top_{value}_accuracy"] = float(hit.mean())
    metrics["per_class"] = per_class
    metrics["macro_avg"] = dict(zip(("precision", "recall", "f1"), map(float, macro), strict=True))
    metrics["weighted_avg"] = dict(
        zip(("precision", "recall", "f1"), map(float, weighted), strict=True)
    )
    metrics["confusion_matrix"] = confusion.tolist()
    ece, table = _reliability(p.max(axis=1), pred == y, ECE_BINS)
    metrics["ece"] = ece
    metrics["reliability"] = table
    true_p = np.clip(p[np.arange(n), y], _EPS, 1.0)
    metrics["log_loss"] = float(-np.mean(np.log(true_p)))
    return metrics


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of `(N, K)` scores (logits, SVM margins): class probabilities.

    Example:
    >>> from tfl.evaluate import softmax
    >>> softmax(np.array([[0.0, 0.0], [0.0, np.log(3.0)]])).round(2)
    array([[0.5 , 0.5 ],
           [0.25, 0.75]])
    """
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _head_gives_scores(model) -> bool | None:
    """True for a head without softmax (logits, SVM margins), False for softmax, None: unknown.

    Raises for heads that are not single-label classification.
    """
    head = getattr(model, "head", None)
    kind = output_kind(head)
    if kind in (MULTILABEL, VALUES):
        raise ValueError(
            f"Received a model with a {type(head).__name__}; the tfl.evaluate metrics are for "
            "single-label classification (ClassificationHead, MLPHead, SVMHead)."
        )
    return None if kind is None else kind == SCORES


def predict_probabilities(model, predict: Callable[[], Any]) -> tuple[np.ndarray, bool]:
    """Class probabilities from `predict()`, and whether they are a softmax of scores.

    Args:
        model: the model whose head says whether it outputs scores (`tfl.heads.output_kind`);
            for a head tfl does not know, outputs that are not rows of probabilities are
            taken as scores.
        predict: a function of no arguments returning the model's outputs `(N, K)`.

    Raises:
        ValueError: for a multi-label or regression head, several outputs, or outputs that
            are not `(N, K)`.
    """
    scores = _head_gives_scores(model)
    outputs = predict()
    if isinstance(outputs, dict | list | tuple):
        raise ValueError(
            f"Received a model with {len(outputs)} outputs; evaluate one classification output "
            "at a time (e.g. a keras.Model(model.inputs, model.outputs[0]))."
        )
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2:
        raise ValueError(
            f"Received model outputs of shape {outputs.shape}; expected (batch, num_classes)."
        )
    if scores is None:  # not a tfl head: outputs that are not probabilities are scores
        sums = outputs.sum(axis=1)
        scores = bool((outputs < 0).any() or np.abs(sums - 1).max(initial=0) > _PROB_ATOL)
    return (softmax(outputs) if scores else outputs), scores


def predict_arrays(model: keras.Model, x: Any, batch_size: int = 32) -> Any:
    """`model.predict` on in-memory inputs, fed through `tf.data` (batched, prefetched).

    Same outputs as `model.predict(x, batch_size=...)`; the batches come from a `tf.data`
    pipeline instead of Keras' NumPy slicing, so the next batch is ready while the model
    runs (1.1x for MobileNetV2 at 96 px on 2 CPU cores). `x` is an array, a list of
    strings, or a tuple/dict of them (one row per example).

    Example:
    >>> import keras, numpy as np
    >>> from tfl.evaluate import predict_arrays
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> x = np.ones((5, 3), "float32")
    >>> np.allclose(predict_arrays(model, x, batch_size=2), model.predict(x, verbose=0))
    True
    """
    dataset = tf.data.Dataset.from_tensor_slices((x,)).batch(batch_size)
    return model.predict(dataset.prefetch(tf.data.AUTOTUNE), verbose=0)


def predict_batch(model, x):
    """`predict_on_batch`, also right for a model built under a multi-replica strategy (whose
    `predict_on_batch` hands every replica the whole batch: R copies of the outputs)."""
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        return model.predict(tf.data.Dataset.from_tensors((x,)), verbose=0)
    return model.predict_on_batch(x)


def evaluate_model(model: keras.Model, dataset, labels=None, top_k: Sequence[int] = (5,)) -> dict:
    """Predict on a dataset of `(x, y)` batches and compute `classification_metrics`.

    The dataset is read once: each batch is predicted with `model.predict_on_batch` (which
    applies a keras-hub task's preprocessor, as `predict` does) and its labels are kept, so
    shuffled or augmented data still pairs every prediction with its own label. Sample
    weights, if the batches carry them, are ignored.

    SVM heads (and any head without a softmax) output scores, not probabilities: their
    argmax gives the class (accuracy, P/R/F1, confusion and top-k are exact), and a softmax
    of the scores stands in for probabilities in ECE and log loss (`metrics["outputs"]` says
    `"scores"`). Treat those two numbers as rough for such heads: margins are not calibrated.

    Args:
        model: a single-output classification model (a tfl task or any Keras model).
        dataset: a finite `tf.data.Dataset` (or any iterable) of `(x, y)` or `(x, y, w)`
            batches; `y` holds class indices or one-hot / soft labels.
        labels: class names (a `LabelMap` or a list), as for `classification_metrics`.
        top_k: as for `classification_metrics`.

    Returns:
        The `classification_metrics` dict plus `outputs`: `"probabilities"` or `"scores"`.

    Example:
    >>> import keras, tensorflow as tf
    >>> from tfl.evaluate import evaluate_model
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    >>> x, y = np.random.default_rng(0).normal(size=(10, 2)), np.arange(10) % 3
    >>> m = evaluate_model(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
    >>> m["num_examples"], m["outputs"], len(m["confusion_matrix"])
    (10, 'probabilities', 3)
    """
    if isinstance(dataset, tf.data.Dataset):
        if int(dataset.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise ValueError(
                "Received an infinite dataset (it repeats forever); pass the finite test "
                "dataset (without .repeat())."
            )
    elif not isinstance(dataset, Iterable):
        raise ValueError(
            f"Received dataset={type(dataset).__name__}; expected a tf.data.Dataset of (x, y) "
            "batches. For arrays use tf.data.Dataset.from_tensor_slices((x, y)).batch(32)."
        )
    _head_gives_scores(model)  # fails fast for multi-label / regression heads
    outputs, targets = [], []
    for batch in dataset:
        if not isinstance(batch, tuple | list) or len(batch) not in (2, 3):
            raise ValueError(
                "Received a dataset whose elements are not (x, y) or (x, y, sample_weight) "
                "batches; evaluate_model needs the labels."
            )
        x, y = batch[0], batch[1]
        outputs.append(predict_batch(model, x))
        targets.append(keras.ops.convert_to_numpy(y))
    if not outputs:
        raise ValueError("Received an empty dataset; expected at least one (x, y) batch.")

    def predict():
        if isinstance(outputs[0], dict | list | tuple):
            return outputs[0]
        return np.concatenate([np.asarray(o) for o in outputs], axis=0)

    probs, scores = predict_probabilities(model, predict)
    shapes = {t.shape[1:] for t in targets}
    if len(shapes) > 1:
        raise ValueError(
            f"Received label batches of different shapes {sorted(map(str, shapes))}; expected "
            "one kind of label (class indices or one-hot) throughout."
        )
    metrics = classification_metrics(np.concatenate(targets, axis=0), probs, labels, top_k)
    metrics["outputs"] = "scores" if scores else "probabilities"
    return metrics
