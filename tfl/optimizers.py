"""Per-block learning rates for any Keras optimizer, and weight decay without biases/norms.

Keras has no parameter groups. `with_lr_multipliers(optimizer, model, ...)` gives every
variable of a model a learning-rate multiplier by block group (see `tfl.block_groups`), e.g.
layer-wise LR decay for fine-tuning, and returns a subclass of the optimizer's own class whose
`update_step(gradient, variable, learning_rate)` receives `learning_rate * multiplier`. That is
the same as a PyTorch parameter group with its own `lr`: scaling the *gradient* instead would
do nothing for Adam-like optimizers, which are invariant to the gradient's scale.

What the Keras source (keras 3.15, TensorFlow backend) says, and how this module relies on it:

- Every built-in optimizer (Adadelta, Adafactor, Adagrad, Adam, AdamW, Adamax, Ftrl, Lamb,
  Lion, Muon, Nadam, RMSprop, SGD, ScheduleFreeAdamW) computes its step from the
  `learning_rate` argument of `update_step`, never from `self.learning_rate`. Caveats:
  Adafactor caps its step size at `1/sqrt(t)`, so a multiplier scales its learning rate (the
  parameter-group meaning) but not always its update; Muon gives its Adam-updated variables
  `learning_rate * adam_lr_ratio`, so the multiplier carries through.
- Decoupled weight decay is *not* applied in `update_step` but once for all variables in
  `_apply_weight_decay`, with `self.learning_rate`. The optimizers made here skip that and
  apply `p -= lr * multiplier * weight_decay * p` at the start of `update_step` instead (Muon:
  its `adam_weight_decay` for the variables it updates with Adam). `update_step` already runs
  once per variable inside `distribution.extended.update`, i.e. per replica component under
  `tf.distribute`, like Keras's own decay. `exclude_from_weight_decay` is honoured.
- Under `tf.distribute` the variable given to `update_step` is a per-replica component;
  `self._get_variable_index(variable)` maps it back to its position in the list the optimizer
  was built on, which is where the multipliers are stored. Variables are told apart by
  identity, not by `variable.path` (two bases of one architecture have equal paths).

The learning-rate schedules (`WarmupDecay`, `OneCycle`, `max_learning_rate`) live in
`tfl.lr_schedules`; their old names here still work, with a `DeprecationWarning`.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
import weakref

import keras
from keras import ops

from tfl._deprecation import moved_names
from tfl.freezing import TRAILING_GROUPS, bases_of, block_groups

LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule

# Variable names of biases and of BatchNorm/LayerNorm/GroupNorm scales and offsets, matched
# against both Keras names ("bias") and TensorFlow names ("dense/bias:0", and per-replica
# components "dense/bias/replica_1:0").
NO_DECAY_PATTERN = r"(?:^|/)(?:bias|gamma|beta)(?:/replica_\d+)?(?::\d+)?$"

# Registered name of the subclass made for an optimizer class: "tfl>{name}WithLRMultipliers".
_SUFFIX = "WithLRMultipliers"
_PACKAGE = "tfl"
_UNSUPPORTED = (keras.optimizers.LossScaleOptimizer, keras.optimizers.MultiOptimizer)


# --------------------------------------------------------------------------------------------
# Block groups -> multipliers
# --------------------------------------------------------------------------------------------


def _has_groups(layer) -> bool:
    return hasattr(layer, "block_groups") or bool(getattr(layer, "transformer_layers", None))


def _bases(model: keras.Model) -> list[keras.Model]:
    """The model's bases; for a plain Keras model, the tfl/keras-hub bases among its layers."""
    bases = bases_of(model)
    if bases == [model] and not _has_groups(model):
        found = [layer for layer in getattr(model, "layers", []) if _has_groups(layer)]
        if not found:
            raise TypeError(
                f"Received a {type(model).__name__} with no pretrained base tfl knows: expected "
                "a tfl task (e.g. tfl.ImageClassifier), a tfl.ImageBackbone or keras-hub "
                "transformer backbone, or a Keras model that contains one as a layer."
            )
        return found
    return bases


