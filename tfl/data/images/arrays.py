"""Images (or feature vectors) and labels already in memory as train / validation / test.

`from_arrays` splits by a hash of each example's bytes (so an example keeps its split when
data is added, and identical examples share one), caps the splits, and builds one dataset per
split: images through `image_pipeline`, feature vectors batched as they are.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfl.data.images.augment import describe_augment
from tfl.data.images.decode import parse_image_size
from tfl.data.images.pipeline import PIPELINE_VERSION, image_split
from tfl.data.splits import (
    SPLIT_NAMES,
    BadInputReport,
    DataSplits,
    LabelMap,
    MaxPerClass,
    Split,
    as_fractions,
    cap_splits,
    check_split_classes,
    hash_split,
    make_fingerprint,
    resolve_max_per_class,
    warn_missing_classes,
)

# {split: (examples, class indices, example keys)}
_Arrays = dict[str, tuple[np.ndarray, np.ndarray, list[str]]]


def _example_keys(x: np.ndarray) -> list[str]:
    """The sha256 of each example's bytes: its key for the split and the cap."""
    flat = np.ascontiguousarray(x).reshape(len(x), -1)
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in flat]


def _as_split(name: str, data: Any) -> tuple[np.ndarray, Any]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"Received {name}={type(data).__name__}; expected a tuple (x, y).")
    return np.asarray(data[0]), data[1]


def _resolve_splits(splits: Any, given: bool) -> tuple[Any, list[float]]:
    """(`splits` with its default filled in, the fractions to carve out of `x`)."""
    if splits is None:
        splits = "none" if given else (0.8, 0.1, 0.1)
    if isinstance(splits, str):
        if splits != "none":
            raise ValueError(f"Received splits={splits!r}; expected fractions or 'none'.")
        return splits, [1.0, 0.0, 0.0]
    if given:
        raise ValueError(
            f"Received splits={splits!r} together with validation_data/test_data; "
            "pass one or the other (splits='none' keeps all of x for training)."
        )
    return splits, list(as_fractions(splits))


def _examples(x: Any, y: Any) -> tuple[np.ndarray, list[Any]]:
    """`x` as an array and `y` as a list of labels; raises unless there is one label each."""
    x = np.asarray(x)
    y_values = list(np.asarray(y, dtype=object).reshape(-1))
    if len(x) != len(y_values):
        raise ValueError(
            f"Received x with {len(x)} examples and y with {len(y_values)} labels; expected "
            "one label per example."
        )
    return x, y_values


def _check_kind(x: np.ndarray, augment: Any, mixup: float, cutmix: float) -> bool:
    """Whether `x` holds images (else feature vectors); raises on other shapes."""
    is_image = x.ndim in (3, 4)
    if x.ndim not in (2, 3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3, 4)):
        raise ValueError(
            f"Received x of shape {x.shape}; expected images (N, H, W) or (N, H, W, 1|3|4), "
            "or features (N, D)."
        )
    if not is_image and (augment or mixup or cutmix):
        raise ValueError(
            f"Received augment={augment!r}, mixup={mixup}, cutmix={cutmix} for feature vectors "
            f"of shape {x.shape}; augmentation works on images only."
        )
    if is_image and x.dtype.kind == "f" and x.size and float(np.max(x)) <= 1.0:
        warnings.warn(
            "The images in x are floats in [0, 1]; tfl models expect 0–255 pixels (they "
            "preprocess inside). Pass x * 255.",
            stacklevel=3,  # the caller of from_arrays
        )
    return is_image


def _label_map(
    labels: LabelMap | Sequence[str] | None, y_values: list[Any], extra: dict[str, Any]
) -> LabelMap:
    """`labels`, or the sorted labels of `y` and the given validation / test data."""
    if labels is None:
        all_values = y_values + [v for _, yy in extra.values() for v in np.ravel(yy)]
        return LabelMap.from_values(all_values)
    return labels if isinstance(labels, LabelMap) else LabelMap(labels)


def _carve(
    x: np.ndarray, y_all: np.ndarray, fractions: list[float], splits: Any, seed: int
) -> _Arrays:
    """The splits hashed out of `x` (those with a fraction above 0); raises on an empty one."""
    arrays: _Arrays = {}
    keys = _example_keys(x)
    parts = hash_split(keys, fractions, seed=seed)
    for split, fraction, idx in zip(SPLIT_NAMES, fractions, parts, strict=True):
        if fraction == 0:
            continue
        if not len(idx):
            raise ValueError(
                f"The {split} split is empty: {len(x)} examples ({len(set(keys))} distinct; "
                f"identical examples share a split) with splits={tuple(splits)}. Give it a "
                f"larger fraction, add data, or set its fraction to 0."
            )
        arrays[split] = (x[idx], y_all[idx], [keys[i] for i in idx])
    return arrays


