"""Learning-rate schedules: warm-up and decay, one-cycle, and the peak rate of an optimizer.

`WarmupDecay` (linear warm-up, then cosine/linear decay) and `OneCycle` (PyTorch's
`OneCycleLR` learning-rate curve) are Keras `LearningRateSchedule`s, saved with a model.
Momentum cycling, the other half of one-cycle, is not possible for Keras optimizers in
general: `beta_1`/`momentum` are Python floats baked into the training step, not variables.
`max_learning_rate` is the highest rate an optimizer will apply (its schedule's peak times
its largest per-block multiplier, see `tfl.optimizers.with_lr_multipliers`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import keras
import numpy as np
from keras import ops

from tfl.optimizers import as_optimizer

LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule


def _check_steps(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"Received {name}={value!r}; expected an integer >= {minimum}.")
    return int(value)


def _check_rate(value, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"Received {name}={value!r}; expected a finite learning rate >= 0.")
    return float(value)


def _cos_anneal(start, end, pct):
    """From `start` at pct=0 to `end` at pct=1 along half a cosine."""
    return end + (start - end) / 2.0 * (ops.cos(math.pi * pct) + 1.0)


DECAYS = ("cosine", "linear", "constant")


@keras.saving.register_keras_serializable(package="tfl")
class WarmupDecay(LearningRateSchedule):
    """Linear warm-up from 0 to a peak, then cosine or linear decay to a final rate.

    At step `s` (the optimizer's `iterations`, 0 at the first update):
    `peak * s / warmup_steps` while `s < warmup_steps`; then, with
    `p = (s - warmup_steps) / (total_steps - warmup_steps)`, cosine:
    `final + (peak - final) * (1 + cos(pi * p)) / 2`, linear: `peak + (final - peak) * p`,
    constant: `peak`; `final_learning_rate` from `total_steps` on.

    Args:
        peak_learning_rate: the rate at the end of the warm-up.
        total_steps: steps until the decay reaches `final_learning_rate`.
        warmup_steps: steps of linear warm-up (0: start at the peak).
        decay: "cosine", "linear" or "constant" (stay at the peak).
        final_learning_rate: the rate at and after `total_steps` (0 to `peak_learning_rate`).
        name: name of the schedule.

    Example:
    >>> from tfl.lr_schedules import WarmupDecay
    >>> schedule = WarmupDecay(1e-3, total_steps=100, warmup_steps=10)
    >>> [round(float(schedule(s)), 6) for s in (0, 5, 10, 55, 100, 200)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0, 0.0]
    """

    def __init__(
        self,
        peak_learning_rate: float,
        total_steps: int,
        warmup_steps: int = 0,
        decay: str = "cosine",
        final_learning_rate: float = 0.0,
        name: str = "warmup_decay",
    ):
        super().__init__()
        peak = _check_rate(peak_learning_rate, "peak_learning_rate")
        total = _check_steps(total_steps, "total_steps", 1)
        warmup = _check_steps(warmup_steps, "warmup_steps", 0)
        if warmup > total:
            raise ValueError(
                f"Received warmup_steps={warmup_steps!r} > total_steps={total_steps!r}; "
                "the warm-up must end by total_steps."
            )
        if decay not in DECAYS:
            raise ValueError(f"Received decay={decay!r}; expected one of {DECAYS}.")
        final = _check_rate(final_learning_rate, "final_learning_rate")
        if final > peak:
            raise ValueError(
                f"Received final_learning_rate={final_learning_rate!r} > "
                f"peak_learning_rate={peak_learning_rate!r}; expected 0 <= final <= peak."
            )
        if decay == "constant" and final != 0.0:
            raise ValueError(
                f"Received final_learning_rate={final_learning_rate!r} with decay='constant', "
                "which stays at the peak; use decay='linear' or 'cosine' to reach it."
            )
        self.peak_learning_rate = peak
        self.total_steps = total
        self.warmup_steps = warmup
        self.decay = decay
        self.final_learning_rate = final
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak, final = self.peak_learning_rate, self.final_learning_rate
        warmup, total = float(self.warmup_steps), float(self.total_steps)
        warm = peak * step / max(warmup, 1.0)
        progress = ops.clip((step - warmup) / max(total - warmup, 1.0), 0.0, 1.0)
        if self.decay == "cosine":
            decayed = _cos_anneal(peak, final, progress)
        elif self.decay == "linear":
            decayed = peak + (final - peak) * progress
        else:
            decayed = peak + 0.0 * progress
        return ops.cast(ops.where(step < warmup, warm, decayed), "float32")

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay": self.decay,
            "final_learning_rate": self.final_learning_rate,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="tfl")
class OneCycle(LearningRateSchedule):
    """The one-cycle learning-rate curve of fastai / PyTorch `OneCycleLR` (cosine annealing).

    From `max_learning_rate / div_factor` up to `max_learning_rate` over the first
    `pct_start * total_steps - 1` steps, then down to
    `max_learning_rate / div_factor / final_div_factor` at step `total_steps - 1` (and after),
    both along half cosines; equal, step for step, to
    `torch.optim.lr_scheduler.OneCycleLR(..., anneal_strategy="cos", three_phase=False)`.
    Momentum cycling is not done: Keras optimizers keep `beta_1`/`momentum` as Python
    floats compiled into the training step.

    Args:
        max_learning_rate: the peak rate.
        total_steps: steps in the cycle (epochs * steps per epoch).
        pct_start: fraction of the cycle spent increasing the rate, in (0, 1).
        div_factor: initial rate = `max_learning_rate / div_factor`.
        final_div_factor: final rate = initial rate / `final_div_factor`.
        name: name of the schedule.

    Example:
    >>> from tfl.lr_schedules import OneCycle
    >>> schedule = OneCycle(1e-2, total_steps=101, pct_start=0.5)
    >>> [f"{float(schedule(s)):.3g}" for s in (0, 49.5, 100)]
    ['0.0004', '0.01', '4e-08']
    """

    def __init__(
        self,
        max_learning_rate: float,
        total_steps: int,
        pct_start: float = 0.25,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        name: str = "one_cycle",
    ):
        super().__init__()
        peak = _check_rate(max_learning_rate, "max_learning_rate")
        total = _check_steps(total_steps, "total_steps", 2)
        if isinstance(pct_start, bool) or not isinstance(pct_start, numbers.Real):
            raise ValueError(f"Received pct_start={pct_start!r}; expected a number in (0, 1).")
        if not 0 < pct_start < 1:
            raise ValueError(f"Received pct_start={pct_start!r}; expected a number in (0, 1).")
        if pct_start * total <= 1:
            raise ValueError(
                f"Received pct_start={pct_start!r} with total_steps={total_steps!r}: the "
                "warm-up phase must span more than one step (pct_start * total_steps > 1)."
            )
        for value, arg in ((div_factor, "div_factor"), (final_div_factor, "final_div_factor")):
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"Received {arg}={value!r}; expected a finite number > 0.")
        self.max_learning_rate = peak
        self.total_steps = total
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        initial = self.max_learning_rate / self.div_factor
        minimum = initial / self.final_div_factor
        peak_step = self.pct_start * self.total_steps - 1.0
        end_step = self.total_steps - 1.0
        rising = _cos_anneal(initial, self.max_learning_rate, ops.clip(step / peak_step, 0, 1))
        pct = ops.clip((step - peak_step) / (end_step - peak_step), 0.0, 1.0)
        falling = _cos_anneal(self.max_learning_rate, minimum, pct)
        return ops.cast(ops.where(step <= peak_step, rising, falling), "float32")

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "name": self.name,
        }


def _schedule_peak(schedule) -> float:
    """The largest value of a schedule: exact for tfl's, sampled for others."""
    if isinstance(schedule, WarmupDecay):
        return schedule.peak_learning_rate
    if isinstance(schedule, OneCycle):
        return schedule.max_learning_rate
    marks = []
    try:
        config = schedule.get_config()
    except NotImplementedError:
        config = {}
    for key, value in config.items():
        if "step" in key or "boundar" in key:
            values = value if isinstance(value, (list, tuple)) else [value]
            marks += [int(v) for v in values if isinstance(v, numbers.Real) and v > 0]
    horizon = min(2 * max(marks, default=5_000), 10**8)
    steps = set(np.linspace(0, horizon, 513).astype(np.int64).tolist())
    steps |= {s + d for s in marks for d in (-1, 0, 1) if 0 <= s + d <= horizon}
    steps = sorted(steps)
    try:
        values = np.asarray(schedule(ops.convert_to_tensor(np.asarray(steps, "int64"))))
        if values.shape != (len(steps),):
            raise ValueError
    except Exception:  # a schedule that takes scalar steps only
        values = np.asarray([float(schedule(s)) for s in steps])
    return float(np.max(values))


def max_learning_rate(
    optimizer: keras.optimizers.Optimizer | str, variables: Iterable | None = None
) -> float:
    """The highest learning rate `optimizer` will apply.

    A schedule's maximum over the steps (exact for `WarmupDecay`/`OneCycle`, sampled for
    other schedules), times the largest per-block multiplier: among `variables` if given
    (0.0 if that is empty: nothing trains), else among all the optimizer's multipliers.

    Args:
        optimizer: a Keras optimizer (a LossScaleOptimizer is looked through) or a name.
        variables: the variables to consider, e.g. `model.backbone.trainable_variables`.

    Returns:
        The learning rate, a float.

    Example:
    >>> import keras
    >>> from tfl.lr_schedules import WarmupDecay, max_learning_rate
    >>> max_learning_rate(keras.optimizers.Adam(WarmupDecay(3e-4, 100, warmup_steps=10)))
    0.0003
    """
    optimizer = as_optimizer(optimizer)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return max_learning_rate(optimizer.inner_optimizer, variables)
    if isinstance(optimizer, keras.optimizers.MultiOptimizer):
        return max(max_learning_rate(o, variables) for o in optimizer.optimizers)
    lr = optimizer._learning_rate
    if isinstance(lr, LearningRateSchedule):
        peak = _schedule_peak(lr)
    elif isinstance(lr, keras.Variable):
        peak = float(keras.ops.convert_to_numpy(lr))
    elif callable(lr):
        peak = float(lr())
    else:
        peak = float(lr)
    if variables is not None:
        variables = list(variables)
        if not variables:
            return 0.0
        if hasattr(optimizer, "lr_multiplier"):
            return peak * max(optimizer.lr_multiplier(v) for v in variables)
        return peak
    if hasattr(optimizer, "lr_multipliers"):
        return peak * max(optimizer.lr_multipliers, default=1.0)
    return peak