def _group_table(model: keras.Model):
    """`(key, group name, layers)` per block group, bottom to top, and whether there is a head.

    Keys are the group names, or "{base name}/{group}" when the model has several bases.
    """
    bases = _bases(model)
    rows = []
    for base in bases:
        for name, layers in block_groups(base).items():
            key = f"{base.name}/{name}" if len(bases) > 1 else name
            rows.append((key, name, layers, base))
    return rows, bases, model not in bases


def _decayed(names: list[str], layer_decay: float) -> dict[str, float]:
    """Top block 1.0, the one below `layer_decay`, ...; trailing groups share the block below."""
    counted = [n for n in names if n not in TRAILING_GROUPS]
    depth = {n: len(counted) - 1 - i for i, n in enumerate(counted)}
    values, last = {}, None
    for name in names:
        if name in depth:
            last = layer_decay ** depth[name]
        values[name] = last
    # A trailing group with no block beneath it takes the value of the block above it.
    first = next((values[n] for n in names if values[n] is not None), 1.0)
    return {n: first if v is None else float(v) for n, v in values.items()}


def _check_multiplier(value, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"Received {where}={value!r}; expected a finite number >= 0.")
    return float(value)


def block_lr_multipliers(
    model: keras.Model,
    layer_decay: float | None = None,
    multipliers: dict[str, float] | None = None,
) -> dict[str, float]:
    """A learning-rate multiplier per block group of the model's bases, plus "head".

    Groups come from `tfl.block_groups` (bottom to top: stem, stage1..n, top for image bases;
    embeddings, layer_0..n, pooler for keras-hub BERT). With several bases the keys are
    "{base name}/{group}". "head" stands for every weight outside the bases.

    Args:
        model: a tfl task, a base, or a Keras model that contains a base as a layer.
        layer_decay: layer-wise LR decay `d` in (0, 1]: the top block gets 1.0, the block
            below `d`, then `d**2`, ...; a trailing "top"/"pooler" group shares the value of
            the block beneath it; the head gets 1.0. None: every group 1.0.
        multipliers: group names or regexes (fullmatch, as in `tfl.unfreeze`) mapped to
            values; they override `layer_decay` (later entries win).

    Returns:
        `{group: multiplier}`, bottom to top, then "head".

    Raises:
        ValueError: a bad `layer_decay` or value, or a name that matches no group.

    Example:
    >>> from tfl.optimizers import block_lr_multipliers
    >>> model = ImageClassifier(ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None), 3)
    >>> block_lr_multipliers(model, layer_decay=0.5, multipliers={"head": 2.0})
    {'stem': 0.125, 'stage1': 0.25, 'stage2': 0.5, 'stage3': 1.0, 'top': 1.0, 'head': 2.0}
    """
    if layer_decay is not None and (
        isinstance(layer_decay, bool)
        or not isinstance(layer_decay, numbers.Real)
        or not 0 < layer_decay <= 1
    ):
        raise ValueError(
            f"Received layer_decay={layer_decay!r}; expected a number in (0, 1], e.g. 0.75 "
            "(or None for no decay)."
        )
    rows, bases, has_head = _group_table(model)
    values: dict[str, float] = {}
    for base in bases:
        names = [name for _, name, _, b in rows if b is base]
        decayed = _decayed(names, layer_decay) if layer_decay is not None else {}
        for key, name, _, b in rows:
            if b is base:
                values[key] = decayed.get(name, 1.0)
    if has_head:
        values["head"] = 1.0
    for pattern, value in (multipliers or {}).items():
        value = _check_multiplier(value, f"multipliers[{pattern!r}]")
        hits = [
            key
            for key in values
            if key == pattern
            or re.fullmatch(pattern, key)
            or re.fullmatch(pattern, key.rsplit("/", 1)[-1])
        ]
        if not hits:
            raise ValueError(
                f"Received multipliers={multipliers!r}: {pattern!r} matches no block group. "
                f"This model has {list(values)}."
            )
        for key in hits:
            values[key] = value
    return values


