"""Run a configured training job end to end: data → model → phases → evaluation → run dir.

This is what `tfl train` and the recipes run. Each step is a public function, so a recipe can
be read (and changed) one step at a time:

1. `prepare(config)`: validate the config, create the run directory, write `config.yaml`, seed.
2. `load_data(config, run_dir)`: the `tfl.data` loader for `config.data` (TFDS, folder,
   CSV/JSONL) at the base's input size, with labels, counts and skipped inputs written to the
   run dir.
3. `build_model(config, data)`: the recipe's task model on freshly loaded pretrained base(s).
4. `make_phases(config)`: the fine-tuning schedule (`tfl.two_phase`, `partial`,
   `gradual_unfreezing`, `feature_extraction`).
5. `fit(config, model, data, phases, run_dir)`: `tfl.fit_phases` with the standard callbacks
   (best checkpoint, early stopping, logs, backup: re-running with the same `output` resumes a
   killed run), after the learning-rate finder when `train.lr_find` is on.
6. `finish(...)`: evaluation on the test split and the rest of the run directory:
   `history.csv`, `history.png`, `metrics.json`, `evaluation.json`,
   `evaluation_confusion.png`, `model.keras`, `best.keras`, `report.md`.

`train(config)` runs all six; `evaluate_run(run_dir)` reloads a finished run's model and data
and evaluates it again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from tfl import config as config_lib

# Derived multitask labels as tf ops (tfl.config.DERIVED_LABELS holds their class names).
_DERIVED_TF = {"parity": lambda y: tf.math.floormod(tf.cast(y, tf.int64), 2)}


def _weights(value: str):
    if value in ("imagenet", "pretrained"):
        return "imagenet"
    return None if value == "none" else value


def _bases(config) -> tuple[str, ...]:
    base = config.model.base
    return tuple(base) if isinstance(base, tuple | list) else (base,)


def image_size(config) -> int:
    """The image side for `config`: `data.image_size`, or the (first) base's default."""
    if config.data.image_size:
        return int(config.data.image_size)
    from tfl.families import get_spec

    return int(get_spec(_bases(config)[0])[1].default_size)


def is_text(config) -> bool:
    return config.recipe in config_lib.TEXT_RECIPES


def load_data(config, run_dir: str | None = None):
    """`config.data` as a `tfl.data.DataSplits` (labels and info written to `run_dir`).

    For the multitask recipe each split's labels become `{task: labels}` (derived labels
    such as `label:parity` computed on the fly).
    """
    data = _load_splits(config, run_dir)
    return _task_targets(config, data) if config.recipe == "multitask" else data


def _load_splits(config, run_dir: str | None = None):
    from tfl.distribute import shard

    data = _read_splits(config, run_dir)
    distribution = strategy(config)
    # Auto-sharding for this strategy: off on one machine, by data over several workers.
    return dataclasses.replace(
        data,
        train=shard(data.train, distribution),
        validation=shard(data.validation, distribution),
        test=shard(data.test, distribution),
    )


def _read_splits(config, run_dir: str | None = None):
    import tfl.data

    data = config.data
    common = dict(
        batch_size=data.batch_size * strategy(config).num_replicas_in_sync,
        seed=config.seed,
        run_dir=run_dir,
        max_per_class=data.max_per_class,
    )
    images = dict(resize=data.resize, augment=list(data.augment) or None)
    images.update(mixup=data.mixup, cutmix=data.cutmix)
    if data.source == "tfds":
        kwargs = dict(common, data_dir=data.data_dir, download=data.download)
        if not is_text(config):
            kwargs.update(images, image_size=image_size(config))
        return tfl.data.from_tfds(data.name, **kwargs)
    if data.source == "folder":
        return tfl.data.from_folder(
            data.path, image_size(config), splits=tuple(data.splits), **images, **common
        )
    loader = tfl.data.from_csv if data.source == "csv" else tfl.data.from_jsonl
    column = data.text_column
    column = list(column) if isinstance(column, tuple | list) else column
    return loader(data.path, column, data.label_column, splits=tuple(data.splits), **common)


