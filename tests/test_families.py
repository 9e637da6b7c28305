"""Tests for tfl.backbones' family table: preprocessing, registry, building, block groups."""

import dataclasses
import functools
import importlib
import os
import re
import socket
import sys
import time
import urllib.request

import keras
import numpy as np
import pytest
from keras.src.utils import file_utils  # what keras.applications download with

from tfl.backbones import (
    ImagePreprocessing,
    build,
    build_application,
    check_input_size,
    families,
    get_spec,
    group_layers,
    list_backbones,
    register_family,
)

# The built-in table (other modules may register more families at import time).
TABLE = families.FAMILIES
FAMILY_IDS = [f.name for f in TABLE]
# Variants are listed smallest first; the slow test builds the rest.
# The largest variant of each family too (the smallest is built above): the table's facts at
# both ends of each family, without building all of its ~60 variants.
OTHER_VARIANTS = [(f, f.variants[-1]) for f in TABLE if len(f.variants) > 1]


def _min_shape(family):
    return (family.min_size, family.min_size, 3)


def _assert_base_matches_table(model, family, variant):
    """Output width, in-network rescaling and block groups agree with the table."""
    assert model.output.shape[-1] == variant.feature_dim
    assert all(side >= 1 for side in model.output.shape[1:3])

    # "none" families normalise raw pixels inside; the others must not (never rescale twice).
    rescales = any(
        isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization))
        for layer in model.layers
    )
    assert rescales == (family.preprocessing == "none")

    groups = group_layers(model, family)
    assert list(groups) == family.group_names
    assert family.group_names[0] == "stem"
    stages = [g for g in family.group_names if g.startswith("stage")]
    assert stages == [f"stage{i}" for i in range(1, len(stages) + 1)] and len(stages) >= 2
    assert set(family.group_names) - set(stages) <= {"stem", "top"}
    assert all(groups.values()), {g: len(layers) for g, layers in groups.items()}

    weighted = [layer for layer in model.layers if layer.weights]
    grouped = [layer for layers in groups.values() for layer in layers]
    assert sorted(map(id, grouped)) == sorted(map(id, weighted))

    # Bottom to top: walking the model, the group index never decreases.
    index = {id(layer): i for i, layers in enumerate(groups.values()) for layer in layers}
    order = [index[id(layer)] for layer in weighted]
    assert order == sorted(order)


def test_table_covers_every_keras_application():
    constructors = {v.constructor for f in TABLE for v in f.variants}
    exported = {name for name in dir(keras.applications) if name[0].isupper()}
    assert constructors == exported


@pytest.mark.parametrize("family", TABLE, ids=FAMILY_IDS)
def test_smallest_variant_builds_at_min_size(family):
    variant = family.variants[0]
    model = build_application(variant.name, input_shape=_min_shape(family))
    _assert_base_matches_table(model, family, variant)


@pytest.mark.slow
@pytest.mark.parametrize("family, variant", OTHER_VARIANTS, ids=[v.name for _, v in OTHER_VARIANTS])
def test_largest_variant_builds_at_min_size(family, variant):
    model = build_application(variant.name, input_shape=_min_shape(family))
    _assert_base_matches_table(model, family, variant)


@pytest.mark.parametrize("family", TABLE, ids=FAMILY_IDS)
def test_preprocessing_matches_keras_reference(family):
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    module = getattr(keras.applications, family.reference_module)
    expected = np.asarray(module.preprocess_input(x.copy(), data_format="channels_last"))
    got = keras.ops.convert_to_numpy(ImagePreprocessing(family.preprocessing)(x))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    if family.preprocessing == "none":
        np.testing.assert_array_equal(expected, x)  # the reference is the identity too


def test_preprocessing_takes_uint8_in_a_graph():
    x = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3)).astype("uint8")
    inputs = keras.Input((4, 4, 3), dtype="uint8")
    model = keras.Model(inputs, ImagePreprocessing("caffe")(inputs))
    expected = keras.applications.imagenet_utils.preprocess_input(
        x.astype("float32"), data_format="channels_last", mode="caffe"
    )
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-4)


