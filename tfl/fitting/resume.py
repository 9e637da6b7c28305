"""What a phased run keeps to resume after a kill: `phases.json`, per-phase backups.

With a `keras.callbacks.BackupAndRestore` among the callbacks, each phase gets its own Keras
backup directory (`<backup_dir>/phase-<i>`, weights + optimizer checkpoints); at the end of a
phase its weights are saved as `<backup_dir>/phase-<i>.weights.h5` and
`<backup_dir>/phases.json` records the plan of phases and where each finished phase ended. A
restarted run reads them back, with the epochs it ran before from the `CSVLogger` file.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence

import keras

from tfl.fitting.history import PhaseHistory
from tfl.phases import Phase

STATE_FILE = "phases.json"


class ResumeState:
    """The state of one phased run: its plan and the phases it finished.

    Attributes:
        backup_root: the directory the run writes (the BackupAndRestore's), or None.
        restore_root: the directory it resumes from (another worker's on a non-chief worker
            of a multi-worker run, else `backup_root`), or None.
        state: `{"plan": [phase descriptions], "done": [finished phases]}`, as in
            `phases.json`.
    """

    def __init__(self, backup_root: str | None, restore_root: str | None, state: dict):
        self.backup_root = backup_root
        self.restore_root = restore_root
        self.state = state

    @classmethod
    def open(
        cls, callbacks: Sequence[keras.callbacks.Callback], phases: Sequence[Phase]
    ) -> ResumeState:
        """The state of a run with these callbacks: read back, or new (and written)."""
        backup_root, restore_root = backup_dirs(callbacks)
        plan = [p.describe() for p in phases]
        state = read_state(os.path.join(restore_root, STATE_FILE)) if restore_root else None
        if state is not None and state.get("plan") != plan:
            raise ValueError(
                f"{backup_root} holds the state of a run with a different plan of phases. "
                "Resume with the same phases, or use a new run directory (or delete that "
                "backup)."
            )
        if backup_root:
            os.makedirs(backup_root, exist_ok=True)
        if state is None:
            state = {"plan": plan, "done": []}
            if backup_root:
                write_state(os.path.join(backup_root, STATE_FILE), state)
        return cls(backup_root, restore_root, state)

    @property
    def done(self) -> list[dict]:
        """The finished phases: name, start and end epoch, weights file."""
        return self.state["done"]

    @property
    def next_epoch(self) -> int:
        """The epoch the next phase starts at."""
        return self.done[-1]["end_epoch"] if self.done else 0

    def restore(
        self,
        model: keras.Model,
        history: PhaseHistory,
        callbacks: Sequence[keras.callbacks.Callback],
    ) -> None:
        """After a restart: earlier epochs into `history`, the last finished phase's weights
        into `model`, and the best value so far into the run's `ModelCheckpoint`s."""
        done = self.done
        if done:
            for row in history_rows(callbacks):
                epoch = int(row.pop("epoch"))
                values = {k: _number(v) for k, v in row.items()}
                if "phase" in values:
                    values["phase"] = int(values["phase"])
                history.add_epoch(epoch, values)
            last = done[-1]
            skip = [model.optimizer] if model.optimizer is not None else None
            keras.saving.load_weights(
                model, os.path.join(self.restore_root, last["weights"]), objects_to_skip=skip
            )
            from tfl.callbacks import restore_checkpoint_best

            for cb in callbacks:
                if isinstance(cb, keras.callbacks.CSVLogger):
                    restore_checkpoint_best(callbacks, cb.filename)
        history.phases = [
            {"name": d["name"], "start_epoch": d["start_epoch"], "end_epoch": d["end_epoch"]}
            for d in done
        ]

    def phase_callbacks(
        self, callbacks: Sequence[keras.callbacks.Callback], index: int, scheduled: bool
    ) -> list[keras.callbacks.Callback]:
        """The user's callbacks for phase `index`.

        BackupAndRestore is re-pointed to the phase's own directory; ReduceLROnPlateau sits
        out phases whose learning rate follows a schedule (the schedule decides the rate).
        """
        backup_root, restore_root = self.backup_root, self.restore_root
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

    def finish_phase(self, model: keras.Model, index: int, record: dict) -> None:
        """Save phase `index`'s weights and record where it ended (with a backup only)."""
        if not self.backup_root:
            return
        weights = f"phase-{index}.weights.h5"
        keras.saving.save_weights(
            model, os.path.join(self.backup_root, weights), objects_to_skip=[model.optimizer]
        )
        self.done.append({**record, "weights": weights})
        write_state(os.path.join(self.backup_root, STATE_FILE), self.state)


def backup_dirs(callbacks) -> tuple[str | None, str | None]:
    """The BackupAndRestore's (written, restored-from) directories; (None, None) without one.

    They differ on a non-chief worker of a multi-worker run, which writes to its temporary
    directory and resumes from the chief's backup (`tfl.callbacks.BackupAndRestore`).
    """
    for cb in callbacks:
        if isinstance(cb, keras.callbacks.BackupAndRestore):
            return cb.backup_dir, getattr(cb, "restore_dir", None) or cb.backup_dir
    return None, None


def read_state(path: str) -> dict | None:
    """The run state in `path` (a `phases.json`), or None if there is none."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_state(path: str, state: dict):
    """Write the run state to `path`, atomically (a kill never leaves half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, path)


def history_rows(callbacks) -> list[dict]:
    """Rows of an existing CSVLogger file (to merge epochs run before a restart)."""
    for cb in callbacks:
        if isinstance(cb, keras.callbacks.CSVLogger) and os.path.exists(cb.filename):
            with open(cb.filename, newline="") as f:
                return list(csv.DictReader(f, delimiter=cb.sep))
    return []


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text