def _task_targets(config, data):
    """Multitask: map each split's labels to `{task: labels}` (derived labels computed)."""
    tasks = config.model.tasks

    def targets(x, y):
        out = {}
        for name, task in tasks.items():
            column = task.get("label_column", name)
            derived = column.split(":", 1)[1] if ":" in column else None
            out[name] = _DERIVED_TF[derived](y) if derived else y
        return x, out

    splits = [None if ds is None else ds.map(targets) for ds in (data.train, data.validation)]
    test = None if data.test is None else data.test.map(targets)
    for ds, source in zip((*splits, test), (data.train, data.validation, data.test), strict=True):
        if ds is not None:  # keep tfl.data's marks for the feature cache
            ds._tfl_augmented = getattr(source, "_tfl_augmented", None)
            fingerprint = getattr(source, "_tfl_fingerprint", "")
            ds._tfl_fingerprint = (
                f"{fingerprint}|tasks={sorted(tasks.items())}" if fingerprint else ""
            )
    return dataclasses.replace(data, train=splits[0], validation=splits[1], test=test)


def _num_classes(config, data, column: str) -> int:
    if ":" in column:
        return len(config_lib.DERIVED_LABELS[column.split(":", 1)[1]][1])
    return len(data.labels)


def build_model(config, data) -> keras.Model:
    """The recipe's task model on freshly loaded pretrained base(s), built in the scope of
    `strategy(config)`."""
    with strategy(config).scope():
        return _build_model(config, data)


def _build_model(config, data) -> keras.Model:
    import tfl
    from tfl.heads import get_head

    head = "classification" if config.model.head == "logistic" else config.model.head
    num_classes = len(data.labels)
    if is_text(config):
        preset = _bases(config)[0]
        backbone = tfl.text.load_bert_backbone(preset, load_weights=config.model.weights != "none")
        length = config.data.sequence_length
        preprocessor = tfl.data.text_preprocessor(data, preset, sequence_length=length)
        return tfl.TextClassifier(
            backbone,
            num_classes,
            head=head,
            preprocessor=preprocessor,
            pooling=config.model.pooling,
        )
    size = image_size(config)
    weights = config.model.weights
    weights = weights if isinstance(weights, tuple | list) else (weights,) * len(_bases(config))
    backbones = [
        tfl.ImageBackbone(
            name,
            (size, size, 3),
            weights=_weights(w),
            pooling=config.model.pooling,
            # A randomly initialised base needs BatchNorm's batch statistics to train.
            inference_mode=w != "none",
        )
        for name, w in zip(_bases(config), weights, strict=True)
    ]
    if config.recipe == "feature_fusion":
        return tfl.FusionClassifier(backbones, num_classes, head=head, fusion=config.model.fusion)
    if config.recipe == "multitask":
        heads = {
            name: get_head(
                task.get("head", "classification"),
                _num_classes(config, data, task.get("label_column", name)),
            )
            for name, task in config.model.tasks.items()
        }
        return tfl.MultiTaskModel(backbones[0], heads)
    return tfl.ImageClassifier(backbones[0], num_classes, head=head)


def make_phases(config) -> list:
    """The fine-tuning phases of `config.train` (see `tfl.config.TrainConfig`)."""
    import tfl

    t = config.train
    if t.schedule == "feature_extraction":
        return tfl.feature_extraction(
            t.head_epochs,
            learning_rate=t.head_learning_rate,
            optimizer=t.optimizer,
            label_smoothing=t.label_smoothing,
            weight_decay=t.weight_decay,
        )
    if t.schedule == "gradual_unfreezing":
        return tfl.gradual_unfreezing(
            t.unfreeze if isinstance(t.unfreeze, int) else 4,
            epochs_per_phase=t.finetune_epochs,
            head_epochs=t.head_epochs,
            head_learning_rate=t.head_learning_rate,
            learning_rate=t.finetune_learning_rate,
            optimizer=t.optimizer,
            layer_decay=t.layer_decay,
        )
    unfreeze = list(t.unfreeze) if isinstance(t.unfreeze, tuple) else t.unfreeze
    return tfl.two_phase(
        t.head_epochs,
        t.finetune_epochs,
        unfreeze=unfreeze,
        head_learning_rate=t.head_learning_rate,
        finetune_learning_rate=t.finetune_learning_rate,
        optimizer=t.optimizer,
        layer_decay=t.layer_decay,
        weight_decay=t.weight_decay,
        label_smoothing=t.label_smoothing,
    )


