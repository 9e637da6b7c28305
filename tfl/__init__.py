"""tfl: transfer learning for Keras 3 on TensorFlow.

Pretrained bases (`ImageBackbone`, keras-hub text backbones via `tfl.text`), heads, task models
that work with plain `compile`/`fit`/`evaluate`/`predict`, and freezing by block groups.
"""

import os

# tfl is built on the TensorFlow backend (tf.data, tf.distribute, SavedModel/TFLite export).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfl import text  # noqa: E402
from tfl.backbones import ImageBackbone  # noqa: E402
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
    ClassificationHead,
    Head,
    MLPHead,
    MultiLabelHead,
    RegressionHead,
    SquaredHinge,
    SVMHead,
)
from tfl.models import (  # noqa: E402
    FusionClassifier,
    ImageClassifier,
    MultiTaskModel,
    TextClassifier,
)
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
    "ClassificationHead",
    "FusionClassifier",
    "Head",
    "ImageBackbone",
    "ImageClassifier",
    "ImagePreprocessing",
    "MLPHead",
    "MultiLabelHead",
    "MultiTaskModel",
    "Phase",
    "PhaseHistory",
    "RecompileWarning",
    "RegressionHead",
    "SVMHead",
    "SquaredHinge",
    "TextClassifier",
    "__version__",
    "block_groups",
    "feature_extraction",
    "fine_tune",
    "fit_phases",
    "gradual_unfreezing",
    "partial",
    "two_phase",
    "freeze",
    "get_spec",
    "list_backbones",
    "text",
    "trainable_groups",
    "trainable_summary",
    "unfreeze",
]
