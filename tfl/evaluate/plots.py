"""PNG plots of a run: training curves, the confusion matrix, the reliability diagram.

Written with matplotlib's Agg canvas (no display needed; the global pyplot backend is left
alone). matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from tfl.evaluate.history import accuracy_key, load_history, resolve_phases

_CELL_TEXT_MAX_CLASSES = 20  # plot_confusion writes the values in the cells up to this many


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
    epochs, columns, own = load_history(history)
    phases = resolve_phases(phases, epochs, columns, own)
    x = np.array(epochs) + 1
    fig = _figure(10, 4)
    metric = accuracy_key(columns)
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
