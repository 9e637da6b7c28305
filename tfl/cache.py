"""Bottleneck feature cache: run a frozen base over the data once, train the head on features.

While the pretrained base is frozen (phase 1 of `two_phase`, `feature_extraction`), every epoch
pushes the same images through the same base to get the same pooled features; only the head
learns. Computing those features once (TF Hub's retrain.py called them "bottlenecks") and
training the head on them costs about one forward pass plus the head, instead of E forward
passes. Phase 2 (the base unfrozen) then trains the full model as usual.

`split_at_bases(model)` cuts a tfl task into a *feature model* (inputs → pooled base features)
and a *head model* (features → outputs) that share the task's layers, so training the head
model trains the task's head. `FeatureCache` extracts features with a compiled call over a
`tf.data` pipeline (on the local devices of the active `tf.distribute` strategy) and keeps
them in memory, or on disk for later runs (re-runs, `lr_find`, cross-validation folds,
`compare`), keyed by a fingerprint of the base's architecture, its weights, the model's
preprocessing and the data (`tfl.fingerprints`). Change any of them and the features are
computed again. The extraction itself (batches, the compiled forward pass) is `tfl.extraction`.

`tfl.fit_phases(..., cache="auto")` (the default) uses this for every phase whose base is
frozen, unless the training data is randomly augmented (tfl.data marks its datasets; for other
`tf.data` pipelines a first batch that differs between two reads is taken as random).

What changes compared with running the frozen base inside `fit`: the base runs in inference
mode during extraction. Image bases always do (`ImageBackbone`), so the head sees the same
numbers; a text base's dropout, which the plain `fit` keeps active in a frozen base, is off.
While a cached phase trains, Keras callbacks still see the full task as `self.model` (it
shares its head and optimizer with the head model): checkpoints save the task, EarlyStopping
and TerminateOnNaN stop the head model's `fit`.

Example:
>>> from tfl.backbones import ImageBackbone
>>> from tfl.models import ImageClassifier
>>> model = ImageClassifier(ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None), 3)
>>> cache = FeatureCache(directory=None)
>>> features = cache.features(model, np.zeros((5, 32, 32, 3)), np.arange(5) % 3, batch_size=4)
>>> features.arrays[0].shape, features.from_cache
((5, 576), False)
>>> cache.features(model, np.zeros((5, 32, 32, 3)), np.arange(5) % 3, batch_size=4).from_cache
True
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import shutil
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import tree

from tfl.extraction import FeatureWriter, extract, extraction_dataset, feature_file
from tfl.fingerprints import data_fingerprint, model_fingerprint
from tfl.freezing import bases_of

# 2: the training split's features are read in a fixed order (`DataSplits.train_in_order`);
# entries of format 1 (tfl 0.1.0) hold them in a shuffled order and gave another result.
_FORMAT = 2
_DEFAULT_MEMORY_LIMIT = 2 * 1024**3  # features larger than this stream from disk


def cache_dir() -> str:
    """The default disk cache: `$TFL_CACHE_DIR`, else `<tfl.data.bundled.data_dir()>/features`."""
    from tfl.data.bundled import data_dir

    return os.environ.get("TFL_CACHE_DIR") or os.path.join(data_dir(), "features")


# --- Cutting a model at its bases ---------------------------------------------------------


def _is_random(layer) -> bool:
    return any(isinstance(v, keras.random.SeedGenerator) for v in vars(layer).values())


def _boundary(model: keras.Model) -> list:
    """The tensors where the frozen trunk (bases + weightless layers) meets the rest."""
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            f"Received a {type(model).__name__}; the feature cache needs a functional model "
            "such as a tfl task (ImageClassifier, TextClassifier, FusionClassifier, "
            "MultiTaskModel)."
        )
    bases = {id(b) for b in bases_of(model)}
    if not bases or bases == {id(model)}:
        raise ValueError(
            f"{model.name!r} has no pretrained base (`backbone`/`backbones`) to cache features of."
        )
    inputs = {id(t) for t in tree.flatten(model.inputs)}
    trunk = set(inputs)
    consumers = []
    for depth in sorted(model._nodes_by_depth, reverse=True):  # inputs first
        for node in model._nodes_by_depth[depth]:
            op = node.operation
            if isinstance(op, keras.layers.InputLayer):
                continue
            ins = [t for t in tree.flatten(node.input_tensors) if isinstance(t, keras.KerasTensor)]
            frozen = id(op) in bases or (not op.weights and not _is_random(op))
            if frozen and ins and all(id(t) in trunk for t in ins):
                trunk.update(id(t) for t in tree.flatten(node.output_tensors))
            else:
                consumers.append(ins)
    boundary, seen = [], set()
    for ins in consumers:
        for t in ins:
            if id(t) in trunk and id(t) not in seen:
                seen.add(id(t))
                boundary.append(t)
    for t in tree.flatten(model.outputs):
        if id(t) in trunk and id(t) not in seen:
            seen.add(id(t))
            boundary.append(t)
    if not boundary or any(id(t) in inputs for t in boundary):
        raise ValueError(
            f"Cannot cut {model.name!r} between its bases and its head: part of the head reads "
            "the raw inputs. Train it without the cache (cache=False)."
        )
    return boundary


def split_at_bases(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """`(feature_model, head_model)` sharing `model`'s layers, cut after the (pooled) bases.

    The feature model maps the task's inputs to the features its head reads (the pooled
    output of each base, after weightless layers such as mean pooling or concatenation); the
    head model maps those features to the task's outputs. Training the head model trains the
    task's head weights in place.

    Example:
    >>> from tfl.backbones import ImageBackbone
    >>> from tfl.models import ImageClassifier
    >>> base = ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None)
    >>> features, head = split_at_bases(ImageClassifier(base, 3))
    >>> features.output.shape, head.output.shape
    ((None, 576), (None, 3))
    """
    boundary = _boundary(model)
    cut = boundary[0] if len(boundary) == 1 else boundary
    feature_model = keras.Model(model.input, cut, name=f"{model.name}_features")
    head_model = keras.Model(cut, model.output, name=f"{model.name}_head")
    return feature_model, head_model


@dataclasses.dataclass
class CachedFeatures:
    """Features of one dataset, with its targets, ready to train a head model on.

    Attributes:
        arrays: one `(n, dim)` float32 array per feature tensor (in memory or memory-mapped).
        targets: the labels, with the structure the model's outputs have (or None).
        sample_weight: sample weights of the data, or None.
        fingerprint: the cache key.
        from_cache: whether the features were loaded rather than computed.
        seconds: time spent computing or loading them.
        batch_size: batch size of the source data (for arrays, the one given).
    """

    arrays: list[np.ndarray]
    targets: Any
    sample_weight: Any
    fingerprint: str
    from_cache: bool
    seconds: float
    batch_size: int | None = None

    def __len__(self) -> int:
        return len(self.arrays[0])

    @property
    def x(self):
        """The features as the head model takes them (one array or a list)."""
        return self.arrays[0] if len(self.arrays) == 1 else list(self.arrays)

    def dataset(
        self, batch_size: int | None = None, shuffle: bool = False, seed: int | None = None
    ):
        """A batched `tf.data.Dataset` of `(features, targets[, sample_weight])`.

        In-memory features become tensors; memory-mapped ones (larger than the cache's
        memory limit) stream from disk one batch at a time, shuffling the batch order.
        """
        batch_size = batch_size or self.batch_size or 32
        n = len(self)
        x = self.x if len(self.arrays) > 1 else self.arrays[0]
        x = tuple(x) if isinstance(x, list) else x
        inputs = keras.utils.pack_x_y_sample_weight(x, self.targets, self.sample_weight)
        if not any(isinstance(a, np.memmap) for a in self.arrays):
            ds = tf.data.Dataset.from_tensor_slices(inputs)
            if shuffle:
                ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
            return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
        flat = tree.flatten(inputs)
        signature = tuple(tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype)) for a in flat)

        def batches():
            starts = np.arange(0, n, batch_size)
            if shuffle:
                starts = np.random.default_rng(seed).permutation(starts)
            for s in starts:
                yield tuple(np.asarray(a[s : s + batch_size]) for a in flat)

        ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
        ds = ds.map(lambda *leaves: tree.pack_sequence_as(inputs, list(leaves)))
        return ds.prefetch(tf.data.AUTOTUNE)


def _save_structure(folder: str, name: str, value) -> list | None:
    if value is None:
        return None
    leaves = tree.flatten(value)
    for i, leaf in enumerate(leaves):
        np.save(os.path.join(folder, f"{name}_{i}.npy"), leaf, allow_pickle=False)
    keys = sorted(value) if isinstance(value, dict) else None
    return {"leaves": len(leaves), "keys": keys}


def _load_structure(folder: str, name: str, meta) -> Any:
    if meta is None:
        return None
    leaves = [
        np.load(os.path.join(folder, f"{name}_{i}.npy"), allow_pickle=False)
        for i in range(meta["leaves"])
    ]
    if meta["keys"] is not None:
        return dict(zip(meta["keys"], leaves, strict=True))
    return leaves[0] if len(leaves) == 1 else leaves


class FeatureCache:
    """Features of frozen bases, computed once per (base, weights, preprocessing, data).

    Args:
        directory: where to keep features between runs: `"auto"` (default: `cache_dir()`,
            i.e. `$TFL_CACHE_DIR` or `~/.cache/tfl/features`), a folder, or `None` to keep
            them in this process's memory only.
        memory_limit: features larger than this many bytes stay on disk and stream from
            there while training (memory-mapped); smaller ones are loaded into memory.
        max_entries: how many feature sets the in-memory cache keeps (least recently used
            are dropped; disk entries stay until `clear()`).
        batch_size: extraction batch size when the data's own batches are smaller (None:
            the data's). Inference needs no gradients, so bigger batches fit; on a 2-core
            CPU, MobileNetV2 extracted 1.0-1.4x faster at 128 than at 32 (noisy machine).
            The head still trains on the data's batch size.
    """

    def __init__(
        self,
        directory: str | None = "auto",
        memory_limit: int = _DEFAULT_MEMORY_LIMIT,
        max_entries: int = 8,
        batch_size: int | None = 128,
    ):
        if directory == "auto":
            directory = cache_dir()
        if directory is not None and not isinstance(directory, str | os.PathLike):
            raise ValueError(
                f"Received directory={directory!r}; expected a folder path, 'auto' or None."
            )
        self.directory = None if directory is None else os.fspath(directory)
        self.memory_limit = int(memory_limit)
        self.max_entries = int(max_entries)
        self.batch_size = batch_size
        self._memory: collections.OrderedDict[str, CachedFeatures] = collections.OrderedDict()

    def __repr__(self) -> str:
        return f"FeatureCache(directory={self.directory!r})"

    def key(self, model: keras.Model, x, y=None, sample_weight=None, batch_size=None) -> str:
        """The cache key of `model`'s base features on this data."""
        feature_model, _ = split_at_bases(model)
        return self._key(feature_model, model, x, y, sample_weight, batch_size)

    def _key(self, feature_model, model, x, y, sample_weight, batch_size, known) -> str:
        preprocessor = getattr(model, "preprocessor", None)
        parts = [
            f"format={_FORMAT}",
            model_fingerprint(feature_model, preprocessor),
            data_fingerprint(x, y, sample_weight, batch_size, known=known),
        ]
        return hashlib.blake2b("|".join(parts).encode(), digest_size=20).hexdigest()

    def features(
        self,
        model: keras.Model,
        x,
        y=None,
        *,
        sample_weight=None,
        batch_size: int | None = None,
        feature_model: keras.Model | None = None,
        verbose: int = 0,
        fingerprint: str | None = None,
        in_order=None,
    ) -> CachedFeatures:
        """The base features of `x` (computed, or loaded from memory/disk).

        Args:
            model: a tfl task (or any functional model with `backbone`/`backbones`).
            x, y, sample_weight: the data as for `model.fit`: arrays (y required for
                training), or a finite `tf.data.Dataset` of `(x, y)` batches.
            batch_size: batch size for arrays.
            feature_model: the first model of `split_at_bases(model)`, if already built.
            verbose: 1 prints where the features came from and how long it took.
            fingerprint: what identifies `x`'s batches, when known (a `tfl.data.DataSplits`'
                `fingerprints[split]`); else the data is hashed (`data_fingerprint`).
            in_order: the same examples as the `tf.data.Dataset` `x` in a fixed order (a
                `DataSplits`' `train_in_order`): read instead of `x`, so that `x`'s shuffle
                is left alone. Without it, loading features from the cache starts (and drops,
                reading nothing) the iterators an extraction would have started over `x`: each
                new iterator of a reshuffling pipeline draws the next shuffle seed, and the
                training order must not depend on whether the cache was warm.
        """
        _check_data(x)
        if feature_model is None:
            feature_model, _ = split_at_bases(model)
        start = time.perf_counter()
        source = x if in_order is None else in_order
        key = self._key(feature_model, model, source, y, sample_weight, batch_size, fingerprint)
        found = self._load(key)
        if found is not None:
            if in_order is None:
                _start_iterators_like_extraction(x, batch_size)
            found.seconds = time.perf_counter() - start
            found.batch_size = batch_size or found.batch_size
            self._remember(key, found)
            if verbose:
                print(f"Loaded {len(found):,} cached feature vectors in {found.seconds:.1f} s.")
            return found
        folder = self._new_folder(key)
        writer = FeatureWriter(folder)
        try:
            if batch_size is None and isinstance(source, tf.data.Dataset):
                first = next(iter(source.take(1)), None)  # the batch size the head trains with
                batch_size = None if first is None else int(tree.flatten(first)[0].shape[0])
            dataset = extraction_dataset(
                model, source, y, sample_weight, batch_size, self.batch_size
            )
            targets, weights = extract(feature_model, dataset, writer)
        except BaseException:
            writer.close()
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if writer.rows == 0:
            raise ValueError("Received empty data; there is nothing to extract features from.")
        batch_size = batch_size or writer.first_batch
        seconds = time.perf_counter() - start
        if folder:
            self._store(key, folder, writer, batch_size, targets, weights, seconds)
            found = self._load(key, seconds=seconds, from_cache=False)
        else:
            found = CachedFeatures(writer.arrays(), targets, weights, key, False, seconds)
        found.batch_size = batch_size
        self._remember(key, found)
        if verbose:
            print(
                f"Computed {len(found):,} feature vectors in {seconds:.1f} s"
                + (f" (cached in {self.directory})." if self.directory else ".")
            )
        return found

    def _new_folder(self, key: str) -> str | None:
        """An empty folder to write entry `key` into (None for an in-memory cache)."""
        if self.directory is None:
            return None
        # A folder of this process's own: two runs filling one entry never collide.
        folder = os.path.join(self.directory, f"{key}.partial-{os.getpid()}-{time.time_ns()}")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        return folder

    def _store(self, key, folder, writer, batch_size, targets, weights, seconds) -> None:
        """Complete the entry written into `folder` and rename it to `key`'s folder."""
        meta = {
            "format": _FORMAT,
            "rows": writer.rows,
            "batch_size": batch_size,
            "shapes": [list(s) for s in writer.shapes],
            "targets": _save_structure(folder, "targets", targets),
            "sample_weight": _save_structure(folder, "sample_weight", weights),
            "seconds": seconds,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with open(os.path.join(folder, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        final = os.path.join(self.directory, key)
        if os.path.exists(os.path.join(final, "meta.json")):
            shutil.rmtree(folder, ignore_errors=True)  # another run finished it first
        else:
            shutil.rmtree(final, ignore_errors=True)
            try:  # complete entries only: a killed run leaves a .partial folder
                os.replace(folder, final)
            except OSError:  # another run renamed its copy in between: keep that one
                shutil.rmtree(folder, ignore_errors=True)

    def _remember(self, key: str, value: CachedFeatures):
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)

    def _load(self, key: str, seconds: float = 0.0, from_cache: bool = True):
        if key in self._memory:
            found = self._memory[key]
            return dataclasses.replace(found, from_cache=True)
        if self.directory is None:
            return None
        folder = os.path.join(self.directory, key)
        meta_path = os.path.join(folder, "meta.json")
        if not os.path.exists(meta_path):
            return None
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("format") != _FORMAT:
            return None
        rows = meta["rows"]
        arrays = []
        for i, shape in enumerate(meta["shapes"]):
            path = feature_file(folder, i)
            array = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, *shape))
            arrays.append(array)
        if sum(a.nbytes for a in arrays) <= self.memory_limit:
            arrays = [np.array(a) for a in arrays]
        targets = _load_structure(folder, "targets", meta["targets"])
        weights = _load_structure(folder, "sample_weight", meta["sample_weight"])
        found = CachedFeatures(arrays, targets, weights, key, from_cache, seconds)
        found.batch_size = meta.get("batch_size")
        return found

    def clear(self) -> None:
        """Forget every cached feature set (memory and this cache's folder)."""
        self._memory.clear()
        if self.directory is not None and os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)


