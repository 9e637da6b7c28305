"""Runs exported artefacts in a fresh process without tfl: the other half of `tfl.export`'s
parity check. Not part of the library's API; `tfl.export.parity` starts it as a script:

    python -P tfl/export/_worker.py JOB.json

`JOB.json` names the artefact, its inputs and where to write the outputs:

- `{"mode": "saved_model", "path": DIR, "text_ops": bool, "calls": [...], "probes": [...],
  "output": NPZ}`: loads the SavedModel with `tf.saved_model.load` (plus `tensorflow_text`,
  which registers the tokeniser's ops, when `text_ops`), calls each signature of `calls` on
  its inputs in batches, then feeds each bad input of `probes` and records the error.
- `{"mode": "tflite", "models": {NAME: PATH}, "inputs": NPZ, "batch_size": N, "output": NPZ}`:
  runs each TFLite file's `serving_preprocessed` signature with the LiteRT interpreter
  (`ai_edge_litert`; `tf.lite.Interpreter` only when LiteRT is not installed) and does not
  import TensorFlow at all.

Importing `tfl` or `keras_hub` here fails on purpose, so the check proves the artefacts need
neither. A JSON summary (modules loaded, probe errors, timings) is written beside the outputs.
"""

import importlib.abc
import json
import os
import sys
import time

BLOCKED = ("tfl", "keras_hub")


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} must not be needed to run an exported tfl artefact")
        return None


def _batches(n, batch_size):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def _read_inputs(call, np):
    """A call's inputs as {name: array}: image files are read as bytes, npz arrays loaded."""
    inputs = {}
    for name, spec in call["inputs"].items():
        if spec["kind"] == "files":
            values = []
            for path in spec["paths"]:
                with open(path, "rb") as f:
                    values.append(f.read())
            inputs[name] = np.array(values, dtype=object)
        elif spec["kind"] == "strings":
            inputs[name] = np.array(spec["values"], dtype=object)
        else:
            with np.load(spec["npz"]) as data:
                inputs[name] = data[spec["key"]]
    return inputs


def run_saved_model(job):
    import numpy as np
    import tensorflow as tf

    if job.get("text_ops"):
        import tensorflow_text  # noqa: F401  (registers the tokeniser ops of the graph)

    start = time.perf_counter()
    loaded = tf.saved_model.load(job["path"])
    summary = {"load_seconds": time.perf_counter() - start, "signatures": sorted(loaded.signatures)}
    outputs = {}
    for call in job["calls"]:
        signature = loaded.signatures[call["signature"]]
        inputs = _read_inputs(call, np)
        n = len(next(iter(inputs.values())))
        parts = {}
        start = time.perf_counter()
        for s in _batches(n, job["batch_size"]):
            result = signature(**{k: tf.constant(v[s]) for k, v in inputs.items()})
            for key, value in result.items():
                value = value.numpy()
                if value.dtype == object:  # strings (label names): unicode, no pickling
                    value = np.vectorize(lambda b: b.decode("utf-8"), otypes=[str])(value)
                parts.setdefault(key, []).append(value)
        summary[f"{call['signature']}_seconds"] = time.perf_counter() - start
        for key, values in parts.items():
            outputs[f"{call['signature']}::{key}"] = np.concatenate(values)
    probes = []
    for probe in job.get("probes", []):
        signature = loaded.signatures[probe["signature"]]
        value = probe["value"]
        if probe["dtype"] == "bytes":
            value = tf.constant([v.encode("latin-1") for v in value])
        else:
            value = tf.constant(value, dtype=probe["dtype"])
        try:
            signature(**{probe["input"]: value})
            probes.append({"name": probe["name"], "error": None})
        except Exception as error:  # noqa: BLE001  (the point is to record any error)
            message = getattr(error, "message", None) or str(error)
            lines = [line for line in message.splitlines() if line.strip()]
            probes.append({"name": probe["name"], "error": type(error).__name__, "lines": lines})
    summary["probes"] = probes
    if job.get("probes") and job["calls"]:
        # The process still serves after the bad inputs: the first call again, one batch.
        call = job["calls"][0]
        inputs = _read_inputs(call, np)
        result = loaded.signatures[call["signature"]](
            **{k: tf.constant(v[:1]) for k, v in inputs.items()}
        )
        summary["serves_after_probes"] = all(v.shape[0] == 1 for v in result.values())
    return outputs, summary


def _interpreter(path, threads):
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=path, num_threads=threads), "ai_edge_litert"
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=path, num_threads=threads), "tf.lite"


def run_tflite(job):
    import numpy as np

    with np.load(job["inputs"]) as data:
        inputs = {k: data[k] for k in data.files}
    n = len(next(iter(inputs.values())))
    outputs, summary = {}, {}
    for name, path in job["models"].items():
        interpreter, runtime = _interpreter(path, job.get("threads") or os.cpu_count())
        runner = interpreter.get_signature_runner("serving_preprocessed")
        parts = {}
        start = time.perf_counter()
        for s in _batches(n, job["batch_size"]):
            result = runner(**{k: v[s] for k, v in inputs.items()})
            for key, value in result.items():
                parts.setdefault(key, []).append(np.asarray(value))
        summary[f"{name}_seconds"] = time.perf_counter() - start
        summary["runtime"] = runtime
        for key, values in parts.items():
            outputs[f"{name}::{key}"] = np.concatenate(values)
    return outputs, summary


def main(path):
    sys.meta_path.insert(0, _Blocked())
    with open(path) as f:
        job = json.load(f)
    run = run_saved_model if job["mode"] == "saved_model" else run_tflite
    outputs, summary = run(job)
    import numpy as np

    np.savez(job["output"], **outputs)
    summary["modules"] = {
        name: name in sys.modules for name in ("tfl", "keras", "keras_hub", "tensorflow")
    }
    with open(job["output"] + ".json", "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(
        os.path.abspath(__file__)
    ):
        sys.path.pop(0)  # never import tfl's own modules (tfl/export/*.py) by file name
    main(sys.argv[1])
