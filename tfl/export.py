"""Export a fine-tuned model for serving, and prove the export computes what Keras does.

Formats (`export_model`, `export_run`, `tfl export RUN_DIR`):

- `.keras`: the native file without the optimizer's state (a third of the size of a run's
  `model.keras` for Adam); `keras.saving.load_model(path, safe_mode=True)` reloads it (tfl
  must be installed: it holds tfl's classes).
- SavedModel (TF Serving, Vertex AI, the TF.js and TFLite converters), written with
  `keras.export.ExportArchive`, with two signatures:
    - `serving_default` takes what a client has: encoded images (JPEG, PNG, GIF, BMP, WebP) as
      a string tensor `images` of any batch size, decoded and resized inside the graph exactly
      as `tfl.data` prepared the training images; or raw strings `texts` (`text_a`, `text_b`
      for text pairs), tokenised inside the graph by the run's keras-hub preprocessor.
    - `serving_preprocessed` takes prepared tensors: float32 images in 0-255 at the model's
      size, or `token_ids` / `segment_ids` / `padding_mask`.
  Outputs per head (prefixed `<head>_` for a multi-task model): `probabilities`; for an SVM
  head also its raw `scores` (the probabilities are their softmax); `top_k_probabilities`,
  `top_k_indices` and, in `serving_default`, `top_k_labels` (class names); a regression head
  gives `values`. Loading a text model's SavedModel needs `import tensorflow_text` first (it
  registers the tokeniser's ops); image models need TensorFlow only.
- TFLite, converted from `serving_preprocessed` (decoding JPEG and tokenising are not TFLite
  ops): `float32`, `float16` (weights), `dynamic_int8` (weights int8, activations float) and
  `int8` (full integer, calibrated on training examples; float inputs and outputs). Class
  names go to `labels.txt` beside them.

After writing, `export_model` checks every artefact (`check=True`): it runs each one on
validation examples in a fresh Python process that cannot import tfl or keras-hub (the
SavedModel with TensorFlow only, the TFLite files with the LiteRT interpreter only) and compares
the outputs with the Keras model's on the same inputs:

- float formats (`.keras` reloaded in safe mode, the SavedModel's two signatures, TFLite
  float32): max |difference| of every output <= 1e-5 (`TOLERANCES`). Measured on the
  README's MobileNetV2 run: 2e-6 (SavedModel), 5e-6 (TFLite float32).
- reduced-precision files (TFLite float16, dynamic_int8, int8) by accuracy: the drop against
  the Keras model's accuracy on the same examples may be at most `max_accuracy_drop`
  (default 0.03: with a few hundred examples one example is 0.4 points); without labels, the
  share of top-1 predictions that differ from Keras' may be at most that. Their max
  |difference| is reported (float16 weights moved probabilities by up to 0.015 there).

It also feeds `serving_default` bad inputs (empty bytes, bytes that are not an image, floats
instead of strings) and checks that each is refused with an error and that the same loaded
model then still answers. The report goes to `export.json` and `export.md`; any failure raises
`ExportError` after the report is written, naming the artefact, the number and the limit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

FORMATS = ("keras", "saved_model", "tflite")
QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8")
TOLERANCES = {"keras": 1e-5, "saved_model": 1e-5, "float32": 1e-5}
PROBE_SIGNATURE = "serving_default"
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_export_worker.py")
_TEXT_INPUTS = ("token_ids", "segment_ids", "padding_mask")

__all__ = [
    "FORMATS",
    "QUANTIZATIONS",
    "TOLERANCES",
    "ExportError",
    "export_model",
    "export_run",
    "export_saved_model",
    "export_tflite",
    "save_keras",
]


class ExportError(RuntimeError):
    """An export failed its parity check (or could not be converted); see `export.json`."""


# --------------------------------------------------------------------------------------------
# What the model takes and gives
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Output:
    head: str | None  # key of the model's output dict; None for a one-output model
    kind: str  # "probabilities", "scores" (softmax added), "multilabel" or "values"
    labels: list[str]

    @property
    def prefix(self) -> str:
        return "" if self.head is None else f"{self.head}_"

    @property
    def main(self) -> str:
        """The output that parity compares."""
        return self.prefix + ("values" if self.kind == "values" else "probabilities")


@dataclasses.dataclass
class _Inputs:
    kind: str  # "images" or "text"
    image_sizes: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    sequence_length: int | None = None
    pairs: bool = False

    @property
    def raw_names(self) -> list[str]:
        if self.kind == "images":
            return ["images"]
        return ["text_a", "text_b"] if self.pairs else ["texts"]

    @property
    def prepared_names(self) -> list[str]:
        if self.kind == "text":
            return list(_TEXT_INPUTS)
        n = len(self.image_sizes)
        return ["images"] if n == 1 else [f"images_{i}" for i in range(n)]


def _head_kind(head) -> str:
    from tfl.heads import Head, MultiLabelHead, RegressionHead

    if isinstance(head, RegressionHead):
        return "values"
    if isinstance(head, MultiLabelHead):
        return "multilabel"
    if isinstance(head, Head) and head.activation != "softmax":
        return "scores"
    return "probabilities"


def _describe_outputs(model: keras.Model, labels: Any) -> list[_Output]:
    heads = getattr(model, "heads", None)
    if isinstance(heads, dict):
        labels = labels or {}
        if not isinstance(labels, dict):
            raise ValueError(
                f"Received labels={labels!r} for a multi-task model; expected a dict "
                f"head name -> class names, heads {sorted(heads)}."
            )
        outputs = []
        for name, head in heads.items():
            names = labels.get(name) or [str(i) for i in range(head.units)]
            outputs.append(_Output(name, _head_kind(head), [str(n) for n in names]))
        return outputs
    head = getattr(model, "head", None)
    units = int(model.output.shape[-1])
    names = [str(n) for n in labels] if labels is not None else [str(i) for i in range(units)]
    if len(names) != units:
        raise ValueError(
            f"Received {len(names)} labels for a model with {units} outputs; pass one class "
            "name per output, in index order."
        )
    return [_Output(None, _head_kind(head), names)]


def _describe_inputs(model: keras.Model, pairs: bool) -> _Inputs:
    inputs = model.input
    if isinstance(inputs, dict):
        if set(inputs) != set(_TEXT_INPUTS) or getattr(model, "preprocessor", None) is None:
            raise ValueError(
                f"Cannot export a model with inputs {sorted(inputs)} and preprocessor "
                f"{getattr(model, 'preprocessor', None)!r}: tfl exports image models and text "
                "models with a keras-hub BERT preprocessor (tfl.text.bert_preprocessor)."
            )
        length = getattr(model.preprocessor, "sequence_length", None)
        return _Inputs("text", sequence_length=length, pairs=pairs)
    tensors = inputs if isinstance(inputs, list | tuple) else [inputs]
    sizes = []
    for tensor in tensors:
        shape = tuple(tensor.shape)
        if len(shape) != 4 or shape[-1] != 3 or None in shape[1:]:
            raise ValueError(
                f"Cannot export a model input of shape {shape}: tfl exports image inputs "
                "(batch, height, width, 3) and keras-hub text inputs; a fusion of text and "
                "image bases can be saved as .keras only."
            )
        sizes.append((int(shape[1]), int(shape[2])))
    return _Inputs("images", image_sizes=sizes)


def _postprocess(raw: Any, outputs: list[_Output], top_k: int, with_labels: bool) -> dict:
    """Model outputs -> the signature's named outputs (graph ops; see the module docstring)."""
    raw = raw if isinstance(raw, dict) else {None: raw}
    result = {}
    for out in outputs:
        y = tf.cast(raw[out.head], tf.float32)
        if out.kind == "values":
            result[out.prefix + "values"] = y
            continue
        if out.kind == "scores":
            result[out.prefix + "scores"] = y
            y = tf.nn.softmax(y, axis=-1)
        result[out.prefix + "probabilities"] = y
        k = max(1, min(top_k, len(out.labels)))
        values, indices = tf.math.top_k(y, k=k)
        result[out.prefix + "top_k_probabilities"] = values
        result[out.prefix + "top_k_indices"] = indices
        if with_labels:
            names = tf.constant(out.labels, dtype=tf.string)
            result[out.prefix + "top_k_labels"] = tf.gather(names, indices)
    return result


