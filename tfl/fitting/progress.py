"""What `fit_phases` prints while it trains: Keras' progress bar, or one line per epoch.

`EpochProgress` is a `keras.callbacks.ProgbarLogger` (so Keras adds no second one) with two
changes:

- The bookkeeping columns that tfl adds to the epoch logs for the history (`phase`,
  `learning_rate`) are left off the console; they stay in `history.csv` and the
  `PhaseHistory`.
- With `verbose="auto"`, the live bar is drawn only when stdout is a terminal. Anywhere else
  (a log file, CI, a notebook's captured output) Keras' bar would write hundreds of
  carriage-return updates per epoch; there each epoch prints one line instead:
  `Epoch 3/15 - 16 steps - 4s - loss: 0.4123 - accuracy: 0.8750 - val_loss: ...`.
"""

from __future__ import annotations

import sys
import time

import keras

# Epoch-log keys kept out of the console (they are in the history and history.csv).
HIDDEN = ("phase", "learning_rate")
LINE = 2  # verbose value: one line per epoch


def console_verbose(verbose, stream=None) -> int:
    """`fit`'s verbosity for `verbose`: "auto" is 1 (the bar) on a terminal, else 2 (a line
    per epoch); other values pass through.

    Example:
    >>> import io
    >>> from tfl.fitting.progress import console_verbose
    >>> console_verbose("auto", io.StringIO()), console_verbose(1, io.StringIO())
    (2, 1)
    """
    if verbose != "auto":
        return verbose
    stream = sys.stdout if stream is None else stream
    try:
        return 1 if stream.isatty() else LINE
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return LINE


class EpochProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar without tfl's bookkeeping columns; one line per epoch off a terminal.

    Args:
        hidden: epoch-log keys not shown (default `phase` and `learning_rate`).

    Example:
    >>> import contextlib, io
    >>> from tfl.fitting.progress import EpochProgress
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(loss="mse")
    >>> out = io.StringIO()
    >>> with contextlib.redirect_stdout(out):
    ...     _ = model.fit(np.zeros((4, 2)), np.zeros(4), epochs=2, callbacks=[EpochProgress()])
    >>> [line.split(" - ")[:2] for line in out.getvalue().splitlines()]
    [['Epoch 1/2', '1 step'], ['Epoch 2/2', '1 step']]
    """

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.hidden = tuple(hidden)
        self._epoch = 0
        self._started = 0.0

    def set_params(self, params):
        super().set_params(params)
        self.verbose = console_verbose(params.get("verbose", "auto"))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._started = epoch, time.time()
        if self.verbose == LINE:  # the line is printed at the end of the epoch
            self._reset_progbar()
            return
        super().on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.seen = batch + 1
        if self.verbose != LINE:
            super().on_train_batch_end(batch, self._shown(logs))

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose == LINE:
            self._print_line(epoch, self._shown(logs))
        elif self.verbose:
            super().on_epoch_end(epoch, self._shown(logs))

    def _shown(self, logs):
        return {k: v for k, v in (logs or {}).items() if k not in self.hidden}

    def _print_line(self, epoch: int, logs: dict) -> None:
        steps = self.target or self.seen
        parts = [
            f"Epoch {epoch + 1}/{self.epochs}",
            f"{steps} step{'s' if steps != 1 else ''}",
            f"{time.time() - self._started:.0f}s",
        ]
        parts += [f"{k}: {_number(v)}" for k, v in logs.items()]
        print(" - ".join(parts), flush=True)


def _number(value) -> str:
    try:
        value = float(keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return str(value)
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.4e}"