def test_preprocessing_config_and_keras_round_trip(tmp_path):
    layer = ImagePreprocessing("torch", name="prep")
    clone = ImagePreprocessing.from_config(layer.get_config())
    assert (clone.mode, clone.name) == ("torch", "prep")

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, layer(inputs))
    path = os.path.join(str(tmp_path), "prep.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    x = np.random.default_rng(1).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_preprocessing_rejects_unknown_mode():
    with pytest.raises(ValueError, match=r"mode='imagenet'.*'caffe', 'tf', 'torch', 'none'"):
        ImagePreprocessing("imagenet")


def test_input_below_min_size_names_size_and_minimum():
    with pytest.raises(ValueError, match=r"at least 75 \(received 74\)"):
        build_application("inception_v3", input_shape=(74, 120, 3))


def test_check_input_size_names_backbone_minimum_and_default_size():
    check_input_size("inception_v3", 75)
    check_input_size("inception_v3", None)  # any size
    with pytest.raises(ValueError, match=r"'inception_v3'.*at least 75 \(received 64\).*299x299"):
        check_input_size("inception_v3", 64)
    with pytest.raises(ValueError, match=r"'xception'.*at least 71 \(received 70\)"):
        check_input_size("xception", 70)
    with pytest.raises(ValueError, match="Unknown backbone 'resnet5'"):
        check_input_size("resnet5", 224)
    # The constructors use the same check: same message, after the shape they received.
    with pytest.raises(ValueError, match=r"input_shape=\(74, 120, 3\): 'inception_v3'.*299x299"):
        build_application("inception_v3", input_shape=(74, 120, 3))


def test_old_import_path_warns_and_gives_the_same_objects(monkeypatch):
    monkeypatch.delitem(sys.modules, "tfl.families", raising=False)
    with pytest.warns(DeprecationWarning, match=r"tfl\.families is now tfl\.backbones"):
        old = importlib.import_module("tfl.families")
    assert old.get_spec is get_spec and old.ImagePreprocessing is ImagePreprocessing
    assert old.FAMILIES is families.FAMILIES and old.group_layers is group_layers


def test_input_must_be_rgb_channels_last():
    with pytest.raises(ValueError, match=r"\(3, 32, 32\).*\(height, width, 3\)"):
        build_application("resnet50", input_shape=(3, 32, 32))


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"'resnet5'.*Did you mean 'resnet50'.*list_backbones"):
        get_spec("resnet5")
    # keras.applications constructor names point to the registry name.
    with pytest.raises(ValueError, match=r"Did you mean 'efficientnet_v2_b0'"):
        get_spec("EfficientNetV2B0")


def test_list_backbones_names_every_variant():
    names = list_backbones()
    assert names == sorted(names)
    assert {v.name for f in TABLE for v in f.variants} <= set(names)


OFFLINE_MESSAGE = (
    r"(?s)download.*weights=None.*save_weights\(\"mobilenet_v3_small_notop\.weights\.h5\"\)"
    r".*mobilenet_v2_torchvision"
)


def test_imagenet_download_failure_names_offline_alternatives(monkeypatch):
    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: no network")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    with pytest.raises(OSError, match=OFFLINE_MESSAGE) as info:
        build_application("mobilenet_v3_small", weights="imagenet")
    assert "no network" in str(info.value.__cause__)


def test_imagenet_download_that_never_answers_times_out(monkeypatch, tmp_path):
    # A server that accepts the connection and never replies: urllib alone would wait forever.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    url = f"http://127.0.0.1:{server.getsockname()[1]}/weights.h5"
    real_urlretrieve = urllib.request.urlretrieve
    monkeypatch.setattr(
        file_utils, "urlretrieve", lambda origin, *args: real_urlretrieve(url, *args)
    )
    monkeypatch.setattr(
        file_utils, "get_file", functools.partial(file_utils.get_file, cache_dir=str(tmp_path))
    )
    monkeypatch.setattr(build, "DOWNLOAD_TIMEOUT_S", 0.5)
    default_timeout = socket.getdefaulttimeout()
    start = time.monotonic()
    try:
        with pytest.raises(OSError, match=OFFLINE_MESSAGE):
            build_application("mobilenet_v3_small", weights="imagenet")
    finally:
        server.close()
    assert time.monotonic() - start < 30
    assert socket.getdefaulttimeout() == default_timeout  # restored


