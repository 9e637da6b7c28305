"""Fine-tuning schedules: phases as data, one runner, presets, resumable runs.

A `Phase` says what one stretch of training does: how many epochs, which block groups of the
pretrained base train, the optimizer, the learning rate and its schedule, per-block learning
rate multipliers. `fit_phases` runs a list of them with plain `model.fit`: for each phase it sets
`trainable`, compiles (Keras reads `trainable` only at `compile()`), and calls
`fit(initial_epoch=...)` so epochs continue across phases; it returns one merged `History` with
a `phase` column.

Presets cover the usual recipes: `two_phase` (a linear probe, then fine-tuning at a lower
learning rate: LP-FT), `gradual_unfreezing` (ULMFiT: one more block group per phase, top
down), `partial` (only the top blocks ever train) and `feature_extraction` (the base never
trains). `fine_tune` is the one-call version.

Resuming: with a `keras.callbacks.BackupAndRestore` among the callbacks (`tfl.callbacks.
standard_callbacks` includes one), a run killed at any point restarts with the same call and
continues from the last finished epoch, in the right phase, with that phase's trainable set and
optimizer state. Each phase gets its own Keras backup directory (`<backup_dir>/phase-<i>`,
Keras weights + optimizer checkpoints); at the end of a phase its weights are saved as
`<backup_dir>/phase-<i>.weights.h5` and `<backup_dir>/phases.json` records where it ended.
Data order: an epoch that is re-run after a restart sees the dataset from its beginning, so a
shuffled dataset gives a different (equally valid) order than the uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import keras
import tensorflow as tf

from tfl.freezing import bases_of, freeze, unfreeze

SCHEDULES = ("constant", "cosine", "linear", "onecycle")
_STATE_FILE = "phases.json"


@dataclasses.dataclass(frozen=True)
class Phase:
    """One stretch of training: what trains, for how long, with which optimizer and rate.

    Args:
        epochs: number of epochs (>= 1).
        trainable: which block groups of the base(s) train; the head always trains.
            `None` (base frozen: a linear probe or feature extraction), `"all"`, an integer
            `n` (the top `n` blocks, see `tfl.unfreeze`) or group names / regexes such as
            `["stage4", "top"]`.
        learning_rate: the peak learning rate, or `"auto"`: 1e-3 while the base is frozen,
            1e-4 (image) / 5e-5 (text) when part of it trains. A
            `keras.optimizers.schedules.LearningRateSchedule` is used as given.
        optimizer: an optimizer name (`"adam"`, `"adamw"`, `"sgd"`, ...), an unbuilt
            `keras.optimizers.Optimizer`, or a callable `learning_rate -> optimizer`. An
            optimizer instance can serve one phase of one run only (it is built for the
            variables of that phase), so presets use names.
        schedule: `"constant"`, `"cosine"` or `"linear"` decay to zero over the phase, or
            `"onecycle"` (`tfl.optimizers.OneCycle`).
        warmup: fraction of the phase's steps spent warming up linearly from 0 (in [0, 1)).
        weight_decay: decoupled weight decay; biases and normalization parameters are
            excluded. Needs an optimizer that supports it (e.g. `"adamw"`).
        layer_decay: layer-wise learning-rate decay: the top block trains at the full rate,
            the one below at `layer_decay` times it, and so on (e.g. 0.65–0.95).
        lr_multipliers: learning-rate multipliers per block group name or regex (and
            `"head"`); they override `layer_decay` where both apply.
        train_batchnorm: also train BatchNorm scale and offset (their statistics never move).
        label_smoothing: label smoothing of the head's default loss (tfl tasks).
        name: a name for logs and the `phase` column (default `phase<i>`).
    """

    epochs: int
    trainable: None | str | int | Sequence[str] = None
    learning_rate: Any = "auto"
    optimizer: Any = "adam"
    schedule: str = "constant"
    warmup: float = 0.0
    weight_decay: float | None = None
    layer_decay: float | None = None
    lr_multipliers: dict[str, float] | None = None
    train_batchnorm: bool = False
    label_smoothing: float = 0.0
    name: str | None = None

    def __post_init__(self):
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise ValueError(f"Received epochs={self.epochs!r}; expected an integer >= 1.")
        t = self.trainable
        if isinstance(t, bool) or (isinstance(t, int) and t < 0):
            raise ValueError(
                f"Received trainable={t!r}; expected None, 'all', a number of top blocks >= 0 "
                "or a list of block group names."
            )
        if isinstance(t, str) and t != "all":
            object.__setattr__(self, "trainable", (t,))
        elif isinstance(t, Iterable) and not isinstance(t, str):
            object.__setattr__(self, "trainable", tuple(t))
        lr = self.learning_rate
        if not (
            lr == "auto"
            or isinstance(lr, keras.optimizers.schedules.LearningRateSchedule)
            or (isinstance(lr, int | float) and not isinstance(lr, bool) and lr > 0)
        ):
            raise ValueError(
                f"Received learning_rate={lr!r}; expected 'auto', a positive number or a "
                "keras.optimizers.schedules.LearningRateSchedule."
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Received schedule={self.schedule!r}; expected one of {SCHEDULES}.")
        if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule) and (
            self.schedule != "constant" or self.warmup
        ):
            raise ValueError(
                "Received a LearningRateSchedule as learning_rate together with "
                f"schedule={self.schedule!r}, warmup={self.warmup!r}: give either your own "
                "schedule or a peak rate with schedule=/warmup=, not both."
            )
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(
                f"Received warmup={self.warmup!r}; expected a fraction of the phase in [0, 1)."
            )
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(
                f"Received layer_decay={self.layer_decay!r}; expected a value in (0, 1], "
                "e.g. 0.65-0.95."
            )
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"Received weight_decay={self.weight_decay!r}; expected >= 0.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"Received label_smoothing={self.label_smoothing!r}; expected a value in [0, 1)."
            )
        if isinstance(self.optimizer, keras.optimizers.Optimizer) and self.optimizer.built:
            raise ValueError(
                f"Received an optimizer that is already built ({self.optimizer.name!r}); a "
                "phase needs a fresh one. Pass its name (e.g. 'adam') or a new instance."
            )

    @property
    def trains_base(self) -> bool:
        """Whether any block of the base trains in this phase."""
        return self.trainable is not None and self.trainable != 0

    def describe(self) -> dict:
        """A JSON-friendly summary (used to check that a resumed run has the same plan)."""

        def plain(value):
            if isinstance(value, int | float | str | bool) or value is None:
                return value
            if isinstance(value, tuple | list):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {str(k): plain(v) for k, v in value.items()}
            return type(value).__name__

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


# --- Presets -----------------------------------------------------------------------------


def two_phase(
    head_epochs: int = 5,
    finetune_epochs: int = 5,
    unfreeze: str | int | Sequence[str] = "all",
    head_learning_rate: float = 1e-3,
    finetune_learning_rate: float | str = "auto",
    optimizer: str = "adam",
    schedule: str = "cosine",
    warmup: float = 0.1,
    layer_decay: float | None = None,
    weight_decay: float | None = None,
    label_smoothing: float = 0.0,
) -> list[Phase]:
    """Linear probe, then fine-tune (LP-FT): the keras.io guide and fastai's `fine_tune`.

    Phase 1 trains only the new head on the frozen base at a high rate, so random head
    weights do not send large gradients into the pretrained features. Phase 2 unfreezes the
    base (BatchNorm stays frozen) and trains everything at a 10–20x lower rate ("auto":
    1e-4 for image bases, 5e-5 for text bases) with a short warmup and cosine decay.

    Args:
        head_epochs: epochs of phase 1 (0 skips it).
        finetune_epochs: epochs of phase 2 (0 skips it).
        unfreeze: what trains in phase 2: `"all"`, the top `n` blocks, or group names.
        head_learning_rate: the constant rate of phase 1.
        finetune_learning_rate: the peak rate of phase 2.
        optimizer: optimizer name for both phases (`"adamw"` with `weight_decay`).
        schedule: phase 2's schedule (see `Phase`).
        warmup: phase 2's warmup fraction.
        layer_decay: phase 2's layer-wise learning-rate decay (e.g. 0.8), or None.
        weight_decay: decoupled weight decay in both phases (biases and norms excluded).
        label_smoothing: label smoothing of the loss in both phases.

    Returns:
        The phases, for `fit_phases`.

    Example:
    >>> [(p.name, p.trainable, p.learning_rate) for p in two_phase(2, 3)]
    [('head', None, 0.001), ('finetune', 'all', 'auto')]
    """
    phases = []
    if head_epochs:
        phases.append(
            Phase(
                head_epochs,
                trainable=None,
                learning_rate=head_learning_rate,
                optimizer=optimizer,
                weight_decay=weight_decay,
                label_smoothing=label_smoothing,
                name="head",
            )
        )
    if finetune_epochs:
        phases.append(
            Phase(
                finetune_epochs,
                trainable=unfreeze,
                learning_rate=finetune_learning_rate,
                optimizer=optimizer,
                schedule=schedule,
                warmup=warmup,
                layer_decay=layer_decay,
                weight_decay=weight_decay,
                label_smoothing=label_smoothing,
                name="finetune",
            )
        )
    if not phases:
        raise ValueError("Received head_epochs=0 and finetune_epochs=0; nothing would train.")
    return phases


def gradual_unfreezing(
    num_blocks: int,
    epochs_per_phase: int = 1,
    head_epochs: int | None = None,
    head_learning_rate: float = 1e-3,
    learning_rate: float | str = "auto",
    optimizer: str = "adam",
    schedule: str = "constant",
    layer_decay: float | None = None,
) -> list[Phase]:
    """ULMFiT's gradual unfreezing: the head, then one more block group per phase, top down.

    Phase 0 trains the head on the frozen base; phase k (1..num_blocks) trains the top k
    blocks (a trailing "top"/"pooler" group opens with the block beneath it). ULMFiT pairs it
    with discriminative rates: `layer_decay=1/2.6` reproduces its per-layer factor.

    Args:
        num_blocks: how many block groups to open in all (see `tfl.block_groups`).
        epochs_per_phase: epochs of each unfreezing phase.
        head_epochs: epochs of phase 0 (default `epochs_per_phase`; 0 skips it).
        head_learning_rate: the rate of phase 0.
        learning_rate: the (peak) rate of the unfreezing phases ("auto": see `Phase`).
        optimizer: optimizer name.
        schedule: schedule of each unfreezing phase.
        layer_decay: layer-wise learning-rate decay in the unfreezing phases.

    Example:
    >>> [p.trainable for p in gradual_unfreezing(3)]
    [None, 1, 2, 3]
    """
    if not isinstance(num_blocks, int) or num_blocks < 1:
        raise ValueError(f"Received num_blocks={num_blocks!r}; expected an integer >= 1.")
    head_epochs = epochs_per_phase if head_epochs is None else head_epochs
    phases = []
    if head_epochs:
        phases.append(
            Phase(head_epochs, None, head_learning_rate, optimizer=optimizer, name="head")
        )
    for k in range(1, num_blocks + 1):
        phases.append(
            Phase(
                epochs_per_phase,
                trainable=k,
                learning_rate=learning_rate,
                optimizer=optimizer,
                schedule=schedule,
                layer_decay=layer_decay,
                name=f"unfreeze{k}",
            )
        )
    return phases


def partial(
    top_n: int = 1, head_epochs: int = 5, finetune_epochs: int = 5, **kwargs
) -> list[Phase]:
    """`two_phase` where phase 2 trains only the top `top_n` blocks (the rest stay frozen).

    Example:
    >>> [p.trainable for p in partial(top_n=2)]
    [None, 2]
    """
    if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1:
        raise ValueError(f"Received top_n={top_n!r}; expected an integer >= 1.")
    return two_phase(head_epochs, finetune_epochs, unfreeze=top_n, **kwargs)


def feature_extraction(
    epochs: int = 10, learning_rate: float = 1e-3, optimizer: str = "adam", **kwargs
) -> list[Phase]:
    """One phase: the base never trains; the head learns on its features.

    Example:
    >>> feature_extraction(3)[0].trains_base
    False
    """
    return [Phase(epochs, None, learning_rate, optimizer=optimizer, name="features", **kwargs)]


# --- The runner --------------------------------------------------------------------------


class PhaseHistory(keras.callbacks.History):
    """The merged `History` of a phased run.

    `history[key]` holds one value per epoch over all phases (`history["phase"]` is the
    phase index), `epoch` the epoch numbers, and `phases` one dict per phase with its
    `name`, `start_epoch` and `end_epoch` (exclusive).
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.phases: list[dict] = []

    def add_epoch(self, epoch: int, logs: dict):
        if epoch in self.epoch:  # an epoch re-run after a restart: keep the last values
            i = self.epoch.index(epoch)
            self.epoch.pop(i)
            for values in self.history.values():
                if len(values) > i:
                    values.pop(i)
        n = len(self.epoch)
        self.epoch.append(epoch)
        for key, value in logs.items():
            column = self.history.setdefault(key, [None] * n)
            column.extend([None] * (n - len(column)))
            column.append(value)
        for column in self.history.values():
            column.extend([None] * (n + 1 - len(column)))


