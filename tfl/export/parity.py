"""The parity check: each artefact runs without tfl and is compared with the Keras model.

`check_parity` runs the reloaded `.keras` file here, and the SavedModel (with TensorFlow only)
and the TFLite files (with the LiteRT interpreter only) in a fresh Python process that cannot
import tfl or keras-hub (`tfl/export/_worker.py`, started with `python -P`). Float artefacts
must stay within `TOLERANCES` of Keras; reduced-precision ones are judged by their accuracy
drop (or top-1 agreement without labels). `serving_default` is also fed bad inputs
(`PROBE_SIGNATURE`): each must be refused, and the model must answer afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfl.export.examples import batched, length, take
from tfl.export.formats import TOLERANCES, ExportError
from tfl.export.signatures import Inputs, Output, postprocess_numpy

PROBE_SIGNATURE = "serving_default"
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")


def _keras_outputs(model, x, outputs, batch_size: int) -> dict[str, np.ndarray]:
    """The Keras model's outputs on `x` under the signatures' names: the reference."""
    parts: dict[str, list] = {}
    for s in batched(length(x), batch_size):
        batch = keras.tree.map_structure(tf.convert_to_tensor, take(x, s))
        if isinstance(batch, tuple):
            batch = list(batch)
        y = keras.tree.map_structure(np.asarray, model(batch, training=False))
        for key, value in postprocess_numpy(y, outputs).items():
            parts.setdefault(key, []).append(value)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _strings(values) -> list[str]:
    """Text examples as str (tf.data gives bytes: `str(b"x")` would be "b'x'")."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _raw_call(spec: Inputs, examples: Any, prepared: dict, work: str, resize: str):
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


def _model_input(spec: Inputs, prepared: dict) -> Any:
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


