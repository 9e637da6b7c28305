import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gc  # noqa: E402
import tempfile  # noqa: E402

# The bottleneck cache (tfl.cache) writes to a throwaway folder during tests, never ~/.cache.
os.environ.setdefault("TFL_CACHE_DIR", tempfile.mkdtemp(prefix="tfl-test-cache-"))

import keras  # noqa: E402
import pytest  # noqa: E402

# Garbage collection after each test, cheaply. A full `gc.collect()` walks every live object,
# and TensorFlow keeps objects from every traced function alive for the whole process (about
# 200k per fitted model), so a collection that takes 0.2 s in the first test file took 2-3 s
# near the end of the suite: minutes in all. Survivors of a collection are moved to the
# permanent generation (`gc.freeze()`): the next test's collection walks only its own objects
# and still frees all of its garbage. Once per file everything is thawed and collected, so
# what a module-scoped fixture held is freed too.
gc.collect()
gc.freeze()


@pytest.fixture(autouse=True, scope="module")
def _collect_module_garbage():
    yield
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session(free_memory=False)
    gc.collect()
    gc.freeze()


# The longest files first (sums of `pytest --durations=0`, longest first): the two workers
# of `pytest -n 2 --dist loadfile` then end together on short files, instead of one waiting
# while the other runs a long file that happened to come last (xdist's default order is by
# number of tests, which put the few long end-to-end tests last).
LONGEST_FIRST = [
    "test_distribute.py",
    "test_cli_commands.py",
    "test_export.py",
    "test_notebooks.py",
    "test_recipes.py",
    "test_cli.py",
    "test_distill.py",
    "test_families.py",
    "test_models.py",
    "test_rank.py",
    "test_docstrings.py",
    "test_cache.py",
    "test_fitting.py",
    "test_evaluate.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept


# Unit tests of models, heads and the training loop run Keras' steps eagerly: tracing a
# MobileNet's train step takes ~10 s on a CPU, and these tests fit one or two tiny batches
# (13 s -> 3 s for a fit, predict and evaluate). What they test (weights, freezing, losses,
# callbacks, caching, saving) is the same either way; graph mode stays covered by every test
# that runs `tfl train` or a recipe, in-process in the other files or as a subprocess, and
# by the exports (SavedModel and TFLite always trace). A test that needs graph mode in one of
# these files is marked `graph`.
EAGER_FILES = {
    "test_models.py",
    "test_heads.py",
    "test_callbacks.py",
    "test_fitting.py",
    "test_cache.py",
    "test_regularizers.py",
    "test_optimizers.py",
    "test_freezing.py",
    "test_evaluate.py",
    "test_wise.py",
    "test_peft.py",
    "test_calibration.py",
    "test_ema.py",
    "test_tta.py",
    "test_lr_finder.py",
    "test_linter.py",
    "test_docstrings.py",
    "test_distill.py",
    "test_data_text.py",
    "test_data_images.py",
    "test_text.py",
}


@pytest.fixture(autouse=True)
def _eager_steps(request):
    import tensorflow as tf

    eager = request.path.name in EAGER_FILES and not request.node.get_closest_marker("graph")
    tf.config.run_functions_eagerly(eager)
    yield
    tf.config.run_functions_eagerly(False)