def _postprocess_numpy(raw: Any, outputs: list[_Output]) -> dict[str, np.ndarray]:
    """The Keras model's outputs under the signature's names (the parity reference)."""
    raw = raw if isinstance(raw, dict) else {None: raw}
    result = {}
    for out in outputs:
        y = np.asarray(raw[out.head], dtype=np.float32)
        if out.kind == "values":
            result[out.prefix + "values"] = y
            continue
        if out.kind == "scores":
            result[out.prefix + "scores"] = y
            e = np.exp(y - y.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        result[out.prefix + "probabilities"] = y
    return result


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def save_keras(model: keras.Model, path: str) -> str:
    """Saves `model` as a `.keras` file without its optimizer's state (for inference).

    A run's `model.keras` keeps the optimizer's moments so that training can go on; serving
    does not need them (Adam's are twice the weights). The file reloads with
    `keras.saving.load_model(path, safe_mode=True)`, compiled with tfl's defaults.

    Example:
    >>> import os, tempfile
    >>> from tfl.export import save_keras
    >>> model = ImageClassifier(ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None), 3)
    >>> path = save_keras(model, os.path.join(tempfile.mkdtemp(), "model.keras"))
    >>> type(keras.saving.load_model(path, safe_mode=True)).__name__
    'ImageClassifier'
    """
    if not str(path).endswith(".keras"):
        raise ValueError(f"Received path={path!r}; a Keras model file must end in .keras.")
    optimizer, compiled = getattr(model, "optimizer", None), getattr(model, "compiled", False)
    default = getattr(model, "_default_learning_rate", None)
    # A keras-hub task compiles itself when it is built (also on load), with an unbuilt
    # optimizer; saving an unbuilt one of the same kind keeps the file loadable.
    model.optimizer = keras.optimizers.Adam(default() if default else 1e-3)
    model.compiled = False
    try:
        model.save(path)
    finally:
        model.optimizer, model.compiled = optimizer, compiled
    return path


def _export_archive():
    """A `keras.export.ExportArchive` that stores each weight once.

    Keras 3.15 saves every variable twice on the TensorFlow backend (keras-team/keras#23553):
    under `variables/` (the `keras.Variable`s that `track()` lists) and `_all_variables/` (the
    `tf.Variable`s the endpoints capture): two objects for one buffer, so the SavedModel is
    twice the size and a server holds the weights twice. Listing the `tf.Variable`s in
    `track()` lets TensorFlow's object-identity de-duplication write each once (the fix
    proposed in keras-team/keras#23563). Falls back to Keras' class if its layout changed.
    """
    try:
        from keras.src.backend.tensorflow.export import TFExportArchive
    except ImportError:  # pragma: no cover - another Keras layout: the (larger) default
        return keras.export.ExportArchive()

    class ExportArchive(TFExportArchive):
        def _backend_track_layer(self, layer):
            def unwrap(variables):
                return [getattr(v, "_value", v) for v in variables]

            self._tf_trackable.variables += unwrap(layer.variables)
            self._tf_trackable.trainable_variables += unwrap(layer.trainable_variables)
            self._tf_trackable.non_trainable_variables += unwrap(layer.non_trainable_variables)

    return ExportArchive()


def export_saved_model(
    model: keras.Model,
    path: str,
    labels: Any = None,
    *,
    resize: str = "crop",
    text_pairs: bool = False,
    top_k: int = 5,
) -> str:
    """Writes a SavedModel with a raw-input and a prepared-input signature.

    Args:
        model: a tfl model (`ImageClassifier`, `TextClassifier`, `FusionClassifier`,
            `MultiTaskModel`) or any Keras model with image inputs.
        path: the SavedModel folder (replaced if it exists).
        labels: class names in index order (a dict head -> names for a multi-task model);
            default "0", "1", ...
        resize: how `serving_default` fits a decoded image to the model's size: "crop"
            (default), "resize" or "pad": use the run's `data.resize` (see
            `tfl.data.resize_image`).
        text_pairs: the text model was trained on pairs: `serving_default` takes `text_a`
            and `text_b`.
        top_k: how many classes `top_k_*` outputs give (at most the number of classes).

    Returns:
        `path`.

    Example:
    >>> import os, tempfile
    >>> import tensorflow as tf
    >>> from tfl.export import export_saved_model
    >>> model = ImageClassifier(ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None), 3)
    >>> path = export_saved_model(model, os.path.join(tempfile.mkdtemp(), "sm"), ["a", "b", "c"])
    >>> serve = tf.saved_model.load(path).signatures["serving_default"]
    >>> png = tf.io.encode_png(tf.zeros([50, 40, 3], tf.uint8))
    >>> out = serve(images=tf.stack([png, png]))
    >>> out["probabilities"].shape, out["top_k_labels"].shape
    (TensorShape([2, 3]), TensorShape([2, 3]))
    """
    from tfl.data.images import RESIZE_POLICIES, decode_image, resize_image

    if resize not in RESIZE_POLICIES:
        raise ValueError(f"Received resize={resize!r}; expected one of {list(RESIZE_POLICIES)}.")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"Received top_k={top_k!r}; expected an integer >= 1.")
    outputs = _describe_outputs(model, labels)
    spec = _describe_inputs(model, text_pairs)
    archive = _export_archive()
    archive.track(model)

    def call(x):
        return model(x, training=False)

    if spec.kind == "images":
        sizes = spec.image_sizes
        one = len(sizes) == 1

        def decode(contents, size):
            check = tf.debugging.assert_greater(
                tf.strings.length(contents),
                0,
                message="serving_default: an image is empty (0 bytes); send the encoded file "
                "(JPEG, PNG, GIF, BMP or WebP) as a string",
            )
            # The endpoint is traced without autograph: order the check before decoding.
            with tf.control_dependencies([check]):
                contents = tf.identity(contents)
            return resize_image(decode_image(contents), size, resize)

        def serve_raw(images):
            prepared = [
                tf.map_fn(
                    lambda c, s=size: decode(c, s),
                    images,
                    fn_output_signature=tf.TensorSpec([*size, 3], tf.float32),
                )
                for size in sizes
            ]
            return _postprocess(call(prepared[0] if one else prepared), outputs, top_k, True)

        raw_signature = [tf.TensorSpec([None], tf.string, name="images")]
        prepared_signature = [
            tf.TensorSpec([None, *size, 3], tf.float32, name=name)
            for size, name in zip(sizes, spec.prepared_names, strict=True)
        ]

        def serve_prepared(*images):
            return _postprocess(call(images[0] if one else list(images)), outputs, top_k, False)

    else:
        preprocessor = model.preprocessor
        if not preprocessor.built:
            preprocessor.build(None)
        archive.track(preprocessor)

        def serve_raw(*texts):
            x = preprocessor(tuple(texts) if len(texts) > 1 else texts[0])
            return _postprocess(call(x), outputs, top_k, True)

        raw_signature = [tf.TensorSpec([None], tf.string, name=n) for n in spec.raw_names]
        length = spec.sequence_length
        prepared_signature = [tf.TensorSpec([None, length], tf.int32, name=n) for n in _TEXT_INPUTS]

        def serve_prepared(token_ids, segment_ids, padding_mask):
            x = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
            return _postprocess(call(x), outputs, top_k, False)

    archive.add_endpoint("serving_default", serve_raw, input_signature=raw_signature)
    archive.add_endpoint("serving_preprocessed", serve_prepared, input_signature=prepared_signature)
    tmp = f"{path}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    archive.write_out(tmp, verbose=False)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path


