"""The phase runner: `fit_phases` runs a plan of phases with plain `model.fit`.

For each phase it sets `trainable`, compiles (Keras reads `trainable` only at `compile()`),
and calls `fit(initial_epoch=...)` so epochs continue across phases; it returns one merged
`PhaseHistory` with a `phase` column. A frozen phase may train the head on cached base
features (`tfl.fitting.cached`); a run with a `BackupAndRestore` resumes after a kill
(`tfl.fitting.resume`). `fine_tune` is the one-call version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import math
import os
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from tfl.fitting.cached import fit_on_features, resolve_cache
from tfl.fitting.compiling import apply_trainable, compile_phase, make_optimizer
from tfl.fitting.history import PhaseHistory, PhaseLogs, PhaseTimer
from tfl.fitting.progress import EpochProgress
from tfl.fitting.resume import ResumeState
from tfl.freezing import bases_of
from tfl.peft import ReviveAdapters, has_lora
from tfl.phases import Phase, two_phase
from tfl.wise import blend, check_alpha, interpolate, snapshot


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
    wise: float | str | None = None,
    **fit_kwargs,
) -> PhaseHistory:
    """Fit `model` through `phases` with plain `model.fit`; resumable after a kill.

    For each phase: set the trainable block groups, compile with the phase's optimizer
    (Keras reads `trainable` only at `compile()`), run the trap linter on one batch
    (`tfl.linter.lint`), and `fit(initial_epoch=...)` so epoch numbers continue. A phase
    that stops early (EarlyStopping) hands over at the epoch it reached.

    Callbacks are shared by all phases, with Keras semantics: EarlyStopping and
    ReduceLROnPlateau restart their patience in each phase (ReduceLROnPlateau sits out a
    phase whose rate follows a schedule: warmup, cosine, one-cycle), a ModelCheckpoint with
    `save_best_only` keeps the best over the whole run (also after a restart, from the CSV
    log), CSVLogger/TensorBoard append. A `BackupAndRestore` makes the run resumable (see
    `tfl.fitting`): call `fit_phases` again with the same arguments after a crash.

    Args:
        model: a tfl task (or any compiled Keras model whose bases `tfl.block_groups` knows).
        phases: the plan, e.g. `tfl.two_phase()`.
        x, y: training data as for `model.fit` (a `tf.data.Dataset` of batches, arrays, ...),
            or a `tfl.data.DataSplits` (its train split; its validation split unless
            `validation_data` is given; its fingerprints key the feature cache).
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
        verbose: `"auto"` (default): Keras' progress bar when stdout is a terminal, else one
            line per epoch (log files, CI, notebooks); 1: the bar; 2: one line per epoch; 0:
            silent. The console leaves out the `phase` and `learning_rate` columns of the
            history (`tfl.fitting.progress.EpochProgress`).
        compile_kwargs: more `model.compile` arguments (e.g. `jit_compile`).
        wise: WiSE-FT (`tfl.wise`): after the last phase, blend the weights with those at
            the end of the probe (the last frozen-base phase before the base first trains):
            an α in [0, 1] (0: the probe, 1: the fine-tuned model), or `"auto"`: the α of
            `tfl.wise.GRID` with the best validation accuracy. None (default): no blend.
            `history.wise` records the α (and the table for "auto").
        **fit_kwargs: more `model.fit` arguments (e.g. `class_weight`).

    Returns:
        A `PhaseHistory` over all epochs run, with `phase` and `learning_rate` columns; each
        entry of `history.phases` also holds the phase's `trainable_params` and
        `seconds_per_step` (when it ran in this process).
    """
    phases = _checked_phases(model, phases, fit_kwargs)
    x, validation_data, known = _unpack_data(x, validation_data)
    probe = _probe_phase(phases, wise, validation_data)
    run = _PhaseRun(
        model=model,
        x=x,
        y=y,
        validation_data=validation_data,
        callbacks=list(callbacks),
        batch_size=batch_size,
        verbose=verbose,
        loss=loss,
        metrics=metrics,
        compile_kwargs=dict(compile_kwargs or {}),
        steps=_steps_per_epoch(x, batch_size, steps_per_epoch),
        fit_kwargs=_with_fit_defaults(fit_kwargs, x, steps_per_epoch),
        known=known,
    )
    if l2sp:
        from tfl.regularizers import apply_l2sp

        apply_l2sp(model, alpha=l2sp)
    # Where to keep the run's state: the BackupAndRestore directory, if any (restored from
    # another one on a non-chief worker).
    state = ResumeState.open(run.callbacks, phases)
    run.history.set_model(model)
    state.restore(model, run.history, run.callbacks)  # a restart: earlier epochs and weights
    run.feature_cache = resolve_cache(cache, x, phases, known.get("augmented"))
    run.first_batch = _first_batch(x, batch_size) if lint else None
    epoch = state.next_epoch
    for index, phase in enumerate(phases):
        if index < len(state.done):
            continue
        fit_history = _fit_phase(run, state, index, phase, epoch, lint)
        epoch = _finish_phase(run, state, index, phase, epoch, fit_history)
        if index == probe:
            run.probe_weights = snapshot(model)
    run.history.params = {"phases": [p.name for p in phases], "epochs": epoch}
    if wise is not None:
        start = run.probe_weights or _saved_weights(model, state, probe)
        run.history.wise = blend(model, start, snapshot(model), wise, run.validation_data)
        run.history.wise["probe_phase"] = phases[probe].name
    return run.history


def _probe_phase(phases: list[Phase], wise, validation_data) -> int | None:
    """The index of the phase whose end is WiSE-FT's θ₀: the last frozen-base phase before
    the first one that trains the base (None without `wise`)."""
    if check_alpha(wise) is None:
        return None
    trains = [i for i, p in enumerate(phases) if p.trains_base]
    frozen = [i for i in range(trains[0]) if not phases[i].trains_base] if trains else []
    if not frozen:
        raise ValueError(
            f"Received wise={wise!r} with phases {[p.name for p in phases]}: WiSE-FT blends "
            "the model at the end of a frozen-base (probe) phase with the fine-tuned one, so "
            "it needs a phase with trainable=None followed by one that trains the base, "
            "e.g. tfl.two_phase(head_epochs >= 1, finetune_epochs >= 1)."
        )
    if wise == "auto" and validation_data is None:
        raise ValueError(
            "Received wise='auto' without validation data: α is chosen on it. Pass "
            "validation_data (or a DataSplits with a validation split), or a fixed α."
        )
    return frozen[-1]


def _saved_weights(model: keras.Model, state: ResumeState, index: int) -> list:
    """The weights phase `index` ended with, from the backup of an earlier process."""
    current = snapshot(model)
    path = os.path.join(state.restore_root, state.done[index]["weights"])
    keras.saving.load_weights(model, path, objects_to_skip=[model.optimizer])
    weights = snapshot(model)
    interpolate(model, weights, current, 1.0)  # back to where the model was
    return weights


@dataclasses.dataclass
class _PhaseRun:
    """What the phases of one `fit_phases` call share: the model, data and settings."""

    model: keras.Model
    x: Any
    y: Any
    validation_data: Any
    callbacks: list
    batch_size: int | None
    verbose: Any
    loss: Any
    metrics: Any
    compile_kwargs: dict
    steps: int | None  # steps per epoch, for schedules (None: unknown)
    fit_kwargs: dict
    # What a DataSplits says of its data: fingerprints, augmented, the training split in order.
    known: dict = dataclasses.field(default_factory=dict)
    history: PhaseHistory = dataclasses.field(default_factory=PhaseHistory)
    feature_cache: Any = None  # the FeatureCache of frozen phases, or None
    first_batch: Any = None  # what the linter checks
    cached_run: tuple | None = None  # (feature_model, head_model) once split
    probe_weights: list | None = None  # WiSE-FT's θ₀, when the probe ran in this process
    timer: PhaseTimer | None = None  # the current phase's trainable parameters, step time


def _unpack_data(x, validation_data):
    """`(x, validation_data, known)`: a `tfl.data.DataSplits` as the training data gives its
    train split, its validation split (unless `validation_data` is given) and what it knows
    of them (`fingerprints` per split, `augmented`, `train_in_order`); other data pass as
    they are, nothing known."""
    from tfl.data.splits import DataSplits

    if not isinstance(x, DataSplits):
        return x, validation_data, {}
    fingerprints = {"train": x.fingerprints.get("train")}
    if validation_data is None:
        validation_data = x.validation
        fingerprints["validation"] = x.fingerprints.get("validation")
    known = {"fingerprints": fingerprints, "augmented": x.augmented, "in_order": x.train_in_order}
    return x.train, validation_data, known


def _checked_phases(model, phases, fit_kwargs) -> list[Phase]:
    """The phases, each with a name; errors for a model without a base or a bad plan."""
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
    return phases


def _with_fit_defaults(fit_kwargs: dict, x, steps_per_epoch) -> dict:
    """The `fit` arguments of every phase: the user's, `steps_per_epoch`, `shuffle`."""
    if steps_per_epoch:
        fit_kwargs["steps_per_epoch"] = steps_per_epoch
    if isinstance(x, tf.data.Dataset):  # Keras warns about its default shuffle=True otherwise
        fit_kwargs.setdefault("shuffle", False)
    return fit_kwargs


