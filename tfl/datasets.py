"""Moved to `tfl.data.bundled`; this name keeps working and warns."""

from tfl._deprecation import warn_moved

warn_moved(__name__, "tfl.data.bundled")

from tfl.data.bundled import (  # noqa: E402
    MNIST_5K_INSTALL,
    VADER_DOWNLOAD,
    VADER_SDIST,
    data_dir,
    grey_digits_dataset,
    load_mnist_5k,
    load_movie_sentences,
    mnist_5k_path,
    movie_sentences_path,
    stratified_split,
)

__all__ = [
    "MNIST_5K_INSTALL",
    "VADER_DOWNLOAD",
    "VADER_SDIST",
    "data_dir",
    "grey_digits_dataset",
    "load_mnist_5k",
    "load_movie_sentences",
    "mnist_5k_path",
    "movie_sentences_path",
    "stratified_split",
]