class _PhaseLogs(keras.callbacks.Callback):
    """Adds `phase` and `learning_rate` to the epoch logs (first in the callback list)."""

    def __init__(self, index: int, record: PhaseHistory):
        super().__init__()
        self.index = index
        self.record = record

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["phase"] = self.index
        optimizer = self.model.optimizer
        lr = optimizer.learning_rate  # a schedule's current value
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
        values = {k: _plain(v) for k, v in logs.items()}
        values["phase"] = self.index
        self.record.add_epoch(epoch, values)


def _plain(value):
    try:
        return float(keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return value


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _steps_per_epoch(x, batch_size, steps_per_epoch) -> int | None:
    if steps_per_epoch:
        return int(steps_per_epoch)
    if isinstance(x, tf.data.Dataset):
        n = int(x.cardinality())
        return n if n > 0 else None
    if isinstance(x, keras.utils.PyDataset):
        try:
            return len(x)
        except TypeError:
            return None
    first = keras.tree.flatten(x)[0] if x is not None else None
    if hasattr(first, "shape") and len(first.shape):
        return math.ceil(first.shape[0] / (batch_size or 32))
    return None


def _first_batch(x, batch_size):
    if isinstance(x, tf.data.Dataset):
        return next(iter(x.take(1)))
    if x is None or isinstance(x, keras.utils.PyDataset):
        return None
    return keras.tree.map_structure(lambda a: a[: batch_size or 32], x)


def _learning_rate(phase: Phase, model) -> Any:
    if phase.learning_rate != "auto":
        return phase.learning_rate
    if hasattr(model, "_default_learning_rate"):
        return model._default_learning_rate()
    return 1e-4 if any(b.trainable_weights for b in bases_of(model)) else 1e-3


def _make_schedule(phase: Phase, peak: float, steps: int | None):
    if isinstance(peak, keras.optimizers.schedules.LearningRateSchedule):
        return peak
    if phase.schedule == "constant" and not phase.warmup:
        return float(peak)
    if not steps:
        raise ValueError(
            f"Phase {phase.name!r} uses schedule={phase.schedule!r} / warmup={phase.warmup!r}, "
            "which need the number of steps per epoch, but the data has no known length. "
            "Pass steps_per_epoch=... to fit_phases (or use schedule='constant')."
        )
    from tfl.optimizers import OneCycle, WarmupDecay

    total = steps * phase.epochs
    if phase.schedule == "onecycle":
        return OneCycle(float(peak), total_steps=total)
    return WarmupDecay(
        float(peak),
        total_steps=total,
        warmup_steps=int(round(phase.warmup * total)),
        decay=phase.schedule,
    )


def make_optimizer(phase: Phase, model: keras.Model, steps_per_epoch: int | None = None):
    """The optimizer of `phase` for `model`, with its schedule and per-block rates.

    Call it after the phase's trainable set is applied: "auto" rates and the block
    multipliers depend on it.
    """
    rate = _make_schedule(phase, _learning_rate(phase, model), steps_per_epoch)
    spec = phase.optimizer
    if isinstance(spec, keras.optimizers.Optimizer):
        if phase.learning_rate != "auto" or phase.schedule != "constant" or phase.warmup:
            raise ValueError(
                f"Phase {phase.name!r} got an optimizer instance and learning_rate/schedule/"
                "warmup; set the rate on the optimizer, or pass the optimizer by name."
            )
        optimizer = spec
    elif isinstance(spec, str):
        config = {"learning_rate": rate}
        if phase.weight_decay is not None:
            config["weight_decay"] = phase.weight_decay
        try:
            optimizer = keras.optimizers.get({"class_name": spec, "config": config})
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"Received optimizer={spec!r} with {sorted(config)}: {error}. Use a Keras "
                "optimizer name such as 'adam', 'adamw' or 'sgd' (weight_decay needs an "
                "optimizer that supports it, e.g. 'adamw')."
            ) from None
    elif callable(spec):
        optimizer = spec(rate)
    else:
        raise ValueError(
            f"Received optimizer={spec!r}; expected a name, a keras Optimizer or a callable."
        )
    if phase.weight_decay:
        from tfl.optimizers import exclude_bias_and_norm

        exclude_bias_and_norm(optimizer)
    if phase.layer_decay is not None or phase.lr_multipliers:
        from tfl.optimizers import with_lr_multipliers

        optimizer = with_lr_multipliers(
            optimizer, model, multipliers=phase.lr_multipliers, layer_decay=phase.layer_decay
        )
    return optimizer


