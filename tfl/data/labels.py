"""`LabelMap`: label name <-> class index, saved with a run as `labels.json`.

A run's labels are saved so that predictions can be turned back into names later, and new
data (evaluation, prediction) is encoded with the run's own indices.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

LABELS_FILE = "labels.json"


def _as_name(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


class LabelMap:
    """Class names and their indices: index `i` is `names[i]`.

    Args:
        names: the class names in index order; unique and non-empty (each is turned into `str`).

    Example:
    >>> from tfl.data.splits import LabelMap
    >>> labels = LabelMap.from_values(["dog", "cat", "dog"])
    >>> labels.names, labels.encode(["dog", "cat"]).tolist(), labels.decode([1, 0])
    (['cat', 'dog'], [1, 0], ['dog', 'cat'])
    """

    def __init__(self, names: Sequence[Any]):
        names = [_as_name(n) for n in names]
        if not names:
            raise ValueError("Received names=[]; expected at least one class name.")
        if any(n == "" for n in names):
            raise ValueError(
                f"Received names={names!r} with an empty name; give every class a name."
            )
        seen, duplicates = set(), []
        for n in names:
            if n in seen:
                duplicates.append(n)
            seen.add(n)
        if duplicates:
            raise ValueError(
                f"Received names with duplicates {sorted(set(duplicates))!r}; expected unique "
                "class names."
            )
        self.names: list[str] = names
        self._index = {n: i for i, n in enumerate(names)}
        self._numeric = all(n.lstrip("-").isdigit() for n in names)

    @classmethod
    def from_values(cls, values: Any) -> LabelMap:
        """The sorted unique labels in `values`; integers sort numerically (2 before 10)."""
        values = list(np.asarray(values, dtype=object).reshape(-1))
        if not values:
            raise ValueError("Received no label values; expected at least one label.")
        if all(_is_int(v) or (isinstance(v, float) and v.is_integer()) for v in values):
            unique = sorted({int(v) for v in values})
        else:
            unique = sorted({_as_name(v) for v in values})
        return cls(unique)

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self.names == other.names

    def __hash__(self) -> int:
        return hash(tuple(self.names))

    def __repr__(self) -> str:
        shown = self.names if len(self) <= 10 else [*self.names[:10], "..."]
        return f"LabelMap({shown!r}, {len(self)} classes)"

    def encode(self, values: Any, where: Sequence[str] | None = None) -> np.ndarray:
        """Class indices (int64) of `values`: names, or integers already in `range(len(self))`.

        An integer is first looked up as a name (labels read from a file as 3, 5, 7 have names
        "3", "5", "7"); only maps whose names are not numbers take integers as indices.

        Args:
            values: label names or indices, any sequence or array.
            where: where each value came from (e.g. "train.csv row 12"), for error messages.

        Raises:
            ValueError: a label is not in the map; the message names it, where it occurred and
                the known labels.
        """
        flat = list(np.asarray(values, dtype=object).reshape(-1))
        out = np.empty(len(flat), dtype=np.int64)
        for i, value in enumerate(flat):
            name = _as_name(value)
            index = self._index.get(name)
            if index is None and not self._numeric and _is_int(value) and 0 <= value < len(self):
                index = int(value)
            if index is None:
                place = where[i] if where is not None else f"position {i}"
                known = self.names if len(self) <= 20 else [*self.names[:20], "..."]
                raise ValueError(
                    f"Unknown label {name!r} at {place}; the known labels are {known}. Fix the "
                    "label, or build the LabelMap from all labels (LabelMap.from_values)."
                )
            out[i] = index
        return out.reshape(np.shape(values)) if np.ndim(values) > 1 else out

    def decode(self, indices: Any) -> list[str]:
        """The names of class indices (a flat list)."""
        flat = np.asarray(indices).reshape(-1)
        bad = [int(i) for i in flat if not 0 <= int(i) < len(self)]
        if bad:
            raise ValueError(
                f"Received class indices {bad[:5]}; expected integers in [0, {len(self)})."
            )
        return [self.names[int(i)] for i in flat]

    def save(self, path: str) -> str:
        """Writes the names as JSON to `path` (a run directory gets `labels.json`); returns it."""
        path = os.fspath(path)
        if not path.endswith(".json"):
            os.makedirs(path, exist_ok=True)
            path = os.path.join(path, LABELS_FILE)
        elif os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"names": self.names}, f, indent=1, ensure_ascii=False)
        return path

    @classmethod
    def load(cls, path: str) -> LabelMap:
        """Reads a map written by `save` from a run directory or a `.json` file."""
        path = os.fspath(path)
        file = path if path.endswith(".json") else os.path.join(path, LABELS_FILE)
        if not os.path.exists(file):
            raise FileNotFoundError(
                f"No label map at {file}. Pass the run directory a tfl.data loader saved to "
                "(run_dir=...), or a file written by LabelMap.save."
            )
        with open(file, encoding="utf-8") as f:
            content = json.load(f)
        names = content.get("names") if isinstance(content, dict) else content
        if not isinstance(names, list):
            raise ValueError(f"{file} holds no list of names; expected {{'names': [...]}}.")
        return cls(names)
