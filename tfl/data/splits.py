"""Pieces every `tfl.data` loader shares: label maps, stable splits, bad-input reports, results.

- `LabelMap` (from `tfl.data.labels`): label name <-> class index, saved with the run
  (`labels.json`) so that predictions can be turned back into names later.
- `hash_split`: a split that depends only on each example's key and the seed, so adding data
  never moves an example between train / validation / test (the idea of TF Hub's `retrain.py`).
- `BadInputReport`: inputs that were skipped (undecodable files, bad rows) are listed, counted,
  warned about once and saved as `bad_inputs.txt`; never dropped silently.
- `DataSplits`: what every loader returns; `train, val, test = data` works. It says, as
  fields, what the bottleneck cache needs to know of the datasets: each split's
  `fingerprints` (its examples, labels, order and preprocessing) and whether the training
  split is randomly `augmented`. A loader builds each split as a `Split` (the dataset and
  those two facts) and collects them with `DataSplits.from_splits`.
- `cap_per_class` / `cap_splits`: keep at most N examples of each class in a split (quick runs,
  balanced subsets), chosen by a hash of each example's key so the choice is stable.
- `make_fingerprint`: a hash of the parts that identify a split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from tfl.data.labels import LABELS_FILE, LabelMap  # noqa: F401  (re-exported)

DATA_FILE = "data.json"
BAD_INPUTS_FILE = "bad_inputs.txt"
SPLIT_NAMES = ("train", "validation", "test")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _unit_hash(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def as_fractions(splits, name: str = "splits") -> tuple[float, float, float]:
    """`(train, validation, test)` fractions from a tuple of 1-3 numbers or a dict by split.

    Example:
    >>> from tfl.data.splits import as_fractions
    >>> as_fractions((0.8, 0.2)), as_fractions({"train": 0.9, "test": 0.1})
    ((0.8, 0.2, 0.0), (0.9, 0.0, 0.1))
    """
    fix = (
        f"expected fractions (train, validation[, test]) summing to 1, e.g. {name}=(0.8, 0.1, "
        '0.1) or {"train": 0.8, "validation": 0.1, "test": 0.1}'
    )
    if isinstance(splits, Mapping):
        unknown = sorted(str(k) for k in splits if k not in SPLIT_NAMES)
        if unknown:
            raise ValueError(
                f"Received {name}={dict(splits)!r}: unknown split(s) {unknown}; the splits are "
                f"{list(SPLIT_NAMES)}; {fix}."
            )
        splits = [splits.get(s, 0.0) for s in SPLIT_NAMES]
    try:
        fractions = tuple(float(f) for f in splits)
    except (TypeError, ValueError):
        fractions = ()
    if not 1 <= len(fractions) <= 3 or any(not np.isfinite(f) or f < 0 for f in fractions):
        raise ValueError(f"Received {name}={splits!r}; {fix}.")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"Received {name}={splits!r}, which sums to {sum(fractions):g}; {fix}.")
    return fractions + (0.0,) * (3 - len(fractions))


def hash_split(
    keys: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> list[np.ndarray]:
    """Splits examples by a hash of their keys: sorted index arrays, one per fraction.

    A key's split depends only on `(seed, key)`: sha256 of `f"{seed}:{key}"` gives a number in
    [0, 1) that falls into one of the cumulative fractions. So adding examples never moves the
    old ones between splits (a test image never leaks into training when the folder grows), and
    every class is split in the same proportions in expectation. Use a key that identifies the
    example (a file path relative to the data root, a hash of its bytes), not a row number.

    Args:
        keys: one key per example (converted with `str`).
        fractions: non-negative fractions summing to 1, e.g. `(0.8, 0.1, 0.1)`.
        seed: a different seed gives a different, equally stable split.

    Example:
    >>> from tfl.data.splits import hash_split
    >>> train, val, test = hash_split([f"img_{i}.jpg" for i in range(1000)])
    >>> len(train) + len(val) + len(test), 750 < len(train) < 850
    (1000, True)
    """
    fractions = [float(f) for f in fractions]
    if not fractions or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"Received fractions={tuple(fractions)}; expected non-negative numbers summing to "
            "1, e.g. (0.8, 0.1, 0.1)."
        )
    u = np.array([_unit_hash(seed, str(k)) for k in keys], dtype=np.float64)
    edges = np.cumsum(fractions)[:-1]
    which = np.searchsorted(edges, u, side="right")
    return [np.flatnonzero(which == i).astype(np.int64) for i in range(len(fractions))]


def check_split_classes(
    y: np.ndarray,
    parts: Sequence[np.ndarray],
    split_names: Sequence[str],
    labels: LabelMap | None = None,
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Counts per split and class, and a message for each class missing from a non-empty split.

    Example:
    >>> from tfl.data.splits import check_split_classes
    >>> counts, problems = check_split_classes(
    ...     np.array([0, 0, 1]), [np.array([0, 2]), np.array([1])], ["train", "test"]
    ... )
    >>> counts["test"], problems
    ({'0': 1, '1': 0}, ["class '1' has no examples in the test split (1 examples)"])
    """
    y = np.asarray(y)
    num_classes = len(labels) if labels is not None else int(y.max()) + 1 if y.size else 0
    names = labels.names if labels is not None else [str(i) for i in range(num_classes)]
    counts, problems = {}, []
    for split, idx in zip(split_names, parts, strict=True):
        found = np.bincount(y[idx].astype(np.int64), minlength=num_classes)
        counts[split] = {n: int(c) for n, c in zip(names, found, strict=True)}
        if len(idx):
            problems += [
                f"class {n!r} has no examples in the {split} split ({len(idx)} examples)"
                for n, c in zip(names, found, strict=True)
                if c == 0
            ]
    return counts, problems