def apply_trainable(model: keras.Model, phase: Phase) -> keras.Model:
    """Set the trainable block groups of `model`'s bases for `phase` (before `compile`)."""
    trainable = phase.trainable
    if not phase.trains_base:
        return freeze(model)
    if trainable == "all":
        return unfreeze(model, top_n="all", train_batchnorm=phase.train_batchnorm)
    if isinstance(trainable, int):
        return unfreeze(model, top_n=trainable, train_batchnorm=phase.train_batchnorm)
    return unfreeze(model, groups=list(trainable), train_batchnorm=phase.train_batchnorm)


def _compile(model, optimizer, phase: Phase, loss, metrics, compile_kwargs):
    from tfl.models import TransferTask

    if isinstance(model, TransferTask):
        model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
            label_smoothing=phase.label_smoothing,
            **compile_kwargs,
        )
        return
    if phase.label_smoothing:
        raise ValueError(
            f"Phase {phase.name!r} sets label_smoothing={phase.label_smoothing}, which needs a "
            "tfl task model; for another model pass a loss with label smoothing as loss=."
        )
    previous = getattr(model, "_compile_config", None)
    previous = previous.config if previous is not None else {}
    if loss == "auto":
        loss = previous.get("loss")
        if loss is None:
            raise ValueError(
                f"{type(model).__name__} is not a tfl task and was never compiled: pass loss=... "
                "(and metrics=...) to fit_phases."
            )
    if metrics == "auto":
        metrics = previous.get("metrics")
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, **compile_kwargs)