def _evaluate(model, dataset, config, data) -> dict:
    """Test metrics: per head for multitask models."""
    from tfl.evaluate import classification_metrics, evaluate_model

    top_k = (config.evaluate.top_k,)
    if config.recipe != "multitask":
        return evaluate_model(model, dataset, labels=data.labels, top_k=top_k)
    ys, probs = {}, {}
    for x, y in dataset:
        out = model(x, training=False)
        for name in out:
            ys.setdefault(name, []).append(np.asarray(y[name]))
            probs.setdefault(name, []).append(np.asarray(out[name]))
    metrics = {}
    for name, task in config.model.tasks.items():
        column = task.get("label_column", name)
        names = (
            config_lib.DERIVED_LABELS[column.split(":", 1)[1]][1]
            if ":" in column
            else data.labels.names
        )
        metrics[name] = classification_metrics(
            np.concatenate(ys[name]), np.concatenate(probs[name]), labels=list(names), top_k=top_k
        )
    metrics["accuracy"] = float(np.mean([m["accuracy"] for m in metrics.values()]))
    return metrics


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "tasks":
            changed += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


_STRATEGIES: dict[tuple[str, int], tf.distribute.Strategy] = {}


def strategy(config) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy of `config.runtime.strategy` (one per process and name)."""
    from tfl.distribute import get_strategy

    key = (config.runtime.strategy, config.runtime.cpu_devices)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = get_strategy(*key)
    return _STRATEGIES[key]


def _jit_compile(config):
    from tfl.distribute import choose_jit_compile

    return choose_jit_compile(config.runtime.jit_compile, strategy(config))


def _runtime_line(config) -> str:
    from tfl.distribute import describe, global_batch_size

    info = describe(strategy(config))
    per_replica = config.data.batch_size
    workers = f", {'chief' if info['chief'] else 'worker'} of {info['workers']} workers"
    jit = {True: "on", False: "off"}.get(_jit_compile(config), "auto")
    return (
        f"Runtime: {info['strategy']} ({info['replicas']} replica(s), {info['device']}"
        f"{workers if info['workers'] > 1 else ''}), batch {per_replica} per replica = "
        f"{global_batch_size(per_replica, strategy(config))} global, "
        f"{keras.mixed_precision.global_policy().name}, XLA {jit}"
    )


def prepare(config) -> tuple[config_lib.RunConfig, str]:
    """Validate `config`, create its run directory with `config.yaml`, seed everything.

    Also sets up `config.runtime`: the distribution strategy (`strategy(config)`) and Keras'
    dtype policy (`tfl.distribute.set_precision`), before any model is built. On a
    multi-worker cluster only the chief writes the run directory; the other workers get a
    temporary directory (returned here; `finish` deletes it), as TensorFlow requires, and
    resume from the chief's backup.

    Returns the normalised configuration and the run directory.
    """
    from tfl.distribute import set_precision, write_dir

    config = config_lib.validate(config)
    distribution = strategy(config)
    set_precision(config.runtime.precision, distribution)
    print(_runtime_line(config))
    run_dir = write_dir(config_lib.run_dir(config), distribution)
    path = os.path.join(run_dir, "config.yaml")
    if os.path.exists(path):  # re-running a run: resume it, but only with the same settings
        previous = config_lib.to_dict(
            config_lib.validate(config_lib.from_dict(config_lib.load_yaml(path)))
        )
        changed = _changed_keys(previous, config_lib.to_dict(config))
        if changed:
            raise config_lib.ConfigError(
                "output",
                f"{run_dir} holds a run with other settings ({', '.join(changed)} differ), "
                "so it cannot be resumed with these",
                "Use a new --output (or none, for a fresh runs/ folder), or re-run with that "
                f"run's settings: tfl train --config {path}",
            )
    os.makedirs(run_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(config_lib.to_yaml(config))
    keras.utils.set_random_seed(config.seed)
    return config, run_dir


def _lr_find(config, model, data, phase, run_dir: str):
    """The learning-rate range test of the first phase, on cached features when it can be.

    The model is set up as that phase trains it (its trainable set, optimizer and loss); a
    frozen-base phase sweeps the head on the base's features (the same feature cache entry
    that phase then trains on, so the base runs once for both).
    """
    import tfl
    from tfl.cache import FeatureCache, is_randomly_augmented, split_at_bases
    from tfl.schedules import _compile, apply_trainable, compile_like, make_optimizer

    apply_trainable(model, phase)
    _compile(model, make_optimizer(phase, model), phase, "auto", "auto", {})
    target, train = model, data.train
    cache = config.train.cache
    if not phase.trains_base and cache is not False and not is_randomly_augmented(data.train):
        feature_model, head_model = split_at_bases(model)
        store = FeatureCache(None if cache == "memory" else "auto")
        features = store.features(model, data.train, feature_model=feature_model)
        compile_like(head_model, model)
        target = head_model
        train = features.dataset(features.batch_size, shuffle=True, seed=config.seed)
    return tfl.lr_find(target, train, plot_path=os.path.join(run_dir, "lr_find.png"))


def fit(config, model, data, phases, run_dir: str, verbose="auto", notes: list | None = None):
    """Train `model` through `phases` with the standard callbacks; returns the history.

    With `train.lr_find` the learning-rate range test runs first (its curve is saved as
    `lr_find.png`) and its suggestion becomes the first phase's learning rate. Callbacks:
    `tfl.standard_callbacks(run_dir)` (best checkpoint, early stopping, CSV and TensorBoard
    logs, BackupAndRestore: re-running with the same `output` resumes a killed run).
    """
    with strategy(config).scope():
        return _fit(config, model, data, phases, run_dir, verbose, notes)


def _fit(config, model, data, phases, run_dir, verbose, notes):
    import tfl
    from tfl.distribute import is_chief

    notes = [] if notes is None else notes
    phases = list(phases)
    if config.train.lr_find:
        found = _lr_find(config, model, data, phases[0], run_dir)
        if found.suggestion:
            phases[0] = dataclasses.replace(phases[0], learning_rate=float(found.suggestion))
            notes.append(f"Learning-rate finder: head learning rate {found.suggestion:.2e}.")
    validation = data.validation
    monitor = "val_loss" if validation is not None else "loss"
    patience = config.train.early_stopping_patience
    callbacks = tfl.standard_callbacks(
        run_dir, monitor=monitor, patience=patience or 1, early_stopping=patience is not None
    )
    if not is_chief(strategy(config)):
        # A non-chief worker resumes from the chief's backup and starts from the chief's
        # history (the checkpoint's best so far): its callbacks must decide as the chief's
        # do, since every save runs collective ops on all workers.
        chief_dir = config_lib.run_dir(config)
        for cb in callbacks:
            if isinstance(cb, tfl.callbacks.BackupAndRestore):
                cb.restore_dir = os.path.join(chief_dir, "backup")
        if os.path.exists(os.path.join(chief_dir, "history.csv")):
            shutil.copyfile(
                os.path.join(chief_dir, "history.csv"), os.path.join(run_dir, "history.csv")
            )
    return tfl.fit_phases(
        model,
        phases,
        data.train,
        validation_data=validation,
        callbacks=callbacks,
        cache=config.train.cache,
        l2sp=config.train.l2sp,
        verbose=verbose,
        compile_kwargs={"jit_compile": _jit_compile(config)},
    )


def finish(
    config, model, data, history, run_dir: str, seconds: float | None = None, notes=()
) -> dict:
    """Evaluate on the test split (else validation), save the model, plots, metrics, report.

    Writes `model.keras`, `evaluation.json` + `evaluation_confusion.png`, `history.png`,
    `metrics.json` and `report.md`; returns the test metrics. On a non-chief worker of a
    multi-worker run `run_dir` is its temporary directory, deleted at the end.
    """
    from tfl.distribute import is_chief, remove_write_dir
    from tfl.evaluate import plot_history, save_metrics, write_report

    test = data.test if data.test is not None else data.validation
    metrics = _evaluate(model, test, config, data) if test is not None else {}
    model.save(os.path.join(run_dir, "model.keras"))
    if metrics and config.recipe != "multitask":
        save_metrics(run_dir, metrics, name="evaluation")
    elif metrics:
        with open(os.path.join(run_dir, "evaluation.json"), "w") as f:
            json.dump(metrics, f, indent=2, default=float)
    history_csv = os.path.join(run_dir, "history.csv")
    if os.path.exists(history_csv):
        plot_history(history_csv, os.path.join(run_dir, "history.png"), phases=history.phases)
    summary = {
        "test_accuracy": metrics.get("accuracy"),
        "evaluated_on": "test" if data.test is not None else "validation",
        "seconds_total": None if seconds is None else round(seconds, 1),
        "phases": history.phases,
        "history": {"epoch": history.epoch, **history.history},
    }
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2, default=float)
    notes = tuple(notes)
    if metrics and config.recipe == "multitask":  # one line per head; details in evaluation.json
        notes += tuple(
            f"Head `{name}`: test accuracy {m['accuracy']:.4f}, macro F1 "
            f"{m['macro_avg']['f1']:.4f} (per class: evaluation.json)."
            for name, m in metrics.items()
            if isinstance(m, dict)
        )
    if seconds is not None:
        notes += (f"Total time: {seconds:.0f} s.",)
    write_report(
        run_dir,
        title=f"{config.recipe}: {config.name or config_lib.default_name(config)}",
        config=config_lib.to_dict(config),
        metrics=metrics if config.recipe != "multitask" else None,
        history=history_csv if os.path.exists(history_csv) else None,
        phases=history.phases,
        data_info=data.info,
        notes=notes,
    )
    if not is_chief(strategy(config)):  # a non-chief worker's temporary directory: not kept
        remove_write_dir(run_dir, config_lib.run_dir(config))
    return metrics


def train(config, verbose="auto") -> dict:
    """Run `config` end to end; returns `{"run_dir", "model", "metrics", "history", "data"}`.

    The steps, each public (the recipes in `recipes/` call them one by one): `prepare`,
    `load_data`, `build_model`, `make_phases`, `fit`, `finish`. Re-running with the same
    `output` directory resumes a killed run (Keras BackupAndRestore per phase, see
    `tfl.fit_phases`).
    """
    started = time.time()
    config, run_dir = prepare(config)
    data = load_data(config, run_dir)
    model = build_model(config, data)
    phases = make_phases(config)
    notes: list[str] = []
    history = fit(config, model, data, phases, run_dir, verbose=verbose, notes=notes)
    metrics = finish(
        config, model, data, history, run_dir, seconds=time.time() - started, notes=notes
    )
    return {
        "run_dir": run_dir,
        "model": model,
        "metrics": metrics,
        "history": history,
        "data": data,
    }


def load_new_data(config, path: str, labels):
    """Labelled data that the run never saw, read like its training data, as one split.

    Image recipes: a folder with one subfolder per class (`root/<class>/*`, or a split layout,
    whose `test` split is used); text recipes: a CSV/TSV or JSONL file with the run's text
    and label columns. Class names must be among the run's `labels` (a folder may hold only
    some of them); the label indices are the run's.
    """
    import tfl.data
    from tfl.data.images import _folder_layout

    common = dict(batch_size=config.data.batch_size, seed=config.seed)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Received data={path!r}, which does not exist. Pass a folder of class subfolders "
            "(image runs) or a CSV/JSONL file with the run's columns (text runs)."
        )
    if is_text(config):
        if os.path.isdir(path):
            raise ValueError(
                f"Received data={path!r}, a folder; this text run reads a CSV/TSV or JSONL "
                f"file with columns {config.data.text_column!r} and {config.data.label_column!r}."
            )
        column = config.data.text_column
        column = list(column) if isinstance(column, tuple | list) else column
        loader = tfl.data.from_jsonl if path.endswith((".jsonl", ".json")) else tfl.data.from_csv
        data = loader(
            path, column, config.data.label_column, splits=(1.0,), labels=labels.names, **common
        )
        split = data.train
    else:
        if not os.path.isdir(path):
            raise ValueError(
                f"Received data={path!r}, not a folder; an image run reads a folder with one "
                "subfolder of images per class."
            )
        layout, _ = _folder_layout(path)
        kwargs = {} if layout == "split" else {"splits": (1.0,)}
        data = tfl.data.from_folder(
            path,
            image_size(config),
            class_names=labels.names,
            resize=config.data.resize,
            **kwargs,
            **common,
        )
        split = data.test if layout == "split" and data.test is not None else data.train
    data = dataclasses.replace(data, train=split, validation=None, test=None)
    if config.recipe == "multitask":
        data = _task_targets(config, data)
    return data


def evaluate_run(run_dir: str, split: str = "test", data: str | None = None) -> dict:
    """Reload a finished run (`model.keras`, `config.yaml`) and evaluate it again.

    Args:
        run_dir: a run directory written by `tfl train`.
        split: which split of the run's own data: test, validation or train.
        data: evaluate on new labelled data instead (see `load_new_data`): a folder of class
            subfolders for image runs, a CSV/JSONL file for text runs.

    Writes `evaluation_<split>.json` (or `evaluation_data_<name>.json`) and its confusion
    matrix PNG into `run_dir`; returns the metrics, with the file's name under `"file"`.
    """
    from tfl.data import LabelMap
    from tfl.evaluate import save_metrics

    config_path = os.path.join(run_dir, "config.yaml")
    model_path = os.path.join(run_dir, "model.keras")
    for path in (config_path, model_path):
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} is missing: {run_dir!r} is not a finished tfl run directory (it needs "
                "config.yaml and model.keras, written by `tfl train`)."
            )
    config = config_lib.validate(config_lib.from_dict(config_lib.load_yaml(config_path)))
    if data is not None:
        splits = load_new_data(config, data, LabelMap.load(run_dir))
        dataset = splits.train
        name = os.path.splitext(os.path.basename(os.path.normpath(data)))[0]
        name = "data_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    else:
        splits = load_data(config)
        dataset = {"test": splits.test, "validation": splits.validation, "train": splits.train}
        dataset, name = dataset.get(split), split
        if dataset is None:
            raise ValueError(
                f"Received split={split!r}; this run's data has no such split. Use test, "
                "validation or train."
            )
    model = keras.saving.load_model(model_path)
    metrics = _evaluate(model, dataset, config, splits)
    if config.recipe != "multitask":
        save_metrics(run_dir, metrics, name=f"evaluation_{name}")
    else:
        with open(os.path.join(run_dir, f"evaluation_{name}.json"), "w") as f:
            json.dump(metrics, f, indent=2, default=float)
    return {**metrics, "file": f"evaluation_{name}.json"}


__all__ = [
    "build_model",
    "evaluate_run",
    "finish",
    "fit",
    "image_size",
    "load_data",
    "load_new_data",
    "make_phases",
    "prepare",
    "train",
]
