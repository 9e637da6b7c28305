"""Teacher and student side by side, as they would ship: int8 TFLite on this CPU.

`compare_runs(teacher_dir, student_dir)` exports each run with `tfl.export.export_run`
(full-integer int8 TFLite, checked against its Keras model in a fresh process: the parity
report of `tfl export`), then runs both int8 files with the LiteRT interpreter on the
runs' test split (`tfl.export.latency`) and writes `comparison.json` and `comparison.md` into
the student's run directory:

- size on disk: the int8 `.tflite` file, and the parameters;
- speed on this CPU: batch-1 latency (median and p90 over single examples) and throughput at
  batch 32 (examples per second, the best of three passes over the test split);
- quality on the test split: accuracy and ECE of the int8 file, and of the Keras model;
- parity: the int8 file's accuracy drop against its Keras model and whether the export check
  passed.

The student's export goes to `<student>/export` (what `tfl export` writes); the teacher's to
`<student>/comparison/teacher_export`. A run that already has an int8 export newer than its
model (`tfl export RUN_DIR`) is not exported again; the teacher's run directory is never
written.
"""

from __future__ import annotations

import json
import os

import numpy as np

from tfl.evaluate.report import markdown_table

COMPARISON_FILE, COMPARISON_REPORT = "comparison.json", "comparison.md"
QUANTIZATIONS = ("int8",)


def _export(run_dir: str, out_dir: str) -> dict:
    """The run's TFLite export (float32 and int8, parity checked); a failed check is kept in
    the report rather than raised."""
    from tfl.export import ExportError, export_run

    try:
        return export_run(run_dir, out_dir, formats=["tflite"], quantizations=list(QUANTIZATIONS))
    except ExportError:
        with open(os.path.join(out_dir, "export.json")) as f:
            return json.load(f)


def _reusable_export(run_dir: str) -> str | None:
    folder = os.path.join(run_dir, "export")
    report = os.path.join(folder, "export.json")
    files = [os.path.join(folder, f"model_{q}.tflite") for q in QUANTIZATIONS]
    if not all(os.path.exists(p) for p in [report, *files]):
        return None
    newer = os.path.getmtime(report) >= os.path.getmtime(os.path.join(run_dir, "model.keras"))
    return folder if newer else None


def _exported(role: str, run_dir: str, student_dir: str) -> tuple[str, dict]:
    """Where the run's int8 export is (reused when up to date, else written) and its report."""
    folder = _reusable_export(run_dir)
    if folder is not None:
        with open(os.path.join(folder, "export.json")) as f:
            return folder, json.load(f)
    parts = ("export",) if role == "student" else ("comparison", "teacher_export")
    folder = os.path.join(student_dir, *parts)
    return folder, _export(run_dir, folder)


def _test_split(saved):
    """`(x, y)` of the run's test split (else validation), as numpy."""
    from tfl.builders import load_data
    from tfl.export.examples import collect_examples

    data = load_data(saved.config)
    split = data.test if data.test is not None else data.validation
    return collect_examples(split, 10**9)


def _prepared(saved, x) -> dict:
    from tfl.export.examples import prepared_inputs
    from tfl.export.signatures import describe_inputs

    spec = describe_inputs(saved.model, saved.text_pairs)
    return prepared_inputs(saved.model, spec, tuple(x) if saved.text_pairs else x, 32)


def _measure(role: str, saved, export_dir: str, report: dict, x, y, timing: dict) -> dict:
    """One row: sizes, speed, test quality of the int8 file and the Keras model, parity."""
    from tfl.distill.students import count_params
    from tfl.evaluate import classification_metrics
    from tfl.export.latency import measure_tflite, run_tflite

    int8 = os.path.join(export_dir, "model_int8.tflite")
    inputs = _prepared(saved, x)
    probs = np.clip(run_tflite(int8, inputs)["probabilities"].astype(np.float64), 0, None)
    # int8 outputs are quantised (a softmax's rows sum to 1 +- a step): renormalise them.
    quantised = classification_metrics(y, probs / probs.sum(axis=1, keepdims=True))
    keras_metrics = _keras_metrics(saved, x, y)
    parity = report.get("parity", {}).get("tflite_int8", {})
    quality = next(iter(parity.get("quality", {}).values()), {})
    return {
        "role": role,
        "run_dir": os.path.abspath(saved.run_dir),
        "export_dir": os.path.abspath(export_dir),
        "parameters": count_params(saved.model),
        "int8_bytes": os.path.getsize(int8),
        **measure_tflite(int8, inputs, **timing),
        "int8_accuracy": quantised["accuracy"],
        "int8_ece": quantised["ece"],
        "keras_accuracy": keras_metrics["accuracy"],
        "keras_ece": keras_metrics["ece"],
        "parity_accuracy_drop": quality.get("accuracy_drop"),
        "parity_max_abs_diff": parity.get("max_abs_diff"),
        "parity_passed": parity.get("passed"),
    }


def _keras_metrics(saved, x, y) -> dict:
    """The Keras model's test metrics: its run's `evaluation.json`, else computed here."""
    from tfl.evaluate import classification_metrics
    from tfl.evaluate.metrics import predict_arrays, predict_probabilities

    path = os.path.join(saved.run_dir, "evaluation.json")
    if os.path.exists(path):
        with open(path) as f:
            metrics = json.load(f)
        if metrics.get("num_examples") == len(y):
            return metrics
    model = saved.model
    probs, _ = predict_probabilities(model, lambda: predict_arrays(model, x))
    return classification_metrics(y, probs)