def _check_data(x) -> None:
    """Errors for data the cache cannot read once, front to back."""
    if isinstance(x, tf.data.Dataset):
        if x.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise ValueError(
                "Received an infinite (repeated) dataset; the feature cache reads the data "
                "once. Pass the dataset without .repeat(), or use cache=False."
            )
    elif x is None:
        raise ValueError("Received x=None; pass the data to extract features from.")


def _start_iterators_like_extraction(x, batch_size) -> None:
    """Start and drop the iterators an extraction starts over `x`, reading nothing: a new
    iterator draws its shuffle seed when it starts, not when it is read."""
    if isinstance(x, tf.data.Dataset):
        if batch_size is None:
            iter(x.take(1))
        iter(x)


# --- Deciding whether a phase can use the cache -------------------------------------------


def is_randomly_augmented(x, known: bool | None = None) -> bool | None:
    """Whether training data `x` changes between reads (random augmentation).

    `known`: what the data's `tfl.data.DataSplits.augmented` says, used as it is. Otherwise
    False for arrays (never random); for a `tf.data` pipeline, whether the first batch
    differs between two reads (a shuffled pipeline also reads as random). None for inputs
    that cannot be read twice (generators).
    """
    if known is not None:
        return bool(known)
    if isinstance(x, tf.data.Dataset):
        if x.cardinality() == tf.data.INFINITE_CARDINALITY:
            return None
        first = [next(iter(x.take(1)), None) for _ in range(2)]
        if first[0] is None:
            return False
        a, b = (tree.flatten(f) for f in first)
        return not all(
            np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(a, b, strict=True)
        )
    if isinstance(x, np.ndarray | tf.Tensor | list | tuple | dict):
        return False
    return None
