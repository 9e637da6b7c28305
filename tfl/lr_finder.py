"""Learning-rate range test (Leslie Smith 2015; fastai's `lr_find`) for a compiled Keras model.

`lr_find` trains for a few steps while the learning rate grows exponentially from `start_lr`
to `end_lr`, records the loss of every step, and stops once the loss explodes. The useful
learning rates are where the loss falls fastest, before it turns up.

`model.fit` stays the only training loop: the sweep is one `fit` with one step per epoch (so
each logged loss is exactly that step's batch loss; Keras logs running means within an
epoch) and a callback that sets the learning rate before each step. The sweep trains a fresh
copy of the compiled optimizer (same class and settings, constant learning rate); afterwards
the model is restored exactly: every variable (weights, BatchNorm statistics, dropout seed
states, metric states) and the compile state (the compiled optimizer instance with its
slots and step count, the traced training step, loss and metrics), so the next `fit`
behaves as if `lr_find` never ran.
"""

from __future__ import annotations

import dataclasses
import math
import os

import keras
import numpy as np
import tensorflow as tf

# Model attributes that `fit` changes and `lr_find` puts back.
_RESTORED_ATTRIBUTES = (
    "train_function",
    "stop_training",
    "history",
    "steps_per_execution",
    "_fit_trainable",
)
_MISSING = object()


@dataclasses.dataclass
class LRFindResult:
    """What `lr_find` measured.

    Attributes:
        learning_rates: the learning rate of each step run (exponentially spaced).
        losses: the smoothed loss of each step: a bias-corrected exponential moving average
            (fastai's), `avg_i / (1 − smoothing^(i+1))` with
            `avg_i = smoothing · avg_(i−1) + (1 − smoothing) · loss_i`.
        raw_losses: each step's batch loss (including regularisation losses, as in `fit`).
        suggestion: the learning rate where the smoothed loss falls fastest (most negative
            slope against log(lr)) before its minimum, like fastai's "steep" suggestion.
            With fewer than three steps up to the minimum, `min_loss_lr / 10`. NaN when no
            step had a finite loss.
        min_loss_lr: the learning rate at the minimum of the smoothed loss. Training at it
            is usually too aggressive; a tenth of it is the classic rule of thumb.
        stopped_early: whether the sweep stopped because the loss diverged.
        plot_path: where the plot was written, when `lr_find(plot_path=...)` was given.
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestion: float
    min_loss_lr: float
    stopped_early: bool
    plot_path: str | None = None

    def plot(self, path: str) -> str:
        """Write loss against learning rate (log x axis, suggestion marked) as a PNG.

        Uses matplotlib's Agg canvas directly, so it neither needs a display nor changes
        the global pyplot backend.

        Returns:
            `path`.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        lrs = self.learning_rates
        ax.plot(lrs, self.raw_losses, color="tab:blue", alpha=0.3, label="loss per step")
        ax.plot(lrs, self.losses, color="tab:blue", label="smoothed loss")
        finite = np.isfinite(self.losses)
        if finite.any():
            smoothed = self.losses[finite]
            best, first = float(smoothed.min()), float(smoothed[0])
            span = first - best
            if span > 0:  # keep the diverging tail from squashing the interesting part
                ax.set_ylim(best - 0.1 * span, first + 0.5 * span)
        if math.isfinite(self.suggestion):
            at = int(np.argmin(np.abs(np.log(lrs) - math.log(self.suggestion))))
            ax.plot(
                [self.suggestion],
                [self.losses[at]],
                "o",
                color="tab:red",
                label=f"suggestion {self.suggestion:.2e}",
            )
            ax.axvline(self.suggestion, color="tab:red", alpha=0.3, linestyle="--")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title("Learning-rate range test")
        ax.legend()
        fig.tight_layout()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fig.savefig(path, format="png")
        return path