def export_tflite(
    saved_model: str,
    path: str,
    quantization: str = "float32",
    representative_data: Sequence[dict[str, np.ndarray]] | None = None,
) -> str:
    """Converts a SavedModel's `serving_preprocessed` signature to a TFLite file.

    Args:
        saved_model: a folder written by `export_saved_model`.
        path: the `.tflite` file to write.
        quantization: "float32", "float16" (half-precision weights), "dynamic_int8" (int8
            weights, float activations) or "int8" (full integer; needs `representative_data`).
        representative_data: calibration examples for "int8": dicts `{input name: array with a
            batch of one}`, about 100 training examples.

    Returns:
        `path`.

    Raises:
        ExportError: the converter refused the model (e.g. an op without an int8 kernel); the
            message suggests the next quantisation to try.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"Received quantization={quantization!r}; expected one of {list(QUANTIZATIONS)}."
        )
    if quantization == "int8" and not representative_data:
        raise ValueError(
            "Received quantization='int8' without representative_data; full-integer "
            "quantisation calibrates activation ranges on about 100 training examples."
        )
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model, signature_keys=["serving_preprocessed"]
    )
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        examples = list(representative_data)
        converter.representative_dataset = lambda: iter(examples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        with warnings.catch_warnings():
            # Calibration runs tf.lite.Interpreter, which warns that it moved to LiteRT.
            warnings.simplefilter("ignore")
            content = converter.convert()
    except Exception as error:  # noqa: BLE001  (the converter raises many kinds)
        message = str(error).strip().splitlines()
        raise ExportError(
            f"TFLite conversion to {quantization} failed: {message[0] if message else error}. "
            + (
                "Try quantization 'dynamic_int8' (int8 weights, float activations)."
                if quantization == "int8"
                else "The model has an op TFLite cannot run; export the SavedModel only."
            )
        ) from error
    tmp = f"{path}.partial"
    with open(tmp, "wb") as f:
        f.write(content)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------
# Parity: the artefacts run without tfl, compared with the Keras model
# --------------------------------------------------------------------------------------------


def _batched(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def _take(x: Any, s: slice) -> Any:
    if isinstance(x, dict):
        return {k: v[s] for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(v[s] for v in x)
    return x[s]


def _length(x: Any) -> int:
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    return len(x[0]) if isinstance(x, list | tuple) else len(x)


def _keras_outputs(model, x, outputs, batch_size: int) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {}
    for s in _batched(_length(x), batch_size):
        batch = keras.tree.map_structure(tf.convert_to_tensor, _take(x, s))
        if isinstance(batch, tuple):
            batch = list(batch)
        y = keras.tree.map_structure(np.asarray, model(batch, training=False))
        for key, value in _postprocess_numpy(y, outputs).items():
            parts.setdefault(key, []).append(value)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _prepared_inputs(model, spec: _Inputs, examples: Any, batch_size: int) -> dict:
    """`examples` as the `serving_preprocessed` signature's inputs (numpy)."""
    if spec.kind == "images":
        arrays = list(examples) if isinstance(examples, list | tuple) else [examples]
        if len(arrays) != len(spec.image_sizes):
            raise ValueError(
                f"Received {len(arrays)} image arrays for a model with "
                f"{len(spec.image_sizes)} image inputs; pass one array per input."
            )
        prepared = {}
        for name, array, size in zip(spec.prepared_names, arrays, spec.image_sizes, strict=True):
            array = np.asarray(array, dtype=np.float32)
            if array.ndim != 4 or tuple(array.shape[1:3]) != size:
                raise ValueError(
                    f"Received examples of shape {array.shape} for input {name!r}; expected "
                    f"(n, {size[0]}, {size[1]}, 3) images in 0-255."
                )
            prepared[name] = array
        return prepared
    texts = tuple(examples) if spec.pairs else examples
    parts: dict[str, list] = {}
    for s in _batched(_length(texts), batch_size):
        batch = _take(texts, s)
        batch = (
            tuple(tf.constant(list(t)) for t in batch) if spec.pairs else tf.constant(list(batch))
        )
        tokens = model.preprocessor(batch)
        for key in _TEXT_INPUTS:
            parts.setdefault(key, []).append(np.asarray(tokens[key], dtype=np.int32))
    return {k: np.concatenate(v) for k, v in parts.items()}