def _quality(got: dict, ref: dict, outputs: list[Output], targets: dict | None) -> dict:
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
            entry["examples"] = int(g.shape[0])
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
        diffs = tolerance.compare(got, ref)
        entry["outputs"] = diffs
        entry["tolerance"] = dataclasses.asdict(tolerance)
        # The output closest to (or furthest over) its limit speaks for the artefact.
        key = max(diffs, key=lambda k: _ratio(diffs[k]), default="")
        if key:
            entry.update(worst_output=key, limit=diffs[key]["limit"])
        for output, d in diffs.items():
            if not d["passed"]:
                rule = (
                    "for probabilities"
                    if output.endswith("probabilities")
                    else f"= {tolerance.atol:g} + {tolerance.rtol:g} x max |{output}| "
                    f"{d['scale']:.3g}"
                )
                failures.append(
                    f"{name}: max |difference| from the Keras model {d['max_abs_diff']:.3g} on "
                    f"{output} > limit {d['limit']:.3g} ({rule})"
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
                # On n examples accuracy moves in steps of 1/n: one changed answer is
                # always allowed, else 20 validation examples could never pass 0.03.
                allowed = max(max_accuracy_drop, 1 / q["examples"]) if q.get("examples") else 0
                if not drop <= allowed + 1e-9:
                    failures.append(
                        f"{name}: {output} accuracy {q['accuracy']:.4f} vs Keras "
                        f"{q['keras_accuracy']:.4f}: a drop of {drop:.4f} > "
                        f"max_accuracy_drop {max_accuracy_drop:g} (one example of "
                        f"{q['examples']} is {1 / q['examples']:.3g}); check on more examples "
                        "or raise max_accuracy_drop"
                    )
            elif not 1 - q["agreement"] <= max_accuracy_drop:
                failures.append(
                    f"{name}: {output} top-1 differs from Keras on {1 - q['agreement']:.1%} of "
                    f"the examples > max_accuracy_drop {max_accuracy_drop:g} (no labels given)"
                )
    entry["failures"] = failures
    entry["passed"] = not failures
    return entry


def _ratio(diff: dict) -> float:
    """How close an output's difference is to its limit (inf for NaN or a missing output)."""
    d, limit = diff["max_abs_diff"], diff["limit"]
    if math.isnan(d):
        return float("inf")
    return d / limit if limit > 0 else (0.0 if d == 0 else float("inf"))


def _probes(spec: Inputs) -> list[dict]:
    """The bad inputs fed to `serving_default`: each must be refused with an error."""
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


@dataclasses.dataclass
class _Check:
    """What each step of one parity check needs; `parity` collects the judged artefacts."""

    model: keras.Model
    spec: Inputs
    outputs: list[Output]
    targets: dict | None
    work: str  # a temporary folder for the worker's jobs, inputs and outputs
    batch_size: int
    timeout: float
    max_accuracy_drop: float
    parity: dict

    def keras_outputs(self, model: keras.Model, prepared: dict) -> dict[str, np.ndarray]:
        x = _model_input(self.spec, prepared)
        return _keras_outputs(model, x, self.outputs, self.batch_size)

    def judge(self, name: str, kind: str, got: dict, ref: dict) -> None:
        self.parity[name] = _judge(
            name, kind, got, ref, self.outputs, self.targets, self.max_accuracy_drop
        )


def check_parity(
    report: dict,
    model: keras.Model,
    spec: Inputs,
    outputs: list[Output],
    examples: Any,
    prepared: dict,
    targets: dict | None,
    out_dir: str,
    saved_model: str | None,
    tflite: dict[str, str],
    work: str,
    *,
    resize: str,
    max_accuracy_drop: float,
    batch_size: int,
    timeout: float,
) -> None:
    """Checks each written artefact against `model` on `prepared`; fills `report`.

    Adds `parity` (one `_judge` entry per artefact: `.keras` reloaded in safe mode, the
    SavedModel's two signatures, each TFLite file), `examples`, `keras` (the Keras model's
    own accuracy / MAE), the workers' summaries and the bad-input `probes` with their
    `probe_failures`.

    Args:
        report: the export report so far (`files` names the written `.keras` file).
        model: the Keras model: the reference.
        spec, outputs: what the model takes and gives (`tfl.export.signatures`).
        examples: the validation inputs as given (what `serving_default` is sent).
        prepared: the same as `serving_preprocessed` inputs (`examples.prepared_inputs`).
        targets: their labels per head (`examples.as_targets`), or None.
        out_dir: the export folder.
        saved_model: the SavedModel folder to check, or None.
        tflite: quantisation -> `.tflite` path, for each file to check.
        work: a temporary folder.
        resize: the image resize policy of `serving_default`.
        max_accuracy_drop, batch_size, timeout: see `tfl.export.export_model`.

    Raises:
        ExportError: a worker process failed (the artefact did not run without tfl).
    """
    report["parity"] = {}
    report["examples"] = length(prepared)
    check = _Check(
        model=model,
        spec=spec,
        outputs=outputs,
        targets=targets,
        work=work,
        batch_size=batch_size,
        timeout=timeout,
        max_accuracy_drop=max_accuracy_drop,
        parity=report["parity"],
    )
    reference = check.keras_outputs(model, prepared)
    keras_quality = _quality(reference, reference, outputs, targets)
    report["keras"] = {
        k: {m: v for m, v in q.items() if m in ("keras_accuracy", "keras_mae")}
        for k, q in keras_quality.items()
    }
    path = report["files"].get("keras", {}).get("path")
    if path:
        reloaded = keras.saving.load_model(os.path.join(out_dir, path), safe_mode=True)
        check.judge("keras", "keras", check.keras_outputs(reloaded, prepared), reference)
        del reloaded
    npz = os.path.join(work, "prepared.npz")
    np.savez(npz, **prepared)
    if saved_model:
        _check_saved_model(check, report, saved_model, examples, prepared, npz, reference, resize)
    if tflite:
        _check_tflite(check, report, tflite, npz, reference)


def _outputs_of(got: dict, call: str) -> dict:
    """The worker's outputs of one call (`<call>::<output>` keys) under their output names."""
    return {k.split("::", 1)[1]: v for k, v in got.items() if k.startswith(call + "::")}


def _check_saved_model(
    check: _Check, report, saved_model, examples, prepared, npz, reference, resize
) -> None:
    """Both signatures in the worker (raw inputs as PNG files or strings), then the probes."""
    spec = check.spec
    raw_call, raw_inputs = _raw_call(spec, examples, prepared, check.work, resize)
    raw_reference = (
        reference if spec.kind == "text" else check.keras_outputs(check.model, raw_inputs)
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
        "batch_size": check.batch_size,
    }
    got, summary = _run_worker(job, check.work, "saved_model", check.timeout)
    report["worker_saved_model"] = summary
    for call, ref in (("serving_default", raw_reference), ("serving_preprocessed", reference)):
        mine = _outputs_of(got, call)
        check.judge(f"saved_model/{call}", "saved_model", mine, ref)
        if call == "serving_default":
            check.parity[f"saved_model/{call}"]["failures"].extend(
                _label_failures(f"saved_model/{call}", mine, check.outputs)
            )
    _report_probes(report, job, summary)


def _label_failures(name: str, got: dict, outputs: list[Output]) -> list[str]:
    """`top_k_labels` must name the classes of `top_k_indices` (first column)."""
    failures = []
    for out in outputs:
        if f"{out.prefix}top_k_labels" in got:
            names = np.asarray(out.labels, dtype=object)
            labels = [str(v) for v in got[f"{out.prefix}top_k_labels"][:, 0]]
            expected = names[got[f"{out.prefix}top_k_indices"][:, 0]].tolist()
            if labels != expected:
                failures.append(
                    f"{name}: {out.prefix}top_k_labels do not name {out.prefix}top_k_indices"
                )
    return failures


def _report_probes(report: dict, job: dict, summary: dict) -> None:
    """`probes` (each bad input and its error) and `probe_failures` (accepted bad inputs, a
    model that stopped answering, a worker that imported tfl or keras-hub)."""
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


def _check_tflite(check: _Check, report, tflite: dict, npz: str, reference: dict) -> None:
    """Each TFLite file's `serving_preprocessed` in the worker (LiteRT, no TensorFlow)."""
    job = {"mode": "tflite", "models": tflite, "inputs": npz, "batch_size": check.batch_size}
    got, summary = _run_worker(job, check.work, "tflite", check.timeout)
    report["worker_tflite"] = summary
    for q in tflite:
        mine = _outputs_of(got, q)
        ref = {
            k: v
            for k, v in reference.items()
            if k in mine or k.endswith(("probabilities", "values", "scores"))
        }
        check.judge(f"tflite_{q}", q if q in TOLERANCES else "reduced", mine, ref)
