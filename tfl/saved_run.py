"""A finished run directory, opened again: its configuration, task, labels and model.

`tfl evaluate`, `tfl predict` and `tfl export` start from a run directory that `tfl train`
wrote. `SavedRun.open(run_dir)` checks that it is one, reads `config.yaml` (validated, so an
old or hand-edited file is checked like a new one) and `labels.json`, and describes what the
run predicts (`tfl.tasks.Task`); the model is loaded on first use, so inputs can be read and
checked before the (slow) load.
"""

from __future__ import annotations

import os

import keras

from tfl import builders
from tfl import config as config_lib
from tfl.heads import PROBABILITIES, SCORES, SINGLE_LABEL_KINDS, output_kind
from tfl.tasks import Task

CHECKPOINTS = {"final": "model.keras", "best": "best.keras"}


class SavedRun:
    """A finished run (see the module docstring); open one with `SavedRun.open`.

    Attributes:
        run_dir: the run directory.
        model_path: the model file (`model.keras` or `best.keras`).
        config: the run's validated `tfl.config.RunConfig`.
        task: what the run predicts.
    """

    def __init__(self, run_dir: str, model_path: str, config: config_lib.RunConfig):
        self.run_dir = run_dir
        self.model_path = model_path
        self.config = config
        self.task = Task.from_config(config)
        self._model: keras.Model | None = None
        self._labels = None

    @classmethod
    def open(cls, run_dir: str, checkpoint: str = "final", needs_labels: bool = True) -> SavedRun:
        """Open `run_dir` with its `checkpoint`: `"final"` (`model.keras`, the model at the
        end of training) or `"best"` (`best.keras`, the best epoch by the monitored metric).

        Raises:
            FileNotFoundError: the directory or one of its files is missing.
            ValueError: an unknown checkpoint.
        """
        if checkpoint not in CHECKPOINTS:
            raise ValueError(
                f"Received checkpoint={checkpoint!r}; expected one of {list(CHECKPOINTS)} "
                "(final: model.keras, best: best.keras)."
            )
        if not os.path.isdir(run_dir):
            raise FileNotFoundError(
                f"Received run directory {run_dir!r}, which does not exist, so it is not a "
                "finished tfl run directory. Pass a directory written by `tfl train` (it prints "
                "`Run directory: ...`)."
            )
        model_path = os.path.join(run_dir, CHECKPOINTS[checkpoint])
        needed = ["config.yaml", "labels.json", CHECKPOINTS[checkpoint]]
        for name in ("config.yaml", CHECKPOINTS[checkpoint]) + (
            ("labels.json",) if needs_labels else ()
        ):
            if not os.path.exists(os.path.join(run_dir, name)):
                raise FileNotFoundError(
                    f"{os.path.join(run_dir, name)} is missing: {run_dir!r} is not a finished "
                    f"tfl run directory (it needs {', '.join(needed)}, written by `tfl train`)."
                )
        path = os.path.join(run_dir, "config.yaml")
        config = config_lib.validate(config_lib.from_dict(config_lib.load_yaml(path)))
        return cls(run_dir, model_path, config)

    @property
    def labels(self):
        """The run's `tfl.data.LabelMap` (`labels.json`)."""
        if self._labels is None:
            from tfl.data import LabelMap

            self._labels = LabelMap.load(self.run_dir)
        return self._labels

    @property
    def class_names(self) -> dict[str | None, list[str]]:
        """Output name -> class names; a one-head model's single output is named None."""
        return self.task.class_names(list(self.labels.names))

    @property
    def model(self) -> keras.Model:
        """The reloaded Keras model (loaded on first use)."""
        if self._model is None:
            self._model = keras.saving.load_model(self.model_path)
        return self._model

    def output_kinds(self) -> dict[str | None, str]:
        """Output name -> `"probabilities"` or `"scores"` (a head without softmax, e.g. SVM).

        Raises:
            ValueError: a head that does not give one class per input (multi-label,
                regression).
        """
        heads = (
            self.model.heads if self.task.is_multi else {None: getattr(self.model, "head", None)}
        )
        kinds = {}
        for name in self.task.names:
            head = heads[name]
            kind = output_kind(head) or PROBABILITIES
            if kind not in SINGLE_LABEL_KINDS:
                raise ValueError(
                    f"Received a run whose head is a {type(head).__name__}; tfl predict shows "
                    "classes of single-label classification heads (classification, mlp, svm). "
                    "Load model.keras with keras.saving.load_model and call model.predict "
                    "instead."
                )
            kinds[name] = kind
        return kinds

    @property
    def is_text(self) -> bool:
        """Whether the run reads text (else images)."""
        return builders.is_text(self.config)

    @property
    def text_pairs(self) -> bool:
        """Whether the run reads pairs of texts (two text columns)."""
        column = self.config.data.text_column
        return self.is_text and isinstance(column, tuple | list) and len(column) > 1


__all__ = ["CHECKPOINTS", "PROBABILITIES", "SCORES", "SavedRun"]
