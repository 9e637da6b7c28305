"""`--budget-mb` / `--budget-ms`: the deepest shallow student that fits, found by measuring.

The candidates are the teacher's shallow depths (`Teacher.depths()`, deepest first: BERT
layers kept, or the block group a CNN is cut after). Size and latency only grow with depth,
so a binary search over that list finds the deepest candidate that fits in about log2(n)
probes instead of n. A probe builds the candidate (weights do not change size or speed, so it
is not trained), exports it to int8 TFLite with `tfl.export.export_model` (calibrated on a
few training examples) and measures what the budget names: the file's size in MB (10^6
bytes) and its median batch-1 latency with the LiteRT interpreter on this CPU
(`tfl.export.latency.measure_tflite`). The search runs before the student's run directory is
created; its probes go into `distill.json`.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from tfl import builders
from tfl import config as config_lib
from tfl.distill.settings import SHALLOW, DistillSettings, StudentSpec

CALIBRATION_EXAMPLES = 16
LATENCY_EXAMPLES = 32


def probe(spec: StudentSpec, teacher, data, work: str) -> dict:
    """The int8 TFLite size (MB) and batch-1 latency (median ms) of the untrained `spec`."""
    from tfl.distill.students import build_student
    from tfl.export import export_model
    from tfl.export.examples import collect_examples, prepared_inputs
    from tfl.export.latency import measure_tflite
    from tfl.export.signatures import describe_inputs

    config = teacher.student_config(spec)
    student = build_student(spec, teacher.run.model, config, data)
    x, _ = collect_examples(data.train, max(CALIBRATION_EXAMPLES, LATENCY_EXAMPLES))
    pairs = teacher.run.text_pairs
    x = tuple(x) if pairs else x
    out = os.path.join(work, str(spec).replace(":", "_"))
    export_model(
        student,
        out,
        formats=["tflite"],
        quantizations=["int8"],
        check=False,
        representative=x,
        text_pairs=pairs,
    )
    path = os.path.join(out, "model_int8.tflite")
    inputs = prepared_inputs(student, describe_inputs(student, pairs), x, 32)
    timing = measure_tflite(path, inputs, single=LATENCY_EXAMPLES, repeats=1)
    return {
        "student": str(spec),
        "int8_mb": round(os.path.getsize(path) / 1e6, 3),
        "batch1_ms": timing["batch1_ms_median"],
    }


def fits(measured: dict, budget_mb: float | None, budget_ms: float | None) -> bool:
    """Whether a probe is within both budgets (None: no limit).

    Example:
    >>> from tfl.distill.budget import fits
    >>> fits({"int8_mb": 1.2, "batch1_ms": 3.0}, 2.0, None), fits({"int8_mb": 1.2, "batch1_ms": 3.0}, 2.0, 2.5)
    (True, False)
    """
    return (budget_mb is None or measured["int8_mb"] <= budget_mb) and (
        budget_ms is None or measured["batch1_ms"] <= budget_ms
    )


def search(candidates: list, fit) -> tuple[int | None, list[int]]:
    """Binary search for the first candidate (the deepest) for which `fit(i)` holds, given
    that it holds for every candidate after one that fits. Returns its index (None: none fits)
    and the indices probed, in order.

    Example:
    >>> from tfl.distill.budget import search
    >>> search(["stage4", "stage3", "stage2", "stage1", "stem"], lambda i: i >= 2)
    (2, [2, 0, 1])
    """
    low, high, found, probed = 0, len(candidates) - 1, None, []
    while low <= high:
        middle = (low + high) // 2
        probed.append(middle)
        if fit(middle):
            found, high = middle, middle - 1
        else:
            low = middle + 1
    return found, probed


def choose_depth(
    teacher, settings: DistillSettings, progress=print
) -> tuple[StudentSpec, list[dict]]:
    """The deepest shallow student of `teacher` within `settings.budget_mb` / `budget_ms`, and
    what each probe measured (in the order of depth, deepest first).

    Raises:
        tfl.config.ConfigError: not even the shallowest candidate fits (it names what that
            one measured).
    """
    candidates = [StudentSpec(SHALLOW, d) for d in teacher.depths()]
    data = builders.load_data(teacher.config)
    work = tempfile.mkdtemp(prefix="tfl-budget-")
    results: dict[int, dict] = {}

    def fit(i: int) -> bool:
        results[i] = probe(candidates[i], teacher, data, work)
        progress(
            f"Budget: {results[i]['student']}: int8 {results[i]['int8_mb']:.2f} MB, "
            f"{results[i]['batch1_ms']:.2f} ms at batch 1"
        )
        return fits(results[i], settings.budget_mb, settings.budget_ms)

    try:
        found, _ = search(candidates, fit)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    probes = [results[i] for i in sorted(results)]
    if found is None:
        smallest = results[len(candidates) - 1]
        flag = "--budget-mb" if settings.budget_mb is not None else "--budget-ms"
        raise config_lib.ConfigError(
            flag,
            f"no shallow student of this teacher fits: the smallest, {smallest['student']}, is "
            f"{smallest['int8_mb']:.2f} MB and {smallest['batch1_ms']:.2f} ms at batch 1 in "
            "int8 on this CPU",
            "Raise the budget, or name a smaller base with --student (e.g. mobilenet_v3_small).",
        )
    return candidates[found], probes


__all__ = ["choose_depth", "fits", "probe", "search"]