def _backup_dirs(callbacks) -> tuple[str | None, str | None]:
    """The BackupAndRestore's (written, restored-from) directories; (None, None) without one.

    They differ on a non-chief worker of a multi-worker run, which writes to its temporary
    directory and resumes from the chief's backup (`tfl.callbacks.BackupAndRestore`).
    """
    for cb in callbacks:
        if isinstance(cb, keras.callbacks.BackupAndRestore):
            return cb.backup_dir, getattr(cb, "restore_dir", None) or cb.backup_dir
    return None, None


def _phase_callbacks(callbacks, backup_root, index, scheduled, restore_root=None):
    """The user's callbacks for one phase.

    BackupAndRestore is re-pointed to the phase's own directory; ReduceLROnPlateau sits out
    phases whose learning rate follows a schedule (the schedule decides the rate there).
    """
    result = []
    for cb in callbacks:
        if scheduled and isinstance(cb, keras.callbacks.ReduceLROnPlateau):
            continue
        if backup_root and isinstance(cb, keras.callbacks.BackupAndRestore):
            from tfl.callbacks import BackupAndRestore  # writes its files atomically

            cb = BackupAndRestore(
                os.path.join(backup_root, f"phase-{index}"),
                save_freq=cb.save_freq,
                double_checkpoint=cb.double_checkpoint,
                delete_checkpoint=cb.delete_checkpoint,
                restore_dir=os.path.join(restore_root or backup_root, f"phase-{index}"),
            )
        result.append(cb)
    return result


