"""A linter for transfer-learning traps: `lint(model, data)` warns with the fix.

`lint` checks a model (and one batch of its data) for the traps that make a fine-tune
silently fail, and warns once per trap with the fix (`TransferWarning`). `tfl.fit_phases`
runs it at the start of every phase.
"""

from __future__ import annotations

import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf

from tfl.backbones import ImageBackbone
from tfl.freezing import bases_of
from tfl.lr_schedules import max_learning_rate

# Fine-tuning learning-rate limits by optimizer (see `lint`). Adaptive optimizers (Adam,
# AdamW, Nadam, RMSprop, Adamax, Adagrad, ...) use the default row; SGD steps are not
# normalised, so it tolerates larger values; Lion's sign update is ~3-10x larger than Adam's
# at the same rate (its paper), so its limit is lower.
_LR_LIMITS = (
    # (optimizer class, limit, suggested range, optimizer family for the message)
    (keras.optimizers.SGD, 0.05, "1e-4 to 1e-2", "SGD"),
    (keras.optimizers.Lion, 3e-4, "1e-6 to 3e-5", "Lion"),
)
_ADAPTIVE_LR_LIMIT = (None, 1e-3, "1e-5 to 1e-4", "an adaptive optimizer")
# Rows of a data batch used by `lint` (enough to see ranges and BatchNorm updates).
_LINT_ROWS = 8


class TransferWarning(UserWarning):
    """A transfer-learning trap: the message says what is wrong and how to fix it."""


# What each model was already warned about: model -> {trap key}.
_REPORTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def lint(model: keras.Model, data=None, warn: bool = True) -> list[str]:
    """Check a model (and one batch of its data) for transfer-learning traps.

    The traps:

    1. BatchNorm in the pretrained base would update its moving statistics during `fit`
       (checked by effect: one forward pass in training mode, after which every variable is
       restored exactly). Keras 3 gives a functional model's `training` flag to every nested
       layer, so `base(x, training=False)` does not keep an unfrozen base in inference mode;
       only frozen BatchNorm layers (or `tfl.ImageBackbone`, which forces it) do.
    2. Inputs outside the range a `tfl.ImageBackbone` expects (raw 0-255 pixels): a batch in
       [0, 1] (already rescaled) or with negative values (already preprocessed).
    3. Nothing trainable: `fit` would not learn anything.
    4. A learning rate too high for fine-tuning while base weights are trainable: peak rate
       (a schedule's highest value, times tfl's per-block multiplier) above 0.05 for SGD,
       3e-4 for Lion and 1e-3 for adaptive optimizers (Adam, AdamW, Nadam, RMSprop, ...).

    For a plain Keras model, its nested models are taken as the pretrained bases (a model
    with none is taken as a base itself). Each trap is warned about once per model (`TransferWarning`); linting the same state
    again is silent, a changed state (e.g. another too-high rate) warns again.

    Args:
        model: a tfl task or any Keras model, compiled or not (trap 4 needs the optimizer).
        data: optional: a `tf.data.Dataset` of `(x, y)` / `(x, y, sample_weight)` or of
            inputs, one such batch (tuple), or the inputs themselves (array, dict, or tuple
            for a model with several inputs). Only one batch is read, and at most 8 rows of
            it. A task's `preprocessor` is applied first. Without data, trap 1 uses random
            inputs and trap 2 is skipped.
        warn: emit the warnings (False: only return the messages).

    Returns:
        The messages of all traps found, also those warned about before.

    Example:
    >>> from tfl import ImageBackbone, ImageClassifier
    >>> from tfl.linter import lint
    >>> model = ImageClassifier(ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None), 3)
    >>> lint(model, np.zeros((2, 32, 32, 3)))
    []
    >>> [m[:30] for m in lint(model, np.full((2, 32, 32, 3), 0.5), warn=False)]
    ['Inputs of the image model look']
    """
    bases = _bases(model)
    x = _model_inputs(model, data)
    found: list[tuple[tuple, str]] = []
    found += _check_batchnorm(model, bases, x)
    if x is not None:
        found += _check_input_range(model, bases, x)
    found += _check_trainable(model)
    found += _check_learning_rate(model, bases)
    if warn:
        reported = _REPORTED.setdefault(model, set())
        for key, message in found:
            if key not in reported:
                reported.add(key)
                warnings.warn(message, TransferWarning, stacklevel=2)
    return [message for _, message in found]


def _bases(model: keras.Model) -> list[keras.Model]:
    """The pretrained bases: a tfl task's, the nested models of a plain Keras model, or it."""
    if isinstance(model, ImageBackbone):
        return [model]
    bases = bases_of(model)
    if len(bases) == 1 and bases[0] is model:
        nested = [layer for layer in getattr(model, "layers", []) if isinstance(layer, keras.Model)]
        return nested or [model]
    return bases


def _first_element(data):
    if isinstance(data, tf.data.Dataset):
        return next(iter(data.take(1)))
    if isinstance(data, keras.utils.PyDataset):
        return data[0]
    return data


def _model_inputs(model: keras.Model, data):
    """At most `_LINT_ROWS` rows of the model's inputs from `data`, preprocessed; or None."""
    if data is None:
        return None
    batch = _first_element(data)
    several_inputs = isinstance(getattr(model, "input", None), (list, tuple))
    if isinstance(batch, (tuple, list)) and 1 <= len(batch) <= 3:
        is_xy = not several_inputs or isinstance(batch[0], (tuple, list, dict))
        x = batch[0] if is_xy else tuple(batch)
    else:
        x = batch
    x = keras.tree.map_structure(lambda a: a[:_LINT_ROWS] if np.ndim(a) else a, x)
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is not None:
        x = preprocessor(x)
    return x