def _variable_multipliers(model: keras.Model, groups: dict[str, float]) -> list[tuple]:
    """`(variable, multiplier)` for every weight of the model (1.0 outside groups and head)."""
    rows, bases, has_head = _group_table(model)
    pairs = []
    base_ids = set()
    for key, _, layers, _ in rows:
        for layer in layers:
            pairs += [(w, groups[key]) for w in layer.weights]
    for base in bases:
        grouped = {id(w) for w, _ in pairs}
        pairs += [(w, 1.0) for w in base.weights if id(w) not in grouped]
        base_ids |= {id(w) for w in base.weights}
    if has_head:
        pairs += [(w, groups["head"]) for w in model.weights if id(w) not in base_ids]
    return pairs


# --------------------------------------------------------------------------------------------
# The optimizer mixin
# --------------------------------------------------------------------------------------------


class _State:
    """Plain holder, invisible to Keras's and TensorFlow's attribute tracking."""

    def __init__(self, saved=None):
        self.by_key: dict = {}  # optimizer._var_key(variable) -> multiplier
        self.model = None  # weakref to the model, for the variable order before build
        self.saved = None if saved is None else [float(m) for m in saved]  # from a config
        self.built: list[float] | None = None  # aligned with the variables built on
        self.mismatch: str | None = None  # why saved multipliers could not be reapplied


def _decay_rule(cls: type) -> str:
    """Who applies `cls`'s weight decay: Keras's standard rule, Muon's, or the class's own."""
    owner = next(k for k in cls.__mro__ if "_apply_weight_decay" in vars(k))
    if owner.__module__.startswith("keras.src.optimizers.base_optimizer") or (
        owner.__module__.startswith("keras.src.backend.")
    ):
        return "standard"
    if issubclass(owner, keras.optimizers.Muon) and owner.__module__.startswith("keras."):
        return "muon"
    return "own"


