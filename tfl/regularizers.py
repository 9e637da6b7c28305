"""L2-SP: fine-tune a pretrained base while pulling its weights back to where they started.

Li, Grandvalet & Davoine (2018), "Explicit inductive bias for transfer learning with
convolutional networks", replace plain weight decay during fine-tuning by

    Ω(w) = α · ‖w_S − w⁰_S‖² + β · ‖w_S̄‖²

where w_S are the weights of the pretrained base, w⁰_S their pretrained (starting point)
values and w_S̄ the weights of the new head. The paper writes α/2 and β/2; tfl, like
`keras.regularizers.L2`, puts no 1/2 in front, so tfl's `alpha` is half the paper's α.

The penalty is attached to the weights as Keras variable regularisers (`variable.regularizer`).
Keras adds the regularisation losses of the model's *trainable* weights to the training loss
(`Layer.losses`, collected once per weight even for nested bases, and added in
`Trainer.compute_loss`), so weights of a frozen base cost nothing and start paying as soon as
they are unfrozen (and the model recompiled). The same sum is part of the loss that
`evaluate()` and `val_loss` report, as for any Keras regulariser.

The attachment is for training only: it is not part of the model's config, so a `.keras` file
saved with L2-SP attached loads without it (and without the anchors). Re-apply it after
loading if you continue fine-tuning.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from tfl.freezing import bases_of

# Set on a variable while tfl's regulariser is attached: the regulariser it had before.
_PRIOR = "_tfl_l2sp_prior_regularizer"


@keras.saving.register_keras_serializable(package="tfl")
class L2SP(keras.regularizers.Regularizer):
    """`strength · ‖w − anchor‖²`: an L2 penalty towards `anchor` instead of towards zero.

    The anchor is kept in a non-trainable variable outside the model (on the accelerator,
    next to the weight) so that the training step reads it instead of embedding a copy of
    the weights as a graph constant. It costs one extra copy of every anchored weight.

    Anchors are not serialised: `get_config()` holds only the strength, and an `L2SP`
    rebuilt from a config has no anchor and refuses to compute a penalty. Attach anchored
    instances with `apply_l2sp` after loading the pretrained weights.

    Args:
        anchor: the starting-point values, an array of the regularised variable's shape
            (None only for an instance rebuilt from a config).
        strength: the factor in front of the squared distance (no 1/2), >= 0.

    Example:
    >>> from tfl.regularizers import L2SP
    >>> reg = L2SP(np.array([1.0, 2.0]), strength=0.5)
    >>> float(reg(np.array([2.0, 0.0])))  # 0.5 * (1² + 2²)
    2.5
    """

    def __init__(self, anchor=None, strength: float = 0.01):
        self.strength = _check_strength(strength, "strength")
        self._anchor = None
        if anchor is not None:
            value = np.asarray(anchor)
            if not np.issubdtype(value.dtype, np.floating):
                value = value.astype(keras.config.floatx())
            self._anchor = keras.Variable(value, trainable=False, name="l2sp_anchor")

    @property
    def anchor(self) -> np.ndarray | None:
        """The starting-point values as a NumPy array (None when not anchored)."""
        return None if self._anchor is None else ops.convert_to_numpy(self._anchor)

    def __call__(self, x):
        if self._anchor is None:
            raise ValueError(
                "This L2SP regularizer has no anchor (anchors are not serialised). Attach "
                "anchored ones with tfl.regularizers.apply_l2sp(model) after loading the "
                "pretrained weights."
            )
        if tuple(x.shape) != tuple(self._anchor.shape):
            raise ValueError(
                f"Received a weight of shape {tuple(x.shape)}; this L2SP is anchored to shape "
                f"{tuple(self._anchor.shape)}. Anchor each weight to its own starting values."
            )
        diff = ops.subtract(x, ops.cast(self._anchor, x.dtype))
        return ops.cast(self.strength, x.dtype) * ops.sum(ops.square(diff))

    def get_config(self):
        return {"strength": self.strength}


def _check_strength(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ValueError(f"Received {name}={value!r}; expected a finite number >= 0.")
    return number


def _trainable_capable(layer_owner: keras.layers.Layer) -> list:
    """Weights that are or may become trainable: created trainable, whatever the freezing.

    A layer's `trainable=False` flips its variables' flags but keeps them in the layer's
    list of trainable variables; BatchNorm moving statistics are created non-trainable and
    never appear there.
    """
    found, seen = [], set()
    for layer in layer_owner._flatten_layers(include_self=True, recursive=True):
        for v in layer._trainable_variables:
            if id(v) not in seen:
                seen.add(id(v))
                found.append(v)
    return found


def _attach(variable, regularizer) -> None:
    if not hasattr(variable, _PRIOR):
        setattr(variable, _PRIOR, variable.regularizer)
    variable.regularizer = regularizer


def _detach(variable) -> None:
    if hasattr(variable, _PRIOR):
        variable.regularizer = getattr(variable, _PRIOR)
        delattr(variable, _PRIOR)


def _base_and_head_weights(model: keras.Model) -> tuple[list, list]:
    bases = bases_of(model)
    base_weights, base_ids = [], set()
    for base in bases:
        for v in _trainable_capable(base):
            if id(v) not in base_ids:
                base_ids.add(id(v))
                base_weights.append(v)
    head_weights = []
    if model not in bases:
        head_weights = [v for v in _trainable_capable(model) if id(v) not in base_ids]
    return base_weights, head_weights


def _invalidate_compiled_steps(model: keras.Model) -> None:
    # Keras reads the regularisers when it traces the train/test step: drop the traced
    # steps, as `compile()` does, so the next fit/evaluate sees the change.
    for attr in ("train_function", "test_function"):
        if getattr(model, attr, None) is not None:
            setattr(model, attr, None)


def apply_l2sp(model: keras.Model, alpha: float = 0.01, beta: float = 0.01) -> keras.Model:
    """Attach L2-SP to the pretrained base(s) and plain L2 to the head's kernels.

    Every weight of the model's bases (`tfl.freezing.bases_of`) that is or may become
    trainable (kernels, biases, BatchNorm/LayerNorm scale and offset, embeddings; not
    BatchNorm moving statistics) gets `L2SP(current value, alpha)`, replacing any regulariser
    it had. Every kernel (weight with two or more dimensions) outside the bases gets
    `keras.regularizers.L2(beta)`, unless it already has a regulariser of its own (e.g.
    `Head(l2=...)` or an `SVMHead`'s 1/C), which is kept. Biases of the head are not
    penalised.

    Call it right after the pretrained weights are loaded (before any fine-tuning): the
    anchors are the weights' values *now*. Freezing does not matter: Keras only adds the
    penalties of trainable weights, so a frozen base pays nothing until it is unfrozen and
    the model recompiled. Calling it again re-anchors at the then-current values and sets
    the new strengths. It also drops the model's traced train/test steps (as `compile()`
    does), so the next `fit` uses the new penalty.

    Strengths are per-task hyperparameters: Li et al. tune them by validation on each
    target task. `alpha=beta=0.01` is the common starting point (the default trade-offs of
    the reference implementation in thuml's Transfer-Learning-Library, and of
    `keras.regularizers.L2()`); the penalty is a sum over all base weights, so try 10x
    lower for large bases whose weights should move more, 10x higher for very small
    target data sets. `alpha=0` (or `beta=0`) attaches nothing to the base (head).

    Args:
        model: a tfl task (ImageClassifier, TextClassifier, FusionClassifier,
            MultiTaskModel) or a single base (then everything is "base").
        alpha: strength of the pull of base weights towards their starting values.
        beta: strength of plain L2 on the head's kernels.

    Returns:
        `model`, for chaining.

    Example:
    >>> import keras
    >>> from tfl.regularizers import apply_l2sp, l2sp_penalty
    >>> base = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    >>> base = apply_l2sp(base, alpha=0.5)
    >>> kernel = base.layers[0].kernel
    >>> _ = kernel.assign(kernel + np.array([[1.0], [2.0]]))
    >>> round(l2sp_penalty(base), 6)  # 0.5 * (1² + 2²)
    2.5
    """
    alpha = _check_strength(alpha, "alpha")
    beta = _check_strength(beta, "beta")
    base_weights, head_weights = _base_and_head_weights(model)
    for v in base_weights:
        if alpha:
            _attach(v, L2SP(ops.convert_to_numpy(v), alpha))
        else:
            _detach(v)
    for v in head_weights:
        if len(v.shape) < 2:
            continue
        ours = hasattr(v, _PRIOR)
        if not ours and v.regularizer is not None:
            continue  # The head's own regulariser (Head(l2=...), SVMHead) stays.
        if beta:
            _attach(v, keras.regularizers.L2(beta))
        else:
            _detach(v)
    _invalidate_compiled_steps(model)
    return model


def remove_l2sp(model: keras.Model) -> keras.Model:
    """Detach what `apply_l2sp` attached; the weights get back their earlier regularisers.

    Example:
    >>> import keras
    >>> from tfl.regularizers import apply_l2sp, remove_l2sp
    >>> base = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> remove_l2sp(apply_l2sp(base)).layers[0].kernel.regularizer is None
    True
    """
    for v in model.weights:
        _detach(v)
    _invalidate_compiled_steps(model)
    return model


def l2sp_penalty(model: keras.Model) -> float:
    """The current value of the penalties `apply_l2sp` attached, over trainable weights.

    This is what the regularisation adds to the next training step's loss (Keras skips
    frozen weights): `alpha · ‖w − w⁰‖²` over the trainable base weights plus
    `beta · ‖w‖²` over the trainable head kernels it regularises. 0.0 without L2-SP.

    Example:
    >>> import keras
    >>> from tfl.regularizers import apply_l2sp, l2sp_penalty
    >>> base = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> l2sp_penalty(apply_l2sp(base))  # the weights are still at their anchors
    0.0
    """
    total = 0.0
    for v in model.trainable_weights:
        if hasattr(v, _PRIOR) and v.regularizer is not None:
            total += float(ops.convert_to_numpy(v.regularizer(v)))
    return total
