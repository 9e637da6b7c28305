"""The standard callback set for a run directory, and callbacks that suit phased runs.

`standard_callbacks(run_dir)` returns the usual Keras callbacks wired to one directory:
`history.csv`, `backup/`, `best.keras` and `logs/` (TensorBoard). One list can serve every
`fit` of a multi-phase fine-tune (fit the head; unfreeze; compile with a new optimizer;
`fit(initial_epoch=...)`). What carries over between those fits:

- `EarlyStopping` and `ReduceLROnPlateau` start afresh in every `fit` (Keras resets them in
  `on_train_begin`): patience counts from the first epoch of the phase, an early stop ends
  only that `fit`, and `restore_best_weights` restores the best epoch *of that phase*.
- `ModelCheckpoint` keeps `best` across fits (Keras never resets it): `best.keras` is the
  best model of the whole run, rewritten in a later phase only when that phase beats it. In a
  new process (a killed run resumed), call `restore_checkpoint_best(callbacks, history_csv)`
  first so the history of the earlier process still counts.
- A learning rate reduced by `ReduceLROnPlateau` lives in that phase's optimizer; the next
  phase compiles a new optimizer with its own rate. tfl's `ReduceLROnPlateau` stands aside
  (with one warning per `fit`) when the rate is a `LearningRateSchedule`: the schedule wins.
- `history.csv` gets its header once and one row per epoch of every phase (the epoch column
  continues with `initial_epoch`), plus the `learning_rate` of each epoch. TensorBoard
  appends events to the same `logs/`, with epoch steps that continue.
- Keras's `BackupAndRestore` deletes its backup at the end of every `fit` that ends normally
  (also by early stopping) and resumes a `fit` at the epoch it recorded, so a backup only
  belongs to one phase: give each phase its own directory (as `tfl.fitting.fit_phases`
  does).

The trap linter that was here (`lint`, `TransferWarning`) is `tfl.linter`; `tfl.callbacks.lint`
still works, with a `DeprecationWarning`.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import warnings
from collections.abc import Sequence

import keras
import tensorflow as tf

from tfl._deprecation import moved_names
from tfl.linter import TransferWarning

MODES = ("auto", "min", "max")

# ---------------------------------------------------------------------------------------------
# Callbacks


class ReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """`keras.callbacks.ReduceLROnPlateau` that stands aside when the LR is a schedule.

    Keras's callback assigns a float to `optimizer.learning_rate`, which raises a `TypeError`
    when the optimizer was built with a `LearningRateSchedule` (or a callable). This subclass
    acts exactly like Keras's with a constant learning rate; with a schedule it changes
    nothing, warns once per `fit` (`TransferWarning`) and still logs the current rate as
    `learning_rate`: the schedule wins. Its state (wait, best) restarts in every `fit`, and a
    reduced rate stays with that fit's optimizer: a phase compiled with a new optimizer starts
    from the new optimizer's own rate. The `learning_rate` logged for an epoch is the rate
    that epoch trained with (a reduction at its end applies from the next epoch).

    Args: as `keras.callbacks.ReduceLROnPlateau`.

    Example:
    >>> import keras
    >>> from tfl.callbacks import ReduceLROnPlateau
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.1), "mse")
    >>> x, y = np.ones((4, 1)), np.zeros((4, 1))
    >>> cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    >>> h = model.fit(x, y, epochs=3, callbacks=[cb], verbose=0)
    >>> [round(lr, 3) for lr in h.history["learning_rate"]]
    [0.1, 0.1, 0.05]
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._stands_aside = _has_schedule(self.model.optimizer)
        if self._stands_aside:
            warnings.warn(
                f"ReduceLROnPlateau(monitor={self.monitor!r}) leaves the learning rate of "
                f"{self.model.name!r} alone in this fit: its optimizer follows a learning-rate "
                "schedule, and the schedule wins. To reduce on plateaus instead, compile with "
                "a constant learning rate.",
                TransferWarning,
                stacklevel=2,
            )

    def on_epoch_end(self, epoch, logs=None):
        if not getattr(self, "_stands_aside", False):
            super().on_epoch_end(epoch, logs)
        elif logs is not None:
            lr = _current_learning_rate(self.model.optimizer)
            if lr is not None:
                logs["learning_rate"] = lr