def _in_model_scope(fit):
    """Run `fit(model, ...)` in the scope of the strategy `model` was built under, so that
    optimizers and the cached-feature head model are created there too (Keras ties a model
    to the strategy active when it was created)."""

    @functools.wraps(fit)
    def wrapper(model, *args, **kwargs):
        from tfl.distribute import patch_multi_worker_build

        strategy = getattr(model, "_distribute_strategy", None)
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            return fit(patch_multi_worker_build(model), *args, **kwargs)

    return wrapper


def _read_state(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _write_state(path: str, state: dict):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, path)


def _history_rows(callbacks) -> list[dict]:
    """Rows of an existing CSVLogger file (to merge epochs run before a restart)."""
    import csv

    for cb in callbacks:
        if isinstance(cb, keras.callbacks.CSVLogger) and os.path.exists(cb.filename):
            with open(cb.filename, newline="") as f:
                return list(csv.DictReader(f, delimiter=cb.sep))
    return []


def _resolve_cache(cache, x, phases):
    """The `FeatureCache` for the frozen phases of this run, or None (see `fit_phases`)."""
    from tfl.cache import FeatureCache, is_randomly_augmented

    if cache is False or cache is None or all(p.trainable is not None for p in phases):
        return None
    if not isinstance(cache, bool | str | os.PathLike | FeatureCache):
        raise ValueError(
            f"Received cache={cache!r}; expected 'auto', 'memory', True, False, a folder or a "
            "tfl.cache.FeatureCache."
        )
    readable = (
        isinstance(x, tf.data.Dataset)
        or hasattr(x, "__array__")
        or isinstance(x, list | tuple | dict)
    )
    augmented = is_randomly_augmented(x) if readable else None
    if cache == "auto" or cache == "memory":
        if not readable or augmented is not False:
            return None  # augmented, shuffled or unreadable twice: train through the base
        return FeatureCache(None if cache == "memory" else "auto")
    if not readable or augmented is None:
        raise ValueError(
            f"Received cache={cache!r} with training data of type {type(x).__name__}; the "
            "feature cache reads arrays or a finite tf.data.Dataset. Pass one, or cache=False."
        )
    if augmented and getattr(x, "_tfl_augmented", None):
        raise ValueError(
            f"Received cache={cache!r} with randomly augmented training data: cached features "
            "would freeze one random draw. Turn augmentation off for the frozen phases, or use "
            "cache=False (the base then runs inside every step)."
        )
    if cache is True:
        return FeatureCache("auto")
    return cache if isinstance(cache, FeatureCache) else FeatureCache(os.fspath(cache))


