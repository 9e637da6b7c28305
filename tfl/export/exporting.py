"""Export and check: `export_model` (a model in memory) and `export_run` (a finished run).

`export_model` is a sequence of steps over one `_Export`: the report is started, the labels
and the `.keras` file written, then the SavedModel (also the source of TFLite), the TFLite
files, the parity check (`tfl.export.parity`) and the report (`tfl.export.report`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import keras

from tfl.export.examples import (
    as_targets,
    calibration_examples,
    collect_examples,
    prepared_inputs,
)
from tfl.export.formats import FORMATS, QUANTIZATIONS, ExportError, check_choice
from tfl.export.parity import check_parity
from tfl.export.report import save_signatures, show_signatures, write_report
from tfl.export.signatures import Inputs, Output, describe_inputs, describe_outputs
from tfl.export.writers import export_saved_model, export_tflite, save_keras


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, f))
            for root, _, files in os.walk(path)
            for f in files
        )
    return os.path.getsize(path)


@dataclasses.dataclass
class _Export:
    """One export: the model, where its files go, what it takes and gives, the report so far."""

    model: keras.Model
    out_dir: str
    formats: list[str]
    quantizations: list[str]
    spec: Inputs
    outputs: list[Output]
    report: dict
    resize: str
    text_pairs: bool
    top_k: int
    batch_size: int
    work: str = ""  # a temporary folder, removed at the end

    def record(self, name: str, path: str, seconds: float) -> None:
        """Lists a written artefact in the report: its path, size and seconds."""
        self.report["files"][name] = {
            "path": os.path.relpath(path, self.out_dir),
            "bytes": _size(path),
        }
        self.report["seconds"][name] = round(seconds, 2)


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
        max_accuracy_drop: the largest accuracy drop a float16 / int8 file may show (at
            least one example of the check: accuracy moves in steps of 1/examples).
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
    formats = check_choice("formats", formats, FORMATS)
    quantizations = check_choice("quantizations", quantizations, QUANTIZATIONS)
    if check and examples is None:
        raise ValueError(
            "Received check=True without examples; pass validation inputs (and targets), or "
            "check=False to write the files unchecked."
        )
    if not 0 <= max_accuracy_drop < 1:
        raise ValueError(f"Received max_accuracy_drop={max_accuracy_drop!r}; expected [0, 1).")
    outputs = describe_outputs(model, labels)
    spec = describe_inputs(model, text_pairs)
    os.makedirs(out_dir, exist_ok=True)
    started = time.perf_counter()
    job = _Export(
        model=model,
        out_dir=out_dir,
        formats=formats,
        quantizations=quantizations,
        spec=spec,
        outputs=outputs,
        report=_start_report(model, formats, quantizations, spec, outputs),
        resize=resize,
        text_pairs=text_pairs,
        top_k=top_k,
        batch_size=batch_size,
    )
    _write_labels(job)
    if "keras" in formats:
        t = time.perf_counter()
        job.record("keras", save_keras(model, os.path.join(out_dir, "model.keras")), 0)
        job.report["seconds"]["keras"] = round(time.perf_counter() - t, 2)
    job.work = tempfile.mkdtemp(prefix="tfl-export-")
    try:
        saved_model, show = _write_saved_model(job)
        prepared = None
        if check:
            prepared = prepared_inputs(model, spec, examples, batch_size)
        tflite = {}
        if "tflite" in formats:
            tflite = _write_tflite(job, saved_model, examples, representative)
        if check:
            _check(
                job, saved_model, tflite, examples, prepared, targets, max_accuracy_drop, timeout
            )
        if show is not None:
            job.report["signatures"] = save_signatures(show, out_dir)
    finally:
        shutil.rmtree(job.work, ignore_errors=True)
    return _finish(job.report, out_dir, started, check)


def _start_report(model, formats, quantizations, spec: Inputs, outputs: list[Output]) -> dict:
    """The report's header: the model, what was asked for, its inputs and outputs."""
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
    return report


def _write_labels(job: _Export) -> None:
    """`labels.txt` (`labels_<head>.txt` per head of a multi-task model): one name a line."""
    for out in job.outputs:
        name = "labels.txt" if out.head is None else f"labels_{out.head}.txt"
        with open(os.path.join(job.out_dir, name), "w") as f:
            f.write("".join(f"{label}\n" for label in out.labels))


