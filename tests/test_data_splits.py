import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfl.data.splits import (
    BadInputReport,
    DataSplits,
    LabelMap,
    Split,
    check_split_classes,
    hash_split,
    make_fingerprint,
)

KEYS = [f"class_{i % 4}/img_{i:04d}.jpg" for i in range(1000)]


def test_label_map_sorts_ints_numerically_and_round_trips(tmp_path):
    labels = LabelMap.from_values([10, 2, 2, 33])
    assert labels.names == ["2", "10", "33"]
    np.testing.assert_array_equal(labels.encode([33, 2, "10"]), [2, 0, 1])
    assert labels.decode([2, 0]) == ["33", "2"]

    path = labels.save(str(tmp_path / "run"))
    assert path == str(tmp_path / "run" / "labels.json")
    assert LabelMap.load(str(tmp_path / "run")) == labels
    assert LabelMap.load(labels.save(str(tmp_path / "names.json"))) == labels
    with pytest.raises(FileNotFoundError, match="labels.json"):
        LabelMap.load(str(tmp_path / "elsewhere"))


def test_label_map_errors_name_the_label_and_where():
    labels = LabelMap(["cat", "dog"])
    where = [f"train.csv row {i + 2}" for i in range(3)]
    with pytest.raises(ValueError, match=r"'bird' at train.csv row 4.*\['cat', 'dog'\]"):
        labels.encode(["cat", "dog", "bird"], where=where)
    # Integers in range are indices for maps whose names are not numbers; others are unknown.
    np.testing.assert_array_equal(labels.encode(np.array([1, 0])), [1, 0])
    with pytest.raises(ValueError, match="'2' at position 0"):
        labels.encode([2])
    with pytest.raises(ValueError, match=r"duplicates \['cat'\]"):
        LabelMap(["cat", "dog", "cat"])
    with pytest.raises(ValueError, match="at least one"):
        LabelMap([])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        labels.decode([2])