def _fit_phase(run: _PhaseRun, state: ResumeState, index: int, phase: Phase, start, lint):
    """Set up phase `index` (trainable set, optimizer, compile, lint) and fit it."""
    model = run.model
    apply_trainable(model, phase)
    optimizer = make_optimizer(phase, model, run.steps)
    compile_phase(model, optimizer, phase, run.loss, run.metrics, run.compile_kwargs)
    if lint:
        from tfl.linter import lint as lint_model

        lint_model(model, run.first_batch)
    scheduled = isinstance(
        getattr(optimizer, "_learning_rate", None),
        keras.optimizers.schedules.LearningRateSchedule,
    )
    run.timer = PhaseTimer()
    callbacks = [PhaseLogs(index, run.history), run.timer]
    callbacks += _with_ema_swap(state.phase_callbacks(run.callbacks, index, scheduled), phase)
    if has_lora(model):  # after a restore: adapters loaded as zeros train again
        callbacks.append(ReviveAdapters())
    if run.verbose != 0 and not any(
        isinstance(cb, keras.callbacks.ProgbarLogger) for cb in callbacks
    ):
        callbacks.append(EpochProgress())  # no phase / learning_rate columns on the console
    model._initial_epoch = None  # Keras never resets what BackupAndRestore set
    if run.feature_cache is not None and phase.trainable is None:
        return _fit_cached(run, phase, start, callbacks)
    return model.fit(
        run.x,
        run.y,
        validation_data=run.validation_data,
        batch_size=run.batch_size,
        initial_epoch=start,
        epochs=start + phase.epochs,
        callbacks=callbacks,
        verbose=run.verbose,
        **run.fit_kwargs,
    )


