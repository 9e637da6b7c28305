"""Evaluation: metrics, plots, the run report, cross-validation and the negative-transfer check.

- `classification_metrics(y_true, probs)`: accuracy, per-class precision / recall / F1,
  macro and weighted averages, the confusion matrix, top-k accuracy, expected calibration
  error (with the per-bin table of a reliability diagram) and log loss. Numpy only.
- `evaluate_model(model, dataset)`: one pass over a `tf.data` dataset of `(x, y)` batches,
  then `classification_metrics`.
- `plot_history`, `plot_confusion`, `plot_reliability`: PNGs written with matplotlib's Agg
  canvas (no display needed; the global pyplot backend is left alone).
- `save_metrics(run_dir, metrics)` and `write_report(run_dir, ...)`: `evaluation.json`, the
  confusion-matrix PNG and a deterministic `report.md`.
- `cross_validate(build_model, x, y, phases=...)`: stratified k-fold with a fresh model per
  fold, trained by `tfl.fit_phases`.
- `compare_transfer(build_pretrained, build_scratch, x, y)`: training from scratch, a linear
  probe and a fine-tune on the same folds with the same epoch budget, and a plain verdict on
  whether the pretrained weights help (`transfer_verdict`, `format_comparison`).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

ECE_BINS = 15
REPORT_FILE = "report.md"
_EPS = 1e-15  # log loss clips probabilities to [_EPS, 1], as scikit-learn did for float64
_PROB_ATOL = 1e-3  # how far a row of probabilities may sum from 1 (float32 softmax rounding)
_CELL_TEXT_MAX_CLASSES = 20  # plot_confusion writes the values in the cells up to this many

__all__ = [
    "classification_metrics",
    "compare_transfer",
    "cross_validate",
    "evaluate_model",
    "format_comparison",
    "plot_confusion",
    "plot_history",
    "plot_reliability",
    "predict_arrays",
    "save_metrics",
    "stratified_folds",
    "transfer_verdict",
    "write_report",
]


# ---------------------------------------------------------------------------------------------
# Metrics


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


def _softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _head_gives_scores(model) -> bool | None:
    """True for a head without softmax (logits, SVM margins), False for softmax, None: unknown.

    Raises for heads that are not single-label classification.
    """
    from tfl.heads import Head, MultiLabelHead, RegressionHead

    head = getattr(model, "head", None)
    if isinstance(head, MultiLabelHead | RegressionHead):
        raise ValueError(
            f"Received a model with a {type(head).__name__}; the tfl.evaluate metrics are for "
            "single-label classification (ClassificationHead, MLPHead, SVMHead)."
        )
    if isinstance(head, Head):
        return head.activation != "softmax"
    return None


def _predict_probabilities(model, predict: Callable[[], Any]) -> tuple[np.ndarray, bool]:
    """Class probabilities from `predict()`, and whether they are a softmax of scores."""
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
    return (_softmax(outputs) if scores else outputs), scores


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


def _predict_batch(model, x):
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
        outputs.append(_predict_batch(model, x))
        targets.append(keras.ops.convert_to_numpy(y))
    if not outputs:
        raise ValueError("Received an empty dataset; expected at least one (x, y) batch.")

    def predict():
        if isinstance(outputs[0], dict | list | tuple):
            return outputs[0]
        return np.concatenate([np.asarray(o) for o in outputs], axis=0)

    probs, scores = _predict_probabilities(model, predict)
    shapes = {t.shape[1:] for t in targets}
    if len(shapes) > 1:
        raise ValueError(
            f"Received label batches of different shapes {sorted(map(str, shapes))}; expected "
            "one kind of label (class indices or one-hot) throughout."
        )
    metrics = classification_metrics(np.concatenate(targets, axis=0), probs, labels, top_k)
    metrics["outputs"] = "scores" if scores else "probabilities"
    return metrics


# ---------------------------------------------------------------------------------------------
# Histories and phases


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _load_history(history) -> tuple[list[int], dict[str, np.ndarray], list[dict] | None]:
    """A history CSV path, a dict of columns or a Keras `History` → epochs, columns, phases."""
    phases = None
    if isinstance(history, str | os.PathLike):
        path = os.fspath(history)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Received history={path!r}, which is not a file; expected the history.csv of "
                "a run (tfl.callbacks.standard_callbacks writes it)."
            )
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        columns = {key: [row[key] for row in rows] for key in (rows[0] if rows else {})}
    elif isinstance(history, keras.callbacks.History):
        columns = {"epoch": list(history.epoch), **history.history}
        phases = list(getattr(history, "phases", None) or []) or None
    elif isinstance(history, Mapping):
        columns = dict(history)
    else:
        raise ValueError(
            f"Received history of type {type(history).__name__}; expected a history.csv path, "
            "a dict of per-epoch lists or a keras History (tfl.fit_phases returns one)."
        )
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(
            f"Received history columns of different lengths {sorted(lengths)}; expected one "
            "value per epoch in every column."
        )
    n = lengths.pop() if lengths else 0
    epochs = [int(_number(e)) for e in columns.pop("epoch", range(n))]
    values = {
        key: np.array([_number(v) if v is not None else math.nan for v in col], dtype=float)
        for key, col in columns.items()
    }
    return epochs, values, phases


def _load_phases(phases) -> list[dict]:
    """Phases as `[{"name", "start_epoch", "end_epoch"}]` from a list or a `phases.json` path."""
    if isinstance(phases, str | os.PathLike):
        with open(os.fspath(phases), encoding="utf-8") as f:
            phases = json.load(f)
    if isinstance(phases, Mapping):  # fit_phases' state file: {"plan": [...], "done": [...]}
        phases = phases.get("done", phases.get("phases"))
    out = []
    for i, phase in enumerate(phases or []):
        if not isinstance(phase, Mapping) or not {"start_epoch", "end_epoch"} <= set(phase):
            raise ValueError(
                f"Received phases[{i}]={phase!r}; expected dicts with 'name', 'start_epoch' and "
                "'end_epoch' (the format of phases.json and PhaseHistory.phases)."
            )
        out.append(
            {
                "name": str(phase.get("name", f"phase{i}")),
                "start_epoch": int(phase["start_epoch"]),
                "end_epoch": int(phase["end_epoch"]),
            }
        )
    return out


def _phases_from_column(epochs: list[int], column: np.ndarray | None) -> list[dict]:
    if column is None or not len(column):
        return []
    phases: list[dict] = []
    for epoch, value in zip(epochs, column, strict=True):
        if math.isnan(value):
            continue
        index = int(value)
        if phases and phases[-1]["_index"] == index:
            phases[-1]["end_epoch"] = epoch + 1
        else:
            phases.append(
                {
                    "name": f"phase{index}",
                    "start_epoch": epoch,
                    "end_epoch": epoch + 1,
                    "_index": index,
                }
            )
    for phase in phases:
        phase.pop("_index")
    return phases


def _resolve_phases(phases, epochs, columns, from_history) -> list[dict]:
    if phases is not None:
        return _load_phases(phases)
    if from_history:
        return _load_phases(from_history)
    return _phases_from_column(epochs, columns.get("phase"))


def _accuracy_key(columns: Mapping[str, np.ndarray]) -> str | None:
    """The accuracy-like metric to plot: `accuracy`, else the first non-loss metric."""
    if "accuracy" in columns or "val_accuracy" in columns:
        return "accuracy"
    skip = {"loss", "learning_rate", "phase", "lr"}
    for key in columns:
        base = key[4:] if key.startswith("val_") else key
        if base not in skip and not base.endswith("loss"):
            return base
    return None


# ---------------------------------------------------------------------------------------------
# Plots


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> str:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_history(history, path: str | os.PathLike, phases=None) -> str:
    """Loss and accuracy curves (train and validation) against epoch, phases marked; a PNG.

    Two panels: the loss, and `accuracy` (or the first other metric logged). Epochs are
    shown 1-based, as Keras prints them; a dashed vertical line separates two phases and each
    phase's name is written at the top of its stretch.

    Args:
        history: the run's `history.csv` path, a dict of per-epoch lists (optionally with an
            `epoch` list, 0-based as Keras logs it) or a `keras.callbacks.History` (a
            `tfl.PhaseHistory` brings its phases).
        path: where to write the PNG.
        phases: `[{"name", "start_epoch", "end_epoch"}]` (end exclusive, 0-based), a path to a
            `phases.json`, or None: the history's own phases, else the `phase` column.

    Returns:
        `path`.

    Example:
    >>> import os, tempfile
    >>> from tfl.evaluate import plot_history
    >>> log = {"loss": [1.0, 0.7, 0.5], "val_loss": [1.1, 0.9, 0.8], "phase": [0, 0, 1]}
    >>> png = plot_history(log, os.path.join(tempfile.mkdtemp(), "history.png"))
    >>> os.path.getsize(png) > 0
    True
    """
    epochs, columns, own = _load_history(history)
    phases = _resolve_phases(phases, epochs, columns, own)
    x = np.array(epochs) + 1
    fig = _figure(10, 4)
    metric = _accuracy_key(columns)
    panels = [("loss", "loss")] + ([(metric, metric)] if metric else [])
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, label) in zip(axes, panels, strict=True):
        drawn = False
        for name, style in ((key, "-o"), (f"val_{key}", "--o")):
            if name in columns and not np.all(np.isnan(columns[name])):
                ax.plot(x, columns[name], style, markersize=3, label=name.replace("_", " "))
                drawn = True
        for i, phase in enumerate(phases):
            if i:
                ax.axvline(phase["start_epoch"] + 0.5, color="gray", linestyle=":", alpha=0.8)
            middle = (phase["start_epoch"] + phase["end_epoch"]) / 2 + 0.5
            ax.text(
                middle,
                1.0,
                phase["name"],
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=8,
                color="dimgray",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(label.replace("_", " "))
        if drawn:
            ax.legend(fontsize=8)
        if len(x):
            ax.set_xlim(x.min() - 0.5, x.max() + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(
    matrix, names: Sequence[str], path: str | os.PathLike, normalize: bool = True
) -> str:
    """A confusion-matrix heatmap (rows = true class, columns = predicted) as a PNG.

    The figure grows with the number of classes; values are written in the cells for up to
    20 classes (above that, the colours carry them and the labels get smaller).

    Args:
        matrix: K × K counts (`metrics["confusion_matrix"]`).
        names: the K class names.
        path: where to write the PNG.
        normalize: show each row as fractions of that class's examples (recall on the
            diagonal); False shows the counts.

    Returns:
        `path`.

    Example:
    >>> import os, tempfile
    >>> from tfl.evaluate import plot_confusion
    >>> png = plot_confusion([[3, 1], [0, 4]], ["cat", "dog"], os.path.join(tempfile.mkdtemp(), "c.png"))
    >>> os.path.getsize(png) > 0
    True
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"Received matrix with shape {m.shape}; expected a square K x K matrix.")
    k = m.shape[0]
    names = [str(n) for n in names]
    if len(names) != k:
        raise ValueError(f"Received {len(names)} names for a {k} x {k} matrix; expected {k}.")
    if normalize:
        totals = m.sum(axis=1, keepdims=True)
        m = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
    size = min(4.0 + 0.3 * k, 20.0)
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot()
    image = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(m.max(), 1.0))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    font = 9 if k <= 20 else 7 if k <= 35 else 5
    ax.set_xticks(range(k), names, rotation=90 if k > 8 else 45, ha="center", fontsize=font)
    ax.set_yticks(range(k), names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (rows normalised)" if normalize else ""))
    if k <= _CELL_TEXT_MAX_CLASSES:
        threshold = (1.0 if normalize else max(m.max(), 1.0)) / 2
        for i in range(k):
            for j in range(k):
                text = f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}"
                color = "white" if m[i, j] > threshold else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=font - 1, color=color)
    fig.tight_layout()
    return _save(fig, path)


