"""Which examples each tfl split reads from a prepared TFDS dataset, and reading them.

- `plan_splits`: each tfl split's TFDS split string, "carve" (out of "train") or None.
- `plan_reading`: carves the missing splits out of "train" by `hash_split` of a stable key per
  example, reads the keys of capped splits; `SplitReading.cap` then applies `max_per_class`.
- `example_keys`: the key of every example (a "file_name" / "id" feature when the dataset has
  one, else a fingerprint of the example's decoded content) and its label, in file order.
- `open_split` / `read_split`: `(input, label)` pairs of a split in file order, only its
  members when it was carved or capped (filtered before the images are decoded), with the
  split's size and source fingerprint.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfl.data.splits import (
    SPLIT_NAMES,
    LabelMap,
    MaxPerClass,
    cap_splits,
    hash_split,
    make_fingerprint,
)

# Features that identify an example (checked in this order) make the key of the hash split;
# without one, a fingerprint of all the example's feature bytes is the key.
KEY_FEATURES = ("file_name", "filename", "image/filename", "image/file_name", "id", "image_id")


def example_keys(
    builder: tfds.core.DatasetBuilder, split: str, label_key: str
) -> tuple[list[str], np.ndarray, str]:
    """A stable key and the label of every example of `split`, in file order."""
    features = builder.info.features
    key_feature = next((k for k in KEY_FEATURES if k in features), None)
    # With a key feature the images are not needed: skip decoding them. Without one, the
    # decoded pixels are hashed (the stored PNG/JPEG bytes could change when a dataset is
    # prepared again with other library versions; the pixels do not).
    decoders = None
    if key_feature is not None:
        decoders = {
            k: tfds.decode.SkipDecoding()
            for k, f in features.items()
            if isinstance(f, tfds.features.Image | tfds.features.Video)
        } or None
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)

    if key_feature is not None:

        def key_of(example):
            key = example[key_feature]
            return key if key.dtype == tf.string else tf.strings.as_string(key), example[label_key]

    else:

        def key_of(example):
            parts = []
            for value in tf.nest.flatten(example):  # sorted by feature name
                if value.dtype == tf.string:
                    parts.append(tf.strings.reduce_join(tf.reshape(value, [-1]), separator="\x1f"))
                else:
                    parts.append(tf.io.serialize_tensor(value))
            joined = tf.strings.reduce_join(tf.stack(parts), separator="\x1e")
            digest = tf.strings.as_string(tf.fingerprint(joined[None])[0])  # 8 bytes
            return tf.strings.reduce_join(digest, separator="."), example[label_key]

    keys, labels = [], []
    for key, label in ds.map(key_of, num_parallel_calls=tf.data.AUTOTUNE).batch(4096):
        keys += [k.decode("utf-8", "replace") for k in key.numpy()]
        labels.append(label.numpy())
    labels = np.concatenate(labels) if labels else np.zeros([0], np.int64)
    return keys, labels.astype(np.int64), key_feature or "example bytes"


def _subset(ds: tf.data.Dataset, members: np.ndarray, total: int) -> tf.data.Dataset:
    """The examples of `ds` (in file order) whose positions are in `members`."""
    mask = np.zeros(total, dtype=bool)
    mask[members] = True
    mask = tf.constant(mask)
    ds = ds.enumerate().filter(lambda i, example: tf.gather(mask, i))
    ds = ds.map(lambda i, example: example)
    return ds.apply(tf.data.experimental.assert_cardinality(len(members)))


def read_split(
    builder: tfds.core.DatasetBuilder,
    split: str,
    input_key: str,
    label_key: str,
    members: np.ndarray | None,
    total: int,
) -> tf.data.Dataset:
    """`(input, label)` pairs of `split` in file order, only `members` when given.

    A subset is filtered before its images are decoded: the examples left out (most of them
    with a small `max_per_class`) cost a record read, not a decode.
    """
    features = builder.info.features
    media = [
        k for k, f in features.items() if isinstance(f, tfds.features.Image | tfds.features.Video)
    ]
    decoders = {k: tfds.decode.SkipDecoding() for k in media} or None
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
    if members is not None:
        ds = _subset(ds, members, total)
    if input_key in media:
        decode = features[input_key].decode_example
        return ds.map(
            lambda example: (decode(example[input_key]), example[label_key]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.map(
        lambda example: (example[input_key], example[label_key]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def plan_splits(builder: tfds.core.DatasetBuilder, split: Any) -> dict[str, str | None]:
    """{tfl split: TFDS split string, "carve", or None}."""
    available = list(builder.info.splits.keys())
    if split is not None:
        if not isinstance(split, dict) or not set(split) <= set(SPLIT_NAMES):
            raise ValueError(
                f"Received split={split!r}; expected None (the dataset's own splits) or a dict "
                'with keys from ("train", "validation", "test") and TFDS split strings, e.g. '
                '{"train": "train[:80%]", "validation": "train[80%:90%]", "test": "train[90%:]"}.'
            )
        return {s: split.get(s) for s in SPLIT_NAMES}
    if "train" not in available:
        raise ValueError(
            f"{builder.info.full_name} has no 'train' split (it has {available}); pass "
            'split={"train": ..., "validation": ..., "test": ...} with TFDS split strings.'
        )
    return {
        "train": "train",
        "validation": "validation" if "validation" in available else "carve",
        "test": "test" if "test" in available else "carve",
    }


def _bad_split(info: Any, s: str, spec: Any, err: Exception) -> ValueError:
    return ValueError(
        f"Received split {s}={spec!r}, which {info.full_name} cannot read ({err}); its "
        f"splits are {list(info.splits.keys())} (slices like 'train[:80%]' work)."
    )


def _carve_fractions(
    plan: dict[str, str | None],
    given: Any,
    caps: dict[str, int | None],
) -> tuple[float, ...]:
    """(train, validation, test) fractions of "train" for the carve.

    Given fractions are used for train and the carved splits (renormalised; the others are
    the dataset's own). Without them: caps on train and every carved split make the fractions
    proportional to the caps (so each split holds about as many examples per class, relative
    to its cap, and can fill it); otherwise 80/10/10 (90/10 when one split is carved).
    """
    carved = ["train", *(s for s in SPLIT_NAMES[1:] if plan[s] == "carve")]
    if given is not None:
        try:
            values = [float(f) for f in given]
        except (TypeError, ValueError):
            values = []
        if len(values) not in (2, 3) or min(values) < 0:
            raise ValueError(
                f"Received carve_fractions={given!r}; expected non-negative (train, validation"
                "[, test]) fractions such as (0.8, 0.1, 0.1)."
            )
        weights = dict(zip(SPLIT_NAMES, [*values, 0.0][:3], strict=True))
    elif all(caps[s] is not None for s in carved):
        weights = {s: float(caps[s] or 0) for s in SPLIT_NAMES}
    else:
        weights = {"train": 0.8, "validation": 0.1, "test": 0.1}
        if len(carved) == 2:
            weights["train"] = 0.9
    total = sum(weights[s] for s in carved)
    if total <= 0 or weights["train"] <= 0:
        raise ValueError(
            f"Received carve_fractions={given!r}, which gives the train split nothing to keep; "
            "give train a positive fraction."
        )
    return tuple(weights[s] / total if s in carved else 0.0 for s in SPLIT_NAMES)


@dataclasses.dataclass
class SplitReading:
    """What each tfl split reads: its TFDS split string (`source_of`) and, for carved or capped
    splits, the positions of its `members` in that split, with the keys and labels they were
    chosen by. `plan` is `plan_splits`'s; `uncapped` the members before `max_per_class`."""

    plan: dict[str, str | None]
    source_of: dict[str, str] = dataclasses.field(default_factory=dict)
    members: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    keys_of: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    labels_of: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    uncapped: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    carved: set[str] = dataclasses.field(default_factory=set)  # hash-split out of "train"
    key_source: str | None = None  # the key feature, or "example bytes"
    fractions: tuple[float, ...] | None = None  # of the carve

    def cap(self, max_per_class: MaxPerClass, seed: int, labels: LabelMap) -> dict[str, Any]:
        """Keeps at most `max_per_class` members of each class per split (`cap_splits`, by
        the same keys as the carve); returns the cap's `info`."""
        self.members, cap_info = cap_splits(
            self.members, self.labels_of, self.keys_of, max_per_class, seed, labels
        )
        return cap_info


def plan_reading(
    builder: tfds.core.DatasetBuilder,
    plan: dict[str, str | None],
    label_key: str,
    carve_fractions: Any,
    caps: dict[str, int | None],
    seed: int,
) -> SplitReading:
    """Carves the missing splits out of "train" and reads the keys of the capped splits."""
    reading = SplitReading(plan)
    carve = [s for s in SPLIT_NAMES if plan[s] == "carve"]
    reading.carved = {"train", *carve} if carve else set()
    if carve:
        keys, y, reading.key_source = example_keys(builder, "train", label_key)
        reading.fractions = _carve_fractions(plan, carve_fractions, caps)
        parts = dict(zip(SPLIT_NAMES, hash_split(keys, reading.fractions, seed=seed), strict=True))
        for s in ["train", *carve]:
            reading.source_of[s], reading.members[s] = "train", parts[s]
            reading.keys_of[s], reading.labels_of[s] = keys, y
    for s in SPLIT_NAMES:
        spec = plan[s]
        if spec is None or s in reading.members:
            continue
        reading.source_of[s] = spec
        if caps[s] is not None:  # one of the dataset's own splits, capped: read its keys
            try:
                keys, y, reading.key_source = example_keys(builder, spec, label_key)
            except Exception as err:  # noqa: BLE001 - bad split strings raise several types
                raise _bad_split(builder.info, s, spec, err) from err
            reading.keys_of[s], reading.labels_of[s] = keys, y
            reading.members[s] = np.arange(len(keys))
    reading.uncapped = dict(reading.members)
    return reading


def open_split(
    builder: tfds.core.DatasetBuilder,
    s: str,
    reading: SplitReading,
    input_key: str,
    label_key: str,
    seed: int,
) -> tuple[tf.data.Dataset, int, str]:
    """Split `s`'s unbatched `(input, label)` pairs, its size and its source fingerprint."""
    info = builder.info
    source_split = reading.source_of[s]
    subset = reading.members.get(s)
    if s not in reading.carved and subset is not None and len(subset) == len(reading.uncapped[s]):
        subset = None  # a cap that keeps every example: read the split as it is
    try:
        total = len(reading.keys_of[s]) if subset is not None else None
        ds = read_split(builder, source_split, input_key, label_key, subset, total)
    except Exception as err:  # noqa: BLE001 - bad split strings raise several types
        raise _bad_split(info, s, reading.plan[s], err) from err
    if subset is None:
        num_examples = int(info.splits[source_split].num_examples)
        return ds, num_examples, make_fingerprint("tfds", info.full_name, source_split)
    # Membership enters the fingerprint: another seed, cap or data gives another one.
    member_digest = make_fingerprint([reading.keys_of[s][i] for i in subset])
    carve_of = (reading.fractions, seed) if s in reading.carved else None
    source = make_fingerprint(
        "tfds", info.full_name, s, source_split, carve_of, reading.key_source, member_digest
    )
    return ds, len(subset), source
