"""tfl: transfer learning for Keras 3 on TensorFlow."""

import os

# tfl is built on the TensorFlow backend (tf.data, tf.distribute, SavedModel/TFLite export).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfl.version import __version__  # noqa: E402

__all__ = ["__version__"]
