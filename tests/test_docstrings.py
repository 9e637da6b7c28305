"""Every `Example:` in tfl's docstrings runs and prints what it says (tfl.text: test_text.py).

The modules are found by walking the package, so a new module's examples run without being
listed here; modules that are only there for old import paths (they warn) are skipped.
"""

import doctest
import importlib
import pkgutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import tfl

# tfl.text's examples need the offline MiniLM weights: tests/test_text.py runs them.
SKIP = {"tfl.text", "tfl.backbones.text"}


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(tfl.__path__, "tfl."):
        if info.name in SKIP or info.name.rsplit(".", 1)[-1].startswith("_export_worker"):
            continue
        spec = importlib.util.find_spec(info.name)
        source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
        if ">>>" in source and "warn_moved(__name__" not in source:
            names.append(info.name)
    return names


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(name)
    globs = {"np": np, **{k: getattr(tfl, k) for k in tfl.__all__}}
    results = doctest.testmod(
        module, extraglobs=globs, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    )
    assert results.failed == 0
    assert results.attempted > 0