def _strings(values) -> list[str]:
    """Text examples as str (tf.data gives bytes: `str(b"x")` would be "b'x'")."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _raw_call(spec: _Inputs, examples: Any, prepared: dict, work: str, resize: str):
    """The `serving_default` call of the worker, and the model inputs it should amount to."""
    from tfl.data.images import decode_image, resize_image

    if spec.kind == "text":
        if spec.pairs:
            first, second = examples
            inputs = {
                "text_a": {"kind": "strings", "values": _strings(first)},
                "text_b": {"kind": "strings", "values": _strings(second)},
            }
        else:
            inputs = {"texts": {"kind": "strings", "values": _strings(examples)}}
        return {"signature": "serving_default", "inputs": inputs}, prepared
    # Images travel as PNG files (lossless): what a client sends. The reference is the Keras
    # model on the same bytes decoded and resized by tfl.data, as `tfl predict` does.
    folder = os.path.join(work, "images")
    os.makedirs(folder, exist_ok=True)
    first = prepared[spec.prepared_names[0]]
    paths, model_inputs = [], {name: [] for name in spec.prepared_names}
    for i, image in enumerate(first):
        png = tf.io.encode_png(np.clip(np.round(image), 0, 255).astype(np.uint8))
        path = os.path.join(folder, f"{i:05d}.png")
        tf.io.write_file(path, png)
        paths.append(path)
        decoded = decode_image(png)
        for name, size in zip(spec.prepared_names, spec.image_sizes, strict=True):
            model_inputs[name].append(resize_image(decoded, size, resize).numpy())
    call = {"signature": "serving_default", "inputs": {"images": {"kind": "files", "paths": paths}}}
    return call, {k: np.stack(v) for k, v in model_inputs.items()}


def _model_input(spec: _Inputs, prepared: dict) -> Any:
    if spec.kind == "text":
        return dict(prepared)
    values = [prepared[n] for n in spec.prepared_names]
    return values[0] if len(values) == 1 else values


def _run_worker(job: dict, work: str, name: str, timeout: float) -> tuple[dict, dict]:
    job_path = os.path.join(work, f"{name}.json")
    job["output"] = os.path.join(work, f"{name}_out.npz")
    with open(job_path, "w") as f:
        json.dump(job, f)
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    done = subprocess.run(
        [sys.executable, "-P", _WORKER, job_path],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if done.returncode != 0:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-3:]
        raise ExportError(
            f"{name}: the exported artefact failed to run in a fresh Python process without "
            f"tfl (exit {done.returncode}): {' | '.join(tail)}"
        )
    with np.load(job["output"]) as data:
        outputs = {k: data[k] for k in data.files}
    with open(job["output"] + ".json") as f:
        summary = json.load(f)
    return outputs, summary


def _error_line(lines: list[str]) -> str:
    skip = ("Graph execution error", "Detected at node", "<stack traces", "[[", "Traceback")
    useful = [line.strip() for line in lines if not line.strip().startswith(skip)]
    line = useful[0] if useful else (lines[0] if lines else "")
    return line.split(" [Op:")[0][:300]


def _quality(got: dict, ref: dict, outputs: list[_Output], targets: dict | None) -> dict:
    """Per output: accuracy (with labels) and agreement with Keras / normalised error."""
    result = {}
    for out in outputs:
        g, r = got[out.main], ref[out.main]
        t = None if targets is None else targets.get(out.head)
        entry: dict[str, Any] = {}
        if out.kind == "values":
            scale = float(np.std(r)) or 1.0
            entry["normalised_error"] = float(np.mean(np.abs(g - r)) / scale)
            if t is not None:
                t = np.asarray(t, dtype=np.float32).reshape(g.shape)
                entry["mae"] = float(np.mean(np.abs(g - t)))
                entry["keras_mae"] = float(np.mean(np.abs(r - t)))
        elif out.kind == "multilabel":
            entry["agreement"] = float(np.mean((g > 0.5) == (r > 0.5)))
            if t is not None:
                t = np.asarray(t).reshape(g.shape) > 0.5
                entry["accuracy"] = float(np.mean((g > 0.5) == t))
                entry["keras_accuracy"] = float(np.mean((r > 0.5) == t))
        else:
            entry["agreement"] = float(np.mean(g.argmax(-1) == r.argmax(-1)))
            if t is not None:
                t = np.asarray(t).reshape(-1)
                if t.shape[0] == g.shape[0] and np.issubdtype(t.dtype, np.integer):
                    entry["accuracy"] = float(np.mean(g.argmax(-1) == t))
                    entry["keras_accuracy"] = float(np.mean(r.argmax(-1) == t))
        result[out.main] = entry
    return result


def _max_diff(got: dict, ref: dict) -> tuple[float, str]:
    worst, where = 0.0, ""
    for key, value in ref.items():
        if key not in got:
            return float("inf"), f"{key} missing"
        diff = float(np.max(np.abs(np.asarray(got[key], np.float64) - value))) if value.size else 0
        if not diff <= worst:  # also catches NaN
            worst, where = diff, key
    return worst, where


def _judge(
    name: str, kind: str, got: dict, ref: dict, outputs, targets, max_accuracy_drop: float
) -> dict:
    """One artefact's parity entry; `entry["failures"]` says what is wrong, in words."""
    diff, where = _max_diff(got, ref)
    entry: dict[str, Any] = {"max_abs_diff": diff, "worst_output": where}
    entry["quality"] = _quality(got, ref, outputs, targets)
    failures = []
    tolerance = TOLERANCES.get(kind)
    if tolerance is not None:
        entry["tolerance"] = tolerance
        if not diff <= tolerance:
            failures.append(
                f"{name}: max |difference| from the Keras model {diff:.3g} on {where} > "
                f"tolerance {tolerance:g}"
            )
    else:
        entry["max_accuracy_drop"] = max_accuracy_drop
        for output, q in entry["quality"].items():
            if "normalised_error" in q:
                if not q["normalised_error"] <= 10 * max_accuracy_drop:
                    failures.append(
                        f"{name}: {output} differs from Keras by {q['normalised_error']:.3f} "
                        f"standard deviations > {10 * max_accuracy_drop:g}"
                    )
            elif "accuracy" in q:
                drop = q["keras_accuracy"] - q["accuracy"]
                q["accuracy_drop"] = drop
                if not drop <= max_accuracy_drop:
                    failures.append(
                        f"{name}: {output} accuracy {q['accuracy']:.4f} vs Keras "
                        f"{q['keras_accuracy']:.4f}: a drop of {drop:.4f} > "
                        f"max_accuracy_drop {max_accuracy_drop:g}"
                    )
            elif not 1 - q["agreement"] <= max_accuracy_drop:
                failures.append(
                    f"{name}: {output} top-1 differs from Keras on {1 - q['agreement']:.1%} of "
                    f"the examples > max_accuracy_drop {max_accuracy_drop:g} (no labels given)"
                )
    entry["failures"] = failures
    entry["passed"] = not failures
    return entry