def _given(extra: dict[str, Any], x: np.ndarray, label_map: LabelMap) -> _Arrays:
    """`validation_data` / `test_data` as splits; raises when they do not match `x`."""
    arrays: _Arrays = {}
    for split, (xs, ys) in extra.items():
        ys = list(np.asarray(ys, dtype=object).reshape(-1))
        if len(xs) != len(ys) or xs.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"Received {split}_data with x of shape {xs.shape} and {len(ys)} labels; "
                f"expected examples shaped like x {x.shape[1:]} and one label each."
            )
        where = [f"{split}_data y[{i}]" for i in range(len(ys))]
        arrays[split] = (xs, label_map.encode(ys, where=where), _example_keys(xs))
    return arrays


def _cap(
    arrays: _Arrays, max_per_class: MaxPerClass, seed: int, label_map: LabelMap
) -> tuple[_Arrays, dict[str, Any]]:
    """Each split capped per class (after splitting, before shuffling), and the cap's info."""
    kept, cap_info = cap_splits(
        {s: np.arange(len(a[1])) for s, a in arrays.items()},
        {s: a[1] for s, a in arrays.items()},
        {s: a[2] for s, a in arrays.items()},
        max_per_class,
        seed,
        label_map,
    )
    for split, idx in kept.items():
        xs, ys, split_keys = arrays[split]
        if len(idx) < len(ys):
            arrays[split] = (xs[idx], ys[idx], [split_keys[i] for i in idx])
    return arrays, cap_info


