"""What an exported model takes and gives: its inputs, its outputs, and their postprocessing.

`describe_inputs` and `describe_outputs` read a Keras model once; the writers, the parity
check and the report use what they return. `postprocess` turns the model's outputs into the
signatures' named outputs in the graph (`probabilities`, `scores`, `top_k_*`, `values`);
`postprocess_numpy` gives the Keras model's reference outputs under the same names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfl.heads import PROBABILITIES, output_kind

TEXT_INPUTS = ("token_ids", "segment_ids", "padding_mask")


@dataclasses.dataclass
class Output:
    """One output of the model as the signatures give it (named `<head>_...` for a multi-task
    model)."""

    head: str | None  # key of the model's output dict; None for a one-output model
    kind: str  # "probabilities", "scores" (softmax added), "multilabel" or "values"
    labels: list[str]

    @property
    def prefix(self) -> str:
        return "" if self.head is None else f"{self.head}_"

    @property
    def main(self) -> str:
        """The output that parity compares."""
        return self.prefix + ("values" if self.kind == "values" else "probabilities")


@dataclasses.dataclass
class Inputs:
    """What the signatures take: `serving_default`'s raw inputs and `serving_preprocessed`'s
    prepared tensors."""

    kind: str  # "images" or "text"
    image_sizes: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    sequence_length: int | None = None
    pairs: bool = False

    @property
    def raw_names(self) -> list[str]:
        if self.kind == "images":
            return ["images"]
        return ["text_a", "text_b"] if self.pairs else ["texts"]

    @property
    def prepared_names(self) -> list[str]:
        if self.kind == "text":
            return list(TEXT_INPUTS)
        n = len(self.image_sizes)
        return ["images"] if n == 1 else [f"images_{i}" for i in range(n)]


def describe_outputs(model: keras.Model, labels: Any) -> list[Output]:
    """One `Output` per head (the head's `output_kind`; "probabilities" for a non-tfl model).

    Args:
        model: a tfl task (a multi-task model gives one output per head) or a Keras model.
        labels: class names in index order (a dict head -> names for a multi-task model);
            None: "0", "1", ...

    Example:
    >>> from tfl.export.signatures import describe_outputs
    >>> inputs = keras.Input((2,))
    >>> model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    >>> [(o.head, o.kind, o.main, o.labels) for o in describe_outputs(model, ["a", "b", "c"])]
    [(None, 'probabilities', 'probabilities', ['a', 'b', 'c'])]
    """
    heads = getattr(model, "heads", None)
    if isinstance(heads, dict):
        labels = labels or {}
        if not isinstance(labels, dict):
            raise ValueError(
                f"Received labels={labels!r} for a multi-task model; expected a dict "
                f"head name -> class names, heads {sorted(heads)}."
            )
        outputs = []
        for name, head in heads.items():
            names = labels.get(name) or [str(i) for i in range(head.units)]
            outputs.append(
                Output(name, output_kind(head) or PROBABILITIES, [str(n) for n in names])
            )
        return outputs
    head = getattr(model, "head", None)
    units = int(model.output.shape[-1])
    names = [str(n) for n in labels] if labels is not None else [str(i) for i in range(units)]
    if len(names) != units:
        raise ValueError(
            f"Received {len(names)} labels for a model with {units} outputs; pass one class "
            "name per output, in index order."
        )
    return [Output(None, output_kind(head) or PROBABILITIES, names)]


def describe_inputs(model: keras.Model, pairs: bool) -> Inputs:
    """The model's inputs: images (their sizes) or keras-hub text (its sequence length).

    Raises:
        ValueError: inputs tfl cannot export (not images, nor a BERT preprocessor's tokens).

    Example:
    >>> from tfl.export.signatures import describe_inputs
    >>> inputs = keras.Input((8, 6, 3))
    >>> spec = describe_inputs(keras.Model(inputs, keras.layers.Flatten()(inputs)), False)
    >>> spec.kind, spec.image_sizes, spec.raw_names, spec.prepared_names
    ('images', [(8, 6)], ['images'], ['images'])
    """
    inputs = model.input
    if isinstance(inputs, dict):
        if set(inputs) != set(TEXT_INPUTS) or getattr(model, "preprocessor", None) is None:
            raise ValueError(
                f"Cannot export a model with inputs {sorted(inputs)} and preprocessor "
                f"{getattr(model, 'preprocessor', None)!r}: tfl exports image models and text "
                "models with a keras-hub BERT preprocessor (tfl.text.bert_preprocessor)."
            )
        length = getattr(model.preprocessor, "sequence_length", None)
        return Inputs("text", sequence_length=length, pairs=pairs)
    tensors = inputs if isinstance(inputs, list | tuple) else [inputs]
    sizes = []
    for tensor in tensors:
        shape = tuple(tensor.shape)
        if len(shape) != 4 or shape[-1] != 3 or None in shape[1:]:
            raise ValueError(
                f"Cannot export a model input of shape {shape}: tfl exports image inputs "
                "(batch, height, width, 3) and keras-hub text inputs; a fusion of text and "
                "image bases can be saved as .keras only."
            )
        sizes.append((int(shape[1]), int(shape[2])))
    return Inputs("images", image_sizes=sizes)


def postprocess(raw: Any, outputs: list[Output], top_k: int, with_labels: bool) -> dict:
    """Model outputs -> the signature's named outputs (graph ops; see the module docstring)."""
    raw = raw if isinstance(raw, dict) else {None: raw}
    result = {}
    for out in outputs:
        y = tf.cast(raw[out.head], tf.float32)
        if out.kind == "values":
            result[out.prefix + "values"] = y
            continue
        if out.kind == "scores":
            result[out.prefix + "scores"] = y
            y = tf.nn.softmax(y, axis=-1)
        result[out.prefix + "probabilities"] = y
        k = max(1, min(top_k, len(out.labels)))
        values, indices = tf.math.top_k(y, k=k)
        result[out.prefix + "top_k_probabilities"] = values
        result[out.prefix + "top_k_indices"] = indices
        if with_labels:
            names = tf.constant(out.labels, dtype=tf.string)
            result[out.prefix + "top_k_labels"] = tf.gather(names, indices)
    return result


def postprocess_numpy(raw: Any, outputs: list[Output]) -> dict[str, np.ndarray]:
    """The Keras model's outputs under the signature's names (the parity reference)."""
    raw = raw if isinstance(raw, dict) else {None: raw}
    result = {}
    for out in outputs:
        y = np.asarray(raw[out.head], dtype=np.float32)
        if out.kind == "values":
            result[out.prefix + "values"] = y
            continue
        if out.kind == "scores":
            result[out.prefix + "scores"] = y
            e = np.exp(y - y.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        result[out.prefix + "probabilities"] = y
    return result