def _probes(spec: _Inputs) -> list[dict]:
    if spec.pairs:
        return []  # a pair signature needs both inputs; the dtype check is the same
    probe = dict(signature=PROBE_SIGNATURE, input=spec.raw_names[0])
    probes = [dict(probe, name="floats instead of strings", dtype="float32", value=[1.0, 2.0])]
    if spec.kind == "images":
        probes += [
            dict(probe, name="empty bytes", dtype="bytes", value=[""]),
            dict(probe, name="not an image", dtype="bytes", value=["hello"]),
        ]
    return probes


# --------------------------------------------------------------------------------------------
# Export + check
# --------------------------------------------------------------------------------------------


def _check_choice(name: str, values: Sequence[str], allowed: Sequence[str]) -> list[str]:
    values = [values] if isinstance(values, str) else list(values)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f"Received {name}={values!r}; expected one or more of {list(allowed)}.")
    return list(dict.fromkeys(values))


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, f))
            for root, _, files in os.walk(path)
            for f in files
        )
    return os.path.getsize(path)


def _as_targets(targets: Any, outputs: list[_Output]) -> dict | None:
    if targets is None:
        return None
    if isinstance(targets, dict):
        return {k: np.asarray(v) for k, v in targets.items()}
    return {outputs[0].head: np.asarray(targets)}


def _representative(prepared: dict, limit: int) -> list[dict]:
    n = min(limit, _length(prepared))
    return [{k: v[i : i + 1] for k, v in prepared.items()} for i in range(n)]


