import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tempfile  # noqa: E402

# The bottleneck cache (tfl.cache) writes to a throwaway folder during tests, never ~/.cache.
os.environ.setdefault("TFL_CACHE_DIR", tempfile.mkdtemp(prefix="tfl-test-cache-"))

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()
