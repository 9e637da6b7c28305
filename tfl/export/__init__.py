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
  float32), per output (`TOLERANCES`, `Tolerance`): 1e-3 of the output's range, that is
  probabilities (softmax, sigmoid, an SVM's softmax; in [0, 1]) within 1e-3 of Keras, and
  unbounded outputs (SVM scores, regression values) within 1e-6 + 1e-3 x their largest
  |Keras value| (float32 rounding grows with the magnitude of what is summed, so the limit
  scales with the output); the reloaded `.keras` (same kernels, same process) within 1e-5.
  Why these numbers: `benchmarks/export_parity.py` exported 22 models right (the offline
  ImageNet MobileNetV2 and MiniLM; random-weight MobileNetV3, EfficientNet-B0, ResNet50,
  ConvNeXt-Tiny, InceptionV3 and a tiny BERT; 32-224 px; softmax, SVM, regression and
  multi-label heads): they differed from Keras by at most 1.7e-4 on probabilities and
  8.1e-5 x scale on scores and values (a random InceptionV3; the real MobileNetV2: 7.7e-6
  and 1.9e-6). 5 exports with a wrong preprocessing, padding or BatchNorm epsilon in the
  graph moved probabilities by 0.87 or more, scores and values by 0.94 x scale or more.
  The old fixed 1e-5 failed good models: TFLite float32 of a real MobileNetV2 run showed
  1.04e-5 with top-1 agreement 1.0.
- reduced-precision files (TFLite float16, dynamic_int8, int8) by accuracy: the drop against
  the Keras model's accuracy on the same examples may be at most `max_accuracy_drop`
  (default 0.03: with a few hundred examples one example is 0.4 points; one changed answer
  is always allowed, since on 20 examples it is 0.05); without labels, the
  share of top-1 predictions that differ from Keras' may be at most that. Their max
  |difference| is reported (float16 weights moved probabilities by up to 0.015 there).

It also feeds `serving_default` bad inputs (empty bytes, bytes that are not an image, floats
instead of strings) and checks that each is refused with an error and that the same loaded
model then still answers. The report goes to `export.json` and `export.md`; any failure raises
`ExportError` after the report is written, naming the artefact, the number and the limit.

Modules: `formats` (what can be written, `TOLERANCES`, `ExportError`), `signatures` (what the
model takes and gives, postprocessing), `writers` (`.keras`, SavedModel, TFLite), `examples`
(the check's inputs), `parity` (the checker and its worker process, `_worker.py`), `report`
(`export.json`, `export.md`, `signatures.txt`) and `exporting` (`export_model`, `export_run`).
"""

from tfl.export.exporting import export_model, export_run
from tfl.export.formats import FORMATS, QUANTIZATIONS, TOLERANCES, ExportError, Tolerance
from tfl.export.parity import PROBE_SIGNATURE  # noqa: F401  (not in __all__, as before)
from tfl.export.writers import export_saved_model, export_tflite, save_keras

__all__ = [
    "FORMATS",
    "QUANTIZATIONS",
    "TOLERANCES",
    "ExportError",
    "Tolerance",
    "export_model",
    "export_run",
    "export_saved_model",
    "export_tflite",
    "save_keras",
]