def _write_saved_model(job: _Export):
    """The SavedModel (in the work folder when only TFLite was asked for): its path, and the
    `saved_model_cli` process listing its signatures (None unless it is an artefact)."""
    saved_model = os.path.join(job.out_dir, "saved_model")
    show = None
    if "saved_model" in job.formats or "tflite" in job.formats:
        if "saved_model" not in job.formats:
            saved_model = os.path.join(job.work, "saved_model")
        t = time.perf_counter()
        outputs = job.outputs
        export_saved_model(
            job.model,
            saved_model,
            labels=[o.labels for o in outputs][0]
            if outputs[0].head is None
            else {o.head: o.labels for o in outputs},
            resize=job.resize,
            text_pairs=job.text_pairs,
            top_k=job.top_k,
        )
        if "saved_model" in job.formats:
            job.record("saved_model", saved_model, time.perf_counter() - t)
            show = show_signatures(saved_model)
    return saved_model, show


def _write_tflite(job: _Export, saved_model: str, examples, representative) -> dict[str, str]:
    """One `.tflite` file per quantisation (int8 calibrated on `representative`, default
    `examples`): quantisation -> path."""
    calibration = None
    if "int8" in job.quantizations:
        source = examples if representative is None else representative
        if source is None:
            raise ValueError(
                "Received quantization 'int8' without representative (or examples): "
                "full-integer quantisation calibrates on about 100 training examples."
            )
        calibration = calibration_examples(
            prepared_inputs(job.model, job.spec, source, job.batch_size), 100
        )
    tflite = {}
    for q in job.quantizations:
        t = time.perf_counter()
        path = os.path.join(job.out_dir, f"model_{q}.tflite")
        export_tflite(saved_model, path, q, calibration if q == "int8" else None)
        tflite[q] = path
        job.record(f"tflite_{q}", path, time.perf_counter() - t)
    return tflite


def _check(
    job: _Export, saved_model, tflite, examples, prepared, targets, max_accuracy_drop, timeout
):
    """The parity check; a worker that failed (`ExportError`) becomes a failure in the report."""
    try:
        check_parity(
            job.report,
            job.model,
            job.spec,
            job.outputs,
            examples,
            prepared,
            as_targets(targets, job.outputs),
            job.out_dir,
            saved_model if "saved_model" in job.formats else None,
            tflite,
            job.work,
            resize=job.resize,
            max_accuracy_drop=max_accuracy_drop,
            batch_size=job.batch_size,
            timeout=timeout,
        )
    except ExportError as error:  # keep what was measured; report, then raise
        job.report["probe_failures"] = [*job.report.get("probe_failures", []), str(error)]


def _finish(report: dict, out_dir: str, started: float, check: bool) -> dict:
    """Totals, failures and the verdict; writes the report; raises on any failure."""
    report["seconds"]["total"] = round(time.perf_counter() - started, 1)
    failures = [f for entry in report.get("parity", {}).values() for f in entry["failures"]]
    failures += report.get("probe_failures", [])
    report["failures"] = failures
    report["passed"] = not failures if check else None
    write_report(out_dir, report)
    if failures:
        raise ExportError(
            f"{len(failures)} parity failure(s) (report: {os.path.join(out_dir, 'export.md')}): "
            + "; ".join(failures)
        )
    return report


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

    The run's data is loaded again as in training (`tfl.builders.load_data`), so the check uses
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
    # A run directory is the run layer's: opened with its SavedRun, data loaded as in training.
    from tfl.builders import load_data
    from tfl.saved_run import SavedRun

    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise ValueError(f"Received examples={examples!r}; expected an integer >= 1.")
    if not 0 <= max_accuracy_drop < 1:
        raise ValueError(f"Received max_accuracy_drop={max_accuracy_drop!r}; expected [0, 1).")
    check_choice("formats", formats, FORMATS)
    check_choice("quantizations", quantizations, QUANTIZATIONS)
    run = SavedRun.open(run_dir, checkpoint)
    config = run.config
    names = run.class_names
    labels = names[None] if None in names else dict(names)
    x = y = representative = None
    if check or "int8" in quantizations:
        data = load_data(config)
        split = data.validation if data.validation is not None else data.test
        if split is None:
            raise ValueError(
                f"{run_dir}: the run has no validation or test split to check the export on; "
                "pass --no-check to export unchecked."
            )
        x, y = collect_examples(split, examples)
        if "tflite" in formats and "int8" in quantizations and data.train is not None:
            representative, _ = collect_examples(data.train, calibration)
    pairs = run.text_pairs
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
