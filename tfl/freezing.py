"""Freeze and unfreeze pretrained bases by block groups, never by raw layer indices.

Keras reads `trainable` when it builds the training step, at the first `fit` after
`compile()`: after `freeze` or `unfreeze`, call `model.compile(...)` again before `fit` (a
callback that flips `trainable` during `fit` silently does nothing). tfl tasks warn with a
`RecompileWarning` when `fit` is called on a stale training step.

BatchNorm layers stay frozen when a base is unfrozen (`train_batchnorm=False`, the default):
their scale and offset are not trained, and since tfl calls image bases in inference mode,
their moving statistics never move either. Small fine-tuning batches would otherwise wreck the
pretrained statistics (keras.io transfer-learning guide).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import keras
import numpy as np

# Groups above the last stage (final conv/norm, pooler): for `top_n` they count with the
# stage beneath them, so `top_n=1` always means "the last real block and what sits on it".
TRAILING_GROUPS = ("top", "pooler", "head")


class RecompileWarning(UserWarning):
    """Trainability changed since the last `fit`: Keras ignores it until `compile()`."""


def bases_of(model: keras.Model) -> list[keras.Model]:
    """The pretrained bases of a tfl task, or `[model]` for a base itself."""
    if getattr(model, "backbones", None):
        return list(model.backbones)
    if getattr(model, "backbone", None) is not None:
        return [model.backbone]
    return [model]


def block_groups(base: keras.Model) -> dict[str, list[keras.layers.Layer]]:
    """The layers of a base by block group, bottom (stem/embeddings) to top.

    `tfl.ImageBackbone` groups come from its family's data (stem, stage1..n, top). For a
    keras-hub transformer (anything with `transformer_layers`, e.g. BertBackbone) the groups
    are "embeddings", "layer_0".."layer_{n-1}" and "pooler" (whatever sits above).

    Example:
    >>> base = ImageBackbone("resnet50", (32, 32, 3), weights=None)
    >>> list(block_groups(base))
    ['stem', 'stage1', 'stage2', 'stage3', 'stage4']
    """
    if hasattr(base, "block_groups"):
        return base.block_groups()
    blocks = list(getattr(base, "transformer_layers", None) or [])
    if blocks:
        ids = {id(b): i for i, b in enumerate(blocks)}
        groups = {"embeddings": []}
        groups.update({f"layer_{i}": [b] for i, b in enumerate(blocks)})
        groups["pooler"] = []
        seen_blocks = False
        for layer in base.layers:
            if id(layer) in ids:
                seen_blocks = True
            elif layer.weights:
                groups["pooler" if seen_blocks else "embeddings"].append(layer)
        return {k: v for k, v in groups.items() if v}
    raise TypeError(
        f"tfl does not know the block groups of a {type(base).__name__}. Use a "
        "tfl.ImageBackbone or a keras-hub transformer backbone, or freeze layers yourself."
    )


def freeze(model: keras.Model) -> keras.Model:
    """Freeze every pretrained base of `model` (its heads stay trainable).

    Takes effect at the next `model.compile()`.

    Example:
    >>> model = ImageClassifier(ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None), 3)
    >>> freeze(model).backbone.trainable_weights
    []
    """
    for base in bases_of(model):
        base.trainable = False
        if any(getattr(lay, "lora_enabled", False) for lay in base._flatten_layers()):
            # Keras skips setting `trainable` to the value a layer already has, so after
            # keras-hub's enable_lora it never reaches the adapters: freeze each weight.
            for weight in base.weights:
                weight.trainable = False
    return model


def select_groups(names: list[str], groups=None, top_n=None) -> list[str]:
    """Which of a base's block groups `unfreeze(groups=..., top_n=...)` opens.

    The one check of `unfreeze`'s choice: validation of settings calls it with a family's
    group names (`tfl.get_spec(name)[0].group_names`) before any model is built.

    Args:
        names: the base's group names, bottom to top (`list(block_groups(base))`).
        groups: group names or regexes (`re.fullmatch`).
        top_n: the number of top blocks (trailing "top"/"pooler" groups count with the
            block beneath them).

    Raises:
        ValueError: a name that matches no group, or more blocks than the base has.

    Example:
    >>> from tfl.freezing import select_groups
    >>> select_groups(["stem", "stage1", "stage2", "top"], top_n=1)
    ['stage2', 'top']
    >>> select_groups(["stem", "stage1", "stage2", "top"], top_n=9)
    Traceback (most recent call last):
    ...
    ValueError: Received top_n=9, but this base has only 3 blocks: ['stem', 'stage1', 'stage2'].
    """
    if (groups is None) == (top_n is None):
        raise ValueError("Pass exactly one of groups=[...], top_n=N or 'all'.")
    if groups is not None:
        if isinstance(groups, str):
            groups = [groups]
        chosen = []
        for pattern in groups:
            try:
                hits = [n for n in names if n == pattern or re.fullmatch(pattern, n)]
            except re.error:
                hits = []
            if not hits:
                raise ValueError(
                    f"Received groups={list(groups)!r}: {pattern!r} matches no block group. "
                    f"This base has {names}."
                )
            chosen += hits
        return [n for n in names if n in chosen]
    if not isinstance(top_n, int) or top_n < 0:
        raise ValueError(f"Received top_n={top_n!r}; expected an integer >= 0.")
    counted = [n for n in names if n not in TRAILING_GROUPS]
    if top_n > len(counted):
        raise ValueError(
            f"Received top_n={top_n}, but this base has only {len(counted)} blocks: {counted}."
        )
    keep = set(counted[len(counted) - top_n :]) if top_n else set()
    if top_n:
        keep |= {n for n in names if n in TRAILING_GROUPS}
    return [n for n in names if n in keep]


def unfreeze(
    model: keras.Model,
    groups: str | Iterable[str] | None = None,
    top_n: int | str | None = None,
    train_batchnorm: bool = False,
) -> keras.Model:
    """Make block groups of the pretrained base(s) trainable; the rest stay frozen.

    Takes effect at the next `model.compile()` (Keras reads `trainable` there), so compile
    again with a lower learning rate before fine-tuning.

    Args:
        model: a tfl task (all its bases are unfrozen alike) or a single base.
        groups: group names or regexes, e.g. `["stage4", "top"]` or `"layer_[45]"`;
            see `block_groups(base)`.
        top_n: unfreeze the top `n` blocks (a trailing "top"/"pooler" group counts with the
            block beneath it), or `"all"`. `top_n=0` freezes every group.
        train_batchnorm: also train BatchNorm scale and offset (moving statistics still never
            move, because image bases run in inference mode). Default False.

    A base with LoRA adapters (`tfl.peft.enable_lora`) opens only the adapters of the
    chosen groups: its pretrained weights stay frozen.

    Returns:
        `model`, for chaining.

    Example:
    >>> model = ImageClassifier(ImageBackbone("resnet50", (32, 32, 3), weights=None), 3)
    >>> [g for g, n in trainable_groups(unfreeze(model, top_n=1)).items() if n]
    ['stage4']
    """
    for base in bases_of(model):
        named = block_groups(base)
        all_groups = top_n == "all"
        chosen = list(named) if all_groups else select_groups(list(named), groups, top_n)
        # Setting `trainable` on a functional model does not reach every nested layer, so
        # reset each layer: groups frozen by an earlier `unfreeze` open again.
        base.trainable = True
        for layer in base._flatten_layers(include_self=False, recursive=True):
            layer.trainable = True
        chosen_layers = {id(layer) for name in chosen for layer in named[name]}
        for layers in named.values():
            for layer in layers:
                if id(layer) not in chosen_layers:
                    layer.trainable = False
        for layer in base._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.BatchNormalization) and not train_batchnorm:
                layer.trainable = False
        if any(getattr(lay, "lora_enabled", False) for lay in base._flatten_layers()):
            from tfl.peft import train_adapters_only  # a base with LoRA trains its adapters

            train_adapters_only(base, [layer for name in chosen for layer in named[name]])
    return model


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def _group_rows(bases: list[keras.Model]):
    """`(base, group name, trainable params, total params)` for each block group of each base."""
    for base in bases:
        for name, layers in block_groups(base).items():
            total = _count(w for lay in layers for w in lay.weights)
            train = _count(w for lay in layers for w in lay.trainable_weights)
            yield base, name, train if base.trainable else 0, total


def trainable_groups(model: keras.Model) -> dict[str, int]:
    """Trainable parameter count per block group (summed over the model's bases)."""
    counts: dict[str, int] = {}
    for _, name, train, _ in _group_rows(bases_of(model)):
        counts[name] = counts.get(name, 0) + train
    return counts


def trainable_summary(model: keras.Model) -> str:
    """A table of what will train at the next `compile()`: per block group and the head.

    Example:
    >>> model = ImageClassifier(ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None), 3)
    >>> print(trainable_summary(freeze(model)).splitlines()[0])
    group          trainable / total params
    """
    bases = bases_of(model)
    rows = [
        (f"{base.name}/{name}" if len(bases) > 1 else name, train, total)
        for base, name, train, total in _group_rows(bases)
    ]
    base_ids = {id(w) for base in bases for w in base.weights}
    if model not in bases:
        rest = [w for w in model.weights if id(w) not in base_ids]
        rest_train = [w for w in model.trainable_weights if id(w) not in base_ids]
        rows.append(("head", _count(rest_train), _count(rest)))
    lines = [f"{'group':<14} trainable / total params"]
    lines += [f"{name:<14} {train:>9,} / {total:,}" for name, train, total in rows]
    train_all = sum(r[1] for r in rows)
    total_all = sum(r[2] for r in rows)
    lines.append(f"{'all':<14} {train_all:>9,} / {total_all:,}")
    return "\n".join(lines)