def test_hash_split_is_deterministic_seeded_and_respects_fractions():
    parts = hash_split(KEYS, (0.8, 0.1, 0.1), seed=0)
    again = hash_split(KEYS, (0.8, 0.1, 0.1), seed=0)
    for a, b in zip(parts, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert sorted(np.concatenate(parts).tolist()) == list(range(1000))
    assert [len(p) for p in parts] == pytest.approx([800, 100, 100], abs=40)
    assert all(np.all(np.diff(p) > 0) for p in parts)  # sorted
    other = hash_split(KEYS, (0.8, 0.1, 0.1), seed=1)
    assert not np.array_equal(parts[2], other[2])


def test_hash_split_never_moves_old_keys_when_keys_are_added():
    before = hash_split(KEYS, seed=3)
    new_keys = [f"class_{i % 4}/new_{i}.jpg" for i in range(100)]
    # New keys interleaved with the old ones: positions change, splits must not.
    mixed = [k for pair in zip(KEYS[:100], new_keys, strict=True) for k in pair] + KEYS[100:]
    after = hash_split(mixed, seed=3)
    split_of = {mixed[i]: s for s, idx in enumerate(after) for i in idx}
    for s, idx in enumerate(before):
        assert all(split_of[KEYS[i]] == s for i in idx)


def test_hash_split_gives_each_class_about_the_same_proportions():
    y = np.array([i % 4 for i in range(1000)])
    parts = hash_split(KEYS, (0.6, 0.2, 0.2))
    for idx in parts[1:]:
        share = np.bincount(y[idx], minlength=4) / 250
        assert share == pytest.approx([0.2] * 4, abs=0.07)
    with pytest.raises(ValueError, match=r"fractions=\(0.8, 0.3\)"):
        hash_split(KEYS, (0.8, 0.3))


def test_check_split_classes_counts_and_flags_missing_classes():
    labels = LabelMap(["a", "b", "c"])
    y = np.array([0, 1, 2, 0, 1])
    counts, problems = check_split_classes(
        y, [np.array([0, 1, 2]), np.array([3, 4]), np.array([], int)], SPLITS, labels
    )
    assert counts["validation"] == {"a": 1, "b": 1, "c": 0}
    assert problems == ["class 'c' has no examples in the validation split (2 examples)"]


SPLITS = ["train", "validation", "test"]


def test_bad_input_report_summary_and_file(tmp_path):
    report = BadInputReport(total=120)
    assert report.save(str(tmp_path)) is None
    for i in range(7):
        report.add(f"cats/{i}.jpg", "not an\nimage")
    assert report.count == 7
    assert report.summary(first=2) == (
        "7 of 120 files were skipped: cats/0.jpg (not an image), cats/1.jpg (not an image), "
        "and 5 more."
    )
    path = report.save(str(tmp_path))
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 7 and lines[3] == "cats/3.jpg\tnot an image"


def test_data_splits_unpacks_and_saves_everything(tmp_path):
    ds = tf.data.Dataset.range(4).batch(2)
    report = BadInputReport()
    report.add("x.png", "empty file")
    data = DataSplits(ds, None, None, LabelMap(["no", "yes"]), report, {"counts": {"train": 4}})
    train, val, test = data
    assert train is ds and val is None and test is None
    data.save(str(tmp_path))
    assert LabelMap.load(str(tmp_path)).names == ["no", "yes"]
    assert json.loads((tmp_path / "data.json").read_text()) == {"counts": {"train": 4}}
    assert os.path.exists(tmp_path / "bad_inputs.txt")


def test_splits_collect_their_fingerprints_and_whether_train_is_augmented():
    train = Split(tf.data.Dataset.range(2), "f00", augmented=True)
    test = Split(tf.data.Dataset.range(1), "f01")
    data = DataSplits.from_splits({"train": train, "test": test}, None, BadInputReport(), {})
    assert (data.train, data.validation, data.test) == (train.dataset, None, test.dataset)
    assert data.fingerprints == {"train": "f00", "test": "f01"} and data.augmented is True
    unknown = DataSplits.from_splits({"test": Split(test.dataset, "")}, None, BadInputReport(), {})
    assert unknown.fingerprints == {} and unknown.augmented is False  # "" is not a fingerprint


def test_fingerprint():
    a = np.arange(6, dtype=np.uint8)
    assert make_fingerprint(a, {"size": 3}) == make_fingerprint(a.copy(), {"size": 3})
    assert make_fingerprint(a, {"size": 3}) != make_fingerprint(a, {"size": 4})
    assert make_fingerprint(a) != make_fingerprint(a.reshape(2, 3))
    assert len(make_fingerprint("x")) == 64


def test_every_loader_describes_its_data_with_the_same_info_keys(tmp_path):
    """`num_examples`, per-class `counts` and `skipped` mean the same for images and text."""
    from tfl.data import from_arrays, from_folder, from_texts

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        os.makedirs(tmp_path / "imgs" / name)
        for i in range(3):
            png = tf.io.encode_png(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).numpy()
            (tmp_path / "imgs" / name / f"{i}.png").write_bytes(png)
    (tmp_path / "imgs" / "a" / "bad.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning):
        folder = from_folder(tmp_path / "imgs", 8, splits={"train": 1.0})
    arrays = from_arrays(rng.random((6, 8, 8, 3)) * 255, [0, 0, 0, 1, 1, 1], 8, splits="none")
    with pytest.warns(UserWarning):
        texts = from_texts(
            ["good", "fine", "bad", "awful", ""], list("ppnnn"), splits={"train": 1.0}
        )
    for data, skipped in ((folder, 1), (arrays, 0), (texts, 1)):
        info = data.info
        assert info["skipped"] == skipped
        assert info["classes"] == data.labels.names
        assert set(info["counts"]) == set(info["num_examples"])
        for split, n in info["num_examples"].items():
            assert sum(info["counts"][split].values()) == n
            assert set(info["counts"][split]) == set(data.labels.names)


@pytest.mark.parametrize(
    "splits, message",
    [
        ({"train": 0.8, "val": 0.2}, "unknown split(s) ['val']"),
        ((0.8, 0.3), "sums to 1.1"),
        (("train", "test"), "expected fractions (train, validation[, test])"),
        ((0.5, 0.2, 0.2, 0.1), "expected fractions"),
        ((1.2, -0.2), "expected fractions"),
    ],
)
def test_bad_split_fractions_name_the_value_and_the_fix(splits, message):
    from tfl.data.splits import as_fractions

    with pytest.raises(ValueError, match=re.escape(message)):
        as_fractions(splits)
