"""What a run predicts: its outputs, their heads and labels — one description for every step.

A run trains one head (`image_classification`, `text_classification`, ...) or several
(`multitask`: `model.tasks`). `Task` describes them once, and every step that needs to know
reads it: building the model (one head or a dict of heads), mapping labels to targets
(derived labels computed on the fly), evaluation (metrics per head), prediction and export
(class names per output), cross-validation and comparison (which support one single-label
output).

Derived labels compute a task's labels from the data's label: `label_column:
"<column>:<derivation>"`, e.g. `"label:parity"` (0 = even, 1 = odd) from MNIST's digit. The
column is everything before the LAST colon (`"a:b:parity"` is column `"a:b"`, derivation
`"parity"`), everywhere (`parse_label_column`).

Example:
>>> from tfl.tasks import Task, TaskOutput
>>> task = Task((TaskOutput("digit", "classification", "label"),
...              TaskOutput("parity", "classification", "label", "parity")))
>>> task.is_multi, task.class_names(["0", "1", "2"])
(True, {'digit': ['0', '1', '2'], 'parity': ['even', 'odd']})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class DerivedLabel:
    """A label computed from the data's integer class labels.

    Attributes:
        name: what follows the colon in `label_column` (`"parity"`).
        numpy: the function on a numpy array of labels.
        tensor: the same function on a `tf.Tensor` (used inside `tf.data`).
        class_names: the names of its classes, in index order.
    """

    name: str
    numpy: Callable[[np.ndarray], np.ndarray]
    tensor: Callable[[tf.Tensor], tf.Tensor]
    class_names: tuple[str, ...]


DERIVED_LABELS: dict[str, DerivedLabel] = {
    "parity": DerivedLabel(
        "parity",
        numpy=lambda y: np.asarray(y) % 2,
        tensor=lambda y: tf.math.floormod(tf.cast(y, tf.int64), 2),
        class_names=("even", "odd"),
    ),
}


def parse_label_column(value: str, label_column: str | None = None) -> tuple[str, str | None]:
    """`"<column>[:<derivation>]"` -> `(column, derivation or None)`, split at the last colon.

    `value` equal to the data's own `label_column` is that column, colons and all.

    Raises:
        ValueError: an unknown derivation (the message lists the known ones).

    Example:
    >>> from tfl.tasks import parse_label_column
    >>> parse_label_column("label"), parse_label_column("a:b:parity")
    (('label', None), ('a:b', 'parity'))
    >>> parse_label_column("a:b", label_column="a:b")
    ('a:b', None)
    """
    if ":" not in value or value == label_column:
        return value, None
    column, derivation = value.rsplit(":", 1)
    if derivation not in DERIVED_LABELS:
        raise ValueError(
            f"unknown derived label {derivation!r} in {value!r}; derivations: "
            f"{', '.join(repr(d) for d in DERIVED_LABELS)}"
        )
    return column, derivation


@dataclasses.dataclass(frozen=True)
class TaskOutput:
    """One output of a run: its name (None for a one-head model), head, label column and
    derivation."""

    name: str | None
    head: str
    column: str
    derivation: str | None = None

    def class_names(self, labels: Sequence[str]) -> list[str]:
        """This output's class names: the derivation's, else the data's `labels`."""
        if self.derivation is not None:
            return list(DERIVED_LABELS[self.derivation].class_names)
        return [str(n) for n in labels]


@dataclasses.dataclass(frozen=True)
class Task:
    """The outputs a run trains, in order (see the module docstring)."""

    outputs: tuple[TaskOutput, ...]

    @classmethod
    def from_config(cls, config) -> Task:
        """The task of a validated `tfl.config.RunConfig` (`model.head`, `model.tasks`)."""
        tasks: Mapping[str, Mapping[str, str]] = config.model.tasks
        if not tasks:
            head = "classification" if config.model.head == "logistic" else config.model.head
            return cls((TaskOutput(None, head, config.data.label_column),))
        outputs = []
        for name, spec in tasks.items():
            value = spec.get("label_column", name)
            column, derivation = parse_label_column(value, config.data.label_column)
            outputs.append(TaskOutput(name, spec.get("head", "classification"), column, derivation))
        return cls(tuple(outputs))

    @property
    def is_multi(self) -> bool:
        """Several named outputs (a `MultiTaskModel`), rather than one."""
        return self.outputs[0].name is not None

    @property
    def names(self) -> list[str | None]:
        return [out.name for out in self.outputs]

    def class_names(self, labels: Sequence[str]) -> dict[str | None, list[str]]:
        """Output name -> its class names, given the data's class names."""
        return {out.name: out.class_names(labels) for out in self.outputs}

    def num_classes(self, labels: Sequence[str]) -> dict[str | None, int]:
        return {name: len(names) for name, names in self.class_names(labels).items()}

    def targets(self, y: tf.Tensor) -> Any:
        """The model's targets for a batch of the data's labels `y` (a dict for several
        outputs, derived labels computed)."""
        if not self.is_multi:
            return y
        return {
            out.name: DERIVED_LABELS[out.derivation].tensor(y) if out.derivation else y
            for out in self.outputs
        }

    def fingerprint(self) -> str:
        """What the targets depend on (for the feature cache's key): empty for one output."""
        if not self.is_multi:
            return ""
        return f"tasks={[dataclasses.astuple(out) for out in self.outputs]}"


def evaluate_task(task: Task, model, dataset, labels, top_k: int = 5) -> dict:
    """Metrics of `model` on `dataset` for every output of `task`.

    One output: `tfl.evaluate.evaluate_model` (accuracy, per-class P/R/F1, confusion matrix,
    top-k, ECE, log loss). Several: the same metrics per head (`{name: metrics}`), the
    derived labels' own class names, and `"accuracy"`, the mean over the heads.
    """
    from tfl.evaluate import classification_metrics, evaluate_model

    names = task.class_names(list(labels.names))
    if not task.is_multi:
        return evaluate_model(model, dataset, labels=labels, top_k=(top_k,))
    ys: dict[str, list] = {}
    probs: dict[str, list] = {}
    for x, y in dataset:
        out = model(x, training=False)
        for name in out:
            ys.setdefault(name, []).append(np.asarray(y[name]))
            probs.setdefault(name, []).append(np.asarray(out[name]))
    metrics: dict[str, Any] = {
        out.name: classification_metrics(
            np.concatenate(ys[out.name]),
            np.concatenate(probs[out.name]),
            labels=names[out.name],
            top_k=(top_k,),
        )
        for out in task.outputs
    }
    metrics["accuracy"] = float(np.mean([m["accuracy"] for m in metrics.values()]))
    return metrics


def save_task_metrics(task: Task, run_dir: str, metrics: dict, name: str) -> str:
    """Writes `<name>.json` (and, for one output, its confusion-matrix PNG); returns the file
    name."""
    import json
    import os

    from tfl.evaluate import save_metrics

    if not task.is_multi:
        save_metrics(run_dir, metrics, name=name)
    else:
        with open(os.path.join(run_dir, f"{name}.json"), "w") as f:
            json.dump(metrics, f, indent=2, default=float)
    return f"{name}.json"