def _random_inputs(model: keras.Model):
    """Random inputs (pixels in 0-255) of the model's input shapes, or None if unknown."""
    rng = np.random.default_rng(0)

    def make(spec):
        shape = tuple(spec.shape[1:])
        if any(d is None for d in shape):
            raise ValueError
        if "float" in str(spec.dtype):
            return rng.uniform(0, 255, (2, *shape)).astype(spec.dtype)
        return np.zeros((2, *shape), spec.dtype)

    try:
        return keras.tree.map_structure(make, model.input)
    except (ValueError, AttributeError):
        return None


def _moving_stats(layer) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in (layer.moving_mean, layer.moving_variance)]


def _check_batchnorm(model, bases, x):
    norms = [
        layer
        for base in bases
        if getattr(base, "inference_mode", True)  # a base built to train from scratch
        for layer in base._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    if not norms:
        return []  # frozen BatchNorm always runs in inference mode
    if x is None:
        x = _random_inputs(model)
        if x is None:
            return []
    state = [(v, keras.ops.convert_to_numpy(v)) for v in model.non_trainable_variables]
    stats = [(layer, _moving_stats(layer)) for layer in norms]
    try:
        model(keras.tree.map_structure(keras.ops.convert_to_tensor, x), training=True)
        moved = [
            layer
            for layer, before in stats
            if any(
                not np.array_equal(a, b) for a, b in zip(before, _moving_stats(layer), strict=True)
            )
        ]
    finally:
        for variable, value in state:
            variable.assign(value)
    if not moved:
        return []
    names = ", ".join(repr(layer.name) for layer in moved[:3])
    message = (
        f"{len(moved)} BatchNormalization layers of {model.name!r} (e.g. {names}) will update "
        "their moving statistics during fit: the pretrained base runs in training mode, and "
        "small fine-tuning batches wreck the statistics it was trained with. (Keras 3 passes "
        "fit's training=True to every nested layer, also through base(x, training=False).) "
        "Fix: freeze the BatchNorm layers (set layer.trainable = False on each "
        "keras.layers.BatchNormalization of the base, then compile again), or build the "
        "model with tfl.ImageBackbone and unfreeze with tfl.unfreeze, which keep them in "
        "inference mode."
    )
    return [(("batchnorm", len(moved)), message)]


def _check_input_range(model, bases, x):
    if not any(isinstance(b, ImageBackbone) for b in bases):
        return []
    images = []
    for leaf in keras.tree.flatten(x):
        if np.ndim(leaf) == 4:
            array = keras.ops.convert_to_numpy(leaf)
            if np.issubdtype(array.dtype, np.number) and array.size:
                images.append(array)
    if not images:
        return []
    lo = float(min(a.min() for a in images))
    hi = float(max(a.max() for a in images))
    if lo < 0:
        message = (
            f"Inputs of the image model look preprocessed already: values in [{lo:.3g}, "
            f"{hi:.3g}] include negatives. {model.name!r} applies its base's preprocessing "
            "itself and expects raw RGB pixels in [0, 255]: pass the images unprocessed "
            "(remove your preprocess_input / Normalization / Rescaling step)."
        )
        return [(("input_range", "negative"), message)]
    if 0 < hi <= 1.0:
        message = (
            f"Inputs of the image model look rescaled to [0, 1] (values in [{lo:.3g}, "
            f"{hi:.3g}]). {model.name!r} applies its base's preprocessing itself and expects "
            "raw RGB pixels in [0, 255]: pass 0-255 pixels (remove your Rescaling(1/255) or "
            "division by 255)."
        )
        return [(("input_range", "unit"), message)]
    return []


def _check_trainable(model):
    if model.trainable_weights:
        return []
    message = (
        f"{model.name!r} has no trainable weights (base and head all frozen): fit will not "
        "learn anything. Unfreeze the head or some blocks of the base (e.g. tfl.unfreeze("
        "model, top_n=1), or set trainable=True on the head), then compile again."
    )
    return [(("nothing_trainable",), message)]


def _check_learning_rate(model, bases):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return []
    base_ids = {id(w) for b in bases for w in b.trainable_weights}
    variables = [w for w in model.trainable_weights if id(w) in base_ids]
    if not variables:
        return []
    peak = max_learning_rate(optimizer, variables)
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's
    cls, limit, suggested, family = next(
        (row for row in _LR_LIMITS if isinstance(inner, row[0])), _ADAPTIVE_LR_LIMIT
    )
    if peak <= limit * (1 + 1e-6):  # float32 rates: Adam(1e-3) holds 0.0010000000475
        return []
    message = (
        f"The learning rate is high for fine-tuning: {type(inner).__name__} reaches "
        f"{peak:.3g} while {len(variables)} weights of the pretrained base are trainable "
        f"(above {limit:g} for {family}), which wrecks the pretrained features in the first "
        f"steps. Compile with a learning rate around {suggested} (tfl tasks' compile() "
        "defaults to 1e-4 for images and 5e-5 for text once a base is unfrozen), or "
        "freeze the base to train only the head."
    )
    return [(("learning_rate", round(peak, 12)), message)]
