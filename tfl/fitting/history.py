"""The merged history of a phased run: one row per epoch over all phases."""

from __future__ import annotations

import math
import time

import keras


class PhaseHistory(keras.callbacks.History):
    """The merged `History` of a phased run.

    `history[key]` holds one value per epoch over all phases (`history["phase"]` is the
    phase index), `epoch` the epoch numbers, and `phases` one dict per phase with its
    `name`, `start_epoch` and `end_epoch` (exclusive). `wise` is the WiSE-FT blend of
    `fit_phases(..., wise=...)` (`{"alpha", "grid", "probe_phase"}`), else None.
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.phases: list[dict] = []
        self.wise: dict | None = None

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


class PhaseLogs(keras.callbacks.Callback):
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


class PhaseTimer(keras.callbacks.Callback):
    """What one phase costs: its trainable parameters and the seconds per training step.

    The step time is the epoch's wall time less its validation, over its steps; the first
    epoch (which traces the step) is left out when the phase has more. Epoch-level hooks
    only, so Keras keeps running its steps asynchronously.
    """

    def __init__(self):
        super().__init__()
        self.trainable_params: int | None = None
        self.seconds_per_step: float | None = None
        self._epochs: list[float] = []

    def on_train_begin(self, logs=None):
        self.trainable_params = int(sum(math.prod(v.shape) for v in self.model.trainable_weights))
        self._epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started, self._testing = time.perf_counter(), 0.0

    def on_test_begin(self, logs=None):
        self._test_started = time.perf_counter()

    def on_test_end(self, logs=None):
        self._testing += time.perf_counter() - getattr(self, "_test_started", time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        steps = (self.params or {}).get("steps")
        if steps:
            self._epochs.append((time.perf_counter() - self._started - self._testing) / steps)
        kept = self._epochs[1:] or self._epochs
        self.seconds_per_step = float(sum(kept) / len(kept)) if kept else None