class _OnFullModel(keras.callbacks.Callback):
    """While a cached phase fits the head model, callbacks see the full task.

    Callbacks keep `self.model` = the task (checkpoints save it, EarlyStopping restores its
    weights, BackupAndRestore backs it up; it shares its optimizer and head with the head
    model). This callback, last in the list, hands the task's `stop_training` and resume
    epoch to the head model whose `fit` loop reads them.
    """

    def __init__(self, callbacks, model, head_model):
        super().__init__()
        self.callbacks = list(callbacks)
        self.task = model
        self.head_model = head_model

    def __enter__(self):
        task = self.task
        for cb in self.callbacks:
            cb.set_model = lambda _, cb=cb: type(cb).set_model(cb, task)
        task.stop_training = False
        return self.callbacks + [self]

    def __exit__(self, *exc):
        for cb in self.callbacks:
            cb.__dict__.pop("set_model", None)

    def on_train_begin(self, logs=None):
        if self.task._initial_epoch is not None:  # BackupAndRestore found a backup
            self.head_model._initial_epoch = self.task._initial_epoch

    def _forward_stop(self, *args, **kwargs):
        if self.task.stop_training:
            self.head_model.stop_training = True

    on_train_batch_end = on_epoch_end = _forward_stop


def compile_like(head_model: keras.Model, model: keras.Model) -> None:
    """Compile `head_model` (from `tfl.cache.split_at_bases(model)`) as `model` is compiled.

    It shares `model`'s optimizer, loss and metrics, so training it on cached features
    trains the task's own head and optimizer state.
    """
    config = model._compile_config.config
    head_model.compile(
        optimizer=model.optimizer,
        loss=config["loss"],
        loss_weights=config["loss_weights"],
        metrics=config["metrics"],
        weighted_metrics=config["weighted_metrics"],
        jit_compile=config["jit_compile"],
        steps_per_execution=config["steps_per_execution"],
    )


def _fit_on_features(
    model,
    cached_run,
    feature_cache,
    phase,
    x,
    y,
    *,
    validation_data,
    batch_size,
    initial_epoch,
    callbacks,
    verbose,
    shuffle,
    fit_kwargs,
):
    """One frozen phase: train the head model on cached base features."""
    feature_model, head_model = cached_run
    fit_kwargs = dict(fit_kwargs)
    fit_kwargs.pop("shuffle", None)
    sample_weight = fit_kwargs.pop("sample_weight", None)
    talk = 0 if verbose == 0 else 1
    if talk:
        print(f"Phase {phase.name!r}: the base is frozen; training the head on cached features.")
    train = feature_cache.features(
        model,
        x,
        y,
        sample_weight=sample_weight,
        batch_size=batch_size,
        feature_model=feature_model,
        verbose=talk,
    )
    validation = None
    if validation_data is not None:
        if isinstance(validation_data, tf.data.Dataset):
            vx, vy, vw = validation_data, None, None
        else:
            vx, vy, vw = keras.utils.unpack_x_y_sample_weight(tuple(validation_data))
        validation = feature_cache.features(
            model,
            vx,
            vy,
            sample_weight=vw,
            batch_size=batch_size,
            feature_model=feature_model,
            verbose=talk,
        )
    compile_like(head_model, model)
    from tfl.distribute import patch_multi_worker_build  # keras-team/keras#20585

    patch_multi_worker_build(head_model)
    head_model._initial_epoch = None
    if isinstance(x, tf.data.Dataset):
        from tfl.distribute import shard  # the input sharding of the active strategy

        # Same batches as the source data; shuffled each epoch unless shuffle=False was asked.
        data = dict(
            x=shard(train.dataset(train.batch_size, shuffle=shuffle is not False, seed=None))
        )
        data["shuffle"] = False  # the dataset shuffles itself
        if validation is not None:
            data["validation_data"] = shard(validation.dataset(validation.batch_size))
    else:
        data = dict(x=train.x, y=train.targets, sample_weight=train.sample_weight)
        data.update(batch_size=batch_size, shuffle=True if shuffle is None else shuffle)
        if validation is not None:
            data["validation_data"] = keras.utils.pack_x_y_sample_weight(
                validation.x, validation.targets, validation.sample_weight
            )
    with _OnFullModel(callbacks, model, head_model) as pinned:
        return head_model.fit(
            initial_epoch=initial_epoch,
            epochs=initial_epoch + phase.epochs,
            callbacks=pinned,
            verbose=verbose,
            **data,
            **fit_kwargs,
        )