def warn_missing_classes(problems: list[str], what: str, stacklevel: int = 3) -> None:
    """One warning for all classes missing from a split (the full list is in `info`).

    `what` names the examples ("images"); `stacklevel` is `warnings.warn`'s, counted from here
    (3: the caller of the loader that calls this).
    """
    if not problems:
        return
    more = (
        f" (and {len(problems) - 3} more; see info['class_warnings'])" if len(problems) > 3 else ""
    )
    warnings.warn(
        f"{'; '.join(problems[:3])}{more}. Add {what} of these classes or change the split.",
        stacklevel=stacklevel,
    )


MaxPerClass = int | Mapping[str, int | None] | None

_CAP_SALT = "max_per_class"


def resolve_max_per_class(max_per_class: MaxPerClass) -> dict[str, int | None]:
    """The cap of each split: `{"train": n | None, "validation": ..., "test": ...}`.

    An int caps every split; a mapping caps the splits it names ("train", "validation",
    "test"; the others are not capped); None caps nothing.

    Raises:
        ValueError: a cap that is not a positive int, or an unknown split name.

    Example:
    >>> from tfl.data.splits import resolve_max_per_class
    >>> resolve_max_per_class({"train": 50, "test": 100})
    {'train': 50, 'validation': None, 'test': 100}
    >>> resolve_max_per_class(5)["validation"], resolve_max_per_class(None)["train"]
    (5, None)
    """
    if max_per_class is None:
        return dict.fromkeys(SPLIT_NAMES)
    if isinstance(max_per_class, Mapping):
        unknown = [k for k in max_per_class if k not in SPLIT_NAMES]
        if unknown:
            raise ValueError(
                f"Received max_per_class={dict(max_per_class)!r} with the split name "
                f"{unknown[0]!r}; expected keys from {list(SPLIT_NAMES)} (a split left out is "
                'not capped), e.g. {"train": 50, "validation": 50, "test": 100}.'
            )
        caps = {s: max_per_class.get(s) for s in SPLIT_NAMES}
    else:
        caps = dict.fromkeys(SPLIT_NAMES, max_per_class)
    for split, cap in caps.items():
        if cap is None:
            continue
        if not _is_int(cap) or cap < 1:
            mapping = isinstance(max_per_class, Mapping)
            where = f"max_per_class[{split!r}]" if mapping else "max_per_class"
            raise ValueError(
                f"Received {where}={cap!r}; expected a positive int (examples kept per class) "
                "or None for no cap."
            )
        caps[split] = int(cap)
    return caps