def compare_runs(
    teacher_dir: str,
    student_dir: str,
    *,
    batch_size: int = 32,
    single: int = 64,
    repeats: int = 3,
) -> dict:
    """Export teacher and student to int8 TFLite and measure them side by side.

    Args:
        teacher_dir: the teacher's run directory.
        student_dir: the student's run directory (`tfl distill` wrote it); the comparison
            is written there.
        batch_size: batch of the throughput measurement.
        single: examples timed one at a time (batch-1 latency).
        repeats: throughput passes over the test split (the best counts).

    Returns:
        `{"teacher": row, "student": row, "ratios": ...}` (see the module docstring); also
        `comparison.json` and `comparison.md` in `student_dir`.
    """
    from tfl.saved_run import SavedRun

    runs = {"teacher": SavedRun.open(teacher_dir), "student": SavedRun.open(student_dir)}
    x, y = _test_split(runs["student"])
    timing = {"batch_size": batch_size, "single": single, "repeats": repeats}
    rows = {}
    for role, saved in runs.items():
        export_dir, report = _exported(role, saved.run_dir, student_dir)
        rows[role] = _measure(role, saved, export_dir, report, x, y, timing)
    teacher, student = rows["teacher"], rows["student"]
    result = {
        **rows,
        "examples": int(len(y)),
        "ratios": {
            "size": round(student["int8_bytes"] / teacher["int8_bytes"], 3),
            "batch1_speedup": round(teacher["batch1_ms_median"] / student["batch1_ms_median"], 2),
            "throughput_speedup": round(
                student["throughput_per_s"] / teacher["throughput_per_s"], 2
            ),
            "accuracy_kept": round(student["int8_accuracy"] / teacher["int8_accuracy"], 4),
        },
    }
    with open(os.path.join(student_dir, COMPARISON_FILE), "w") as f:
        json.dump(result, f, indent=2, default=float)
    with open(os.path.join(student_dir, COMPARISON_REPORT), "w") as f:
        f.write(format_comparison(result))
    return result


def format_comparison(result: dict) -> str:
    """`comparison.md`: one column per model, one row per measurement.

    Example:
    >>> from tfl.distill.compare import format_comparison
    >>> row = dict(parameters=10, int8_bytes=2e6, batch1_ms_median=2.0,
    ...            batch1_ms_p90=2.5, throughput_per_s=900.0, batch_size=32, int8_accuracy=0.9,
    ...            int8_ece=0.02, keras_accuracy=0.91, keras_ece=0.02, parity_accuracy_drop=0.01,
    ...            parity_passed=True)
    >>> result = {"teacher": row, "student": row, "examples": 100,
    ...           "ratios": {"size": 1.0, "batch1_speedup": 1.0, "throughput_speedup": 1.0,
    ...                      "accuracy_kept": 1.0}}
    >>> print(format_comparison(result).splitlines()[5])
    | int8 TFLite size | 2.00 MB | 2.00 MB | 1.00x |
    """
    t, s, r = result["teacher"], result["student"], result["ratios"]

    def both(fmt, key):
        return [fmt(t[key]), fmt(s[key])]

    def mb(v):
        return f"{v / 1e6:.2f} MB"

    def ratio(v, suffix="x"):
        return f"{v:.2f}{suffix}"

    def drop(v):
        return "n/a" if v is None else f"{v:+.4f}"

    rows = [
        ["parameters", *both(lambda v: f"{v:,}", "parameters"), ratio(s["parameters"] / t["parameters"])],
        ["int8 TFLite size", *both(mb, "int8_bytes"), ratio(r["size"])],
        ["batch-1 latency (median)", *both(lambda v: f"{v:.2f} ms", "batch1_ms_median"), f"{r['batch1_speedup']:.2f}x faster"],
        ["batch-1 latency (p90)", *both(lambda v: f"{v:.2f} ms", "batch1_ms_p90"), ""],
        [f"throughput (batch {t['batch_size']})", *both(lambda v: f"{v:,.0f}/s", "throughput_per_s"), f"{r['throughput_speedup']:.2f}x"],
        ["accuracy (int8)", *both(lambda v: f"{v:.4f}", "int8_accuracy"), f"{r['accuracy_kept']:.1%} kept"],
        ["ECE (int8)", *both(lambda v: f"{v:.4f}", "int8_ece"), ""],
        ["accuracy (Keras)", *both(lambda v: f"{v:.4f}", "keras_accuracy"), ""],
        ["ECE (Keras)", *both(lambda v: f"{v:.4f}", "keras_ece"), ""],
        ["int8 parity: accuracy drop vs Keras", *both(drop, "parity_accuracy_drop"), ""],
        ["int8 parity check", *both(lambda v: {True: "passed", False: "FAILED"}.get(v, "n/a"), "parity_passed"), ""],
    ]  # fmt: skip
    lines = ["# Teacher vs student", ""]
    lines += markdown_table(["", "teacher", "student", "student / teacher"], rows)
    lines += [
        "",
        f"On the test split ({result['examples']} examples); LiteRT on this machine's CPU. "
        "Latency: one example per call; throughput: the best of several passes at the batch "
        "size. Parity: `tfl export`'s check of each int8 file against its Keras model.",
        "",
    ]
    return "\n".join(lines)


__all__ = ["COMPARISON_FILE", "COMPARISON_REPORT", "compare_runs", "format_comparison"]
