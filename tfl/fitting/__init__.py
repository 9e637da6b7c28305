"""Running phases: `fit_phases`, `fine_tune`, and setting a model up for one phase.

`fit_phases` runs a list of `tfl.phases.Phase` with plain `model.fit`: for each phase it sets
`trainable`, compiles (Keras reads `trainable` only at `compile()`), and calls
`fit(initial_epoch=...)` so epochs continue across phases; it returns one merged
`PhaseHistory` with a `phase` column. `fine_tune` is the one-call version. The steps of a
phase are public for code that drives `fit` itself: `apply_trainable`, `make_optimizer`,
`compile_phase`, and `compile_like` for the head model of a cached phase.

Resuming: with a `keras.callbacks.BackupAndRestore` among the callbacks (`tfl.callbacks.
standard_callbacks` includes one), a run killed at any point restarts with the same call and
continues from the last finished epoch, in the right phase, with that phase's trainable set and
optimizer state. Each phase gets its own Keras backup directory (`<backup_dir>/phase-<i>`,
Keras weights + optimizer checkpoints); at the end of a phase its weights are saved as
`<backup_dir>/phase-<i>.weights.h5` and `<backup_dir>/phases.json` records where it ended.
Data order: an epoch that is re-run after a restart sees the dataset from its beginning, so a
shuffled dataset gives a different (equally valid) order than the uninterrupted run.

The parts: `loop` (`fit_phases`, `fine_tune`), `compiling` (a phase's trainable set,
optimizer and `compile`), `cached` (a frozen phase on cached features), `resume` (the run's
state in its backup directory) and `history` (`PhaseHistory`).
"""

from tfl.fitting.compiling import apply_trainable, compile_like, compile_phase, make_optimizer
from tfl.fitting.history import PhaseHistory
from tfl.fitting.loop import fine_tune, fit_phases

__all__ = [
    "PhaseHistory",
    "apply_trainable",
    "compile_like",
    "compile_phase",
    "fine_tune",
    "fit_phases",
    "make_optimizer",
]
