"""Text rows as train / validation / test datasets: labels, hash split, per-class cap, batches.

- `label_map_for` / `encode_labels`: the `LabelMap` of the labels read (integers sort
  numerically) and their class indices.
- `split_rows`: a hash split of the rows by their text (pairs: both texts), so appending rows
  never moves old ones and repeated texts share a split.
- `build_splits`: encode, cap per class, build one batched `(strings, int64)` dataset per split,
  count the classes, warn once about skipped rows and missing classes, save to `run_dir`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfl.data.splits import (
    SPLIT_NAMES,
    BadInputReport,
    DataSplits,
    LabelMap,
    MaxPerClass,
    Split,
    cap_splits,
    check_split_classes,
    hash_split,
    make_fingerprint,
)
from tfl.data.text_files import Rows

# Joins the fields of a text pair into one hash key; a control character no text contains.
_PAIR_SEPARATOR = "\x1f"


def _int_like(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    if isinstance(value, (float, np.floating)):
        return float(value).is_integer()  # JSON numbers such as 1.0
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


def label_map_for(values: Sequence[Any], labels: LabelMap | Sequence[str] | None) -> LabelMap:
    """`labels` as a `LabelMap`, or the sorted labels of `values` (integers: 2 before 10)."""
    if isinstance(labels, LabelMap):
        return labels
    if labels is not None:
        return LabelMap(labels)
    if values and all(_int_like(v) for v in values):
        return LabelMap.from_values([int(v) for v in values])  # 2 before 10
    return LabelMap.from_values([str(v).strip() for v in values])


def encode_labels(labels: LabelMap, values: Sequence[Any], where: Sequence[str]) -> np.ndarray:
    """Class indices; labels read as text ("0", "1") index a map of non-numeric names."""
    names = set(labels.names)
    cleaned = []
    for v in values:
        name = v.strip() if isinstance(v, str) else v
        if isinstance(name, str) and name not in names and _int_like(name):
            name = int(name)
        cleaned.append(name)
    array = np.empty(len(cleaned), dtype=object)
    array[:] = cleaned
    return labels.encode(array, where=list(where))


def split_key(texts: tuple[str, ...]) -> str:
    """The key a row is split and capped by: its text (the texts of a pair, joined)."""
    return _PAIR_SEPARATOR.join(texts)


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"Received batch_size={batch_size!r}; expected a positive int.")
    if batch_size < 1:
        raise ValueError(f"Received batch_size={batch_size}; expected a positive int.")
    return int(batch_size)


def _dataset(
    texts: list[tuple[str, ...]],
    y: np.ndarray,
    pair: bool,
    train: bool,
    seed: int,
    batch_size: int,
) -> tf.data.Dataset:
    columns = [np.array([t[i] for t in texts], dtype=object) for i in range(len(texts[0]))]
    x = (
        tuple(tf.constant(c, dtype=tf.string) for c in columns)
        if pair
        else tf.constant(columns[0], dtype=tf.string)
    )
    ds = tf.data.Dataset.from_tensor_slices((x, tf.constant(y, dtype=tf.int64)))
    if train:
        ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _cap(
    parts: dict[str, Rows],
    ys: dict[str, np.ndarray],
    label_map: LabelMap,
    max_per_class: MaxPerClass,
    seed: int,
) -> dict[str, Any]:
    """Caps each split in place (after the split, before shuffling, keyed by the text like the
    split itself) and returns the cap's info."""
    kept, cap_info = cap_splits(
        {name: np.arange(len(rows.texts)) for name, rows in parts.items()},
        ys,
        {name: [split_key(t) for t in rows.texts] for name, rows in parts.items()},
        max_per_class,
        seed,
        label_map,
    )
    for name, idx in kept.items():
        if len(idx) < len(parts[name].texts):
            parts[name], ys[name] = parts[name].take(idx), ys[name][idx]
    return cap_info