class _LRMultiplierMixin:
    """Scales each variable's learning rate (and decoupled weight decay) by its multiplier."""

    _tfl_base_class: type
    _tfl_decay_rule: str

    def __init__(self, *args, lr_multipliers=None, weight_decay_exclude_pattern=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._tfl_state = _State(lr_multipliers)
        if weight_decay_exclude_pattern:
            self.exclude_from_weight_decay(var_names=[weight_decay_exclude_pattern])

    # --- public -----------------------------------------------------------------------------

    def lr_multiplier(self, variable) -> float:
        """The learning-rate multiplier of `variable` (1.0 for variables it does not know)."""
        state = self._tfl_state
        key = self._var_key(variable)
        if state.built is not None and key in self._trainable_variables_indices:
            return state.built[self._trainable_variables_indices[key]]
        if key in state.by_key:
            return state.by_key[key]
        if state.mismatch:
            raise ValueError(state.mismatch)
        if state.saved is not None and not self.built:
            raise ValueError(
                "This optimizer was restored from a config: its multipliers belong to the "
                "variables it will be built on. Call optimizer.build(model.trainable_variables) "
                "first."
            )
        return 1.0

    @property
    def lr_multipliers(self) -> tuple[float, ...]:
        """The multipliers, aligned with the variable list the optimizer is built on.

        Before `build`, aligned with the model's current `trainable_variables` (what
        `compile`/`fit` will build it on).
        """
        state = self._tfl_state
        if state.built is not None:
            return tuple(state.built)
        if state.saved is not None:
            return tuple(state.saved)
        model = state.model() if state.model is not None else None
        if model is None:
            return ()
        return tuple(state.by_key.get(self._var_key(v), 1.0) for v in model.trainable_variables)

    # --- Keras hooks ------------------------------------------------------------------------

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        state = self._tfl_state
        if state.saved is not None and not state.by_key:
            if len(state.saved) == len(variables):
                state.built = list(state.saved)
                return
            # Loading must not fail (the model still predicts), but training with multipliers
            # of other variables would: refuse in update_step, like a stale slot list.
            state.mismatch = (
                f"Optimizer {self.name!r} was saved with {len(state.saved)} learning-rate "
                f"multipliers but is built on {len(variables)} variables (did the trainable "
                "weights change?). Compile with a new one: "
                "tfl.optimizers.with_lr_multipliers(optimizer, model, ...)."
            )
            warnings.warn(state.mismatch, UserWarning, stacklevel=2)
        else:
            state.built = [state.by_key.get(self._var_key(v), 1.0) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        if self._tfl_state.mismatch:
            raise ValueError(self._tfl_state.mismatch)
        index = self._get_variable_index(variable)
        multiplier = self._tfl_state.built[index]
        if multiplier != 1.0:
            learning_rate = ops.multiply(learning_rate, multiplier)
        if self._tfl_decay_rule != "own":
            self._tfl_decay(variable, index, learning_rate)
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        # Standard and Muon decay happen per variable in `update_step`, scaled by the
        # multiplier; a custom class's own decay is left to it.
        if self._tfl_decay_rule == "own":
            return super()._apply_weight_decay(variables)
        return None

    def _tfl_decay(self, variable, index, learning_rate):
        decay = self.weight_decay
        if self._tfl_decay_rule == "muon" and self.adam_velocities[index] is not None:
            decay = self.adam_weight_decay
        if decay is None or not self._use_weight_decay(variable):
            return
        rate = ops.multiply(
            ops.cast(decay, variable.dtype), ops.cast(learning_rate, variable.dtype)
        )
        self.assign_sub(variable, ops.multiply(variable, rate))

    def get_config(self):
        config = super().get_config()
        pattern = getattr(self, "_exclude_from_weight_decay_pattern", None)
        config["lr_multipliers"] = list(self.lr_multipliers) or None
        config["weight_decay_exclude_pattern"] = pattern.pattern if pattern else None
        return config


_CLASSES: dict[type, type] = {}


def lr_multiplier_class(optimizer_class: type) -> type:
    """The registered per-block-LR subclass of a Keras optimizer class (made once, cached).

    Subclasses of every built-in `keras.optimizers.*` class are made at import time, so
    `.keras` files load after `import tfl`. For a custom optimizer class, call this (or
    `with_lr_multipliers`) before `keras.saving.load_model`, so that its subclass
    ("tfl>{Name}WithLRMultipliers") is registered.

    Args:
        optimizer_class: a subclass of `keras.optimizers.Optimizer` (not LossScaleOptimizer
            or MultiOptimizer, which delegate to inner optimizers).

    Returns:
        A subclass of `optimizer_class` with `lr_multiplier(variable)` and `lr_multipliers`.

    Example:
    >>> import keras
    >>> from tfl.optimizers import lr_multiplier_class
    >>> cls = lr_multiplier_class(keras.optimizers.Adam)
    >>> cls.__name__, issubclass(cls, keras.optimizers.Adam)
    ('AdamWithLRMultipliers', True)
    """
    base = getattr(optimizer_class, "_tfl_base_class", optimizer_class)
    if base in _CLASSES:
        return _CLASSES[base]
    if not (isinstance(base, type) and issubclass(base, keras.optimizers.Optimizer)):
        raise TypeError(
            f"Received optimizer_class={optimizer_class!r}; expected a subclass of "
            "keras.optimizers.Optimizer."
        )
    if issubclass(base, _UNSUPPORTED):
        raise TypeError(
            f"Received {base.__name__}, which delegates to inner optimizers; give per-block "
            "multipliers to the inner optimizer instead (Keras wraps it in a "
            "LossScaleOptimizer by itself under mixed_float16)."
        )
    name = f"{base.__name__}{_SUFFIX}"
    registered = f"{_PACKAGE}>{name}"
    taken = keras.saving.get_registered_object(registered)
    if taken is not None:
        raise ValueError(
            f"Cannot register per-block learning rates for {base.__module__}.{base.__name__}: "
            f"{registered!r} already belongs to an optimizer class of the same name from "
            f"{taken._tfl_base_class.__module__}. Rename one of the two classes."
        )
    cls = type(
        name,
        (_LRMultiplierMixin, base),
        {
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": (
                f"`{base.__name__}` with a learning-rate multiplier per variable; made by "
                "`tfl.optimizers.with_lr_multipliers`."
            ),
            "_tfl_base_class": base,
            "_tfl_decay_rule": _decay_rule(base),
        },
    )
    keras.saving.register_keras_serializable(package=_PACKAGE, name=name)(cls)
    _CLASSES[base] = cls
    return cls


def _builtin_optimizer_classes() -> list[type]:
    classes = []
    for attr in dir(keras.optimizers):
        obj = getattr(keras.optimizers, attr)
        if (
            isinstance(obj, type)
            and issubclass(obj, keras.optimizers.Optimizer)
            and obj is not keras.optimizers.Optimizer
            and not issubclass(obj, _UNSUPPORTED)
        ):
            classes.append(obj)
    return classes


for _cls in _builtin_optimizer_classes():
    globals()[f"{_cls.__name__}{_SUFFIX}"] = lr_multiplier_class(_cls)
del _cls


def as_optimizer(optimizer) -> keras.optimizers.Optimizer:
    """`optimizer` itself, or a new one from its name ("adam", "sgd", ...)."""
    if isinstance(optimizer, str):
        return keras.optimizers.get(optimizer)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            f"Received optimizer={optimizer!r}; expected a keras.optimizers.Optimizer "
            "instance or a name such as 'adam'."
        )
    return optimizer