@_in_model_scope
def fit_phases(
    model: keras.Model,
    phases: Sequence[Phase],
    x=None,
    y=None,
    *,
    validation_data=None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    batch_size: int | None = None,
    steps_per_epoch: int | None = None,
    loss="auto",
    metrics="auto",
    l2sp: float | None = None,
    lint: bool = True,
    cache="auto",
    verbose="auto",
    compile_kwargs: dict | None = None,
    **fit_kwargs,
) -> PhaseHistory:
    """Fit `model` through `phases` with plain `model.fit`; resumable after a kill.

    For each phase: set the trainable block groups, compile with the phase's optimizer
    (Keras reads `trainable` only at `compile()`), run the trap linter on one batch
    (`tfl.callbacks.lint`), and `fit(initial_epoch=...)` so epoch numbers continue. A phase
    that stops early (EarlyStopping) hands over at the epoch it reached.

    Callbacks are shared by all phases, with Keras semantics: EarlyStopping and
    ReduceLROnPlateau restart their patience in each phase (ReduceLROnPlateau sits out a
    phase whose rate follows a schedule: warmup, cosine, one-cycle), a ModelCheckpoint with
    `save_best_only` keeps the best over the whole run (also after a restart, from the CSV
    log), CSVLogger/TensorBoard append. A `BackupAndRestore` makes the run resumable (see the
    module docstring): call `fit_phases` again with the same arguments after a crash.

    Args:
        model: a tfl task (or any compiled Keras model whose bases `tfl.block_groups` knows).
        phases: the plan, e.g. `tfl.two_phase()`.
        x, y: training data as for `model.fit` (a `tf.data.Dataset` of batches, arrays, ...).
        validation_data: as for `model.fit`.
        callbacks: Keras callbacks for every phase, e.g. `tfl.callbacks.standard_callbacks`.
        batch_size: for array inputs.
        steps_per_epoch: steps per epoch; needed for schedules when the data has no length.
        loss, metrics: `"auto"`: the head's defaults (tfl tasks) or what the model was
            compiled with.
        l2sp: strength of an L2-SP penalty pulling the base toward the weights it has when
            `fit_phases` starts (its pretrained values); see `tfl.regularizers.apply_l2sp`.
        lint: warn about known transfer-learning traps at the start of each phase.
        cache: the bottleneck cache for phases whose base is frozen (see `tfl.cache`):
            the base's features are computed once and the head trains on them, which makes
            such a phase cost about one forward pass instead of one per epoch. `"auto"`
            (default): on, with features kept on disk (`tfl.cache.cache_dir()`) for later
            runs, unless the training data is randomly augmented; `"memory"`: the same,
            in memory only; `True`: on, an error if the data is augmented; `False`: off
            (the base runs inside every step); a folder or a `tfl.cache.FeatureCache`.
            Cached phases need arrays or a finite `tf.data.Dataset`.
        verbose: as for `model.fit`.
        compile_kwargs: more `model.compile` arguments (e.g. `jit_compile`).
        **fit_kwargs: more `model.fit` arguments (e.g. `class_weight`).

    Returns:
        A `PhaseHistory` over all epochs run, with `phase` and `learning_rate` columns.
    """
    if not bases_of(model) or bases_of(model) == [model]:
        raise ValueError(
            f"fit_phases needs a model built on a pretrained base (a tfl task such as "
            f"tfl.ImageClassifier, or a keras-hub task); received a {type(model).__name__} "
            "without `backbone`/`backbones`. Freeze and compile it yourself, then model.fit."
        )
    phases = list(phases)
    if not phases or not all(isinstance(p, Phase) for p in phases):
        raise ValueError(
            f"Received phases={phases!r}; expected a non-empty list of tfl.Phase, "
            "e.g. tfl.two_phase()."
        )
    for key in ("epochs", "initial_epoch"):
        if key in fit_kwargs:
            raise ValueError(f"Received {key}=...; each Phase sets its own epochs.")
    phases = [
        dataclasses.replace(p, name=p.name or f"phase{i}") if p.name is None else p
        for i, p in enumerate(phases)
    ]
    names = [p.name for p in phases]
    if len(set(names)) != len(names):
        raise ValueError(f"Received phases with duplicate names {names}; names must differ.")
    callbacks = list(callbacks)
    compile_kwargs = dict(compile_kwargs or {})
    steps = _steps_per_epoch(x, batch_size, steps_per_epoch)
    if steps_per_epoch:
        fit_kwargs["steps_per_epoch"] = steps_per_epoch
    if isinstance(x, tf.data.Dataset):  # Keras warns about its default shuffle=True otherwise
        fit_kwargs.setdefault("shuffle", False)

    if l2sp:
        from tfl.regularizers import apply_l2sp

        apply_l2sp(model, alpha=l2sp)

    # Where to keep the run's state: the BackupAndRestore directory, if any (restored from
    # another one on a non-chief worker).
    backup_root, restore_root = _backup_dirs(callbacks)
    state_path = os.path.join(backup_root, _STATE_FILE) if backup_root else None
    plan = [p.describe() for p in phases]
    state = _read_state(os.path.join(restore_root, _STATE_FILE)) if restore_root else None
    if state is not None and state.get("plan") != plan:
        raise ValueError(
            f"{backup_root} holds the state of a run with a different plan of phases. Resume "
            "with the same phases, or use a new run directory (or delete that backup)."
        )
    if backup_root:
        os.makedirs(backup_root, exist_ok=True)
    if state is None:
        state = {"plan": plan, "done": []}
        if backup_root:
            _write_state(state_path, state)

    history = PhaseHistory()
    history.set_model(model)
    done = state["done"]
    if done:  # a restart: recover earlier epochs and the last finished phase's weights
        for row in _history_rows(callbacks):
            epoch = int(row.pop("epoch"))
            values = {k: _number(v) for k, v in row.items()}
            if "phase" in values:
                values["phase"] = int(values["phase"])
            history.add_epoch(epoch, values)
        last = done[-1]
        skip = [model.optimizer] if model.optimizer is not None else None
        keras.saving.load_weights(
            model, os.path.join(restore_root, last["weights"]), objects_to_skip=skip
        )
        from tfl.callbacks import restore_checkpoint_best

        for cb in callbacks:
            if isinstance(cb, keras.callbacks.CSVLogger):
                restore_checkpoint_best(callbacks, cb.filename)
    history.phases = [
        {"name": d["name"], "start_epoch": d["start_epoch"], "end_epoch": d["end_epoch"]}
        for d in done
    ]

    user_shuffle = fit_kwargs.get("shuffle")
    feature_cache = _resolve_cache(cache, x, phases)
    cached_run = None  # (feature_model, head_model) once split

    epoch = done[-1]["end_epoch"] if done else 0
    first = _first_batch(x, batch_size) if lint else None
    for index, phase in enumerate(phases):
        if index < len(done):
            continue
        apply_trainable(model, phase)
        optimizer = make_optimizer(phase, model, steps)
        _compile(model, optimizer, phase, loss, metrics, compile_kwargs)
        if lint:
            from tfl.callbacks import lint as lint_model

            lint_model(model, first)
        scheduled = isinstance(
            getattr(optimizer, "_learning_rate", None),
            keras.optimizers.schedules.LearningRateSchedule,
        )
        phase_callbacks = [_PhaseLogs(index, history)]
        phase_callbacks += _phase_callbacks(callbacks, backup_root, index, scheduled, restore_root)
        model._initial_epoch = None  # Keras never resets what BackupAndRestore set
        start = epoch
        if feature_cache is not None and phase.trainable is None:
            if cached_run is None:
                from tfl.cache import split_at_bases

                cached_run = split_at_bases(model)
            fit_history = _fit_on_features(
                model,
                cached_run,
                feature_cache,
                phase,
                x,
                y,
                validation_data=validation_data,
                batch_size=batch_size,
                initial_epoch=start,
                callbacks=phase_callbacks,
                verbose=verbose,
                shuffle=user_shuffle,
                fit_kwargs=fit_kwargs,
            )
        else:
            fit_history = model.fit(
                x,
                y,
                validation_data=validation_data,
                batch_size=batch_size,
                initial_epoch=start,
                epochs=start + phase.epochs,
                callbacks=phase_callbacks,
                verbose=verbose,
                **fit_kwargs,
            )
        model._initial_epoch = None
        ran = [e for e in history.epoch if e >= start]
        epoch = (max(ran) + 1) if ran else start + (len(fit_history.epoch) or phase.epochs)
        record = {"name": phase.name, "start_epoch": start, "end_epoch": epoch}
        history.phases.append(record)
        if backup_root:
            weights = f"phase-{index}.weights.h5"
            keras.saving.save_weights(
                model, os.path.join(backup_root, weights), objects_to_skip=[model.optimizer]
            )
            done.append({**record, "weights": weights})
            _write_state(state_path, state)
    history.params = {"phases": [p.name for p in phases], "epochs": epoch}
    return history


def fine_tune(
    model: keras.Model,
    x=None,
    y=None,
    *,
    validation_data=None,
    epochs: int = 5,
    head_epochs: int = 1,
    run_dir: str | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    **kwargs,
) -> PhaseHistory:
    """fastai's `fine_tune` for Keras: `head_epochs` on the frozen base, then `epochs` more.

    With `run_dir`, the standard callbacks (best checkpoint, early stopping, CSV and
    TensorBoard logs, backup for resuming) write there; see
    `tfl.callbacks.standard_callbacks`. Other keyword arguments go to `two_phase` when it
    accepts them, else to `fit_phases`.
    """
    import inspect

    preset_args = set(inspect.signature(two_phase).parameters)
    preset = {k: kwargs.pop(k) for k in list(kwargs) if k in preset_args}
    phases = two_phase(head_epochs=head_epochs, finetune_epochs=epochs, **preset)
    if callbacks is None:
        callbacks = []
        if run_dir is not None:
            from tfl.callbacks import standard_callbacks

            monitor = "val_loss" if validation_data is not None else "loss"
            callbacks = standard_callbacks(run_dir, monitor=monitor)
    return fit_phases(
        model, phases, x, y, validation_data=validation_data, callbacks=callbacks, **kwargs
    )
