"""Running a frozen feature model over data once: the batches, the forward pass, the output.

`extraction_dataset` batches the data (arrays or a `tf.data.Dataset`) with the model's
preprocessor applied; `extract` runs the feature model over it once, with a compiled call on
the local replicas of the active `tf.distribute` strategy, and hands each batch of features
to a `FeatureWriter` (in memory, or appended to raw float32 files on disk). `tfl.cache` keeps
what comes out.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import tree


def feature_file(folder: str, index: int) -> str:
    """The raw float32 file of feature tensor `index` in a cache entry's folder."""
    return os.path.join(folder, f"features_{index}.bin")


def extraction_dataset(
    model, x, y=None, sample_weight=None, batch_size=None, extraction_batch_size=None
) -> tf.data.Dataset:
    """Batches of `(x, y, w)` with the model's preprocessor (e.g. a tokenizer) applied."""
    if isinstance(x, tf.data.Dataset):
        ds = x
    else:
        if isinstance(x, list) and x and not isinstance(x[0], str):
            x = tuple(x)  # a list of inputs (fusion models)
        inputs = keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        ds = tf.data.Dataset.from_tensor_slices(inputs).batch(batch_size or 32)
    preprocess = getattr(model, "preprocess_samples", None)
    if preprocess is not None and getattr(model, "preprocessor", None) is not None:
        ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    if extraction_batch_size and (batch_size or 0) < extraction_batch_size:
        ds = ds.rebatch(extraction_batch_size)  # same order, bigger (faster) batches
    return ds.prefetch(tf.data.AUTOTUNE)


def _to_numpy(value):
    return tree.map_structure(lambda t: None if t is None else np.asarray(t), value)


class FeatureWriter:
    """Collects batches of features, in memory or appended to raw files on disk."""

    def __init__(self, folder: str | None):
        self.folder = folder
        self.chunks: list[list[np.ndarray]] = []
        self.files: list = []
        self.shapes: list[tuple] = []
        self.rows = 0
        self.first_batch = None

    def add(self, arrays: list[np.ndarray]):
        if not self.shapes:
            self.first_batch = len(arrays[0])
            self.shapes = [a.shape[1:] for a in arrays]
            self.chunks = [[] for _ in arrays]
            if self.folder:
                self.files = [  # closed in close(), also when extraction fails
                    open(feature_file(self.folder, i), "wb")  # noqa: SIM115
                    for i in range(len(arrays))
                ]
        for i, a in enumerate(arrays):
            a = np.ascontiguousarray(a, dtype=np.float32)
            if self.folder:
                self.files[i].write(a.tobytes())
            else:
                self.chunks[i].append(a)
        self.rows += len(arrays[0])

    def close(self):
        for f in self.files:
            f.close()

    def arrays(self) -> list[np.ndarray]:
        return [np.concatenate(c) if c else np.zeros((0,), np.float32) for c in self.chunks]


def _concat(parts: list) -> Any:
    if not parts or parts[0] is None:
        return None
    return tree.map_structure(lambda *leaves: np.concatenate(leaves), *parts)


def _multi_worker(strategy) -> bool:
    from tfl.distribute import is_multi_worker

    return is_multi_worker(strategy)


def extract(feature_model, dataset, writer: FeatureWriter) -> tuple[Any, Any]:
    """Run `feature_model` over `dataset` once; return the targets and sample weights."""
    strategy = tf.distribute.get_strategy()
    # Traced once per feature model and input spec, with the batch dimension left open (as
    # Keras' predict_function), so a last partial batch does not trace the graph again.
    x_spec = keras.utils.unpack_x_y_sample_weight(dataset.element_spec)[0]
    x_spec = tree.map_structure(
        lambda s: tf.TensorSpec((None, *s.shape[1:]), s.dtype, s.name), x_spec
    )
    # Over the local replicas of one machine. On a multi-worker cluster each worker runs the
    # whole dataset through its own copy of the base (no collectives: every worker then holds
    # all the features, and `fit` shards the cached batches as it shards any dataset).
    distributed = strategy.num_replicas_in_sync > 1 and not _multi_worker(strategy)

    def call(x):
        return tree.flatten(feature_model(x, training=False))

    traced = feature_model.__dict__.setdefault("_tfl_forward", {})
    key = (repr(x_spec), id(strategy) if distributed else None)
    forward = traced.get(key)
    if forward is None and distributed:  # one graph running `call` on every replica
        forward = tf.function(lambda x: strategy.run(call, args=(x,)), reduce_retracing=True)
    elif forward is None:
        forward = tf.function(call, input_signature=[x_spec])
    traced[key] = forward

    targets, weights = [], []
    if distributed:
        dataset = strategy.experimental_distribute_dataset(dataset)
    for batch in dataset:
        x, y, w = keras.utils.unpack_x_y_sample_weight(batch)
        if distributed:
            outputs = forward(x)
            outputs = [
                np.concatenate([np.asarray(v) for v in strategy.experimental_local_results(o)])
                for o in outputs
            ]
            y, w = (
                tree.map_structure(
                    lambda t: np.concatenate(
                        [np.asarray(v) for v in strategy.experimental_local_results(t)]
                    ),
                    value,
                )
                if value is not None
                else None
                for value in (y, w)
            )
        else:
            outputs = [np.asarray(o) for o in forward(x)]
        writer.add(outputs)
        targets.append(_to_numpy(y))
        weights.append(_to_numpy(w))
    writer.close()
    return _concat(targets), _concat(weights)