# keras 3.15 + numpy 2 warn inside save_weights (np.array on a tf.Variable): not ours.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def test_local_weights_file_round_trip(tmp_path):
    # The documented offline recipe: save a keras.applications base's weights, load by path.
    path = os.path.join(str(tmp_path), "efficientnet_b0_notop.weights.h5")
    source = keras.applications.EfficientNetB0(include_top=False, weights=None)
    source.save_weights(path)
    # Built second, its auto-named layers get other numbers (normalization_1): still loads.
    model = build_application("efficientnet_b0", input_shape=(32, 32, 3), weights=path)
    assert len(model.weights) == len(source.weights)
    for expected, got in zip(source.weights, model.weights, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(expected)
        )


def test_missing_weights_file_names_the_path(tmp_path):
    path = os.path.join(str(tmp_path), "nope.weights.h5")
    with pytest.raises(FileNotFoundError, match=re.escape(path)):
        build_application("mobilenet_v3_small", input_shape=(32, 32, 3), weights=path)


def test_groups_ignore_session_numbering_of_unnamed_layers():
    fresh = build_application("xception", input_shape=(71, 71, 3))
    fresh_groups = {g: len(layers) for g, layers in group_layers(fresh, "xception").items()}
    # Same session, a second model: its shortcut convs are conv2d_4.., not conv2d..
    model = build_application("xception", input_shape=(71, 71, 3))
    groups = group_layers(model, "xception")
    assert {g: len(layers) for g, layers in groups.items()} == fresh_groups
    shortcut = groups["stage1"][-2]  # block2's residual conv, after its separable convs
    assert isinstance(shortcut, keras.layers.Conv2D) and shortcut.name == "conv2d_4"


def test_unmatched_weighted_layer_raises_naming_it():
    family = families.get_family("mobilenet_v3_small")
    without_top = dataclasses.replace(family, name="no_top", groups=family.groups[:-1])
    model = build_application("mobilenet_v3_small", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"'conv_1' \(Conv2D\).*'no_top'"):
        group_layers(model, without_top)


@pytest.fixture
def restore_registry():
    saved = dict(families._FAMILIES), dict(families._VARIANTS)
    yield
    families._FAMILIES.clear()
    families._FAMILIES.update(saved[0])
    families._VARIANTS.clear()
    families._VARIANTS.update(saved[1])


def test_register_family_refuses_duplicates_unless_override(restore_registry):
    family, _ = get_spec("vgg16")
    with pytest.raises(ValueError, match=r"'vgg'.*override=True"):
        register_family(family)
    custom = families.Variant("vgg16", 512, 224, builder=lambda shape, weights: None)
    register_family(dataclasses.replace(family, variants=(custom,)), override=True)
    assert get_spec("vgg16")[1] is custom
    assert "vgg19" not in list_backbones()  # the whole old family was replaced

    # A variant name taken by another family.
    resnet, resnet50 = get_spec("resnet50")
    mine = dataclasses.replace(resnet, name="mine", variants=(resnet50,))
    with pytest.raises(ValueError, match=r"variants \['resnet50'\].*override=True"):
        register_family(mine)
    register_family(mine, override=True)
    assert get_spec("resnet50")[0].name == "mine"
    assert [v.name for v in families.get_family("resnet").variants] == ["resnet101", "resnet152"]


def test_family_rejects_rescaling_twice():
    with pytest.raises(ValueError, match=r"preprocessing='tf'.*preprocessing='none'"):
        dataclasses.replace(families.get_family("convnext"), preprocessing="tf")


def test_family_is_hashable_and_kwargs_read_only():
    family = families.get_family("convnext")
    assert hash(family) == hash(dataclasses.replace(family))
    with pytest.raises(TypeError):
        family.constructor_kwargs["include_preprocessing"] = False