def with_lr_multipliers(
    optimizer: keras.optimizers.Optimizer | str,
    model: keras.Model,
    multipliers: dict[str, float] | None = None,
    layer_decay: float | None = None,
) -> keras.optimizers.Optimizer:
    """A new optimizer like `optimizer` that scales each block's learning rate.

    Each variable's update uses `learning_rate * multiplier` (the scheduled value, if the
    learning rate is a schedule), and its decoupled weight decay `lr * multiplier * wd`,
    as PyTorch parameter groups do. Multipliers come from `block_lr_multipliers(model,
    layer_decay, multipliers)`; weights in no group (or in another model) get 1.0. They are
    attached to the variables themselves, so `tfl.unfreeze` after this call is fine.

    The result is a new, unbuilt instance of a subclass of `type(optimizer)` (isinstance
    checks hold) made from `optimizer.get_config()` plus its `exclude_from_weight_decay`
    settings. It saves with the model (`.keras`): the multipliers are stored in the same
    variable order as Keras's optimizer variables and reapplied when it is rebuilt. Under
    `tf.distribute`, call this inside `strategy.scope()`.

    Args:
        optimizer: an unbuilt Keras optimizer, or a name ("adam", "sgd", ...).
        model: a tfl task, a base, or a Keras model that contains a base as a layer.
        multipliers: `{group name or regex: multiplier}`; see `block_lr_multipliers`.
        layer_decay: layer-wise LR decay; see `block_lr_multipliers`.

    Returns:
        The new optimizer, with `lr_multiplier(variable)` and `lr_multipliers`.

    Raises:
        ValueError: `optimizer` is already built (its slots belong to other variables).

    Example:
    >>> import keras
    >>> from tfl.optimizers import with_lr_multipliers
    >>> model = ImageClassifier(ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None), 3)
    >>> opt = with_lr_multipliers(keras.optimizers.Adam(1e-4), model, layer_decay=0.5)
    >>> isinstance(opt, keras.optimizers.Adam)
    True
    >>> stem_layer = block_groups(model.backbone)["stem"][0]
    >>> opt.lr_multiplier(stem_layer.weights[0]), opt.lr_multiplier(model.head.weights[0])
    (0.125, 1.0)
    """
    optimizer = as_optimizer(optimizer)
    if isinstance(optimizer, _UNSUPPORTED):
        raise TypeError(
            f"Received a {type(optimizer).__name__}; pass its inner optimizer instead (Keras "
            "wraps it in a LossScaleOptimizer by itself under mixed_float16)."
        )
    if optimizer.built:
        raise ValueError(
            f"Received optimizer {optimizer.name!r}, which is already built: its slots "
            "belong to another list of variables. Pass a new optimizer, e.g. "
            "keras.optimizers.Adam(1e-4), or an optimizer name."
        )
    groups = block_lr_multipliers(model, layer_decay=layer_decay, multipliers=multipliers)
    cls = lr_multiplier_class(type(optimizer))
    config = optimizer.get_config()
    config.pop("lr_multipliers", None)
    config.pop("weight_decay_exclude_pattern", None)
    new = cls.from_config(config)
    pattern = getattr(optimizer, "_exclude_from_weight_decay_pattern", None)
    keys = set(getattr(optimizer, "_exclude_from_weight_decay", None) or ())
    if pattern is not None or keys:
        new.exclude_from_weight_decay(var_names=[pattern.pattern] if pattern else None)
        new._exclude_from_weight_decay = keys
    state = new._tfl_state
    for variable, multiplier in _variable_multipliers(model, groups):
        state.by_key[new._var_key(variable)] = multiplier
    state.model = weakref.ref(model)
    if (
        cls._tfl_decay_rule == "own"
        and optimizer.weight_decay is not None
        and any(m != 1.0 for m in groups.values())
    ):
        warnings.warn(
            f"{type(optimizer).__name__} applies weight decay in its own "
            "_apply_weight_decay: tfl scales its learning rates per block, but not its decay.",
            UserWarning,
            stacklevel=2,
        )
    return new