class _LRSweep(keras.callbacks.Callback):
    """Sets the learning rate before each one-step epoch and records the step's loss."""

    def __init__(self, learning_rates, set_lr, smoothing, stop_factor, verbose):
        super().__init__()
        self.learning_rates = learning_rates
        self.set_lr = set_lr
        self.smoothing = smoothing
        self.stop_factor = stop_factor
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        self.raw, self.smoothed = [], []
        self.average, self.best, self.stopped_early = 0.0, math.inf, False

    def on_epoch_begin(self, epoch, logs=None):
        self.set_lr(float(self.learning_rates[epoch]))

    def on_epoch_end(self, epoch, logs=None):
        loss = float(logs["loss"])
        self.raw.append(loss)
        self.average = self.smoothing * self.average + (1 - self.smoothing) * loss
        smoothed = self.average / (1 - self.smoothing ** len(self.raw))
        self.smoothed.append(smoothed)
        if self.verbose > 1:
            print(f"lr={self.learning_rates[epoch]:.3e} loss={loss:.4f} smoothed={smoothed:.4f}")
        diverged = not math.isfinite(smoothed) or (
            self.stop_factor is not None and smoothed > self.stop_factor * self.best
        )
        self.best = min(self.best, smoothed) if math.isfinite(smoothed) else self.best
        if diverged:
            self.stopped_early = True
            self.model.stop_training = True


def _suggest(learning_rates: np.ndarray, losses: np.ndarray) -> tuple[float, float]:
    finite = np.isfinite(losses)
    if not finite.any():
        return math.nan, math.nan
    i_min = int(np.argmin(np.where(finite, losses, np.inf)))
    min_loss_lr = float(learning_rates[i_min])
    if i_min < 2:
        return min_loss_lr / 10, min_loss_lr
    slopes = np.gradient(losses[: i_min + 1], np.log(learning_rates[: i_min + 1]))
    return float(learning_rates[int(np.argmin(slopes))]), min_loss_lr


def _fresh_copy(optimizer: keras.optimizers.Optimizer, learning_rate: float):
    config = optimizer.get_config()
    config["learning_rate"] = learning_rate
    return type(optimizer).from_config(config)


def _sweep_optimizer(model: keras.Model, optimizer, start_lr: float):
    """(optimizer to train with, the inner optimizer whose learning rate to set)."""
    scaled = keras.optimizers.LossScaleOptimizer
    template = model.optimizer if optimizer is None else keras.optimizers.get(optimizer)
    if isinstance(template, scaled):
        template = template.inner_optimizer
    inner = _fresh_copy(template, start_lr)
    # Mixed precision: compile() wrapped the optimizer in a loss-scale optimizer; so do we.
    if isinstance(model.optimizer, scaled):
        return scaled(inner), inner
    return inner, inner


def _as_dataset(data, batch_size: int) -> tf.data.Dataset:
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        arrays = keras.tree.map_structure(np.asarray, tuple(data))
        n = len(keras.tree.flatten(arrays[0])[0])
        # Shuffle once with a private generator: classes sorted on disk would otherwise
        # give one class per step, and the global random state stays untouched.
        order = np.random.default_rng(0).permutation(n)
        arrays = keras.tree.map_structure(lambda a: a[order], arrays)
        return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size)
    raise TypeError(
        f"Received data of type {type(data).__name__}; expected a tf.data.Dataset of (x, y) "
        "batches or an (x, y) tuple of arrays (with batch_size=...)."
    )


def _check_args(start_lr, end_lr, num_steps, stop_factor, smoothing, batch_size) -> None:
    if not (isinstance(start_lr, (int, float)) and 0 < start_lr < math.inf):
        raise ValueError(f"Received start_lr={start_lr!r}; expected a positive number.")
    if not (isinstance(end_lr, (int, float)) and start_lr < end_lr < math.inf):
        raise ValueError(
            f"Received end_lr={end_lr!r}; expected a number larger than start_lr={start_lr!r}."
        )
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"Received num_steps={num_steps!r}; expected an integer >= 2.")
    if stop_factor is not None and not (isinstance(stop_factor, (int, float)) and stop_factor > 1):
        raise ValueError(
            f"Received stop_factor={stop_factor!r}; expected a number > 1, or None to sweep "
            "all the way to end_lr (still stopping at a NaN loss)."
        )
    if not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1):
        raise ValueError(f"Received smoothing={smoothing!r}; expected a number in [0, 1).")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Received batch_size={batch_size!r}; expected a positive integer.")


