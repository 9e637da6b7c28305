"""A distillation run: the teacher's run in, a student's run directory out (`tfl distill`).

A sibling of `tfl.run.Run` that reuses it: `Distillation.create(settings)` checks the
settings against the teacher (`tfl.distill.teacher`) before any work, then prepares the
student's run directory with `tfl.run.prepare` (config.yaml; re-running with the same
`output` and settings resumes, other settings are refused), loads the teacher's data with
`tfl.builders.load_data` (the same splits, the same data settings), loads the teacher and
builds the student (`tfl.distill.students`). The steps:

1. `fit()`: `keras.distillation.Distiller.fit` (`tfl.distill.losses`) on the training split,
   validated on the validation split, with the run layer's callbacks
   (`tfl.callbacks.standard_callbacks`: history.csv, TensorBoard, early stopping, a
   BackupAndRestore that resumes a killed distillation), `best.keras` holding the student.
2. `finish()`: `tfl.run.Run.finish` on the student: evaluation on the test split,
   `model.keras`, `evaluation.json`, `history.png`, `metrics.json`, `report.md`; plus
   `distill.json` (the settings, the student, teacher and student side by side).
3. `compare()`: teacher and student exported to int8 TFLite and measured side by side
   (`tfl.distill.compare`).

The student's run directory is an ordinary run directory: `tfl evaluate`, `tfl predict` and
`tfl export` take it. `distill(teacher_dir, ...)` runs all of it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

import keras

from tfl import builders
from tfl import config as config_lib
from tfl import run as run_lib
from tfl.distill import losses, students
from tfl.distill.settings import DistillSettings, StudentSpec, check
from tfl.distill.teacher import Teacher
from tfl.tasks import Task

DISTILL_FILE = "distill.json"
# Peak learning rates of "auto" (warm-up for one epoch, then cosine decay to 0), the head 10x
# (`tfl.optimizers.with_lr_multipliers`) where the base starts from pretrained or teacher
# weights. On the default image run, a MobileNetV2 student cut after stage3 reached 0.87
# test accuracy after 5 epochs at 1e-4, 0.96 after 10 at 3e-4 and 0.97 at 1e-3 (one seed).
AUTO_LEARNING_RATES = {"image": 1e-3, "text": 1e-4, "scratch": 1e-3}
HEAD_LR_MULTIPLIER = 10.0


@dataclasses.dataclass
class Distillation:
    """One distillation: the settings, the teacher, the student's `tfl.run.Run`.

    Attributes:
        settings: the checked `DistillSettings`.
        teacher: the `Teacher` (its model is `teacher.run.model`).
        spec: the student (`shallow:<depth>` or a base name).
        run: the student's `tfl.run.Run` (its `model` is the student task model).
        comparison: after `compare()`, the side-by-side report.
        budget: what the budget search measured (`tfl.distill.budget`), if it ran.
    """

    settings: DistillSettings
    teacher: Teacher
    spec: StudentSpec
    run: run_lib.Run
    comparison: dict | None = None
    budget: list | None = None

    @classmethod
    def create(cls, settings: DistillSettings) -> Distillation:
        """Check the settings (before any work), prepare the run directory, load the data and
        the teacher, build the student.

        Raises:
            tfl.config.ConfigError: a bad setting, a student the teacher cannot have, or an
                existing `output` holding a distillation with other settings.
            FileNotFoundError: the teacher is not a finished run directory.
        """
        started = time.time()
        settings = check(settings)
        teacher = Teacher.open(settings.teacher)
        spec = teacher.check_student(settings.spec)
        output = settings.output or config_lib.run_dir(teacher.student_config(spec))
        settings = dataclasses.replace(settings, output=output)
        recorded, budget = _recorded_student(settings)
        if recorded is not None:
            spec = recorded  # a resumed run keeps the student it chose
        elif settings.budget_mb is not None or settings.budget_ms is not None:
            from tfl.distill.budget import choose_depth

            spec, budget = choose_depth(teacher, settings)
        config = teacher.student_config(spec, settings.student_weights, output)
        config, run_dir, strategy = run_lib.prepare(config)
        _write_settings(run_dir, settings, spec, budget)
        data = builders.load_data(config, strategy, run_dir)
        _check_labels(teacher, data)
        if settings.seed is not None:  # the student's own seed (the data keeps the teacher's)
            keras.utils.set_random_seed(settings.seed)
        with strategy.scope():
            student = students.build_student(spec, teacher.run.model, config, data)
        task = Task.from_config(config)
        run = run_lib.Run(config, run_dir, strategy, task, data, student, [], started=started)
        return cls(settings, teacher, spec, run, budget=budget)

    @property
    def run_dir(self) -> str:
        return self.run.run_dir

    def fit(self, verbose: Any = "auto") -> Distillation:
        """Distil: `Distiller.fit` for `settings.epochs` (see the module docstring)."""
        from tfl.callbacks import restore_checkpoint_best
        from tfl.fitting import PhaseHistory
        from tfl.fitting.history import PhaseLogs

        run = self.run
        train, validation = _token_splits(run)
        steps = _steps(train)
        with run.strategy.scope():
            distiller = losses.make_distiller(
                self.teacher.run.model,
                run.model,
                temperature=self.settings.temperature,
                alpha=self.settings.alpha,
                teacher_kind=self.teacher.output_kind,
                student_kind=run.model.head.output_kind,
            )
            losses.compile_distiller(distiller, self._optimizer(steps))
        record = PhaseHistory()
        callbacks = [PhaseLogs(0, record), *self._callbacks(validation is not None)]
        restore_checkpoint_best(callbacks, os.path.join(run.run_dir, "history.csv"))
        distiller.fit(
            train,
            validation_data=validation,
            epochs=self.settings.epochs,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # tfl.data shuffles the training split itself
        )
        run.history = _history(run.run_dir, record)
        return self

    def learning_rate(self) -> float:
        """The peak learning rate: the setting, or `AUTO_LEARNING_RATES` for this student."""
        if self.settings.learning_rate != "auto":
            return float(self.settings.learning_rate)
        if self.run.config.model.weights == "none" and self.spec.kind != "shallow":
            return AUTO_LEARNING_RATES["scratch"]
        return AUTO_LEARNING_RATES["text" if builders.is_text(self.run.config) else "image"]

    def _optimizer(self, steps: int | None):
        from tfl.lr_schedules import WarmupDecay
        from tfl.optimizers import with_lr_multipliers

        peak = self.learning_rate()
        if steps:
            total = steps * self.settings.epochs
            # Warm up for one epoch (a tenth of the run when it has fewer than 3 epochs).
            warmup = steps if self.settings.epochs >= 3 else total // 10
            peak = WarmupDecay(peak, total_steps=total, warmup_steps=warmup)
        multipliers = None
        if self.run.config.model.weights != "none" or self.spec.kind == "shallow":
            multipliers = {"head": HEAD_LR_MULTIPLIER}
        optimizer = keras.optimizers.Adam(peak)
        return with_lr_multipliers(optimizer, self.run.model, multipliers=multipliers)

    def _callbacks(self, has_validation: bool) -> list:
        from tfl.callbacks import standard_callbacks
        from tfl.distill.checkpoint import StudentCheckpoint

        loss = "student_loss" if self.settings.alpha > 0 else "loss"
        monitor = f"val_{loss}" if has_validation else loss
        patience = self.run.config.train.early_stopping_patience
        callbacks = standard_callbacks(
            self.run.run_dir,
            monitor=monitor,
            patience=patience or 1,
            early_stopping=patience is not None,
            checkpoint=False,
            reduce_lr=False,  # the learning rate follows its warm-up + cosine schedule
        )
        best = os.path.join(self.run.run_dir, "best.keras")
        callbacks.append(StudentCheckpoint(self.run.model, best, monitor=monitor, mode="min"))
        return callbacks

    def finish(self) -> Distillation:
        """Evaluate the student on the test split and write its run directory."""
        run = self.run
        run.notes.extend(self.notes())
        # Compiled, its optimizer built: model.keras reloads ready to train further (an
        # unbuilt optimizer would be saved without its slots, and Keras warns on loading).
        run.model.compile()
        run.model.optimizer.build(run.model.trainable_variables)
        run.finish()
        _write_settings(run.run_dir, self.settings, self.spec, self.budget, self.results())
        self._write_report()
        return self

    def _write_report(self) -> None:
        """report.md again, with the distillation's settings instead of the teacher's `train:`
        section (`Run.finish` wrote the teacher's run configuration)."""
        from tfl.evaluate import write_report

        run, config = self.run, config_lib.to_dict(self.run.config)
        settings = {**self.settings.recorded(), "student": str(self.spec)}
        settings["teacher"] = os.path.abspath(settings["teacher"])
        write_report(
            run.run_dir,
            title=f"distillation: {run.config.name}",
            config={"distill": settings, **{k: config[k] for k in ("data", "model", "evaluate")}},
            metrics=run.metrics or None,
            history=os.path.join(run.run_dir, "history.csv"),
            phases=run.history.phases,
            data_info=run.data.info,
            notes=[*run.notes, f"Total time: {run.seconds:.0f} s."],
        )

    def notes(self) -> list[str]:
        """The report's lines about the distillation."""
        s = self.settings
        teacher = self.teacher.run
        return [
            f"Distilled from {os.path.abspath(s.teacher)} ({teacher.config.model.base}, "
            f"{students.count_params(teacher.model):,} parameters) into student `{self.spec}` "
            f"({students.count_params(self.run.model):,} parameters) with "
            "keras.distillation.Distiller + LogitsDistillation: temperature "
            f"{s.temperature:g}, alpha {s.alpha:g} (weight of the true labels; 1 = no teacher), "
            f"{s.epochs} epochs, peak learning rate {self.learning_rate():g}.",
            "config.yaml holds the teacher's data and task settings (the same splits; its "
            "train: section is the teacher's); the distillation's settings are in distill.json.",
        ]

    def results(self) -> dict:
        """Teacher and student side by side: parameters and test metrics."""
        teacher_eval = os.path.join(self.teacher.run.run_dir, "evaluation.json")
        teacher = {"parameters": students.count_params(self.teacher.run.model)}
        if os.path.exists(teacher_eval):
            with open(teacher_eval) as f:
                metrics = json.load(f)
            teacher.update(accuracy=metrics.get("accuracy"), ece=metrics.get("ece"))
        metrics = self.run.metrics or {}
        student = {
            "parameters": students.count_params(self.run.model),
            "accuracy": metrics.get("accuracy"),
            "ece": metrics.get("ece"),
        }
        return {"teacher": teacher, "student": student, "evaluated_on": self.run.evaluated_on}

    def compare(self, **kwargs) -> dict:
        """Teacher and student exported to int8 TFLite, measured side by side
        (`tfl.distill.compare.compare_runs`); writes `comparison.json` and `comparison.md`."""
        from tfl.distill.compare import compare_runs

        self.comparison = compare_runs(self.teacher.run.run_dir, self.run_dir, **kwargs)
        return self.comparison


def distill(teacher: str, verbose: Any = "auto", **settings) -> Distillation:
    """Distil the finished run in `teacher` into a smaller student (`tfl distill`).

    Args:
        teacher: a run directory written by `tfl train`.
        verbose: Keras' progress bars (`"auto"`, 0, 1, 2).
        **settings: the other fields of `DistillSettings` (`student`, `temperature`,
            `alpha`, `epochs`, `learning_rate`, `seed`, `output`, `budget_mb`, `budget_ms`,
            `compare`, `student_weights`).

    Returns:
        The finished `Distillation`: `run_dir`, `run.metrics` (the student's test metrics),
        `results()`, and `comparison` when `compare` is on.

    Example:
        None that runs in a docstring (it trains); with a run in runs/digits:

            d = tfl.distill.distill("runs/digits", student="shallow:stage3", epochs=10)
            print(d.run.metrics["accuracy"], d.comparison["student"]["int8_bytes"])
    """
    job = Distillation.create(DistillSettings(teacher, **settings)).fit(verbose).finish()
    if job.settings.compare:
        job.compare()
    return job


# === Helpers ===


def _recorded_student(settings: DistillSettings) -> tuple[StudentSpec | None, list | None]:
    """The student (and budget probes) of a distillation already in `settings.output` (None
    if there is none); a `ConfigError` if it ran with other settings."""
    from tfl.distill.settings import parse_student

    path = os.path.join(settings.output, DISTILL_FILE)
    if not os.path.exists(path):
        return None, None
    with open(path) as f:
        saved = json.load(f)
    previous = saved.get("settings", {})
    now = settings.recorded()
    previous["teacher"] = os.path.abspath(previous.get("teacher", ""))
    now["teacher"] = os.path.abspath(now["teacher"])
    changed = sorted(k for k in set(previous) | set(now) if previous.get(k) != now.get(k))
    if changed:
        raise config_lib.ConfigError(
            "--output",
            f"{settings.output} holds a distillation with other settings ({', '.join(changed)} "
            "differ), so it cannot be resumed with these",
            f"Use a new --output (or none), or re-run with that distillation's settings ({path}).",
        )
    return parse_student(saved["student"]), (saved.get("budget") or {}).get("probes")


def _write_settings(run_dir: str, settings, spec: StudentSpec, budget=None, results=None):
    recorded = settings.recorded()
    recorded["teacher"] = os.path.abspath(recorded["teacher"])
    content = {"settings": recorded, "student": str(spec)}
    if settings.budget_mb is not None or settings.budget_ms is not None:
        content["budget"] = {"mb": settings.budget_mb, "ms": settings.budget_ms, "probes": budget}
    if results is not None:
        content["results"] = results
    tmp = os.path.join(run_dir, DISTILL_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(content, f, indent=2, default=float)
    os.replace(tmp, os.path.join(run_dir, DISTILL_FILE))


def _check_labels(teacher: Teacher, data) -> None:
    if list(teacher.run.labels.names) != list(data.labels.names):
        raise ValueError(
            f"The teacher's classes ({teacher.run.run_dir}/labels.json) are not the classes of "
            "its data as read now; the data changed since the teacher was trained. Train the "
            "teacher again on the current data."
        )


def _token_splits(run: run_lib.Run):
    """Train and validation splits as the Distiller reads them: a text run's strings through
    the teacher's preprocessor (a keras-hub task does this inside its own `fit`)."""
    data = run.data
    preprocessor = getattr(run.model, "preprocessor", None)
    if preprocessor is None:
        return data.train, data.validation

    def tokens(x, y):
        return preprocessor(x), y

    def mapped(ds):
        return None if ds is None else ds.map(tokens, num_parallel_calls=-1).prefetch(-1)

    return mapped(data.train), mapped(data.validation)


def _steps(dataset) -> int | None:
    steps = int(dataset.cardinality()) if dataset is not None else -1
    return steps if steps > 0 and not math.isinf(steps) else None


def _history(run_dir: str, record):
    """The whole distillation's history (epochs before a restart included), one phase."""
    from tfl.evaluate.history import load_history
    from tfl.fitting import PhaseHistory

    path = os.path.join(run_dir, "history.csv")
    history = PhaseHistory()
    if os.path.exists(path):
        epochs, columns, _ = load_history(path)
        for i, epoch in enumerate(epochs):
            history.add_epoch(epoch, {k: float(v[i]) for k, v in columns.items() if k != "epoch"})
    else:
        history = record
    if history.epoch:
        history.phases = [
            {"name": "distill", "start_epoch": 0, "end_epoch": max(history.epoch) + 1}
        ]
    return history


__all__ = ["AUTO_LEARNING_RATES", "DISTILL_FILE", "Distillation", "distill"]
