"""What a run does between training and its files: calibration, TTA, LoRA, the model section.

After `fit_phases` (with `train.wise` the weights are already the WiSE-FT blend, with
`train.ema` the moving average), `tfl.run.Run.finish` calls these steps:

1. `calibrate(run)` (`evaluate.calibrate`): fits the temperature of each softmax head on the
   validation split (`tfl.calibration`); the saved model carries it.
2. `evaluated_model(run)` (`evaluate.tta`): the model the test split is scored with, with
   test-time augmentation (`tfl.tta.with_tta`) for image runs.
3. `evaluate(run, split)`: the evaluation split scored with that model, and at
   temperature 1 for the before/after table and the two reliability diagrams
   (`reliability_uncalibrated.png`, `reliability_calibrated.png`).
4. `prepare_to_save(run)`: a LoRA run's model is saved merged (Keras writes W + A·B): its
   base is frozen and its optimizer renewed, so the file reloads without the adapters'
   optimizer state; `merge_check` compares the reloaded file with the model in memory.
5. `model_section(run)`: the "Model" section of `report.md`: which checkpoint is which, the
   blend table, the temperature and ECE before/after, each phase's trainable parameters and
   step time.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

UNCALIBRATED_PNG = "reliability_uncalibrated.png"
CALIBRATED_PNG = "reliability_calibrated.png"


def calibrate(run) -> dict | None:
    """Fit and set the temperature(s) on the validation split (`evaluate.calibrate`).

    Returns the `tfl.calibration.calibrate` result, `{}` for a model without a softmax head,
    or None when calibration is off; without a validation split, a note says it was not
    done.
    """
    from tfl import calibration

    if not run.config.evaluate.calibrate:
        return None
    if run.data.validation is None:
        run.notes.append("Not calibrated: the data has no validation split to fit it on.")
        return None
    with run.strategy.scope():
        return calibration.calibrate(run.model, run.data.validation)


def evaluated_model(run, model=None):
    """The model the evaluation split is scored with: `model` (default the run's), with
    test-time augmentation when `evaluate.tta` names transforms."""
    from tfl.tta import with_tta

    model = run.model if model is None else model
    return with_tta(model, run.config.evaluate.tta) if run.config.evaluate.tta else model


def evaluate(run, split) -> tuple[dict, dict | None]:
    """Score `split` with the run's model (calibrated, with TTA if asked).

    Returns `(metrics, calibration_table)`: the metrics `evaluation.json` holds (as
    `tfl.tasks.evaluate_task` gives them) and, when the run was calibrated, the split's NLL /
    ECE / accuracy at temperature 1 and at the fitted one (`{output: {"before", "after"}}`),
    with the two reliability diagrams of a one-head model. One pass over `split` for a
    one-head model without TTA (the uncalibrated probabilities are the calibrated ones
    rescaled, `tfl.calibration.rescale`); otherwise a second pass at temperature 1.
    """
    from tfl.tasks import evaluate_task

    labels, top_k = run.data.labels, run.config.evaluate.top_k
    calibrated = run.calibration or {}
    if list(calibrated) == [None] and not run.config.evaluate.tta:
        return _one_pass(run, split, calibrated[None]["temperature"])
    metrics = evaluate_task(run.task, evaluated_model(run), split, labels, top_k)
    if not calibrated:
        return metrics, None
    return metrics, _second_pass(run, split, calibrated, metrics)


def _one_pass(run, split, temperature: float) -> tuple[dict, dict]:
    from tfl.calibration import predict_with_labels, rescale
    from tfl.evaluate import classification_metrics

    labels, top_k = run.data.labels, (run.config.evaluate.top_k,)
    probs, y = predict_with_labels(run.model, split)
    after = classification_metrics(y, probs, labels, top_k)
    after["outputs"] = "probabilities"
    before = classification_metrics(y, rescale(probs, 1.0 / temperature), labels, top_k)
    return after, _table(run, {None: None}, before, after)


def _second_pass(run, split, calibrated: dict, after: dict) -> dict:
    from tfl import calibration
    from tfl.tasks import evaluate_task

    temperatures = {name: r["temperature"] for name, r in calibrated.items()}
    calibration.set_temperature(run.model, dict.fromkeys(temperatures, 1.0))
    try:
        before = evaluate_task(
            run.task, evaluated_model(run), split, run.data.labels, run.config.evaluate.top_k
        )
    finally:
        calibration.set_temperature(run.model, temperatures)
    return _table(run, calibrated, before, after)


def _table(run, calibrated: dict, before: dict, after: dict) -> dict:
    """`{output: {"before": ..., "after": ...}}` and the reliability diagrams (one head)."""
    from tfl.evaluate import plot_reliability

    def pick(metrics, name):
        m = metrics if name is None else metrics[name]
        return {"nll": m["log_loss"], "ece": m["ece"], "accuracy": m["accuracy"]}

    table = {
        name: {"before": pick(before, name), "after": pick(after, name)} for name in calibrated
    }
    if None in calibrated:
        plot_reliability(before["reliability"], os.path.join(run.run_dir, UNCALIBRATED_PNG))
        plot_reliability(after["reliability"], os.path.join(run.run_dir, CALIBRATED_PNG))
    return table


def prepare_to_save(run) -> Any:
    """For a LoRA run: freeze the base and renew the optimizer (see the module docstring);
    returns the examples `merge_check` compares on (None for other runs)."""
    import tfl
    from tfl.peft import has_lora

    if not has_lora(run.model):
        return None
    with run.strategy.scope():
        tfl.freeze(run.model)
        run.model.compile(jit_compile=run.model.jit_compile)
        run.model.optimizer.build(run.model.trainable_variables)
    split = run.data.validation if run.data.validation is not None else run.data.test
    return None if split is None else next(iter(split.take(1)))[0]


def merge_check(run, examples) -> float | None:
    """Max |difference| between the LoRA model in memory and `model.keras` (merged kernels)
    on `examples`; also a note for the report."""
    import keras

    from tfl.peft import merged_max_difference

    if examples is None:
        return None
    reloaded = keras.saving.load_model(os.path.join(run.run_dir, "model.keras"))
    difference = merged_max_difference(run.model, reloaded, examples)
    run.notes.append(
        f"LoRA merged into model.keras (W + A·B, no adapters left): max |difference| from "
        f"the model with adapters {difference:.2g} on {len(keras.tree.flatten(examples)[0])} "
        "validation examples."
    )
    return difference


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4f}"


def _checkpoint_lines(run) -> list[str]:
    t = run.config.train
    steps = ["the weights at the end of training"]
    if t.ema is not None:
        steps[0] = f"the moving average of the weights (momentum {t.ema:g})"
    wise = getattr(run.history, "wise", None)
    if wise:
        steps.append(f"blended with the probe at α = {wise['alpha']:.2f} (WiSE-FT)")
    if run.calibration:
        temps = ", ".join(
            f"{'' if n is None else n + ' '}T = {r['temperature']:.3f}"
            for n, r in run.calibration.items()
        )
        steps.append(f"temperature-scaled on the validation split ({temps})")
    if t.peft:
        steps.append(f"LoRA rank {t.lora_rank} merged into the kernels")
    return [
        f"- `model.keras` (what `tfl evaluate`, `predict` and `export` use): {'; '.join(steps)}.",
        "- `best.keras`: the epoch with the best monitored validation metric during training, "
        "as it trained (no blend, no temperature): `--checkpoint best`.",
        "",
    ]


def _phase_lines(run) -> list[str]:
    rows = [p for p in run.history.phases if p.get("trainable_params") is not None]
    if not rows:
        return []
    lines = ["| phase | trainable parameters | seconds per step |", "|---|---|---|"]
    for p in rows:
        step = p.get("seconds_per_step")
        step = "" if step is None else f"{step:.3f}"
        lines.append(f"| {p['name']} | {p['trainable_params']:,} | {step} |")
    return lines + [""]


def _calibration_lines(run) -> list[str]:
    lines = []
    for name, result in (run.calibration or {}).items():
        label = "" if name is None else f" (`{name}`)"
        test = (run.calibration_test or {}).get(name)
        lines += [
            f"Temperature{label} {result['temperature']:.3f} (fitted on the validation split):",
            "",
            "| split | NLL before | NLL after | ECE before | ECE after |",
            "|---|---|---|---|---|",
            f"| validation | {_fmt(result['before']['nll'])} | {_fmt(result['after']['nll'])} "
            f"| {_fmt(result['before']['ece'])} | {_fmt(result['after']['ece'])} |",
        ]
        if test:
            lines.append(
                f"| {run.evaluated_on} | {_fmt(test['before']['nll'])} | "
                f"{_fmt(test['after']['nll'])} | {_fmt(test['before']['ece'])} | "
                f"{_fmt(test['after']['ece'])} |"
            )
        lines.append("")
    return lines


def model_section(run) -> list[str]:
    """The "Model" section of `report.md` (see the module docstring)."""
    from tfl.wise import describe

    lines = ["## Model", ""] + _checkpoint_lines(run)
    lines += describe(getattr(run.history, "wise", None))
    if getattr(run.history, "wise", None):
        lines.append("")
    lines += _calibration_lines(run)
    if run.config.evaluate.tta:
        from tfl.tta import tta_views

        n = len(tta_views(np.zeros((1, 8, 8, 3), "float32"), run.config.evaluate.tta))
        lines += [
            f"Test-time augmentation: {', '.join(run.config.evaluate.tta)} ({n} views per "
            "image, probabilities averaged) in this evaluation; the saved model predicts one "
            "view (`tfl predict --tta`).",
            "",
        ]
    return lines + _phase_lines(run)


def append_section(run, lines: list[str]) -> None:
    """Append `lines` to the run's `report.md`."""
    path = os.path.join(run.run_dir, "report.md")
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n" + "\n".join(lines).rstrip("\n") + "\n")


def summary(run) -> dict:
    """What `metrics.json` adds: the WiSE-FT blend (`alpha`, the table), the calibration
    (`temperature`, NLL / ECE / accuracy before and after on the validation and evaluated
    splits; per output for a multi-task model) and the TTA transforms."""
    calibration = None
    if run.calibration:
        calibration = {}
        for name, fitted in run.calibration.items():
            entry = {
                "temperature": fitted["temperature"],
                "validation": {"before": fitted["before"], "after": fitted["after"]},
            }
            if (run.calibration_test or {}).get(name):
                entry[run.evaluated_on] = run.calibration_test[name]
            calibration[name] = entry
        calibration = calibration.get(None, calibration)  # one head: no level per output
    return {
        "wise": getattr(run.history, "wise", None),
        "calibration": calibration,
        "tta": list(run.config.evaluate.tta),
    }


__all__ = [
    "CALIBRATED_PNG",
    "UNCALIBRATED_PNG",
    "append_section",
    "calibrate",
    "evaluated_model",
    "merge_check",
    "model_section",
    "prepare_to_save",
    "evaluate",
    "summary",
]