def _class_counts(
    arrays: _Arrays, present: list[str], label_map: LabelMap
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Counts per split and class, and the classes missing from a split."""
    ys_present = np.concatenate([arrays[s][1] for s in present])
    offsets = np.cumsum([0] + [len(arrays[s][1]) for s in present])
    ranges = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(present))]
    return check_split_classes(ys_present, ranges, present, label_map)


def _features_dataset(
    xs: np.ndarray, ys: np.ndarray, source: str, *, training: bool, batch_size: int, seed: int
) -> Split:
    """Feature vectors as float32 batches (shuffled when training)."""
    ds = tf.data.Dataset.from_tensor_slices((xs.astype(np.float32), ys))
    if training:
        ds = ds.shuffle(len(xs), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)
    config = {"version": PIPELINE_VERSION, "features": True, "batch_size": batch_size}
    if training:
        config["seed"] = seed
    return Split(ds, make_fingerprint(source, config))


def _split_dataset(
    xs: np.ndarray,
    ys: np.ndarray,
    keys: list[str],
    label_map: LabelMap,
    size: tuple[int, int] | None,
    *,
    is_image: bool,
    training: bool,
    batch_size: int,
    seed: int,
    **augmentation: Any,
) -> Split:
    """One split: images through `image_split`, or feature vectors."""
    source = make_fingerprint("arrays", label_map.names, keys, ys)
    if not is_image:
        return _features_dataset(
            xs, ys, source, training=training, batch_size=batch_size, seed=seed
        )
    return image_split(
        tf.data.Dataset.from_tensor_slices((xs, ys)),
        size,
        batch_size=batch_size,
        training=training,
        num_classes=len(label_map),
        seed=seed,
        fingerprint=source,
        shuffle_buffer=len(xs),
        **augmentation,
    )


def from_arrays(
    x: Any,
    y: Any,
    image_size: Any = None,
    *,
    labels: LabelMap | Sequence[str] | None = None,
    batch_size: int = 32,
    splits: Sequence[float] | str | None = None,
    validation_data: tuple[Any, Any] | None = None,
    test_data: tuple[Any, Any] | None = None,
    seed: int = 0,
    resize: str = "crop",
    augment: Any = None,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    max_per_class: MaxPerClass = None,
    run_dir: str | None = None,
) -> DataSplits:
    """Classification data from arrays in memory: images (or feature vectors) and labels.

    Images `(N, H, W)` or `(N, H, W, 1|3|4)`, uint8 or float in 0–255, become RGB float32 in
    0–255 (resized to `image_size` if given). Rank-2 arrays `(N, features)` pass through as
    float32 (no resizing or augmentation). Labels are ints or strings (lists work too); the
    `LabelMap` is built from them unless `labels` is given.

    The split hashes each example's bytes (not its row number, which changes when rows are
    inserted), so an example keeps its split when data is added; identical examples share a
    split, so duplicates cannot leak from training into test.

    Args:
        x: images or features, first axis = examples.
        y: class labels, one per example.
        image_size: int, `(h, w)`, `(h, w, 3)`, a tfl model or `ImageBackbone`; None keeps
            the size.
        labels: a `LabelMap` or the class names in index order.
        batch_size: examples per batch.
        splits: fractions (train, validation[, test]); default (0.8, 0.1, 0.1), or "none" when
            `validation_data` / `test_data` are given (then all of `x` is training data).
            "none" without them: everything is training data.
        validation_data: `(x, y)` used as the validation split.
        test_data: `(x, y)` used as the test split.
        seed: seed of the split, the shuffle and the augmentation.
        resize: "crop", "resize" or "pad"; see `resize_image`.
        augment: None, names from `AUGMENTATIONS`, or keras layers; training only.
        mixup: MixUp alpha (0 = off).
        cutmix: CutMix alpha in [0, 1] (0 = off).
        max_per_class: at most this many examples of each class per split: an int for every
            split, or e.g. `{"train": 50, "validation": 50, "test": 100}` (a split left out or
            None is not capped); None keeps all. Applied after the split is decided (a cap
            never moves an example between splits) and before shuffling, so every epoch sees
            the same subset. Within a class the examples whose bytes (sha256) hashes smallest are kept
            (`tfl.data.splits.cap_per_class`): each class keeps min(cap, available), and added
            data only swaps in examples that hash smaller. `info["max_per_class"]` has the
            counts per class before and after.
        run_dir: if given, the labels and info are written there.

    Example:
    >>> from tfl.data.images import from_arrays
    >>> x = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    >>> y = ["odd", "even"] * 25
    >>> data = from_arrays(x, y, 32, batch_size=8, splits=(0.5, 0.5))
    >>> images, classes = next(iter(data.train))
    >>> data.labels.names, tuple(images.shape)
    (['even', 'odd'], (8, 32, 32, 3))
    """
    resolve_max_per_class(max_per_class)
    given = validation_data is not None or test_data is not None
    splits, fractions = _resolve_splits(splits, given)
    x, y_values = _examples(x, y)
    extra = {"validation": validation_data, "test": test_data}
    extra = {k: _as_split(f"{k}_data", v) for k, v in extra.items() if v is not None}
    is_image = _check_kind(x, augment, mixup, cutmix)
    label_map = _label_map(labels, y_values, extra)
    size = parse_image_size(image_size) if is_image else None

    y_all = label_map.encode(y_values, where=[f"y[{i}]" for i in range(len(y_values))])
    arrays = _carve(x, y_all, fractions, splits, seed)
    arrays.update(_given(extra, x, label_map))
    # Cap each split (after splitting, before shuffling); the fingerprints hash the kept keys.
    arrays, cap_info = _cap(arrays, max_per_class, seed, label_map)
    present = [s for s in SPLIT_NAMES if s in arrays]
    counts, problems = _class_counts(arrays, present, label_map)
    warn_missing_classes(problems, "examples")

    # The pipeline's settings, the same for every split (augmentation acts on train only).
    options = {"batch_size": batch_size, "resize": resize, "seed": seed}
    options.update(augment=augment, mixup=mixup, cutmix=cutmix)
    datasets: dict[str, Split] = {}
    for split in present:
        training = split == "train"
        datasets[split] = _split_dataset(
            *arrays[split], label_map, size, is_image=is_image, training=training, **options
        )
    in_order = None
    if "train" in present:  # the training examples read once, in order (for the feature cache)
        in_order = _split_dataset(
            *arrays["train"], label_map, size, is_image=is_image, training=False, **options
        )
    info = {
        "source": "arrays",
        "kind": "images" if is_image else "features",
        "shape": list(x.shape[1:]),
        "classes": label_map.names,
        "num_examples": {s: len(arrays[s][1]) for s in present},
        "counts": counts,
        "skipped": 0,  # arrays are checked whole: a bad array is an error, not a skip
        "class_warnings": problems,
        "max_per_class": cap_info,
        "fingerprint": {s: datasets[s].fingerprint for s in present},
        "settings": {
            "image_size": size,
            "batch_size": batch_size,
            "splits": fractions if not given else "given",
            "seed": seed,
            "resize": resize,
            "augment": describe_augment(augment),
            "mixup": mixup,
            "cutmix": cutmix,
        },
    }
    report = BadInputReport(total=len(x), kind="examples")
    data = DataSplits.from_splits(datasets, label_map, report, info, train_in_order=in_order)
    if run_dir is not None:
        data.save(run_dir)
    return data