def _with_ema_swap(callbacks: list, phase: Phase) -> list:
    """The phase's callbacks with Keras' `SwapEMAWeights` for a phase with `ema`.

    A new one per phase (it keeps state, and each phase has its own optimizer), with
    `swap_on_epoch=True` so that validation, `ModelCheckpoint`, `EarlyStopping` (its best
    weights) and the phase's end see the averaged weights. It goes after any
    `BackupAndRestore`, whose backup must hold the raw weights and the average as they train.
    """
    if phase.ema is None:
        return callbacks
    backups = [
        i for i, cb in enumerate(callbacks) if isinstance(cb, keras.callbacks.BackupAndRestore)
    ]
    at = backups[-1] + 1 if backups else 0
    return callbacks[:at] + [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] + callbacks[at:]


def _fit_cached(run: _PhaseRun, phase: Phase, start: int, callbacks: list):
    """A frozen phase on cached features (the model is cut at its bases once per run)."""
    if run.cached_run is None:
        from tfl.cache import split_at_bases

        run.cached_run = split_at_bases(run.model)
    return fit_on_features(
        run.model,
        run.cached_run,
        run.feature_cache,
        phase,
        run.x,
        run.y,
        validation_data=run.validation_data,
        batch_size=run.batch_size,
        initial_epoch=start,
        callbacks=callbacks,
        verbose=run.verbose,
        shuffle=run.fit_kwargs.get("shuffle"),
        fit_kwargs=run.fit_kwargs,
        known=run.known,
    )


def _finish_phase(run, state, index: int, phase: Phase, start: int, fit_history) -> int:
    """Record where phase `index` ended (history, backup state); return that epoch."""
    run.model._initial_epoch = None
    ran = [e for e in run.history.epoch if e >= start]
    epoch = (max(ran) + 1) if ran else start + (len(fit_history.epoch) or phase.epochs)
    record = {"name": phase.name, "start_epoch": start, "end_epoch": epoch}
    if run.timer is not None and run.timer.trainable_params is not None:
        record.update(
            trainable_params=run.timer.trainable_params,
            seconds_per_step=run.timer.seconds_per_step,
        )
    run.history.phases.append(record)
    state.finish_phase(run.model, index, record)
    return epoch


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