class _HistoryCSVLogger(keras.callbacks.CSVLogger):
    """A `CSVLogger` (append mode) for a run of several fits.

    Differences from Keras's: the `learning_rate` of each epoch is a column, and a later fit
    keeps the columns of the file's header (new metrics widen the header; old rows get "NA"),
    so the rows of all phases stay aligned under one header.
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._header = _read_header(self.filename, self.sep) if self.append else None
        self._first_epoch = True

    def on_epoch_end(self, epoch, logs=None):
        if self._first_epoch and self._header:
            # A run killed after this logger wrote an epoch's row but before the backup saved
            # that epoch re-runs it: its new row replaces the old one (no duplicate epochs).
            self._drop_rows_from(epoch)
        self._first_epoch = False
        logs = dict(logs or {})
        if "learning_rate" not in logs and self.model.optimizer is not None:
            lr = _current_learning_rate(self.model.optimizer)
            if lr is not None:
                logs["learning_rate"] = lr
        if self.keys is None:
            keys = sorted(logs)
            if not any(k.startswith("val_") for k in keys):
                # As Keras: leave room for validation metrics (e.g. with validation_freq).
                keys += [f"val_{k}" for k in keys if k != "learning_rate"]
            if self._header:
                known = self._header[1:]
                new = [k for k in keys if k not in known]
                if new:
                    self._widen_header(self._header + new)
                keys = known + new
            self.keys = keys
        super().on_epoch_end(epoch, logs)

    def _drop_rows_from(self, epoch: int):
        with open(self.filename, newline="") as f:
            rows = list(csv.DictReader(f, delimiter=self.sep))
        kept = [r for r in rows if _epoch_of(r) is None or _epoch_of(r) < epoch]
        if len(kept) == len(rows):
            return
        self.csv_file.close()
        with open(self.filename, "w", newline="") as f:
            writer = csv.DictWriter(f, self._header, restval="NA", delimiter=self.sep)
            writer.writeheader()
            writer.writerows(kept)
        self.csv_file = open(self.filename, "a")  # noqa: SIM115 (closed in on_train_end)

    def _widen_header(self, fieldnames: list[str]):
        self.csv_file.close()
        with open(self.filename, newline="") as f:
            rows = list(csv.DictReader(f, delimiter=self.sep))
        with open(self.filename, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames, restval="NA", delimiter=self.sep)
            writer.writeheader()
            writer.writerows(rows)
        self.csv_file = open(self.filename, "a")  # noqa: SIM115 (closed in on_train_end)
        self._header = fieldnames


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's `BackupAndRestore`, but a kill while it saves never leaves a broken backup.

    Keras writes `latest.weights.h5` in place: a run killed during that write (found by
    killing `tfl train` at random points) leaves a half-written HDF5 file, and the restart
    fails with "bad object header version number". Here the weights and the epoch record are
    written beside the backup and renamed over it, so the backup is always the last complete
    epoch. `tfl.fit_phases` uses this class for every phase's backup.

    `restore_dir`: restore from another directory than the one written (a non-chief
    worker of a multi-worker run writes to its temporary directory and restores from the
    chief's backup, so every worker resumes from the same epoch and weights, as TensorFlow's
    multi-worker BackupAndRestore does); that directory must be readable by every worker.

    Example:
    >>> import tempfile
    >>> from tfl.callbacks import BackupAndRestore
    >>> BackupAndRestore(tempfile.mkdtemp()).save_freq
    'epoch'
    """

    def __init__(
        self,
        backup_dir: str,
        save_freq="epoch",
        double_checkpoint: bool = False,
        delete_checkpoint: bool = True,
        restore_dir: str | None = None,
    ):
        super().__init__(
            backup_dir,
            save_freq=save_freq,
            double_checkpoint=double_checkpoint,
            delete_checkpoint=delete_checkpoint,
        )
        self.restore_dir = restore_dir

    def on_train_begin(self, logs=None):
        if self.restore_dir is None or os.path.abspath(self.restore_dir) == os.path.abspath(
            self.backup_dir
        ):
            return super().on_train_begin(logs)
        # Read the other directory's files; never repair them (they are another worker's).
        written = self._weights_path, self._training_metadata_path
        self._weights_path = os.path.join(self.restore_dir, "latest.weights.h5")
        self._training_metadata_path = os.path.join(self.restore_dir, "training_metadata.json")
        try:
            self._load_model()
        finally:
            self._weights_path, self._training_metadata_path = written

    def _save_model(self):
        if not tf.io.gfile.exists(self.backup_dir):
            tf.io.gfile.makedirs(self.backup_dir)
        if self.double_checkpoint:
            for path, prev in (
                (self._weights_path, self._prev_weights_path),
                (self._training_metadata_path, self._prev_training_metadata_path),
            ):
                if tf.io.gfile.exists(path):
                    tf.io.gfile.copy(path, prev + ".partial", overwrite=True)
                    tf.io.gfile.rename(prev + ".partial", prev, overwrite=True)
        partial = os.path.join(self.backup_dir, "partial.weights.h5")
        self.model.save_weights(filepath=partial, overwrite=True)
        with tf.io.gfile.GFile(self._training_metadata_path + ".partial", "w") as f:
            f.write(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
        tf.io.gfile.rename(partial, self._weights_path, overwrite=True)
        tf.io.gfile.rename(
            self._training_metadata_path + ".partial", self._training_metadata_path, overwrite=True
        )


class ModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras's `ModelCheckpoint`, but each file is written beside its target and renamed.

    A run killed while Keras writes `best.keras` in place would leave a broken zip as the
    "best" model; here the previous best stays intact until the new one is complete.

    Example:
    >>> from tfl.callbacks import ModelCheckpoint
    >>> ModelCheckpoint("best.keras", save_best_only=True).filepath
    'best.keras'
    """

    _partial = False

    def _get_file_path(self, epoch, batch, logs):
        path = super()._get_file_path(epoch, batch, logs)
        return _partial_path(path) if self._partial else path

    def _save_model(self, epoch, batch, logs):
        final = super()._get_file_path(epoch, batch, logs)
        partial = _partial_path(final)
        if partial == final:  # a file type Keras will name itself: save as Keras does
            return super()._save_model(epoch, batch, logs)
        if tf.io.gfile.exists(partial):  # left by a killed run: never promote it
            tf.io.gfile.remove(partial)
        self._partial, verbose, self.verbose = True, self.verbose, 0
        try:
            super()._save_model(epoch, batch, logs)
        finally:
            self._partial, self.verbose = False, verbose
        if tf.io.gfile.exists(partial):
            tf.io.gfile.rename(partial, final, overwrite=True)
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: finished saving model to {final}")


def _partial_path(path: str) -> str:
    for ext in (".weights.h5", ".keras", ".h5"):
        if path.endswith(ext):
            return path[: -len(ext)] + ".partial" + ext
    return path


def _epoch_of(row: dict) -> int | None:
    try:
        return int(float(row.get("epoch")))
    except (TypeError, ValueError):
        return None


def _read_header(filename: str, sep: str) -> list[str] | None:
    if not os.path.exists(filename):
        return None
    with open(filename, newline="") as f:
        return next(csv.reader(f, delimiter=sep), None) or None


def _check_int(name: str, value, minimum: int = 0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Received {name}={value!r}; expected an integer >= {minimum}.")


def standard_callbacks(
    run_dir: str | os.PathLike,
    monitor: str = "val_loss",
    mode: str = "auto",
    patience: int = 5,
    reduce_lr_patience: int = 2,
    reduce_lr_factor: float = 0.2,
    min_lr: float = 1e-7,
    checkpoint: bool = True,
    early_stopping: bool = True,
    reduce_lr: bool = True,
    tensorboard: bool = True,
    csv_log: bool = True,
    backup: bool = True,
    terminate_on_nan: bool = True,
    verbose: int = 1,
) -> list[keras.callbacks.Callback]:
    """The usual callbacks of a fine-tuning run, writing into `run_dir` (created).

    In this order: `TerminateOnNaN`; `CSVLogger(run_dir/history.csv, append=True)` (plus a
    `learning_rate` column); `BackupAndRestore(run_dir/backup)`;
    `ModelCheckpoint(run_dir/best.keras, monitor, save_best_only=True)` (a full model: reload
    it with `keras.saving.load_model`); `EarlyStopping(monitor, patience,
    restore_best_weights=True)`; `tfl.callbacks.ReduceLROnPlateau`; `TensorBoard(run_dir/logs)`.
    Reuse the list for every phase of a run; see the module docstring for what carries over.

    Args:
        run_dir: the run's directory.
        monitor: the quantity to watch, e.g. "val_loss" (needs validation data) or
            "val_accuracy".
        mode: "min", "max" or "auto" (losses and Keras metric names are resolved here;
            other names by Keras from the compiled metrics).
        patience: epochs without improvement before early stopping.
        reduce_lr_patience: epochs without improvement before the learning rate is reduced;
            keep it below `patience` so a reduction can happen before the stop.
        reduce_lr_factor: the factor in (0, 1) that multiplies the learning rate.
        min_lr: the learning rate is not reduced below this.
        checkpoint, early_stopping, reduce_lr, tensorboard, csv_log, backup,
            terminate_on_nan: include that callback. TensorBoard needs the `tensorboard`
            package; without it, the list leaves TensorBoard out (with a warning).
        verbose: verbosity of the checkpoint, early-stopping and reduction messages (0 or 1).

    Returns:
        The list of callbacks, to pass to `model.fit(callbacks=...)`.

    Example:
    >>> import tempfile
    >>> from tfl.callbacks import standard_callbacks
    >>> cbs = standard_callbacks(tempfile.mkdtemp(), tensorboard=False, verbose=0)
    >>> [type(cb).__name__ for cb in cbs]  # doctest: +NORMALIZE_WHITESPACE
    ['TerminateOnNaN', '_HistoryCSVLogger', 'BackupAndRestore', 'ModelCheckpoint',
     'EarlyStopping', 'ReduceLROnPlateau']
    """
    flags = dict(
        checkpoint=checkpoint,
        early_stopping=early_stopping,
        reduce_lr=reduce_lr,
        tensorboard=tensorboard,
        csv_log=csv_log,
        backup=backup,
        terminate_on_nan=terminate_on_nan,
    )
    _check_settings(
        run_dir, monitor, mode, patience, reduce_lr_patience, reduce_lr_factor, min_lr, flags
    )
    if verbose not in (0, 1):
        raise ValueError(f"Received verbose={verbose!r}; expected 0 or 1.")
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    mode = _direction(monitor, mode) or "auto"
    callbacks: list[keras.callbacks.Callback] = []
    if terminate_on_nan:
        callbacks.append(keras.callbacks.TerminateOnNaN())
    if csv_log:
        callbacks.append(_HistoryCSVLogger(os.path.join(run_dir, "history.csv"), append=True))
    if backup:
        callbacks.append(BackupAndRestore(os.path.join(run_dir, "backup")))
    watch = dict(monitor=monitor, mode=mode, verbose=verbose)
    if checkpoint:
        best = os.path.join(run_dir, "best.keras")
        callbacks.append(ModelCheckpoint(best, save_best_only=True, **watch))
    if early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True, **watch)
        )
    if reduce_lr:
        callbacks.append(
            ReduceLROnPlateau(
                factor=reduce_lr_factor, patience=reduce_lr_patience, min_lr=min_lr, **watch
            )
        )
    if tensorboard and not _has_tensorboard():
        warnings.warn(
            "TensorBoard logs need the tensorboard package (pip install tensorboard): "
            "standard_callbacks leaves TensorBoard out. Pass tensorboard=False to silence this.",
            stacklevel=2,
        )
    elif tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")))
    return callbacks


def _check_settings(
    run_dir, monitor, mode, patience, reduce_lr_patience, reduce_lr_factor, min_lr, flags
):
    """Errors that name the bad argument of `standard_callbacks`."""
    if not isinstance(run_dir, (str, os.PathLike)) or not os.fspath(run_dir):
        raise ValueError(f"Received run_dir={run_dir!r}; expected a directory path.")
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"Received monitor={monitor!r}; expected a metric name, e.g. 'val_loss'.")
    if mode not in MODES:
        raise ValueError(f"Received mode={mode!r}; expected one of {MODES}.")
    _check_int("patience", patience)
    _check_int("reduce_lr_patience", reduce_lr_patience)
    if isinstance(reduce_lr_factor, bool) or not (
        isinstance(reduce_lr_factor, (int, float)) and 0 < reduce_lr_factor < 1
    ):
        raise ValueError(
            f"Received reduce_lr_factor={reduce_lr_factor!r}; expected a number in (0, 1)."
        )
    if isinstance(min_lr, bool) or not (isinstance(min_lr, (int, float)) and min_lr >= 0):
        raise ValueError(f"Received min_lr={min_lr!r}; expected a number >= 0.")
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"Received {name}={value!r}; expected True or False.")


def _has_tensorboard() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def _direction(monitor: str, mode: str) -> str | None:
    """ "min" or "max" for `monitor` under `mode`, or None where only the model can tell."""
    if mode in ("min", "max"):
        return mode
    name = monitor.removeprefix("val_")
    if name.endswith("loss"):
        return "min"
    try:
        metric = keras.metrics.get(name)
    except (ValueError, TypeError):
        return None
    return {"up": "max", "down": "min"}.get(getattr(metric, "_direction", None))


def restore_checkpoint_best(
    callbacks: Sequence[keras.callbacks.Callback], history_csv: str | os.PathLike
) -> float | None:
    """Set each `ModelCheckpoint`'s `best` from the monitored column of a run's history.csv.

    `ModelCheckpoint(save_best_only=True)` remembers its best value only in memory: a run
    resumed in a new process would overwrite `best.keras` with its first epoch, however bad.
    Call this before the first `fit` of the resumed process (`tfl.fitting.fit_phases` does).

    Args:
        callbacks: the run's callbacks; those that are not a `ModelCheckpoint` with
            `save_best_only=True` are ignored.
        history_csv: the run's `CSVLogger` file (`run_dir/history.csv`).

    Returns:
        The best value set on the first such checkpoint, or None when nothing was set (no
        checkpoint, no file yet, or no value of the monitored quantity in it).

    Raises:
        ValueError: the checkpoint's mode is "auto" and its monitor is not a loss or a Keras
            metric name, so the direction is unknown: build it with mode="min" or "max".

    Example:
    >>> import os, tempfile
    >>> from tfl.callbacks import restore_checkpoint_best, standard_callbacks
    >>> run = tempfile.mkdtemp()
    >>> with open(os.path.join(run, "history.csv"), "w") as f:
    ...     _ = f.write("epoch,loss,val_loss\\n0,0.9,0.7\\n1,0.5,0.6\\n2,0.4,0.65\\n")
    >>> cbs = standard_callbacks(run, verbose=0)
    >>> restore_checkpoint_best(cbs, os.path.join(run, "history.csv"))
    0.6
    """
    checkpoints = [
        cb
        for cb in callbacks
        if isinstance(cb, keras.callbacks.ModelCheckpoint) and cb.save_best_only
    ]
    history_csv = os.fspath(history_csv)
    if not checkpoints or not os.path.exists(history_csv):
        return None
    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    first = None
    for cb in checkpoints:
        values = []
        for row in rows:
            try:
                value = float(row.get(cb.monitor) or "nan")
            except ValueError:
                continue
            if math.isfinite(value):
                values.append(value)
        if not values:
            continue
        direction = _direction(cb.monitor, cb.mode)
        if direction is None and cb.monitor_op is not None:
            direction = "min" if cb.monitor_op is keras.ops.less else "max"
        if direction is None:
            raise ValueError(
                f"Received a ModelCheckpoint with monitor={cb.monitor!r} and mode='auto': "
                "cannot tell whether lower or higher is better before the model is trained. "
                "Build it with mode='min' or mode='max'."
            )
        cb.best = min(values) if direction == "min" else max(values)
        first = cb.best if first is None else first
    return first


# ---------------------------------------------------------------------------------------------
# Learning rates


def _inner(optimizer):
    """The optimizer that holds the learning rate (unwraps a LossScaleOptimizer)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def _has_schedule(optimizer) -> bool:
    optimizers = getattr(optimizer, "optimizers", None) or [optimizer]
    for opt in optimizers:
        lr = getattr(_inner(opt), "_learning_rate", None)
        if not isinstance(lr, keras.Variable) and callable(lr):
            return True
    return False


def _current_learning_rate(optimizer) -> float | None:
    if hasattr(optimizer, "optimizers"):
        return None
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return None


# The trap linter moved to tfl.linter; its old name here warns.
__getattr__ = moved_names(__name__, {"lint": "tfl.linter:lint"})