def export_model(
    model: keras.Model,
    out_dir: str,
    *,
    formats: Sequence[str] = FORMATS,
    quantizations: Sequence[str] = QUANTIZATIONS,
    labels: Any = None,
    examples: Any = None,
    targets: Any = None,
    representative: Any = None,
    resize: str = "crop",
    text_pairs: bool = False,
    top_k: int = 5,
    check: bool = True,
    max_accuracy_drop: float = 0.03,
    batch_size: int = 32,
    timeout: float = 600,
) -> dict:
    """Exports `model` to `out_dir` in each format and checks each artefact against Keras.

    Args:
        model: a tfl model (see `export_saved_model`).
        out_dir: the export folder: `model.keras`, `saved_model/`, `model_<q>.tflite`,
            `labels.txt`, `signatures.txt`, `export.json`, `export.md`.
        formats: any of "keras", "saved_model", "tflite".
        quantizations: TFLite variants, any of "float32", "float16", "dynamic_int8", "int8".
        labels: class names in index order (a dict head -> names for a multi-task model).
        examples: validation inputs for the check (images `(n, h, w, 3)` in 0-255, a list of
            arrays for a model with several image inputs, strings, or a tuple of two string
            arrays for text pairs); needed when `check`.
        targets: their labels (class indices; a dict per head for a multi-task model), for
            accuracy deltas; without them quantised files are judged by agreement with Keras.
        representative: training inputs (same form as `examples`) that calibrate "int8";
            default `examples`.
        resize: the image resize policy of `serving_default` (use the training data's).
        text_pairs: a text model trained on pairs.
        top_k: size of the `top_k_*` outputs.
        check: run the parity check (else only write the files).
        max_accuracy_drop: the largest accuracy drop a float16 / int8 file may show.
        batch_size: batch size of the check.
        timeout: seconds each checking process may take.

    Returns:
        The report (also `export.json`): `files` (path and bytes per artefact), `parity`
        (per artefact: `max_abs_diff`, `tolerance` or `max_accuracy_drop`, `quality` with
        accuracy / agreement, `passed`), `probes` (bad inputs and their errors), `passed`.

    Raises:
        ExportError: an artefact does not compute what the Keras model does (the report is
            written first), or a conversion failed.

    Example:
        See `tfl export --help` and `tests/test_export.py` (an export runs for several
        seconds per format, too long for a docstring).
    """
    formats = _check_choice("formats", formats, FORMATS)
    quantizations = _check_choice("quantizations", quantizations, QUANTIZATIONS)
    if check and examples is None:
        raise ValueError(
            "Received check=True without examples; pass validation inputs (and targets), or "
            "check=False to write the files unchecked."
        )
    if not 0 <= max_accuracy_drop < 1:
        raise ValueError(f"Received max_accuracy_drop={max_accuracy_drop!r}; expected [0, 1).")
    outputs = _describe_outputs(model, labels)
    spec = _describe_inputs(model, text_pairs)
    os.makedirs(out_dir, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "model": type(model).__name__,
        "formats": formats,
        "quantizations": quantizations if "tflite" in formats else [],
        "inputs": {
            "serving_default": spec.raw_names,
            "serving_preprocessed": spec.prepared_names,
        },
        "outputs": [
            {"head": o.head, "kind": o.kind, "main": o.main, "classes": len(o.labels)}
            for o in outputs
        ],
        "files": {},
        "seconds": {},
    }
    if spec.kind == "text":
        report["requires"] = "import tensorflow_text (registers the tokeniser ops) before loading"
    files = report["files"]

    def record(name: str, path: str, seconds: float) -> None:
        files[name] = {"path": os.path.relpath(path, out_dir), "bytes": _size(path)}
        report["seconds"][name] = round(seconds, 2)

    for out in outputs:
        name = "labels.txt" if out.head is None else f"labels_{out.head}.txt"
        with open(os.path.join(out_dir, name), "w") as f:
            f.write("".join(f"{label}\n" for label in out.labels))

    if "keras" in formats:
        t = time.perf_counter()
        record("keras", save_keras(model, os.path.join(out_dir, "model.keras")), 0)
        report["seconds"]["keras"] = round(time.perf_counter() - t, 2)
    saved_model = os.path.join(out_dir, "saved_model")
    work = tempfile.mkdtemp(prefix="tfl-export-")
    show = None
    try:
        if "saved_model" in formats or "tflite" in formats:
            if "saved_model" not in formats:
                saved_model = os.path.join(work, "saved_model")
            t = time.perf_counter()
            export_saved_model(
                model,
                saved_model,
                labels=[o.labels for o in outputs][0]
                if outputs[0].head is None
                else {o.head: o.labels for o in outputs},
                resize=resize,
                text_pairs=text_pairs,
                top_k=top_k,
            )
            if "saved_model" in formats:
                record("saved_model", saved_model, time.perf_counter() - t)
                show = _show_signatures(saved_model)
        prepared = None
        if check:
            prepared = _prepared_inputs(model, spec, examples, batch_size)
        tflite = {}
        if "tflite" in formats:
            calibration = None
            if "int8" in quantizations:
                source = examples if representative is None else representative
                if source is None:
                    raise ValueError(
                        "Received quantization 'int8' without representative (or examples): "
                        "full-integer quantisation calibrates on about 100 training examples."
                    )
                calibration = _representative(
                    _prepared_inputs(model, spec, source, batch_size), 100
                )
            for q in quantizations:
                t = time.perf_counter()
                path = os.path.join(out_dir, f"model_{q}.tflite")
                export_tflite(saved_model, path, q, calibration if q == "int8" else None)
                tflite[q] = path
                record(f"tflite_{q}", path, time.perf_counter() - t)
        if check:
            try:
                _check(
                    report,
                    model,
                    spec,
                    outputs,
                    examples,
                    prepared,
                    _as_targets(targets, outputs),
                    out_dir,
                    saved_model if "saved_model" in formats else None,
                    tflite,
                    work,
                    resize=resize,
                    max_accuracy_drop=max_accuracy_drop,
                    batch_size=batch_size,
                    timeout=timeout,
                )
            except ExportError as error:  # keep what was measured; report, then raise
                report["probe_failures"] = [*report.get("probe_failures", []), str(error)]
        if show is not None:
            report["signatures"] = _save_signatures(show, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["seconds"]["total"] = round(time.perf_counter() - started, 1)
    failures = [f for entry in report.get("parity", {}).values() for f in entry["failures"]]
    failures += report.get("probe_failures", [])
    report["failures"] = failures
    report["passed"] = not failures if check else None
    _write_report(out_dir, report)
    if failures:
        raise ExportError(
            f"{len(failures)} parity failure(s) (report: {os.path.join(out_dir, 'export.md')}): "
            + "; ".join(failures)
        )
    return report


def _show_signatures(saved_model: str) -> subprocess.Popen:
    """Starts `saved_model_cli show --all` on the SavedModel (runs beside the check)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorflow.python.tools.saved_model_cli",
            "show",
            "--dir",
            saved_model,
            "--all",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )


def _save_signatures(process: subprocess.Popen, out_dir: str) -> str:
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = "", "timed out after 300 s"
    text = stdout if process.returncode == 0 else f"saved_model_cli failed: {stderr}"
    with open(os.path.join(out_dir, "signatures.txt"), "w") as f:
        f.write(text)
    return "signatures.txt"


def _check(
    report,
    model,
    spec,
    outputs,
    examples,
    prepared,
    targets,
    out_dir,
    saved_model,
    tflite,
    work,
    *,
    resize,
    max_accuracy_drop,
    batch_size,
    timeout,
) -> None:
    parity = report["parity"] = {}
    report["examples"] = _length(prepared)
    reference = _keras_outputs(model, _model_input(spec, prepared), outputs, batch_size)
    keras_quality = _quality(reference, reference, outputs, targets)
    report["keras"] = {
        k: {m: v for m, v in q.items() if m in ("keras_accuracy", "keras_mae")}
        for k, q in keras_quality.items()
    }

    def judge(name, kind, got, ref):
        parity[name] = _judge(name, kind, got, ref, outputs, targets, max_accuracy_drop)

    path = report["files"].get("keras", {}).get("path")
    if path:
        reloaded = keras.saving.load_model(os.path.join(out_dir, path), safe_mode=True)
        got = _keras_outputs(reloaded, _model_input(spec, prepared), outputs, batch_size)
        judge("keras", "keras", got, reference)
        del reloaded

    npz = os.path.join(work, "prepared.npz")
    np.savez(npz, **prepared)
    if saved_model:
        raw_call, raw_inputs = _raw_call(spec, examples, prepared, work, resize)
        raw_reference = (
            reference
            if spec.kind == "text"
            else _keras_outputs(model, _model_input(spec, raw_inputs), outputs, batch_size)
        )
        prepared_call = {
            "signature": "serving_preprocessed",
            "inputs": {k: {"kind": "npz", "npz": npz, "key": k} for k in prepared},
        }
        job = {
            "mode": "saved_model",
            "path": saved_model,
            "text_ops": spec.kind == "text",
            "calls": [raw_call, prepared_call],
            "probes": _probes(spec),
            "batch_size": batch_size,
        }
        got, summary = _run_worker(job, work, "saved_model", timeout)
        report["worker_saved_model"] = summary
        for call, ref in (("serving_default", raw_reference), ("serving_preprocessed", reference)):
            mine = {k.split("::", 1)[1]: v for k, v in got.items() if k.startswith(call + "::")}
            judge(f"saved_model/{call}", "saved_model", mine, ref)
            if call == "serving_default":
                for out in outputs:
                    if f"{out.prefix}top_k_labels" in mine:
                        names = np.asarray(out.labels, dtype=object)
                        labels = [str(v) for v in mine[f"{out.prefix}top_k_labels"][:, 0]]
                        expected = names[mine[f"{out.prefix}top_k_indices"][:, 0]].tolist()
                        if labels != expected:
                            parity[f"saved_model/{call}"]["failures"].append(
                                f"saved_model/{call}: {out.prefix}top_k_labels do not name "
                                f"{out.prefix}top_k_indices"
                            )
        report["probes"] = [
            {"name": p["name"], "error": p["error"], "message": _error_line(p.get("lines", []))}
            for p in summary.get("probes", [])
        ]
        report["probe_failures"] = [
            f"serving_default accepted bad input ({p['name']}) without an error"
            for p in report["probes"]
            if p["error"] is None
        ]
        if job["probes"] and not summary.get("serves_after_probes"):
            report["probe_failures"].append("serving_default stopped answering after bad inputs")
        loaded = summary.get("modules", {})
        if loaded.get("tfl") or loaded.get("keras_hub"):
            report["probe_failures"].append(f"the SavedModel check imported {loaded}")
    if tflite:
        job = {"mode": "tflite", "models": tflite, "inputs": npz, "batch_size": batch_size}
        got, summary = _run_worker(job, work, "tflite", timeout)
        report["worker_tflite"] = summary
        for q in tflite:
            mine = {k.split("::", 1)[1]: v for k, v in got.items() if k.startswith(q + "::")}
            ref = {
                k: v
                for k, v in reference.items()
                if k in mine or k.endswith(("probabilities", "values", "scores"))
            }
            judge(f"tflite_{q}", q if q in TOLERANCES else "reduced", mine, ref)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def _write_report(out_dir: str, report: dict) -> None:
    with open(os.path.join(out_dir, "export.json"), "w") as f:
        json.dump(report, f, indent=2, default=float)
    lines = [f"# Export of {report['model']}", ""]
    lines += ["| artefact | file | size |", "|---|---|---|"]
    for name, info in report["files"].items():
        lines.append(f"| {name} | `{info['path']}` | {_megabytes(info['bytes'])} |")
    parity = report.get("parity")
    if parity:
        lines += [
            "",
            f"## Parity with the Keras model ({report['examples']} validation examples, "
            "run in a fresh process without tfl)",
            "",
            "| artefact | max abs diff | limit | accuracy (Keras) | top-1 agreement | passed |",
            "|---|---|---|---|---|---|",
        ]
        for name, entry in parity.items():
            q = next(iter(entry["quality"].values()))
            limit = (
                f"≤ {entry['tolerance']:g}"
                if "tolerance" in entry
                else f"accuracy drop ≤ {entry['max_accuracy_drop']:g}"
            )
            accuracy = (
                f"{_fmt(q['accuracy'])} ({_fmt(q['keras_accuracy'])})" if "accuracy" in q else "–"
            )
            lines.append(
                f"| {name} | {_fmt(entry['max_abs_diff'])} | {limit} | {accuracy} | "
                f"{_fmt(q.get('agreement'))} | {'yes' if entry['passed'] else '**no**'} |"
            )
    if report.get("probes"):
        lines += ["", "## Bad inputs to `serving_default`", ""]
        for p in report["probes"]:
            answer = f"refused: {p['message']}" if p["error"] else "**accepted**"
            lines.append(f"- {p['name']}: {answer}")
    if report.get("failures"):
        lines += ["", "## Failures", ""] + [f"- {f}" for f in report["failures"]]
    lines += ["", "## Serving", ""]
    raw = ", ".join(report["inputs"]["serving_default"])
    lines += [
        f"`serving_default` takes `{raw}` ("
        + ("encoded image files" if raw == "images" else "raw text")
        + " as strings, any batch size); `serving_preprocessed` takes "
        f"`{', '.join(report['inputs']['serving_preprocessed'])}`. Signatures: "
        "`signatures.txt` (`saved_model_cli show --all`).",
        "",
        "```python",
        "import tensorflow as tf",
    ]
    if "requires" in report:
        lines.append("import tensorflow_text  # registers the tokeniser ops")
    example = (
        "images=tf.constant([open('cat.jpg', 'rb').read()])"
        if raw == "images"
        else ", ".join(
            f"{n}=tf.constant(['some text'])" for n in report["inputs"]["serving_default"]
        )
    )
    lines += [
        "serve = tf.saved_model.load('saved_model').signatures['serving_default']",
        f"out = serve({example})",
        "```",
        "",
        "TFLite files take the `serving_preprocessed` inputs (LiteRT: "
        "`ai_edge_litert.interpreter.Interpreter(model_path).get_signature_runner("
        "'serving_preprocessed')`); class names are in labels*.txt.",
    ]
    with open(os.path.join(out_dir, "export.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _collect(dataset, limit: int) -> tuple[Any, Any]:
    """Up to `limit` examples `(x, y)` of a batched dataset, as numpy."""
    xs, ys, n = [], [], 0
    for x, y in dataset:
        xs.append(keras.tree.map_structure(np.asarray, x))
        ys.append(keras.tree.map_structure(np.asarray, y))
        n += _length(xs[-1])
        if n >= limit:
            break
    if not xs:
        return None, None

    def join(*parts):
        return np.concatenate(parts)[:limit]

    return keras.tree.map_structure(join, *xs), keras.tree.map_structure(join, *ys)


def export_run(
    run_dir: str,
    out_dir: str | None = None,
    *,
    formats: Sequence[str] = FORMATS,
    quantizations: Sequence[str] = QUANTIZATIONS,
    checkpoint: str = "final",
    examples: int = 256,
    calibration: int = 100,
    check: bool = True,
    max_accuracy_drop: float = 0.03,
    top_k: int = 5,
) -> dict:
    """Exports a finished run (`tfl export RUN_DIR`) and checks it on its validation split.

    The run's data is loaded again as in training (`tfl.runner.load_data`), so the check uses
    the run's own validation examples and labels, `serving_default` resizes images with the
    run's `data.resize`, and full-integer TFLite calibrates on `calibration` training examples.

    Args:
        run_dir: a directory written by `tfl train`.
        out_dir: the export folder (default `RUN_DIR/export`).
        formats, quantizations, check, max_accuracy_drop, top_k: see `export_model`.
        checkpoint: "final" (`model.keras`) or "best" (`best.keras`).
        examples: how many validation examples the check runs (the test split when the run
            has no validation split).
        calibration: how many training examples calibrate "int8".

    Returns:
        The report of `export_model` plus `run_dir` and `checkpoint`.

    Example:
        None that runs in a docstring (it needs a trained run); see `tests/test_export.py`.
    """
    from tfl import predict, runner

    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise ValueError(f"Received examples={examples!r}; expected an integer >= 1.")
    if not 0 <= max_accuracy_drop < 1:
        raise ValueError(f"Received max_accuracy_drop={max_accuracy_drop!r}; expected [0, 1).")
    _check_choice("formats", formats, FORMATS)
    _check_choice("quantizations", quantizations, QUANTIZATIONS)
    run = predict.load_run(run_dir, checkpoint)
    config = run.config
    labels = run.tasks[None] if None in run.tasks else dict(run.tasks)
    x = y = representative = None
    if check or "int8" in quantizations:
        data = runner.load_data(config)
        split = data.validation if data.validation is not None else data.test
        if split is None:
            raise ValueError(
                f"{run_dir}: the run has no validation or test split to check the export on; "
                "pass --no-check to export unchecked."
            )
        x, y = _collect(split, examples)
        if "tflite" in formats and "int8" in quantizations and data.train is not None:
            representative, _ = _collect(data.train, calibration)
    column = config.data.text_column
    pairs = runner.is_text(config) and isinstance(column, list | tuple) and len(column) > 1
    if pairs and x is not None:
        x = tuple(x)
        representative = None if representative is None else tuple(representative)
    report = export_model(
        run.model,
        out_dir or os.path.join(run_dir, "export"),
        formats=formats,
        quantizations=quantizations,
        labels=labels,
        examples=x,
        targets=y,
        representative=representative,
        resize=config.data.resize,
        text_pairs=pairs,
        top_k=top_k,
        check=check,
        max_accuracy_drop=max_accuracy_drop,
        batch_size=config.data.batch_size,
    )
    report.update(run_dir=run_dir, checkpoint=checkpoint)
    return report
