"""A run's training history and phases, read from `history.csv`, a dict or a Keras `History`.

What `plots.plot_history` draws and `report.write_report` tabulates: per-epoch columns, the
phases (from `phases.json`, a `PhaseHistory` or the `phase` column) and which accuracy-like
metric to show.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping

import keras
import numpy as np


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def load_history(history) -> tuple[list[int], dict[str, np.ndarray], list[dict] | None]:
    """A history CSV path, a dict of columns or a Keras `History` → epochs, columns, phases.

    Epochs are 0-based as Keras logs them (`range(N)` when there is no `epoch` column); the
    columns are float arrays (NaN where a value is missing); the phases are a
    `tfl.PhaseHistory`'s own, else None.

    Example:
    >>> from tfl.evaluate.history import load_history
    >>> epochs, columns, phases = load_history({"loss": [1.0, 0.5], "val_loss": [1.2, None]})
    >>> epochs, columns["val_loss"].tolist(), phases
    ([0, 1], [1.2, nan], None)
    """
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


def load_phases(phases) -> list[dict]:
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


def resolve_phases(phases, epochs, columns, from_history) -> list[dict]:
    """The phases to show: `phases` if given, else the history's own, else its `phase` column.

    Example:
    >>> from tfl.evaluate.history import load_history, resolve_phases
    >>> epochs, columns, own = load_history({"loss": [3, 2, 1], "phase": [0, 0, 1]})
    >>> phases = resolve_phases(None, epochs, columns, own)
    >>> [(p["name"], p["start_epoch"], p["end_epoch"]) for p in phases]
    [('phase0', 0, 2), ('phase1', 2, 3)]
    """
    if phases is not None:
        return load_phases(phases)
    if from_history:
        return load_phases(from_history)
    return _phases_from_column(epochs, columns.get("phase"))


def accuracy_key(columns: Mapping[str, np.ndarray]) -> str | None:
    """The accuracy-like metric to plot: `accuracy`, else the first non-loss metric."""
    if "accuracy" in columns or "val_accuracy" in columns:
        return "accuracy"
    skip = {"loss", "learning_rate", "phase", "lr"}
    for key in columns:
        base = key[4:] if key.startswith("val_") else key
        if base not in skip and not base.endswith("loss"):
            return base
    return None