def cap_per_class(
    indices: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    keys: Sequence[str],
    cap: int | None,
    seed: int = 0,
) -> np.ndarray:
    """The members of `indices` kept when each class keeps at most `cap` examples (sorted).

    Within each class the examples whose keys hash smallest are kept (sha256 of
    `f"{seed}:max_per_class:{key}"`, salted so the choice is independent of `hash_split`'s).
    So the choice depends only on the keys, never on the order of the data (MNIST-5k stores
    its digits sorted by label); every class keeps `min(cap, available)`; and adding examples
    to a class only swaps in new ones that hash smaller, never reshuffles the rest. Equal
    keys (duplicates) are ordered by position.

    Args:
        indices: positions of the split's members in `labels` / `keys`.
        labels: class index of every example (indexed by the values of `indices`).
        keys: stable key of every example (a relative path, a hash of its bytes, its text).
        cap: examples kept per class; None keeps all.
        seed: a different seed keeps a different, equally stable subset.

    Example:
    >>> from tfl.data.splits import cap_per_class
    >>> labels = np.array([0] * 6 + [1] * 2)
    >>> keys = [f"img_{i}.jpg" for i in range(8)]
    >>> kept = cap_per_class(np.arange(8), labels, keys, cap=3)
    >>> np.bincount(labels[kept]).tolist(), kept.tolist()
    ([3, 2], [3, 4, 5, 6, 7])
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if cap is None:
        return np.sort(indices)
    resolve_max_per_class(cap)  # the same checks and messages
    labels = np.asarray(labels)
    y = labels[indices].astype(np.int64)
    ranks = np.array(
        [_unit_hash(seed, f"{_CAP_SALT}:{keys[int(i)]}") for i in indices], dtype=np.float64
    )
    # Sort by (class, hash, position); keep the first `cap` of each class.
    order = np.lexsort((indices, ranks, y))
    y_sorted = y[order]
    starts = np.searchsorted(y_sorted, y_sorted, side="left")
    within = np.arange(len(order)) - starts
    return np.sort(indices[order[within < int(cap)]])


def cap_splits(
    members: Mapping[str, np.ndarray],
    labels: Sequence[int] | np.ndarray,
    keys: Sequence[str] | Mapping[str, Sequence[str]],
    max_per_class: MaxPerClass,
    seed: int = 0,
    label_map: LabelMap | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Applies `cap_per_class` to each split and describes what it did (for `info`).

    Args:
        members: `{split: indices}` of the decided splits (before shuffling or batching).
        labels: class index of every example, or `{split: labels}` indexed per split.
        keys: stable key of every example, or `{split: keys}` indexed per split.
        max_per_class: int, `{split: int | None}` or None (see `resolve_max_per_class`).
        seed: the seed of the choice.
        label_map: names the classes in the counts.

    Returns:
        `(capped members, cap info)`: the info has `cap` (the cap of each split), `before`
        and `after` (`{split: {class: count}}`).

    Example:
    >>> from tfl.data.splits import cap_splits
    >>> y = np.array([0, 0, 0, 1, 1, 1])
    >>> keys = [str(i) for i in range(6)]
    >>> members = {"train": np.arange(4), "test": np.arange(4, 6)}
    >>> capped, info = cap_splits(members, y, keys, {"train": 1})
    >>> {s: len(m) for s, m in capped.items()}, info["after"]["train"]
    ({'train': 2, 'test': 2}, {'0': 1, '1': 1})
    """
    caps = resolve_max_per_class(max_per_class)
    capped, before, after = {}, {}, {}
    for split, idx in members.items():
        y = labels[split] if isinstance(labels, Mapping) else labels
        k = keys[split] if isinstance(keys, Mapping) else keys
        capped[split] = cap_per_class(idx, y, k, caps.get(split), seed)
        y = np.asarray(y)
        before[split] = check_split_classes(y, [np.asarray(idx)], [split], label_map)[0][split]
        after[split] = check_split_classes(y, [capped[split]], [split], label_map)[0][split]
    used = {s: c for s, c in caps.items() if s in members}
    return capped, {"cap": used, "before": before, "after": after}


