"""The writers: `.keras` without optimizer state, the SavedModel, TFLite files.

`export_saved_model` writes two signatures (`serving_default` on what a client has: encoded
images or raw text; `serving_preprocessed` on prepared tensors) with a `keras.export`
archive that stores each weight once; `export_tflite` converts `serving_preprocessed`.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfl.export.formats import QUANTIZATIONS, ExportError
from tfl.export.signatures import (
    TEXT_INPUTS,
    Inputs,
    Output,
    describe_inputs,
    describe_outputs,
    postprocess,
)


def save_keras(model: keras.Model, path: str) -> str:
    """Saves `model` as a `.keras` file without its optimizer's state (for inference).

    A run's `model.keras` keeps the optimizer's moments so that training can go on; serving
    does not need them (Adam's are twice the weights). The file reloads with
    `keras.saving.load_model(path, safe_mode=True)`, compiled with tfl's defaults.

    Example:
    >>> import os, tempfile
    >>> from tfl.export import save_keras
    >>> model = ImageClassifier(ImageBackbone("mobilenet", (32, 32, 3), weights=None), 3)
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
    >>> model = ImageClassifier(ImageBackbone("mobilenet", (32, 32, 3), weights=None), 3)
    >>> path = export_saved_model(model, os.path.join(tempfile.mkdtemp(), "sm"), ["a", "b", "c"])
    >>> serve = tf.saved_model.load(path).signatures["serving_default"]
    >>> png = tf.io.encode_png(tf.zeros([50, 40, 3], tf.uint8))
    >>> out = serve(images=tf.stack([png, png]))
    >>> out["probabilities"].shape, out["top_k_labels"].shape
    (TensorShape([2, 3]), TensorShape([2, 3]))
    """
    from tfl.data.images import RESIZE_POLICIES

    if resize not in RESIZE_POLICIES:
        raise ValueError(f"Received resize={resize!r}; expected one of {list(RESIZE_POLICIES)}.")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"Received top_k={top_k!r}; expected an integer >= 1.")
    outputs = describe_outputs(model, labels)
    spec = describe_inputs(model, text_pairs)
    archive = _export_archive()
    archive.track(model)
    if spec.kind == "images":
        endpoints = _image_endpoints(model, spec, outputs, resize, top_k)
    else:
        endpoints = _text_endpoints(model, archive, spec, outputs, top_k)
    serve_raw, raw_signature, serve_prepared, prepared_signature = endpoints
    archive.add_endpoint("serving_default", serve_raw, input_signature=raw_signature)
    archive.add_endpoint("serving_preprocessed", serve_prepared, input_signature=prepared_signature)
    tmp = f"{path}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    archive.write_out(tmp, verbose=False)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path


def _image_endpoints(model, spec: Inputs, outputs: list[Output], resize: str, top_k: int):
    """`serving_default` on encoded image strings and `serving_preprocessed` on float images:
    (serve_raw, its input signature, serve_prepared, its input signature)."""
    from tfl.data.images import decode_image, resize_image

    sizes = spec.image_sizes
    one = len(sizes) == 1

    def call(x):
        return model(x, training=False)

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
        return postprocess(call(prepared[0] if one else prepared), outputs, top_k, True)

    raw_signature = [tf.TensorSpec([None], tf.string, name="images")]
    prepared_signature = [
        tf.TensorSpec([None, *size, 3], tf.float32, name=name)
        for size, name in zip(sizes, spec.prepared_names, strict=True)
    ]

    def serve_prepared(*images):
        return postprocess(call(images[0] if one else list(images)), outputs, top_k, False)

    return serve_raw, raw_signature, serve_prepared, prepared_signature


def _text_endpoints(model, archive, spec: Inputs, outputs: list[Output], top_k: int):
    """`serving_default` on raw strings (tokenised in the graph by the model's keras-hub
    preprocessor, which `archive` tracks) and `serving_preprocessed` on token tensors."""
    preprocessor = model.preprocessor
    if not preprocessor.built:
        preprocessor.build(None)
    archive.track(preprocessor)

    def call(x):
        return model(x, training=False)

    def serve_raw(*texts):
        x = preprocessor(tuple(texts) if len(texts) > 1 else texts[0])
        return postprocess(call(x), outputs, top_k, True)

    raw_signature = [tf.TensorSpec([None], tf.string, name=n) for n in spec.raw_names]
    length = spec.sequence_length
    prepared_signature = [tf.TensorSpec([None, length], tf.int32, name=n) for n in TEXT_INPUTS]

    def serve_prepared(token_ids, segment_ids, padding_mask):
        x = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
        return postprocess(call(x), outputs, top_k, False)

    return serve_raw, raw_signature, serve_prepared, prepared_signature


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
