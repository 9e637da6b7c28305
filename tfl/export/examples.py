"""The examples an export is checked (and int8-calibrated) on, in the forms each step needs.

`prepared_inputs` turns validation examples (images in 0-255, strings, string pairs) into the
`serving_preprocessed` inputs; `calibration_examples` cuts them into int8 calibration examples;
`collect_examples` takes them from a run's batched dataset.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfl.export.signatures import TEXT_INPUTS, Inputs, Output


def batched(n: int, batch_size: int):
    """Slices of `range(n)` of at most `batch_size` each.

    Example:
    >>> from tfl.export.examples import batched
    >>> list(batched(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def take(x: Any, s: slice) -> Any:
    """Rows `s` of an array, or of each array of a dict / list / tuple."""
    if isinstance(x, dict):
        return {k: v[s] for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(v[s] for v in x)
    return x[s]


def length(x: Any) -> int:
    """The number of rows of an array, or of the first array of a dict / list / tuple.

    Example:
    >>> from tfl.export.examples import length, take
    >>> x = {"a": np.arange(5), "b": np.zeros((5, 2))}
    >>> length(x), take(x, slice(1, 3))["a"].tolist()
    (5, [1, 2])
    """
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    return len(x[0]) if isinstance(x, list | tuple) else len(x)


def prepared_inputs(model, spec: Inputs, examples: Any, batch_size: int) -> dict:
    """`examples` as the `serving_preprocessed` signature's inputs (numpy)."""
    if spec.kind == "images":
        arrays = list(examples) if isinstance(examples, list | tuple) else [examples]
        if len(arrays) != len(spec.image_sizes):
            raise ValueError(
                f"Received {len(arrays)} image arrays for a model with "
                f"{len(spec.image_sizes)} image inputs; pass one array per input."
            )
        prepared = {}
        for name, array, size in zip(spec.prepared_names, arrays, spec.image_sizes, strict=True):
            array = np.asarray(array, dtype=np.float32)
            if array.ndim != 4 or tuple(array.shape[1:3]) != size:
                raise ValueError(
                    f"Received examples of shape {array.shape} for input {name!r}; expected "
                    f"(n, {size[0]}, {size[1]}, 3) images in 0-255."
                )
            prepared[name] = array
        return prepared
    texts = tuple(examples) if spec.pairs else examples
    parts: dict[str, list] = {}
    for s in batched(length(texts), batch_size):
        batch = take(texts, s)
        batch = (
            tuple(tf.constant(list(t)) for t in batch) if spec.pairs else tf.constant(list(batch))
        )
        tokens = model.preprocessor(batch)
        for key in TEXT_INPUTS:
            parts.setdefault(key, []).append(np.asarray(tokens[key], dtype=np.int32))
    return {k: np.concatenate(v) for k, v in parts.items()}


def as_targets(targets: Any, outputs: list[Output]) -> dict | None:
    """Labels as a dict head -> array (the one-output model's head is None)."""
    if targets is None:
        return None
    if isinstance(targets, dict):
        return {k: np.asarray(v) for k, v in targets.items()}
    return {outputs[0].head: np.asarray(targets)}


def calibration_examples(prepared: dict, limit: int) -> list[dict]:
    """The first `limit` prepared examples, one dict per example (int8 calibration).

    Example:
    >>> from tfl.export.examples import calibration_examples
    >>> [x["images"].shape for x in calibration_examples({"images": np.zeros((3, 4, 4, 3))}, 2)]
    [(1, 4, 4, 3), (1, 4, 4, 3)]
    """
    n = min(limit, length(prepared))
    return [{k: v[i : i + 1] for k, v in prepared.items()} for i in range(n)]


def collect_examples(dataset, limit: int) -> tuple[Any, Any]:
    """Up to `limit` examples `(x, y)` of a batched dataset, as numpy.

    Example:
    >>> import tensorflow as tf
    >>> from tfl.export.examples import collect_examples
    >>> ds = tf.data.Dataset.from_tensor_slices((np.arange(10.0), np.arange(10) % 2)).batch(4)
    >>> x, y = collect_examples(ds, 6)
    >>> x.tolist(), y.tolist()
    ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [0, 1, 0, 1, 0, 1])
    """
    xs, ys, n = [], [], 0
    for x, y in dataset:
        xs.append(keras.tree.map_structure(np.asarray, x))
        ys.append(keras.tree.map_structure(np.asarray, y))
        n += length(xs[-1])
        if n >= limit:
            break
    if not xs:
        return None, None

    def join(*parts):
        return np.concatenate(parts)[:limit]

    return keras.tree.map_structure(join, *xs), keras.tree.map_structure(join, *ys)
