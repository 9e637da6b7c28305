"""A training run, built once from a validated configuration: what `tfl train` runs.

`Run.create(config)` does all the building, once, in this order: validate the configuration,
set up the runtime (`tf.distribute` strategy, dtype policy), create the run directory with
`config.yaml` (or check that an existing one holds the same settings, to resume it), seed,
load the data, build the model on freshly loaded pretrained weights and make the phases.
The steps then work on the built objects:

1. `run.fit()`: `tfl.fit_phases` with the standard callbacks (best checkpoint, early
   stopping, CSV and TensorBoard logs, a backup: re-running with the same `output` resumes
   a killed run), after the learning-rate finder when `train.lr_find` is on.
2. `run.finish()`: evaluation on the test split (else validation) and the rest of the run
   directory: `history.csv`, `history.png`, `metrics.json`, `evaluation.json`,
   `evaluation_confusion.png`, `model.keras`, `best.keras`, `report.md`.

`train(config)` runs all three and returns the `Run`: its `run_dir`, `model`, `data`,
`history`, `metrics` and `summary()` (what `metrics.json` holds) are what the `tfl` command
prints. A recipe script reads top to bottom over the same object.

Example:
    None that runs in a docstring (it trains); see `recipes/image_classification.py`:

        run = Run.create(config)
        run.fit()
        run.finish()
        print(run.metrics["accuracy"])
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Any

import keras
import tensorflow as tf

from tfl import builders
from tfl import config as config_lib
from tfl.tasks import Task, evaluate_task, save_task_metrics


@dataclasses.dataclass
class Run:
    """A run's built objects and, after `fit` and `finish`, its results.

    Attributes:
        config: the validated configuration (`config.yaml` in `run_dir`).
        run_dir: where the run writes (a temporary folder on a non-chief worker).
        strategy: the `tf.distribute` strategy everything was built under.
        task: what the run predicts (`tfl.tasks.Task`).
        data: the `tfl.data.DataSplits`.
        model: the task model.
        phases: the fine-tuning plan (`tfl.Phase`s).
        notes: lines for the report (e.g. the learning-rate finder's choice).
        history: the `PhaseHistory` after `fit` (`history.wise`: the WiSE-FT blend).
        metrics: the test metrics after `finish` (per head for several outputs).
        calibration: the temperature(s) `finish` fitted on the validation split, with the
            validation NLL / ECE before and after (`tfl.calibration.calibrate`), or None.
        calibration_test: the evaluated split's NLL / ECE before and after calibration.
        started: when `create` began (`time.time()`).
        seconds: the run's wall time, set by `finish`.
    """

    config: config_lib.RunConfig
    run_dir: str
    strategy: tf.distribute.Strategy
    task: Task
    data: Any
    model: keras.Model
    phases: list
    notes: list[str] = dataclasses.field(default_factory=list)
    history: Any = None
    metrics: dict = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=time.time)
    seconds: float | None = None
    calibration: dict | None = None
    calibration_test: dict | None = None

    @classmethod
    def create(cls, config: config_lib.RunConfig) -> Run:
        """Validate `config`, then build the run: runtime, run directory, data, model, phases.

        Raises:
            tfl.config.ConfigError: a bad setting (before anything is written), or an
                existing `output` directory that holds a run with other settings.
        """
        started = time.time()
        config, ranking = rank_first(config)
        config, run_dir, strategy = prepare(config)
        data = builders.load_data(config, strategy, run_dir)
        model = builders.build_model(config, data, strategy)
        phases = builders.make_phases(config)
        task = Task.from_config(config)
        run = cls(config, run_dir, strategy, task, data, model, phases, started=started)
        if ranking is not None:
            run.notes.extend(_ranking_notes(ranking, run_dir))
        return run

    @property
    def evaluated_on(self) -> str:
        """The split `finish` evaluates: "test", else "validation"."""
        return "test" if self.data.test is not None else "validation"

    def fit(self, verbose: Any = "auto") -> Run:
        """Train the model through the phases (see the module docstring); returns the run."""
        with self.strategy.scope():
            self.history = _fit(self, verbose)
        return self

    def finish(self) -> Run:
        """Evaluate, save the model, plots, metrics and report; returns the run.

        On a non-chief worker of a multi-worker run `run_dir` is its temporary directory,
        deleted at the end.
        """
        from tfl import post_training
        from tfl.distribute import is_chief, remove_write_dir

        self.calibration = post_training.calibrate(self)  # evaluate.calibrate
        test = self.data.test if self.data.test is not None else self.data.validation
        if test is not None:  # with evaluate.tta; before / after calibration
            self.metrics, self.calibration_test = post_training.evaluate(self, test)
        examples = post_training.prepare_to_save(self)  # a LoRA model is saved merged
        self.model.save(os.path.join(self.run_dir, "model.keras"))
        post_training.merge_check(self, examples)
        if self.metrics:
            save_task_metrics(self.task, self.run_dir, self.metrics, "evaluation")
        self.seconds = time.time() - self.started
        _write_outputs(self)
        if not is_chief(self.strategy):  # a non-chief worker's temporary directory
            remove_write_dir(self.run_dir, config_lib.run_dir(self.config))
        return self

    def summary(self) -> dict:
        """What `metrics.json` holds: test accuracy, the split, time, phases and history."""
        history = self.history
        from tfl.post_training import summary

        return {
            "test_accuracy": self.metrics.get("accuracy"),
            "evaluated_on": self.evaluated_on,
            "seconds_total": None if self.seconds is None else round(self.seconds, 1),
            "phases": history.phases,
            "history": {"epoch": history.epoch, **history.history},
            **summary(self),
        }


def train(config: config_lib.RunConfig, verbose: Any = "auto") -> Run:
    """Run `config` end to end (`Run.create`, `fit`, `finish`); returns the `Run`.

    Re-running with the same `output` directory resumes a killed run (Keras BackupAndRestore
    per phase, see `tfl.fit_phases`).
    """
    return Run.create(config).fit(verbose=verbose).finish()


# === Ranking first (model.base: auto or a list, train.schedule: auto) ===


def rank_first(config: config_lib.RunConfig) -> tuple[config_lib.RunConfig, dict | None]:
    """`config` with its candidates ranked and the winner chosen, when it asks for that.

    `model.base: auto` (or a list of names, or `rank:` lists) ranks the candidates with
    `tfl.studies.rank` and trains the winner; `train.schedule: auto` picks feature
    extraction or two-phase from the winner's probe accuracy and the data size. The
    features the ranking extracts stay in the bottleneck cache, so the winner's head phase
    reuses them. Returns the concrete configuration and the ranking (None if none ran).
    """
    from tfl.studies import rank as rank_lib

    config = config_lib.validate(config)
    if not rank_lib.needs_ranking(config):
        return config, None
    count = len(rank_lib.candidates(config))
    print(f"Ranking {count} candidate(s) on the train and validation splits...", flush=True)
    ranking = rank_lib.rank_candidates(config, progress=lambda line: print(line, flush=True))
    chosen = rank_lib.winner_config(config, ranking)
    print(f"Training {ranking['winner']['name']} ({chosen.train.schedule}).", flush=True)
    return chosen, ranking


def _ranking_notes(ranking: dict, run_dir: str) -> list[str]:
    """The report's lines on what was ranked and why the winner won; writes rank.md/json."""
    from tfl.studies.rank_report import recommendation, write_ranking

    write_ranking(ranking, run_dir, title="Ranking before training")
    scored = [r for r in ranking["candidates"] if "error" not in r]
    names = ", ".join(r["name"] for r in ranking["candidates"])
    notes = [
        f"Ranked {len(ranking['candidates'])} candidate(s) before training ({names}) on "
        f"{scored[0]['examples']} train + validation examples, in {ranking['seconds']:.0f} s "
        "(rank.md, rank.json, rank.png).",
        recommendation(ranking).replace("Recommendation: ", "Trained: "),
    ]
    if len(scored) > 1:
        key = "probe_accuracy" if ranking["score"] == "probe" else ranking["score"]
        gap = scored[0][key] - scored[1][key]
        notes.append(
            f"Runner-up: {scored[1]['name']} ({ranking['score']} {scored[1][key]:.3f}, "
            f"{gap:.3f} behind)."
        )
    if ranking["failed"]:
        notes.append(f"Could not be scored: {', '.join(ranking['failed'])} (see rank.md).")
    return notes


# === Preparing the run directory ===


def runtime_line(config: config_lib.RunConfig, strategy: tf.distribute.Strategy) -> str:
    """The line a run prints about where it runs: strategy, replicas, batch, policy, XLA."""
    from tfl.distribute import choose_jit_compile, describe, global_batch_size

    info = describe(strategy)
    per_replica = config.data.batch_size
    workers = f", {'chief' if info['chief'] else 'worker'} of {info['workers']} workers"
    jit = choose_jit_compile(config.runtime.jit_compile, strategy)
    return (
        f"Runtime: {info['strategy']} ({info['replicas']} replica(s), {info['device']}"
        f"{workers if info['workers'] > 1 else ''}), batch {per_replica} per replica = "
        f"{global_batch_size(per_replica, strategy)} global, "
        f"{keras.mixed_precision.global_policy().name}, XLA "
        f"{ {True: 'on', False: 'off'}.get(jit, 'auto') }"
    )


def prepare(config: config_lib.RunConfig) -> tuple[config_lib.RunConfig, str, Any]:
    """Validate `config`, set up the runtime, create the run directory, seed everything.

    Sets Keras' dtype policy for `config.runtime` before any model is built and prints the
    runtime line. On a multi-worker cluster only the chief writes the run directory; the
    other workers get a temporary directory, as TensorFlow requires, and resume from the
    chief's backup. A directory that already holds a `config.yaml` is resumed, but only with
    the same settings.

    Returns:
        The normalised configuration, the run directory and the strategy.
    """
    from tfl.distribute import set_precision, write_dir

    config = config_lib.validate(config)
    strategy = builders.get_strategy(config)
    set_precision(config.runtime.precision, strategy)
    print(runtime_line(config, strategy))
    run_dir = write_dir(config_lib.run_dir(config), strategy)
    path = os.path.join(run_dir, "config.yaml")
    if os.path.exists(path):
        _check_same_settings(config, path, run_dir)
    os.makedirs(run_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(config_lib.to_yaml(config))
    keras.utils.set_random_seed(config.seed)
    return config, run_dir, strategy


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "tasks":
            changed += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


def _check_same_settings(config, path: str, run_dir: str) -> None:
    """Re-running a run resumes it, but only with the same settings."""
    previous = config_lib.validate(config_lib.from_dict(config_lib.load_yaml(path)))
    changed = _changed_keys(config_lib.to_dict(previous), config_lib.to_dict(config))
    if changed:
        raise config_lib.ConfigError(
            "output",
            f"{run_dir} holds a run with other settings ({', '.join(changed)} differ), "
            "so it cannot be resumed with these",
            "Use a new --output (or none, for a fresh runs/ folder), or re-run with that "
            f"run's settings: tfl train --config {path}",
        )


# === Fitting ===


def _lr_find(run: Run, phase):
    """The learning-rate range test of the first phase, on cached features when it can be.

    The model is set up as that phase trains it (its trainable set, optimizer and loss); a
    frozen-base phase sweeps the head on the base's features (the same feature cache entry
    that phase then trains on, so the base runs once for both).
    """
    import tfl
    from tfl.cache import FeatureCache, is_randomly_augmented, split_at_bases
    from tfl.fitting import apply_trainable, compile_like, compile_phase, make_optimizer

    model, data = run.model, run.data
    train = data.train
    apply_trainable(model, phase)
    compile_phase(model, make_optimizer(phase, model), phase, "auto", "auto", {})
    target = model
    cache = run.config.train.cache
    random = is_randomly_augmented(train, data.augmented)
    if not phase.trains_base and cache is not False and not random:
        feature_model, head_model = split_at_bases(model)
        store = FeatureCache(None if cache == "memory" else "auto")
        fingerprint = data.fingerprints.get("train")
        features = store.features(
            model,
            train,
            feature_model=feature_model,
            fingerprint=fingerprint,
            in_order=data.train_in_order,
        )
        compile_like(head_model, model)
        target = head_model
        train = features.dataset(features.batch_size, shuffle=True, seed=run.config.seed)
    return tfl.lr_find(target, train, plot_path=os.path.join(run.run_dir, "lr_find.png"))


def _callbacks(run: Run) -> list:
    """The standard callbacks; a non-chief worker resumes from the chief's backup."""
    import tfl
    from tfl.distribute import is_chief

    monitor = "val_loss" if run.data.validation is not None else "loss"
    patience = run.config.train.early_stopping_patience
    callbacks = tfl.standard_callbacks(
        run.run_dir, monitor=monitor, patience=patience or 1, early_stopping=patience is not None
    )
    for cb in callbacks:  # a quiet console: no "Epoch N: finished saving model" lines
        if isinstance(cb, keras.callbacks.ModelCheckpoint):
            cb.verbose = 0
    if not is_chief(run.strategy):
        # A non-chief worker resumes from the chief's backup and starts from the chief's
        # history (the checkpoint's best so far): its callbacks must decide as the chief's
        # do, since every save runs collective ops on all workers.
        chief_dir = config_lib.run_dir(run.config)
        for cb in callbacks:
            if isinstance(cb, tfl.callbacks.BackupAndRestore):
                cb.restore_dir = os.path.join(chief_dir, "backup")
        if os.path.exists(os.path.join(chief_dir, "history.csv")):
            shutil.copyfile(
                os.path.join(chief_dir, "history.csv"), os.path.join(run.run_dir, "history.csv")
            )
    return callbacks


def _fit(run: Run, verbose: Any):
    import tfl
    from tfl.distribute import choose_jit_compile

    phases = list(run.phases)
    if run.config.train.lr_find:
        found = _lr_find(run, phases[0])
        if found.suggestion:
            phases[0] = dataclasses.replace(phases[0], learning_rate=float(found.suggestion))
            run.notes.append(f"Learning-rate finder: head learning rate {found.suggestion:.2e}.")
    jit = choose_jit_compile(run.config.runtime.jit_compile, run.strategy)
    return tfl.fit_phases(
        run.model,
        phases,
        run.data,  # train and validation splits, with what the feature cache must know
        callbacks=_callbacks(run),
        cache=run.config.train.cache,
        l2sp=run.config.train.l2sp,
        verbose=verbose,
        compile_kwargs={"jit_compile": jit},
        wise=run.config.train.wise,
    )


# === Finishing ===


def _write_outputs(run: Run) -> None:
    """history.png, metrics.json and report.md."""
    from tfl.evaluate import plot_history, write_report

    history_csv = os.path.join(run.run_dir, "history.csv")
    has_csv = os.path.exists(history_csv)
    if has_csv:
        plot_history(
            history_csv, os.path.join(run.run_dir, "history.png"), phases=run.history.phases
        )
    with open(os.path.join(run.run_dir, "metrics.json"), "w") as f:
        json.dump(run.summary(), f, indent=2, default=float)
    notes = tuple(run.notes)
    if run.metrics and run.task.is_multi:  # one line per head; details in evaluation.json
        notes += tuple(
            f"Head `{name}`: test accuracy {m['accuracy']:.4f}, macro F1 "
            f"{m['macro_avg']['f1']:.4f} (per class: evaluation.json)."
            for name, m in run.metrics.items()
            if isinstance(m, dict)
        )
    notes += (f"Total time: {run.seconds:.0f} s.",)
    config = run.config
    write_report(
        run.run_dir,
        title=f"{config.recipe}: {config.name or config_lib.default_name(config)}",
        config=config_lib.to_dict(config),
        defaults=config_lib.to_dict(config_lib.validate(config_lib.defaults(config.recipe))),
        config_file="config.yaml",
        metrics=run.metrics if not run.task.is_multi else None,
        history=history_csv if has_csv else None,
        phases=run.history.phases,
        data_info=run.data.info,
        notes=notes,
    )
    from tfl.post_training import append_section, model_section

    append_section(run, model_section(run))


# === A finished run, evaluated again ===


def evaluate_run(run_dir: str, split: str = "test", data: str | None = None) -> dict:
    """Reload a finished run (`model.keras`, `config.yaml`) and evaluate it again.

    Args:
        run_dir: a run directory written by `tfl train`.
        split: which split of the run's own data: test, validation or train.
        data: evaluate on new labelled data instead (see `tfl.builders.load_new_data`): a
            folder of class subfolders for image runs, a CSV/JSONL file for text runs.

    Writes `evaluation_<split>.json` (or `evaluation_data_<name>.json`) and its confusion
    matrix PNG into `run_dir`; returns the metrics, with the file's name under `"file"`.
    """
    from tfl.saved_run import SavedRun

    saved = SavedRun.open(run_dir, needs_labels=data is not None)
    config = saved.config
    if data is not None:
        splits = builders.load_new_data(config, data, saved.labels)
        dataset = splits.train
        name = os.path.splitext(os.path.basename(os.path.normpath(data)))[0]
        name = "data_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    else:
        splits = builders.load_data(config)
        dataset = {"test": splits.test, "validation": splits.validation, "train": splits.train}
        dataset, name = dataset.get(split), split
        if dataset is None:
            raise ValueError(
                f"Received split={split!r}; this run's data has no such split. Use test, "
                "validation or train."
            )
    model = saved.model
    if config.evaluate.tta:
        from tfl.tta import with_tta

        model = with_tta(model, config.evaluate.tta)
    metrics = evaluate_task(saved.task, model, dataset, splits.labels, config.evaluate.top_k)
    file = save_task_metrics(saved.task, run_dir, metrics, f"evaluation_{name}")
    return {**metrics, "file": file}


__all__ = ["Run", "evaluate_run", "prepare", "rank_first", "runtime_line", "train"]
