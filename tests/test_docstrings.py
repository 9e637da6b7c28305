"""Every `Example:` in tfl's docstrings runs and prints what it says (tfl.text: test_text.py)."""

import doctest
import importlib

import numpy as np
import pytest

import tfl

MODULES = [
    "tfl.backbones",
    "tfl.cache",
    "tfl.callbacks",
    "tfl.config",
    "tfl.data.images",
    "tfl.data.splits",
    "tfl.data.text",
    "tfl.data.tfds_data",
    "tfl.datasets",
    "tfl.distribute",
    "tfl.evaluate",
    "tfl.export",
    "tfl.families",
    "tfl.freezing",
    "tfl.heads",
    "tfl.lr_finder",
    "tfl.models",
    "tfl.optimizers",
    "tfl.predict",
    "tfl.regularizers",
    "tfl.schedules",
    "tfl.studies",
    "tfl.torchvision_mobilenet",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    globs = {"np": np, **{k: getattr(tfl, k) for k in tfl.__all__}}
    results = doctest.testmod(
        module, extraglobs=globs, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    )
    assert results.failed == 0
    assert results.attempted > 0
