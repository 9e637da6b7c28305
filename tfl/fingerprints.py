"""Fingerprints: hashes that say whether a base or a dataset is the one seen before.

`model_fingerprint` hashes what turns inputs into features (layers, their settings and
weights, the preprocessing); `data_fingerprint` hashes the examples, their order and labels.
`tfl.cache.FeatureCache` keys its entries by both, so a changed weight or example computes the
features again.

Example:
>>> import numpy as np
>>> from tfl.fingerprints import data_fingerprint
>>> x = np.zeros((4, 2))
>>> data_fingerprint(x, [0, 1, 0, 1]) == data_fingerprint(x.copy(), [0, 1, 0, 1])
True
>>> data_fingerprint(x, [0, 1, 0, 1]) == data_fingerprint(x, [1, 1, 0, 1])
False
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import tree


def _hash_array(h, value) -> None:
    if isinstance(value, tf.Tensor | tf.Variable):
        value = value.numpy()
    value = np.asarray(value)
    h.update(f"{value.dtype.str}{value.shape}".encode())
    if value.dtype == object or value.dtype.kind in "SU":
        for item in value.reshape(-1):
            item = item if isinstance(item, bytes) else str(item).encode("utf-8")
            h.update(len(item).to_bytes(8, "little") + item)
    else:
        h.update(np.ascontiguousarray(value).tobytes())


def _layer_signature(layer) -> Any:
    """What a layer computes, without its (auto-generated) name."""
    try:
        config = dict(layer.get_config())
    except Exception:  # layers without a config: their class and weights say enough
        config = {}
    config.pop("name", None)
    return [type(layer).__name__, json.dumps(config, sort_keys=True, default=str)]


def model_fingerprint(feature_model: keras.Model, preprocessor=None) -> str:
    """A hash of what turns inputs into features: layers, their settings and weights.

    Layer names are left out (Keras numbers them per process), so the same pretrained base
    built twice has the same fingerprint; any changed weight changes it.
    """
    h = hashlib.blake2b(digest_size=20)
    for layer in feature_model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.Model):
            extra = [getattr(layer, k, None) for k in ("architecture", "image_shape", "pooling")]
            h.update(json.dumps([type(layer).__name__, extra], default=str).encode())
            continue
        h.update(json.dumps(_layer_signature(layer), default=str).encode())
        for w in layer.weights:
            _hash_array(h, w)
    if preprocessor is not None:
        h.update(json.dumps(_layer_signature(preprocessor), default=str).encode())
    return h.hexdigest()


def data_fingerprint(
    x, y=None, sample_weight=None, batch_size: int | None = None, known: str | None = None
) -> str:
    """A hash of the examples, their order and labels.

    `known`: the split's fingerprint from its `tfl.data.DataSplits` (source files, split,
    preprocessing), which is used as it is. Otherwise arrays are hashed directly, and a
    `tf.data` pipeline is read once and its batches hashed (the input pipeline only, no model).
    """
    if known:
        return hashlib.blake2b(f"tfl.data:{known}".encode(), digest_size=20).hexdigest()
    h = hashlib.blake2b(digest_size=20)
    if isinstance(x, tf.data.Dataset):
        for batch in x:
            for leaf in tree.flatten(batch):
                _hash_array(h, leaf)
    else:
        for leaf in tree.flatten((x, y, sample_weight)):
            if leaf is not None:
                _hash_array(h, leaf)
        h.update(f"batch={batch_size}".encode())
    return h.hexdigest()
