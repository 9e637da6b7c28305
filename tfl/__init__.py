"""tfl: transfer learning for Keras 3 on TensorFlow.

Pretrained bases (`ImageBackbone`, keras-hub text backbones via `tfl.text`), heads, task models
that work with plain `compile`/`fit`/`evaluate`/`predict`, freezing by block groups, fine-tuning
schedules (`fit_phases`, `two_phase`), data pipelines (`tfl.data`) and the bottleneck feature
cache (`tfl.cache`).
"""

import os

# tfl is built on the TensorFlow backend (tf.data, tf.distribute, SavedModel/TFLite export).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# CPU runtime variables TensorFlow reads once, at import (oneDNN and the BFC allocator on x86
# CPUs without AVX-512; see tfl/_runtime_env.py). Before any TensorFlow import; the user's own
# settings win, TFL_CPU_RUNTIME=off disables it.
from tfl import _runtime_env  # noqa: E402

_runtime_env.apply(warn=False)

# TensorFlow's start-up lines (absl, oneDNN, CUDA stub; printed from C++ once per library it
# loads) are held back; TFL_TF_LOGS=1 shows them (see tfl/_quiet_import.py).
from tfl import _quiet_import  # noqa: E402

_quiet_import.import_tensorflow()

# Text bases: `tfl.text` is `tfl.backbones.text` (bound before tfl.data, which reads it).
from tfl.backbones import text  # noqa: E402, I001

from tfl import cache, callbacks, data, optimizers, regularizers  # noqa: E402
from tfl._deprecation import moved_names  # noqa: E402
from tfl.backbones import ImageBackbone, ImagePreprocessing, get_spec, list_backbones  # noqa: E402
from tfl.cache import FeatureCache  # noqa: E402
from tfl.callbacks import standard_callbacks  # noqa: E402
from tfl.fitting import PhaseHistory, apply_trainable, fine_tune, fit_phases  # noqa: E402
from tfl.freezing import (  # noqa: E402
    RecompileWarning,
    bases_of,
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
from tfl.linter import TransferWarning, lint  # noqa: E402
from tfl.lr_finder import LRFindResult, lr_find  # noqa: E402
from tfl.lr_schedules import OneCycle, WarmupDecay, max_learning_rate  # noqa: E402
from tfl.models import (  # noqa: E402
    FusionClassifier,
    ImageClassifier,
    MultiTaskModel,
    TextClassifier,
)
from tfl.optimizers import (  # noqa: E402
    adamw,
    block_lr_multipliers,
    exclude_bias_and_norm,
    with_lr_multipliers,
)
from tfl.phases import (  # noqa: E402
    Phase,
    feature_extraction,
    gradual_unfreezing,
    partial_unfreezing,
    two_phase,
)
from tfl.regularizers import L2SP, apply_l2sp, l2sp_penalty, remove_l2sp  # noqa: E402
from tfl.version import __version__  # noqa: E402

# Modules loaded on first use (`tfl.evaluate`, `tfl.run`, ...): `import tfl` stays light.
_LAZY_MODULES = (
    "builders",
    "calibration",
    "config",
    "distill",
    "distribute",
    "evaluate",
    "export",
    "peft",
    "predict",
    "run",
    "saved_run",
    "studies",
    "tasks",
    "tta",
    "wise",
)


# `tfl.partial` (it shadowed functools.partial) is now `tfl.partial_unfreezing`.
_moved = moved_names(__name__, {"partial": "tfl.phases:partial_unfreezing"}, stacklevel=3)


def __getattr__(name: str):
    if name == "rank":  # `tfl.rank(...)`: `tfl rank` from Python (a study: loaded on use)
        from tfl.studies.rank_report import rank

        return rank
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"tfl.{name}")
    return _moved(name)


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
    "apply_trainable",
    "bases_of",
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
    "partial_unfreezing",
    "rank",
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
