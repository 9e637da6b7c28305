"""A frozen phase on cached features: the head trains on the base's features, computed once.

`resolve_cache` decides whether (and with which `tfl.cache.FeatureCache`) the frozen phases
of a run use cached features; `fit_on_features` runs one such phase: it fits the head model of
`tfl.cache.split_at_bases(model)`, compiled like the task, while the callbacks see the task.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from tfl.fitting.compiling import compile_like


def resolve_cache(cache, x, phases, augmented: bool | None = None):
    """The `FeatureCache` for the frozen phases of this run, or None (see `fit_phases`).

    `augmented`: what the data's `tfl.data.DataSplits` says of its training split (None:
    not known; then a first batch that differs between two reads counts as random).
    """
    known = augmented
    from tfl.cache import FeatureCache, is_randomly_augmented

    if cache is False or cache is None or all(p.trainable is not None for p in phases):
        return None
    if not isinstance(cache, bool | str | os.PathLike | FeatureCache):
        raise ValueError(
            f"Received cache={cache!r}; expected 'auto', 'memory', True, False, a folder or a "
            "tfl.cache.FeatureCache."
        )
    readable = (
        isinstance(x, tf.data.Dataset)
        or hasattr(x, "__array__")
        or isinstance(x, list | tuple | dict)
    )
    augmented = is_randomly_augmented(x, known) if readable else None
    if cache == "auto" or cache == "memory":
        if not readable or augmented is not False:
            return None  # augmented, shuffled or unreadable twice: train through the base
        return FeatureCache(None if cache == "memory" else "auto")
    if not readable or augmented is None:
        raise ValueError(
            f"Received cache={cache!r} with training data of type {type(x).__name__}; the "
            "feature cache reads arrays or a finite tf.data.Dataset. Pass one, or cache=False."
        )
    if augmented and known:
        raise ValueError(
            f"Received cache={cache!r} with randomly augmented training data: cached features "
            "would freeze one random draw. Turn augmentation off for the frozen phases, or use "
            "cache=False (the base then runs inside every step)."
        )
    if cache is True:
        return FeatureCache("auto")
    return cache if isinstance(cache, FeatureCache) else FeatureCache(os.fspath(cache))


class _OnFullModel(keras.callbacks.Callback):
    """While a cached phase fits the head model, callbacks see the full task.

    Callbacks keep `self.model` = the task (checkpoints save it, EarlyStopping restores its
    weights, BackupAndRestore backs it up; it shares its optimizer and head with the head
    model). This callback, last in the list, hands the task's `stop_training` and resume
    epoch to the head model whose `fit` loop reads them.
    """

    def __init__(self, callbacks, model, head_model):
        super().__init__()
        self.callbacks = list(callbacks)
        self.task = model
        self.head_model = head_model

    def __enter__(self):
        task = self.task
        for cb in self.callbacks:
            cb.set_model = lambda _, cb=cb: type(cb).set_model(cb, task)
        task.stop_training = False
        return self.callbacks + [self]

    def __exit__(self, *exc):
        for cb in self.callbacks:
            cb.__dict__.pop("set_model", None)

    def on_train_begin(self, logs=None):
        if self.task._initial_epoch is not None:  # BackupAndRestore found a backup
            self.head_model._initial_epoch = self.task._initial_epoch

    def _forward_stop(self, *args, **kwargs):
        if self.task.stop_training:
            self.head_model.stop_training = True

    on_train_batch_end = on_epoch_end = _forward_stop


def fit_on_features(
    model,
    cached_run,
    feature_cache,
    phase,
    x,
    y,
    *,
    validation_data,
    batch_size,
    initial_epoch,
    callbacks,
    verbose,
    shuffle,
    fit_kwargs,
    known=None,
):
    """One frozen phase: train the head model on cached base features.

    Args:
        model: the compiled task.
        cached_run: `(feature_model, head_model)` from `tfl.cache.split_at_bases(model)`.
        feature_cache: the `tfl.cache.FeatureCache` to take the features from.
        phase: the phase (its name and epochs).
        x, y, validation_data, batch_size, verbose: as for `fit_phases`.
        initial_epoch: the epoch the phase starts at.
        callbacks: the phase's callbacks; they see `model`, not the head model.
        shuffle: the `shuffle` the user gave `fit_phases` (None if none).
        fit_kwargs: more `fit` arguments (`shuffle` and `sample_weight` are taken out).
        known: what a `tfl.data.DataSplits` says of the data: `fingerprints` (`{"train":
            ..., "validation": ...}`, else the data are hashed) and `in_order` (the training
            split in a fixed order, read for the features instead of the shuffled one).

    Returns:
        The head model's `History`.
    """
    feature_model, head_model = cached_run
    fit_kwargs = dict(fit_kwargs)
    fit_kwargs.pop("shuffle", None)
    sample_weight = fit_kwargs.pop("sample_weight", None)
    talk = 0 if verbose == 0 else 1
    if talk:
        print(f"Phase {phase.name!r}: the base is frozen; training the head on cached features.")

    known = known or {}
    fingerprints = known.get("fingerprints", {})

    def features(data_x, data_y, weights, split):
        in_order = known.get("in_order") if split == "train" else None
        return feature_cache.features(
            model,
            data_x,
            data_y,
            sample_weight=weights,
            batch_size=batch_size,
            feature_model=feature_model,
            verbose=talk,
            fingerprint=fingerprints.get(split),
            in_order=in_order,
        )

    train = features(x, y, sample_weight, "train")
    validation = None
    if validation_data is not None:
        if isinstance(validation_data, tf.data.Dataset):
            vx, vy, vw = validation_data, None, None
        else:
            vx, vy, vw = keras.utils.unpack_x_y_sample_weight(tuple(validation_data))
        validation = features(vx, vy, vw, "validation")
    compile_like(head_model, model)
    from tfl.distribute import patch_multi_worker_build  # keras-team/keras#20585

    patch_multi_worker_build(head_model)
    head_model._initial_epoch = None
    data = _head_data(x, train, validation, batch_size, shuffle)
    with _OnFullModel(callbacks, model, head_model) as pinned:
        return head_model.fit(
            initial_epoch=initial_epoch,
            epochs=initial_epoch + phase.epochs,
            callbacks=pinned,
            verbose=verbose,
            **data,
            **fit_kwargs,
        )


def _head_data(x, train, validation, batch_size, shuffle) -> dict:
    """The `fit` arguments that feed the cached features to the head model."""
    if isinstance(x, tf.data.Dataset):
        from tfl.distribute import shard  # the input sharding of the active strategy

        # Same batches as the source data; shuffled each epoch unless shuffle=False was asked.
        data = dict(
            x=shard(train.dataset(train.batch_size, shuffle=shuffle is not False, seed=None))
        )
        data["shuffle"] = False  # the dataset shuffles itself
        if validation is not None:
            data["validation_data"] = shard(validation.dataset(validation.batch_size))
    else:
        data = dict(x=train.x, y=train.targets, sample_weight=train.sample_weight)
        data.update(batch_size=batch_size, shuffle=True if shuffle is None else shuffle)
        if validation is not None:
            data["validation_data"] = keras.utils.pack_x_y_sample_weight(
                validation.x, validation.targets, validation.sample_weight
            )
    return data
