"""tfl: transfer learning for Keras 3 on TensorFlow.

Pretrained bases (`ImageBackbone`, keras-hub text backbones via `tfl.text`), heads, task models
that work with plain `compile`/`fit`/`evaluate`/`predict`, freezing by block groups, fine-tuning
schedules (`fit_phases`, `two_phase`), data pipelines (`tfl.data`) and the bottleneck feature
cache (`tfl.cache`).
"""

import os
import sys

# tfl is built on the TensorFlow backend (tf.data, tf.distribute, SavedModel/TFLite export).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# CPU runtime variables TensorFlow reads once, at import (oneDNN and the BFC allocator on x86
# CPUs without AVX-512; see tfl/_runtime_env.py). Before any TensorFlow import; the user's own
# settings win, TFL_CPU_RUNTIME=off disables it.
from tfl import _runtime_env  # noqa: E402

_runtime_env.apply(warn=False)

# Keras imports matplotlib.pyplot when it loads (for keras.visualization); tfl draws only on
# request. Load Keras without it; the two Keras modules get stand-ins that import it on use.
_KERAS_MATPLOTLIB = (
    ("keras.src.visualization.plot_image_gallery", "plt", "matplotlib.pyplot"),
    ("keras.src.visualization.plot_bounding_box_gallery", "patches", "matplotlib.patches"),
)


class _ImportedOnUse:
    """Stands in for module `name` until one of its attributes is read, then imports it."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        import importlib

        return getattr(importlib.import_module(self._name), attribute)


def _import_keras_without_matplotlib() -> None:
    if "keras" in sys.modules or "matplotlib" in sys.modules:
        return  # nothing to save, or too late
    sys.modules["matplotlib"] = None  # meanwhile `import matplotlib...` raises ImportError
    try:
        import keras  # noqa: F401
    finally:
        del sys.modules["matplotlib"]
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return  # not installed: Keras' own "requires matplotlib" errors stay
    for module_name, attribute, target in _KERAS_MATPLOTLIB:
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, attribute, "") is None:
            setattr(module, attribute, _ImportedOnUse(target))


_import_keras_without_matplotlib()

from tfl import cache, callbacks, data, optimizers, regularizers, text  # noqa: E402
from tfl.backbones import ImageBackbone  # noqa: E402
from tfl.cache import FeatureCache  # noqa: E402
from tfl.callbacks import TransferWarning, lint, standard_callbacks  # noqa: E402
from tfl.families import ImagePreprocessing, get_spec, list_backbones  # noqa: E402
from tfl.freezing import (  # noqa: E402
    RecompileWarning,
    block_groups,
    freeze,
    trainable_groups,
    trainable_summary,
    unfreeze,
)
from tfl.heads import (  # noqa: E402
    ClassificationAccuracy,
    ClassificationCrossentropy,
    ClassificationHead,
    Head,
    MLPHead,
    MultiLabelHead,
    RegressionHead,
    SquaredHinge,
    SVMHead,
)
from tfl.lr_finder import LRFindResult, lr_find  # noqa: E402
from tfl.models import (  # noqa: E402
    FusionClassifier,
    ImageClassifier,
    MultiTaskModel,
    TextClassifier,
)
from tfl.optimizers import (  # noqa: E402
    OneCycle,
    WarmupDecay,
    adamw,
    block_lr_multipliers,
    exclude_bias_and_norm,
    max_learning_rate,
    with_lr_multipliers,
)
from tfl.regularizers import L2SP, apply_l2sp, l2sp_penalty, remove_l2sp  # noqa: E402
from tfl.schedules import (  # noqa: E402
    Phase,
    PhaseHistory,
    feature_extraction,
    fine_tune,
    fit_phases,
    gradual_unfreezing,
    partial,
    two_phase,
)
from tfl.version import __version__  # noqa: E402

__all__ = [
    "ClassificationAccuracy",
    "ClassificationCrossentropy",
    "ClassificationHead",
    "FeatureCache",
    "FusionClassifier",
    "Head",
    "ImageBackbone",
    "ImageClassifier",
    "ImagePreprocessing",
    "L2SP",
    "LRFindResult",
    "MLPHead",
    "MultiLabelHead",
    "MultiTaskModel",
    "OneCycle",
    "Phase",
    "PhaseHistory",
    "RecompileWarning",
    "RegressionHead",
    "SVMHead",
    "SquaredHinge",
    "TextClassifier",
    "TransferWarning",
    "WarmupDecay",
    "__version__",
    "adamw",
    "apply_l2sp",
    "block_groups",
    "block_lr_multipliers",
    "cache",
    "callbacks",
    "data",
    "exclude_bias_and_norm",
    "export",
    "feature_extraction",
    "fine_tune",
    "fit_phases",
    "freeze",
    "get_spec",
    "gradual_unfreezing",
    "l2sp_penalty",
    "lint",
    "list_backbones",
    "lr_find",
    "max_learning_rate",
    "optimizers",
    "partial",
    "regularizers",
    "remove_l2sp",
    "standard_callbacks",
    "text",
    "trainable_groups",
    "trainable_summary",
    "two_phase",
    "unfreeze",
    "with_lr_multipliers",
]


def __getattr__(name: str):
    # `tfl.export` (TensorFlow's converter, the parity checker) loads on first use, not with
    # `import tfl`; `from tfl import export` and `import tfl.export` work as before.
    if name == "export":
        import importlib

        return importlib.import_module("tfl.export")
    raise AttributeError(f"module 'tfl' has no attribute {name!r}")