def plot_reliability(ece_table: Sequence[Mapping], path: str | os.PathLike) -> str:
    """A reliability diagram: accuracy against confidence per bin, with the diagonal; a PNG.

    Args:
        ece_table: `metrics["reliability"]` from `classification_metrics`.
        path: where to write the PNG.

    Returns:
        `path`.

    Example:
    >>> import os, tempfile
    >>> from tfl.evaluate import classification_metrics, plot_reliability
    >>> m = classification_metrics([0, 1, 1], np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]))
    >>> png = plot_reliability(m["reliability"], os.path.join(tempfile.mkdtemp(), "r.png"))
    >>> os.path.getsize(png) > 0
    True
    """
    rows = list(ece_table)
    if not rows or not all({"lower", "upper", "count"} <= set(r) for r in rows):
        raise ValueError(
            "Received an ece_table that is not classification_metrics(...)['reliability'] "
            "(rows with lower, upper, count, confidence, accuracy)."
        )
    fig = _figure(5, 5)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfect calibration")
    full = [r for r in rows if r["count"]]
    lefts = [r["lower"] for r in full]
    widths = [r["upper"] - r["lower"] for r in full]
    ax.bar(
        lefts,
        [r["accuracy"] for r in full],
        widths,
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
    ax.plot(
        [r["confidence"] for r in full],
        [r["accuracy"] for r in full],
        "o",
        color="tab:red",
        markersize=3,
        label="mean confidence",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Saving and the report


def save_metrics(
    run_dir: str | os.PathLike, metrics: Mapping, name: str = "evaluation"
) -> tuple[str, str]:
    """Writes `<name>.json` and the confusion-matrix PNG `<name>_confusion.png` into `run_dir`.

    Args:
        run_dir: the run's directory (created).
        metrics: a `classification_metrics` / `evaluate_model` dict.
        name: the file stem, e.g. "evaluation" or "test".

    Returns:
        The paths of the JSON file and of the PNG.

    Example:
    >>> import json, tempfile
    >>> from tfl.evaluate import classification_metrics, save_metrics
    >>> m = classification_metrics([0, 1], np.array([[0.8, 0.2], [0.3, 0.7]]))
    >>> json_path, png_path = save_metrics(tempfile.mkdtemp(), m)
    >>> json.load(open(json_path))["accuracy"], png_path.endswith("evaluation_confusion.png")
    (1.0, True)
    """
    if not isinstance(name, str) or not name or os.sep in name:
        raise ValueError(f"Received name={name!r}; expected a file stem such as 'evaluation'.")
    for key in ("confusion_matrix", "names"):
        if key not in metrics:
            raise ValueError(
                f"Received metrics without {key!r}; expected the dict of classification_metrics "
                "or evaluate_model."
            )
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    json_path = os.path.join(run_dir, f"{name}.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1, ensure_ascii=False, default=_plain)
    png_path = plot_confusion(
        metrics["confusion_matrix"],
        metrics["names"],
        os.path.join(run_dir, f"{name}_confusion.png"),
    )
    return json_path, png_path


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        if math.isnan(value):
            return "n/a"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.4f}"
    text = value if isinstance(value, str) else json.dumps(value, default=_plain)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def _flatten(config: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows += _flatten(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


def _table(header: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += [
        "| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |"
        for row in rows
    ]
    return lines


def _split_counts(info: Mapping) -> dict[str, int]:
    """Examples per split from a `DataSplits.info` (`num_examples`; `counts` per class)."""
    for key in ("num_examples", "counts"):
        value = info.get(key)
        if isinstance(value, Mapping) and all(
            isinstance(v, int | np.integer) for v in value.values()
        ):
            return {str(k): int(v) for k, v in value.items()}
        if isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values()):
            return {str(k): int(sum(v.values())) for k, v in value.items()}
    return {}


def _skipped(info: Mapping) -> int | None:
    for key in ("skipped", "bad_files"):
        value = info.get(key)
        if isinstance(value, int | np.integer):
            return int(value)
    return None


def _epoch_range(phase: Mapping) -> str:
    """1-based, inclusive epochs of a phase: "3–4", or "3" for one epoch."""
    first, last = phase["start_epoch"] + 1, phase["end_epoch"]
    return f"{first}–{last}" if last > first else f"{first}"


def _phase_rows(phases: list[dict], epochs: list[int], columns: Mapping[str, np.ndarray]):
    metric = _accuracy_key(columns)
    keys = [k for k in (f"val_{metric}" if metric else None, "val_loss") if k and k in columns]
    if not keys:  # no validation: report the training numbers
        keys = [k for k in (metric, "loss") if k and k in columns]
    header = ["phase", "epochs"] + [f"best {k}" for k in keys]
    epoch_array = np.array(epochs)
    rows = []
    for phase in phases:
        start, end = phase["start_epoch"], phase["end_epoch"]
        inside = (epoch_array >= start) & (epoch_array < end)
        row = [phase["name"], _epoch_range(phase)]
        for key in keys:
            values = columns[key][inside] if len(epoch_array) else np.array([])
            values = values[~np.isnan(values)]
            if not len(values):
                row.append("n/a")
            else:
                best = values.min() if key.endswith("loss") else values.max()
                row.append(_fmt(float(best)))
        rows.append(row)
    return header, rows


def write_report(
    run_dir: str | os.PathLike,
    *,
    title: str,
    config: Mapping | None = None,
    metrics: Mapping | None = None,
    history=None,
    phases=None,
    data_info: Mapping | None = None,
    notes: Sequence[str] = (),
    timing: Mapping[str, float] | None = None,
    worst: int = 5,
) -> str:
    """Writes `report.md`: what ran, on which data, the phases, the metrics, the plots.

    Sections (each only when there is something to say): the run's settings (`config`,
    nested keys flattened as `a.b`), the data (examples per split, class names, skipped
    inputs), the phases (epochs and the best validation accuracy / loss of each), the metrics
    (accuracy, macro and weighted F1, top-k, ECE, log loss), the `worst` classes by F1,
    timing, links to the PNG files in `run_dir` (only files that exist), and `notes`. The
    output depends only on the arguments and the PNG files present (no timestamps), so the
    same run gives the same report.

    Args:
        run_dir: the run's directory; `report.md` is written there.
        title: the report's heading.
        config: the run's settings (e.g. the CLI arguments), a flat or nested dict.
        metrics: a `classification_metrics` / `evaluate_model` dict.
        history: `history.csv` path, dict of lists or `keras.callbacks.History`; default:
            `run_dir/history.csv` if it exists.
        phases: as for `plot_history`; default: the history's phases, else
            `run_dir/backup/phases.json` (written by `fit_phases`), else the `phase` column.
        data_info: a `DataSplits.info` dict (or the `data.json` of the run).
        notes: lines to add at the end.
        timing: seconds per step, e.g. `{"train": 31.2, "evaluate": 1.4}`.
        worst: how many of the lowest-F1 classes to list.

    Returns:
        The path of `report.md`.

    Example:
    >>> import tempfile
    >>> from tfl.evaluate import classification_metrics, write_report
    >>> m = classification_metrics([0, 1, 1], np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    >>> path = write_report(tempfile.mkdtemp(), title="demo", metrics=m)
    >>> "| accuracy | 0.6667 |" in open(path).read()
    True
    """
    run_dir = os.fspath(run_dir)
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"Received title={title!r}; expected a non-empty heading.")
    if isinstance(notes, str):
        notes = [notes]
    os.makedirs(run_dir, exist_ok=True)
    lines = [f"# {title.strip()}", ""]

    if config:
        lines += ["## Run", ""]
        lines += _table(["setting", "value"], [(f"`{k}`", _fmt(v)) for k, v in _flatten(config)])
        lines.append("")

    if data_info:
        lines += ["## Data", ""]
        counts = _split_counts(data_info)
        if counts:
            lines += _table(["split", "examples"], [(k, _fmt(v)) for k, v in counts.items()])
            lines.append("")
        names = data_info.get("classes") or (metrics or {}).get("names")
        if names:
            shown = ", ".join(str(n) for n in names[:50])
            more = f", ... ({len(names)} in all)" if len(names) > 50 else ""
            lines += [f"Classes ({len(names)}): {shown}{more}", ""]
        skipped = _skipped(data_info)
        if skipped is not None:
            lines += [f"Skipped inputs: {skipped}", ""]

    if history is None and os.path.isfile(os.path.join(run_dir, "history.csv")):
        history = os.path.join(run_dir, "history.csv")
    state = os.path.join(run_dir, "backup", "phases.json")
    if history is not None:
        epochs, columns, own = _load_history(history)
        if phases is None and not own and os.path.isfile(state):
            phases = state
        resolved = _resolve_phases(phases, epochs, columns, own)
        if not resolved and epochs:
            resolved = [{"name": "all", "start_epoch": min(epochs), "end_epoch": max(epochs) + 1}]
        if resolved:
            header, rows = _phase_rows(resolved, epochs, columns)
            lines += ["## Phases", ""] + _table(header, rows) + [""]
    elif phases is not None:
        resolved = _load_phases(phases)
        rows = [(p["name"], _epoch_range(p)) for p in resolved]
        lines += ["## Phases", ""] + _table(["phase", "epochs"], rows) + [""]

    if metrics:
        lines += ["## Metrics", ""]
        rows = [("examples", _fmt(metrics.get("num_examples")))]
        rows.append(("accuracy", _fmt(metrics["accuracy"])))
        for key in sorted(
            (k for k in metrics if k.startswith("top_") and k.endswith("_accuracy")),
            key=lambda k: int(k.split("_")[1]),
        ):
            rows.append((f"top-{key.split('_')[1]} accuracy", _fmt(metrics[key])))
        for avg in ("macro_avg", "weighted_avg"):
            if avg in metrics:
                rows.append((f"{avg.split('_')[0]} F1", _fmt(metrics[avg]["f1"])))
        if "ece" in metrics:
            rows.append((f"ECE ({ECE_BINS} bins)", _fmt(metrics["ece"])))
        if "log_loss" in metrics:
            rows.append(("log loss", _fmt(metrics["log_loss"])))
        lines += _table(["metric", "value"], rows) + [""]
        if metrics.get("outputs") == "scores":
            lines += [
                "The model outputs scores (e.g. an SVM head): ECE and log loss use a softmax "
                "of the scores.",
                "",
            ]
        per_class = metrics.get("per_class") or {}
        if per_class and worst:
            order = sorted(per_class.items(), key=lambda item: item[1]["f1"])[:worst]
            lines += [f"### Worst {len(order)} classes by F1", ""]
            lines += _table(
                ["class", "precision", "recall", "F1", "support"],
                [
                    (
                        name,
                        _fmt(c["precision"]),
                        _fmt(c["recall"]),
                        _fmt(c["f1"]),
                        _fmt(c["support"]),
                    )
                    for name, c in order
                ],
            )
            lines.append("")

    if timing:
        lines += ["## Timing", ""]
        lines += _table(["step", "seconds"], [(k, f"{float(v):.1f}") for k, v in timing.items()])
        lines.append("")

    pngs = sorted(
        f
        for f in os.listdir(run_dir)
        if f.endswith(".png") and os.path.isfile(os.path.join(run_dir, f))
    )
    if pngs:
        lines += ["## Plots", ""]
        lines += [f"![{os.path.splitext(f)[0]}]({f})" for f in pngs]
        lines.append("")

    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]

    path = os.path.join(run_dir, REPORT_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Cross-validation and the negative-transfer check


def stratified_folds(y, folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Stratified k-fold: the held-out indices of each fold, every class spread evenly.

    Each class's examples are shuffled (by `seed`) and dealt round-robin to the folds,
    continuing from one class to the next, so fold sizes differ by at most one and every
    fold holds each class in proportion. The folds depend only on `y` and `seed`.

    Args:
        y: integer class labels `(N,)`.
        folds: the number of folds, 2 <= folds <= N.
        seed: the shuffling seed.

    Returns:
        `folds` sorted index arrays that partition `range(N)`.

    Example:
    >>> from tfl.evaluate import stratified_folds
    >>> [f.tolist() for f in stratified_folds([0, 0, 1, 1, 1, 1], folds=2)]
    [[0, 3, 4], [1, 2, 5]]
    """
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(
            f"Received y with shape {y.shape} and dtype {y.dtype}; expected integer class labels "
            "(N,)."
        )
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= len(y):
        raise ValueError(
            f"Received folds={folds!r} for {len(y)} examples; expected an integer in [2, {len(y)}]."
        )
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)])
    fold_of = np.empty(len(y), dtype=np.int64)
    fold_of[order] = np.arange(len(y)) % folds
    return [np.flatnonzero(fold_of == i) for i in range(folds)]


def _take(x, index: np.ndarray):
    return keras.tree.map_structure(lambda a: np.asarray(a)[index], x)


def _num_rows(x) -> int:
    sizes = {len(a) for a in keras.tree.flatten(x)}
    if len(sizes) != 1:
        raise ValueError(
            f"Received x with arrays of different lengths {sorted(sizes)}; expected one row per "
            "example in every array."
        )
    return sizes.pop()


def _spread(values: Sequence[float]) -> dict:
    values = [float(v) for v in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def cross_validate(
    build_model: Callable[[], keras.Model],
    x,
    y,
    *,
    folds: int = 5,
    phases,
    seed: int = 0,
    batch_size: int = 32,
    fit_kwargs: Mapping | None = None,
) -> dict:
    """Stratified k-fold cross-validation of a fine-tuning plan, a fresh model per fold.

    For each fold, `build_model()` is called, the model is trained with
    `tfl.fit_phases(model, phases, ...)` on the other folds and evaluated on the held-out
    fold. Nothing may carry from one fold to the next, so `build_model` must return a NEW
    model with FRESHLY loaded pretrained weights every time (build the backbone inside it,
    e.g. `tfl.ImageBackbone(..., weights="imagenet")`); a model or backbone created once
    outside and reused would start fold 2 from fold 1's fine-tuned weights, and the scores
    would be optimistic. A model that shares a variable with the previous fold's raises a
    `ValueError`. Before each fold the Keras random seed is set to `seed + fold`, so a
    method compared on the same folds (see `compare_transfer`) gets the same head
    initialisation and shuffling.

    Args:
        build_model: a function of no arguments returning a fresh tfl task.
        x: inputs: an array, or a dict / list of arrays with one row per example.
        y: integer class labels `(N,)`.
        folds: the number of folds.
        phases: the plan, e.g. `tfl.two_phase(2, 2)`.
        seed: the seed of the folds and of each fold's training.
        batch_size: the batch size of training and prediction.
        fit_kwargs: more `tfl.fit_phases` arguments (e.g. `callbacks`, `cache`; `verbose`
            defaults to 0). No validation data is passed: the held-out fold is never seen
            in training (not even by early stopping).

    Returns:
        A dict: `folds` (the number), `seed`, `fold_sizes`, `fold_metrics` (one
        `classification_metrics` dict per fold), and `accuracy` and `macro_f1`, each with
        `mean`, `std` (sample standard deviation over folds, ddof=1) and `values`.
    """
    from tfl.schedules import fit_phases

    y = np.asarray(y)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(
            f"Received y with shape {y.shape} and dtype {y.dtype}; expected integer class labels "
            "(N,)."
        )
    n = _num_rows(x)
    if n != len(y):
        raise ValueError(f"Received {n} inputs and {len(y)} labels; expected one label each.")
    if not callable(build_model):
        raise ValueError(
            f"Received build_model={build_model!r}; expected a function that returns a fresh "
            "model (with freshly loaded pretrained weights) on each call."
        )
    fit_kwargs = dict(fit_kwargs or {})
    fit_kwargs.setdefault("verbose", 0)
    for key in ("validation_data", "batch_size", "x", "y"):
        if key in fit_kwargs:
            raise ValueError(
                f"Received fit_kwargs with {key!r}; cross_validate sets it for each fold."
            )
    held_out = stratified_folds(y, folds, seed)
    num_classes = int(y.max()) + 1 if y.size else 0
    fold_metrics, previous = [], None  # the previous fold's model
    for i, test_index in enumerate(held_out):
        train_index = np.setdiff1d(np.arange(n), test_index)
        keras.utils.set_random_seed(seed + i)
        model = build_model()
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"build_model() returned {type(model).__name__}; expected a keras.Model."
            )
        if previous is not None:
            shared = {id(v) for v in model.variables} & {id(v) for v in previous.variables}
            if shared:
                raise ValueError(
                    f"build_model() returned a model for fold {i} that shares {len(shared)} "
                    f"variables with fold {i - 1}'s model: weights would carry between folds. "
                    "Create the backbone and the model inside build_model (freshly loading the "
                    "pretrained weights) on every call."
                )
        fit_phases(
            model,
            phases,
            _take(x, train_index),
            y[train_index],
            batch_size=batch_size,
            **fit_kwargs,
        )
        x_test = _take(x, test_index)
        probs, _ = _predict_probabilities(
            model, lambda m=model, xt=x_test: predict_arrays(m, xt, batch_size)
        )
        if probs.shape[1] < num_classes:
            raise ValueError(
                f"The model has {probs.shape[1]} outputs but y has class {num_classes - 1}; "
                "expected one output per class."
            )
        fold_metrics.append(classification_metrics(y[test_index], probs, top_k=()))
        previous = model
    return {
        "folds": folds,
        "seed": seed,
        "fold_sizes": [len(t) for t in held_out],
        "fold_metrics": fold_metrics,
        "accuracy": _spread([m["accuracy"] for m in fold_metrics]),
        "macro_f1": _spread([m["macro_avg"]["f1"] for m in fold_metrics]),
    }


METHODS = ("scratch", "probe", "fine_tune")
VERDICT_RULE = (
    "paired over folds: d = (better of probe and fine-tune, by mean) − scratch per fold; "
    "'transfer helps' if mean(d) > 2·std(d), 'transfer hurts' if mean(d) < −2·std(d) "
    "(std with ddof=1), else 'no difference within the fold spread'"
)


def transfer_verdict(
    scratch: Sequence[float], probe: Sequence[float], fine_tune: Sequence[float]
) -> dict:
    """The negative-transfer verdict from per-fold scores of the three methods.

    The better transfer method (probe or fine-tune, by mean score) is compared with training
    from scratch fold by fold: with d_i = transfer_i − scratch_i, "transfer helps" if
    mean(d) > 2·std(d), "transfer hurts" if mean(d) < −2·std(d) (sample std, ddof=1), and
    "no difference within the fold spread" otherwise. Pairing by fold removes what the folds
    share (a hard fold is hard for every method), so a consistent small gain counts while a
    gain that flips sign between folds does not. With identical differences on every fold
    (std 0), any non-zero mean decides. Picking the better of two methods first makes
    "helps" slightly optimistic; read the per-method table too.

    Args:
        scratch, probe, fine_tune: one score per fold (higher is better), same fold order.

    Returns:
        A dict: `verdict`, `method` (the transfer method compared), `mean_difference`,
        `std_difference`, `differences`, `rule`.

    Example:
    >>> from tfl.evaluate import transfer_verdict
    >>> transfer_verdict([0.5, 0.6, 0.55], [0.7, 0.8, 0.72], [0.8, 0.85, 0.8])["verdict"]
    'transfer helps'
    >>> transfer_verdict([0.5, 0.6, 0.55], [0.6, 0.5, 0.55], [0.52, 0.58, 0.56])["verdict"]
    'no difference within the fold spread'
    """
    scores = {"scratch": scratch, "probe": probe, "fine_tune": fine_tune}
    arrays = {k: np.asarray(v, dtype=float) for k, v in scores.items()}
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1 or lengths == {0} or any(a.ndim != 1 for a in arrays.values()):
        raise ValueError(
            f"Received fold scores of lengths {[len(a) for a in arrays.values()]}; expected the "
            "same number (>= 1) of per-fold scores for scratch, probe and fine_tune."
        )
    method = "fine_tune" if arrays["fine_tune"].mean() >= arrays["probe"].mean() else "probe"
    d = arrays[method] - arrays["scratch"]
    mean = float(d.mean())
    std = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
    if mean > 2 * std and mean > 0:
        verdict = "transfer helps"
    elif mean < -2 * std and mean < 0:
        verdict = "transfer hurts"
    else:
        verdict = "no difference within the fold spread"
    return {
        "verdict": verdict,
        "method": method,
        "mean_difference": mean,
        "std_difference": std,
        "differences": [float(v) for v in d],
        "rule": VERDICT_RULE,
    }


def compare_transfer(
    build_pretrained: Callable[[], keras.Model],
    build_scratch: Callable[[], keras.Model],
    x,
    y,
    *,
    folds: int = 3,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 32,
    metric: str = "accuracy",
    scratch_learning_rate: float = 1e-3,
    fit_kwargs: Mapping | None = None,
) -> dict:
    """The negative-transfer check: scratch vs linear probe vs fine-tune on the same folds.

    Each method gets the same stratified folds (`stratified_folds(y, folds, seed)`), the same
    per-fold seeds and the same budget of `epochs` epochs:

    - scratch: `build_scratch()` (random initialisation), everything trains for `epochs`
      epochs (Adam at `scratch_learning_rate`, constant: a fresh network needs a higher rate
      than a fine-tune);
    - probe: `build_pretrained()`, `tfl.feature_extraction(epochs)` (the base never trains);
    - fine_tune: `build_pretrained()`, `tfl.two_phase(epochs // 2, epochs - epochs // 2)`
      (the head first, then the whole base at a lower rate).

    Both builders must return a fresh model on every call (see `cross_validate`). The verdict
    compares the better transfer method with scratch fold by fold (`transfer_verdict`).

    Args:
        build_pretrained: returns a fresh task on freshly loaded pretrained weights.
        build_scratch: returns the same architecture with random weights (e.g.
            `tfl.ImageBackbone(..., weights=None, inference_mode=False)`: a fresh network's
            BatchNorm must run in training mode, or it normalises with its initial
            statistics and the scratch arm is handicapped).
        x, y: the data, as for `cross_validate`.
        folds: the number of folds (>= 2).
        epochs: the epoch budget of every method.
        seed: the seed of the folds and of each fold's training.
        batch_size: the batch size.
        metric: the score the verdict uses: "accuracy" or "macro_f1".
        scratch_learning_rate: the learning rate of the scratch run.
        fit_kwargs: more `tfl.fit_phases` arguments for every run.

    Returns:
        A dict: `methods` (method → the `cross_validate` result), `metric`, `folds`,
        `epochs`, `seed`, and the `transfer_verdict` keys (`verdict`, `method`,
        `mean_difference`, `std_difference`, `differences`, `rule`). `format_comparison`
        turns it into Markdown.
    """
    from tfl.schedules import Phase, feature_extraction, two_phase

    if metric not in ("accuracy", "macro_f1"):
        raise ValueError(f"Received metric={metric!r}; expected 'accuracy' or 'macro_f1'.")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"Received epochs={epochs!r}; expected an integer >= 1.")
    head_epochs = epochs // 2
    plans = {
        "scratch": (
            build_scratch,
            [
                Phase(
                    epochs,
                    trainable="all",
                    learning_rate=scratch_learning_rate,
                    train_batchnorm=True,  # a fresh network trains its BatchNorm too
                    name="scratch",
                )
            ],
        ),
        "probe": (build_pretrained, feature_extraction(epochs)),
        "fine_tune": (build_pretrained, two_phase(head_epochs, epochs - head_epochs)),
    }
    results = {}
    for method, (build, phases) in plans.items():
        results[method] = cross_validate(
            build,
            x,
            y,
            folds=folds,
            phases=phases,
            seed=seed,
            batch_size=batch_size,
            fit_kwargs=fit_kwargs,
        )
    verdict = transfer_verdict(*(results[m][metric]["values"] for m in METHODS))
    return {
        "methods": results,
        "metric": metric,
        "folds": folds,
        "epochs": epochs,
        "seed": seed,
        **verdict,
    }


def format_comparison(result: Mapping) -> str:
    """A Markdown table of a `compare_transfer` result (mean ± std per method) and its verdict.

    Example:
    >>> from tfl.evaluate import format_comparison
    >>> def cv(acc):
    ...     return {"accuracy": {"mean": np.mean(acc), "std": np.std(acc, ddof=1), "values": acc},
    ...             "macro_f1": {"mean": np.mean(acc), "std": np.std(acc, ddof=1), "values": acc}}
    >>> methods = {"scratch": cv([0.5, 0.6]), "probe": cv([0.8, 0.9]), "fine_tune": cv([0.9, 0.9])}
    >>> print(format_comparison({"methods": methods, "metric": "accuracy", "folds": 2,
    ...                          "epochs": 4, "verdict": "transfer helps"}))
    | method | accuracy | macro F1 | accuracy per fold |
    |---|---|---|---|
    | scratch | 0.5500 ± 0.0707 | 0.5500 ± 0.0707 | 0.5000, 0.6000 |
    | probe | 0.8500 ± 0.0707 | 0.8500 ± 0.0707 | 0.8000, 0.9000 |
    | fine-tune | 0.9000 ± 0.0000 | 0.9000 ± 0.0000 | 0.9000, 0.9000 |
    <BLANKLINE>
    Verdict (accuracy, 2 folds, 4 epochs per method): **transfer helps**.
    """
    methods = result.get("methods")
    if not isinstance(methods, Mapping) or not set(METHODS) <= set(methods):
        raise ValueError(
            "Received a result without methods scratch, probe and fine_tune; expected the dict "
            "that compare_transfer returns."
        )
    metric = result.get("metric", "accuracy")
    label = "accuracy" if metric == "accuracy" else "macro F1"
    rows = []
    for method in METHODS:
        cv = methods[method]
        rows.append(
            (
                method.replace("_", "-"),
                f"{cv['accuracy']['mean']:.4f} ± {cv['accuracy']['std']:.4f}",
                f"{cv['macro_f1']['mean']:.4f} ± {cv['macro_f1']['std']:.4f}",
                ", ".join(f"{v:.4f}" for v in cv[metric]["values"]),
            )
        )
    lines = _table(["method", "accuracy", "macro F1", f"{label} per fold"], rows)
    lines.append("")
    lines.append(
        f"Verdict ({label}, {result.get('folds')} folds, {result.get('epochs')} epochs per "
        f"method): **{result.get('verdict')}**."
    )
    if result.get("rule"):
        lines.append(f"Rule: {result['rule']}.")
    return "\n".join(lines)