class BadInputReport:
    """Inputs that were skipped or rejected, with the reason for each.

    Args:
        total: how many inputs were looked at (for the summary), if known.
        kind: what an input is, for the summary ("files", "rows").

    Example:
    >>> from tfl.data.splits import BadInputReport
    >>> report = BadInputReport(total=120)
    >>> report.add("cats/a.jpg", "not an image")
    >>> report.summary()
    '1 of 120 files were skipped: cats/a.jpg (not an image).'
    """

    def __init__(self, total: int | None = None, kind: str = "files"):
        self.total = total
        self.kind = kind
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, reason: str) -> None:
        """Records one skipped input: where it is (a path, "file.csv row 12") and why."""
        self.items.append((str(where), " ".join(str(reason).split())))

    @property
    def count(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"BadInputReport(count={self.count})"

    def summary(self, first: int = 5) -> str:
        """One line: how many were skipped and the first few with their reasons."""
        if not self.items:
            return f"No {self.kind} were skipped."
        of = f" of {self.total}" if self.total is not None else ""
        shown = ", ".join(f"{w} ({r})" for w, r in self.items[:first])
        more = f", and {self.count - first} more" if self.count > first else ""
        return f"{self.count}{of} {self.kind} were skipped: {shown}{more}."

    def save(self, run_dir: str) -> str | None:
        """Writes `bad_inputs.txt` (one `where<TAB>reason` a line) if anything was skipped."""
        if not self.items:
            return None
        os.makedirs(run_dir, exist_ok=True)
        path = os.path.join(run_dir, BAD_INPUTS_FILE)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{w}\t{r}\n" for w, r in self.items)
        return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


class Split(NamedTuple):
    """One split as a loader builds it: the batched dataset and what the cache must know."""

    dataset: tf.data.Dataset
    fingerprint: str  # its examples, labels, order and preprocessing ("": unknown)
    augmented: bool = False  # randomly augmented: each read differs


@dataclasses.dataclass
class DataSplits:
    """What every `tfl.data` loader returns: the datasets, the label map and what was skipped.

    `train, val, test = data` unpacks the three datasets (any may be None). Pass the whole
    `DataSplits` to `tfl.fit_phases` to train on `train`, validate on `validation` and let the
    bottleneck cache key the features by `fingerprints` (a bare dataset is read and hashed,
    and a shuffled one counts as random).

    Attributes:
        train: batched `(x, y)` training data, shuffled each epoch; None if there is none.
        validation: batched validation data (never shuffled), or None.
        test: batched test data (never shuffled), or None.
        labels: the `LabelMap` for class labels, or None (regression).
        report: inputs that were skipped and why.
        info: what was loaded, the same keys for every loader: `num_examples` (examples per
            split), `counts` (per split and class), `skipped` (bad inputs left out),
            `classes`, `max_per_class`, `class_warnings`, `fingerprint`, `settings`, and
            the loader's own source keys.
        fingerprints: split name -> what identifies its batches (examples, labels, order,
            preprocessing); a split left out is unknown.
        augmented: the training split is randomly augmented (each read differs), so its
            features must not be cached.
        train_in_order: the training examples in a fixed order, neither shuffled nor
            augmented, for reading them once (the feature cache extracts from it). Each new
            iterator of the shuffled `train` draws the next shuffle seed; reading this one
            instead leaves the training order the same whether features were computed or
            loaded from the cache.

    Example:
    >>> from tfl.data.splits import BadInputReport, DataSplits
    >>> data = DataSplits(None, None, None, labels=None, report=BadInputReport(), info={})
    >>> train, val, test = data
    """

    train: tf.data.Dataset | None
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    labels: LabelMap | None
    report: BadInputReport
    info: dict = dataclasses.field(default_factory=dict)
    fingerprints: dict[str, str] = dataclasses.field(default_factory=dict)
    augmented: bool = False
    train_in_order: tf.data.Dataset | None = None

    @classmethod
    def from_splits(
        cls,
        splits: Mapping[str, Split | None],
        labels,
        report,
        info: dict,
        train_in_order: Split | None = None,
    ) -> DataSplits:
        """The `DataSplits` of `{split name: Split}` (missing or None splits are None);
        `train_in_order` is the training split built as an evaluation split (not shuffled,
        not augmented)."""
        present = {name: split for name, split in splits.items() if split is not None}
        datasets = [present[name].dataset if name in present else None for name in SPLIT_NAMES]
        return cls(
            *datasets,
            labels=labels,
            report=report,
            info=info,
            fingerprints={n: s.fingerprint for n, s in present.items() if s.fingerprint},
            augmented="train" in present and present["train"].augmented,
            train_in_order=None if train_in_order is None else train_in_order.dataset,
        )

    def __iter__(self) -> Iterator[tf.data.Dataset | None]:
        yield self.train
        yield self.validation
        yield self.test

    def save(self, run_dir: str) -> None:
        """Writes `labels.json`, `data.json` (the info) and `bad_inputs.txt` into `run_dir`."""
        os.makedirs(run_dir, exist_ok=True)
        if self.labels is not None:
            self.labels.save(run_dir)
        with open(os.path.join(run_dir, DATA_FILE), "w", encoding="utf-8") as f:
            json.dump(self.info, f, indent=1, default=_jsonable, ensure_ascii=False)
        self.report.save(run_dir)


def make_fingerprint(*parts: Any) -> str:
    """A hex sha256 of `parts` (JSON-serialisable values; numpy arrays hash their bytes).

    Example:
    >>> from tfl.data.splits import make_fingerprint
    >>> make_fingerprint("a", 1) == make_fingerprint("a", 1) != make_fingerprint("a", 2)
    True
    """
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"array{part.dtype.str}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=_jsonable).encode())
        h.update(b"\x00")
    return h.hexdigest()
