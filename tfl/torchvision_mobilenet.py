"""Old home of torchvision's offline MobileNetV2: now `tfl.backbones.torchvision` (it warns)."""

from tfl._deprecation import warn_moved

warn_moved(__name__, "tfl.backbones.torchvision")

from tfl.backbones.torchvision import (  # noqa: E402
    CHECKPOINT_FILE,
    CHECKPOINT_PACKAGE,
    INSTALL_HINT,
    TORCH_MEAN,
    TORCH_STD,
    ForbiddenGlobalError,
    default_checkpoint_path,
    imagenet_class_names,
    load_torchvision_weights,
    mobilenet_v2_torchvision,
    read_legacy_torch_checkpoint,
)

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_PACKAGE",
    "INSTALL_HINT",
    "TORCH_MEAN",
    "TORCH_STD",
    "ForbiddenGlobalError",
    "default_checkpoint_path",
    "imagenet_class_names",
    "load_torchvision_weights",
    "mobilenet_v2_torchvision",
    "read_legacy_torch_checkpoint",
]