# --------------------------------------------------------------------------------------------
# Weight decay without biases and norms
# --------------------------------------------------------------------------------------------


def exclude_bias_and_norm(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """Exclude biases and norm scales/offsets (gamma, beta) from decoupled weight decay.

    Calls Keras's `optimizer.exclude_from_weight_decay` with a name pattern for the 1-D
    variables named "bias", "gamma" and "beta" (Dense/Conv/EinsumDense biases, BatchNorm,
    LayerNorm as in keras-hub BERT, GroupNorm), keeping exclusions set before. Kernels and
    embeddings still decay. Keras does not save these exclusions with a plain optimizer;
    the optimizers made by `with_lr_multipliers` save and restore them.

    Args:
        optimizer: an unbuilt optimizer (with `weight_decay` set, or this changes nothing).

    Returns:
        `optimizer`, for chaining.

    Example:
    >>> import keras
    >>> from tfl.optimizers import exclude_bias_and_norm
    >>> opt = exclude_bias_and_norm(keras.optimizers.AdamW(1e-3, weight_decay=0.01))
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> [opt._use_weight_decay(v) for v in dense.weights]
    [True, False]
    """
    if optimizer.built:
        raise ValueError(
            f"Received optimizer {optimizer.name!r}, which is already built; Keras reads "
            "weight-decay exclusions only before build. Call this on a new optimizer."
        )
    pattern = getattr(optimizer, "_exclude_from_weight_decay_pattern", None)
    keys = set(getattr(optimizer, "_exclude_from_weight_decay", None) or ())
    names = [NO_DECAY_PATTERN] + ([pattern.pattern] if pattern is not None else [])
    optimizer.exclude_from_weight_decay(var_names=sorted(set(names)))
    optimizer._exclude_from_weight_decay = keys
    return optimizer


def adamw(
    learning_rate: float | LearningRateSchedule, weight_decay: float = 0.01, **kwargs
) -> keras.optimizers.AdamW:
    """`keras.optimizers.AdamW` whose decay skips biases and norm parameters.

    Args:
        learning_rate: a float or a schedule (e.g. `WarmupDecay`).
        weight_decay: decoupled weight decay; each step multiplies a kernel by
            `1 - learning_rate * weight_decay` (PyTorch's AdamW convention).
        **kwargs: passed to `keras.optimizers.AdamW`.

    Example:
    >>> from tfl.optimizers import adamw
    >>> opt = adamw(1e-3)
    >>> opt.weight_decay, opt._exclude_from_weight_decay_pattern is not None
    (0.01, True)
    """
    return exclude_bias_and_norm(
        keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, **kwargs)
    )


# The learning-rate schedules moved to tfl.lr_schedules; their old names here warn.
_MOVED = ("DECAYS", "OneCycle", "WarmupDecay", "max_learning_rate")
__getattr__ = moved_names(__name__, {n: f"tfl.lr_schedules:{n}" for n in _MOVED})