def _datasets(
    parts: dict[str, Rows],
    ys: dict[str, np.ndarray],
    label_map: LabelMap,
    pair: bool,
    seed: int,
    batch_size: int,
) -> dict[str, Split]:
    """One split for each split that has rows."""
    datasets: dict[str, Split] = {}
    for name, rows in parts.items():
        y = ys[name]
        if not rows.texts:
            continue
        fingerprint = make_fingerprint(
            "tfl.data.text",
            name,
            [list(t) for t in rows.texts],
            y,
            label_map.names,
            batch_size,
            seed if name == "train" else None,
        )
        ds = _dataset(rows.texts, y, pair, name == "train", seed, batch_size)
        datasets[name] = Split(ds, fingerprint)
    return datasets


def _class_counts(
    ys: dict[str, np.ndarray], label_map: LabelMap
) -> tuple[np.ndarray, dict[str, dict[str, int]], list[str]]:
    """All labels, their counts per split and class, and the classes missing from a split."""
    names = list(ys)
    y_all = np.concatenate([ys[n] for n in names]) if names else np.zeros(0, np.int64)
    offsets = np.cumsum([0] + [len(ys[n]) for n in names])
    index_parts = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(names))]
    class_counts, problems = check_split_classes(y_all, index_parts, names, label_map)
    return y_all, class_counts, problems


def build_splits(
    parts: dict[str, Rows],
    *,
    labels: LabelMap | Sequence[str] | None,
    seed: int,
    batch_size: int,
    report: BadInputReport,
    info: dict[str, Any],
    run_dir: str | None,
    stacklevel: int,
    max_per_class: MaxPerClass = None,
) -> DataSplits:
    """Encodes labels, caps per class, builds the datasets, checks classes, warns once, saves.

    `stacklevel` is the one `warnings.warn` would take here (2: the caller of this).
    """
    batch_size = _check_batch_size(batch_size)
    all_values = [v for rows in parts.values() for v in rows.labels]
    label_map = label_map_for(all_values, labels)
    pair = info["segments"] > 1
    ys = {name: encode_labels(label_map, rows.labels, rows.where) for name, rows in parts.items()}
    cap_info = _cap(parts, ys, label_map, max_per_class, seed)
    datasets = _datasets(parts, ys, label_map, pair, seed, batch_size)
    in_order = None  # the training rows read once, in order (for the feature cache)
    if "train" in datasets:
        texts, y = parts["train"].texts, ys["train"]
        in_order = Split(_dataset(texts, y, pair, False, seed, batch_size), "")
    y_all, class_counts, problems = _class_counts(ys, label_map)
    info.update(
        num_examples={n: len(parts[n].texts) for n in ys},
        counts=class_counts,
        max_per_class=cap_info,
        skipped=report.count,
        classes=label_map.names,
        class_warnings=problems,
        seed=seed,
        batch_size=batch_size,
    )
    report.total = len(y_all) + report.count
    messages = []
    if report.count:
        messages.append(report.summary())
    messages += problems
    if messages:
        warnings.warn(" ".join(messages), stacklevel=stacklevel)
    data = DataSplits.from_splits(datasets, label_map, report, info, train_in_order=in_order)
    if run_dir is not None:
        data.save(run_dir)
    return data


def split_rows(rows: Rows, fractions: tuple[float, ...], seed: int) -> dict[str, Rows]:
    """{split: its rows} by `hash_split` of the texts; raises when a split would be empty."""
    keys = [split_key(t) for t in rows.texts]
    indices = hash_split(keys, fractions, seed=seed)
    parts = {}
    for name, fraction, idx in zip(SPLIT_NAMES, fractions, indices, strict=True):
        if fraction == 0:
            continue
        if len(idx) == 0:
            raise ValueError(
                f"The {name} split is empty: {len(rows.texts)} rows from {rows.source} were "
                f"split with fractions {fractions}. Add rows, or set the {name} fraction to 0 "
                "(e.g. splits=(0.9, 0.1, 0.0))."
            )
        parts[name] = rows.take(idx)
    return parts
