"""`best.keras` of a distillation: the student, not the `Distiller` that trains it."""

from __future__ import annotations

import keras

from tfl.callbacks import ModelCheckpoint


class StudentCheckpoint(ModelCheckpoint):
    """`tfl.callbacks.ModelCheckpoint(save_best_only=True)` that saves `student`.

    `fit` runs on a `keras.distillation.Distiller` (teacher and student together); what a run
    directory's `best.keras` must hold is the student alone, an ordinary tfl task model that
    `tfl evaluate`, `predict` and `export` load. The monitored value comes from the
    distiller's logs as usual; each `set_model` (Keras calls it when `fit` starts) points the
    callback at the student instead.

    Args:
        student: the student task model (trained through the distiller's view of it).
        filepath, monitor, mode, verbose: as for `keras.callbacks.ModelCheckpoint`.

    Example:
    >>> from tfl.distill.checkpoint import StudentCheckpoint
    >>> student = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> cb = StudentCheckpoint(student, "best.keras", monitor="val_student_loss", mode="min")
    >>> cb.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    >>> cb.model is student
    True
    """

    def __init__(self, student: keras.Model, filepath: str, monitor: str, mode: str, verbose=1):
        super().__init__(filepath, monitor=monitor, mode=mode, save_best_only=True, verbose=verbose)
        self.student = student

    def set_model(self, model):
        super().set_model(self.student)


__all__ = ["StudentCheckpoint"]