def lr_find(
    model: keras.Model,
    data,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    stop_factor: float | None = 4.0,
    smoothing: float = 0.98,
    plot_path: str | None = None,
    optimizer=None,
    verbose: int = 0,
    batch_size: int = 32,
) -> LRFindResult:
    """Sweep the learning rate exponentially over `num_steps` steps; restore the model after.

    Step i trains one batch at `start_lr · (end_lr / start_lr)^(i / (num_steps − 1))`, so the
    first step uses `start_lr` and the last `end_lr`. The sweep stops early when the smoothed
    loss exceeds `stop_factor` times its best value so far, or is NaN/inf. Compile the model
    as for training first (loss, regularisers and trainable weights are those of the next
    `fit`); its weights, optimizer state and compile state are restored afterwards.

    Args:
        model: a compiled Keras model (e.g. a tfl task after `compile()`).
        data: a `tf.data.Dataset` of `(x, y)` batches (repeated if shorter than the sweep),
            or an `(x, y)` or `(x, y, sample_weight)` tuple of arrays, batched with
            `batch_size` after one shuffle with a fixed private seed.
        start_lr: learning rate of the first step.
        end_lr: learning rate of the last step.
        num_steps: number of training steps (one batch each).
        stop_factor: stop once the smoothed loss exceeds this multiple of its minimum so far
            (fastai: 4); None to go on until `end_lr` (or a NaN loss).
        smoothing: the moving-average factor of the smoothed loss, in [0, 1) (fastai: 0.98).
        plot_path: if given, write the plot there as a PNG (see `LRFindResult.plot`).
        optimizer: an optimizer (instance or name) whose class and settings to sweep with
            instead of the compiled one's. Either way a fresh copy with a constant learning
            rate is trained; the given instance is not modified.
        verbose: 0 silent, 1 one summary line, 2 also a line per step.
        batch_size: batch size for array data.

    Returns:
        An `LRFindResult` with the learning rates, smoothed and raw losses, the suggestion
        and the learning rate at the minimum.

    Example:
    >>> import keras
    >>> from tfl.lr_finder import lr_find
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> y = x @ np.array([1.0, -2.0, 0.5, 3.0], "float32")
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(), loss="mse")
    >>> result = lr_find(model, (x, y), start_lr=1e-4, end_lr=10.0, num_steps=30, batch_size=16)
    >>> 1e-4 <= result.suggestion < result.min_loss_lr
    True
    """
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise ValueError(
            f"lr_find needs a compiled model; {getattr(model, 'name', model)!r} is not "
            "compiled. Call model.compile(optimizer, loss) first: lr_find sweeps the learning "
            "rate of a copy of the compiled optimizer and then restores the compile state."
        )
    _check_args(start_lr, end_lr, num_steps, stop_factor, smoothing, batch_size)
    start_lr, end_lr = float(start_lr), float(end_lr)
    dataset = _as_dataset(data, batch_size).repeat()
    learning_rates = start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))
    sweep_optimizer, inner = _sweep_optimizer(model, optimizer, start_lr)

    def set_lr(lr):
        inner.learning_rate = lr

    sweep = _LRSweep(learning_rates, set_lr, float(smoothing), stop_factor, verbose)

    variables = list(model.variables) + list(model.metrics_variables)
    saved_values = [(v, keras.ops.convert_to_numpy(v)) for v in variables]
    saved_attributes = {name: getattr(model, name, _MISSING) for name in _RESTORED_ATTRIBUTES}
    compiled_optimizer = model.optimizer
    try:
        model.optimizer = sweep_optimizer
        model.train_function = None  # retrace the step with the sweep optimizer
        model.steps_per_execution = 1  # one step per epoch: each logged loss is one batch's
        model.fit(
            dataset,
            epochs=num_steps,
            steps_per_epoch=1,
            callbacks=[sweep],
            shuffle=False,
            verbose=0,
        )
    finally:
        model.optimizer = compiled_optimizer
        for v, value in saved_values:
            v.assign(value)
        for name, value in saved_attributes.items():
            if value is _MISSING:
                if name in model.__dict__:
                    delattr(model, name)
            else:
                setattr(model, name, value)

    steps = len(sweep.raw)
    losses = np.asarray(sweep.smoothed, dtype="float64")
    suggestion, min_loss_lr = _suggest(learning_rates[:steps], losses)
    result = LRFindResult(
        learning_rates=learning_rates[:steps],
        losses=losses,
        raw_losses=np.asarray(sweep.raw, dtype="float64"),
        suggestion=suggestion,
        min_loss_lr=min_loss_lr,
        stopped_early=sweep.stopped_early,
    )
    if plot_path is not None:
        result.plot_path = result.plot(plot_path)
    if verbose:
        stop = " (stopped: loss diverged)" if result.stopped_early else ""
        print(
            f"lr_find: {steps} steps from {start_lr:.1e}{stop}; suggestion {suggestion:.2e}, "
            f"minimum loss at {min_loss_lr:.2e}"
        )
    return result
