"""Parameter-efficient fine-tuning: LoRA adapters on a pretrained base (Hu et al. 2021).

LoRA freezes a layer's pretrained kernel W and learns a low-rank update, W + (α/r)·A·B with A
`(..., in, r)` and B `(r, out)`; B starts at zero, so the model starts exactly as
pretrained. Few weights train (MiniLM with rank 8 on its attention query and value
projections: 74k of 22.7M) and the pretrained weights cannot drift far, which is meant to
forget less of what pretraining learnt. Keras layers implement it (`Dense`, `EinsumDense`,
`Conv1D/2D/3D`, `Embedding`: `layer.enable_lora(rank)`); this module chooses the layers:

- keras-hub text bases (BERT, MiniLM): keras-hub's own `backbone.enable_lora(rank)`: the
  query and value projections of every attention layer.
- `tfl.ImageBackbone`: every convolution with a kernel (`Conv2D`: the stem and the 1×1
  expand/project convolutions of MobileNets and EfficientNets); depthwise convolutions have
  no LoRA in Keras and stay frozen, BatchNorm stays frozen as always.

A base with adapters fine-tunes through them only: `tfl.unfreeze` (and so every
fine-tuning phase) opens the adapters of the chosen block groups and nothing else of the
base; the head trains as usual.

Saving merges: Keras writes a LoRA layer's kernel as W + (α/r)·A·B, and a reloaded
`.keras` model is the plain architecture with the merged kernels (tfl's bases are rebuilt
from their constructor arguments), so `model.keras`, SavedModel and TFLite carry no adapter
and cost nothing extra at inference (`merged_max_difference` measures the merge). A run
resumed from a backup resumes with merged kernels and fresh adapters (A re-drawn, B zero:
the same outputs), since Keras' weight files keep only the merged kernel.

Example:
>>> from tfl.peft import adapter_counts, enable_lora, lora_layers
>>> base = ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None)
>>> model = enable_lora(ImageClassifier(base, 3), rank=4)
>>> len(lora_layers(model.backbone)) > 0
True
>>> [v.path.rsplit("/", 1)[-1] for v in unfreeze(model, top_n="all").backbone.trainable_weights][:2]
['lora_kernel_a', 'lora_kernel_b']
>>> counts = adapter_counts(model)  # parameters of the adapters and of the base
>>> counts["adapters"], counts["base"]
(49708, 939120)
"""

from __future__ import annotations

from collections.abc import Iterable

import keras
import numpy as np

from tfl.freezing import bases_of

METHODS = ("lora",)
# The fine-tuning rate "auto" gives a base with adapters: 10x the full fine-tuning rate of
# text bases, in the range Hu et al. (2021) used for RoBERTa-base (4e-4 to 5e-4).
LORA_LEARNING_RATE = 5e-4
ADAPTER_NAMES = ("lora_kernel_a", "lora_kernel_b")


def _is_adapter(variable) -> bool:
    return variable.path.rsplit("/", 1)[-1] in ADAPTER_NAMES


def _image_targets(base: keras.Model) -> list:
    """The layers of an image base that get adapters: convolutions that support LoRA."""
    return [
        layer
        for layer in base._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.Conv2D) and hasattr(layer, "enable_lora")
    ]


def lora_layers(base: keras.Model) -> list[keras.layers.Layer]:
    """The layers of `base` with LoRA enabled."""
    return [
        layer
        for layer in base._flatten_layers(include_self=False, recursive=True)
        if getattr(layer, "lora_enabled", False)
    ]


def has_lora(model: keras.Model) -> bool:
    """Whether any base of `model` (or `model`, a base) has LoRA adapters."""
    return any(lora_layers(base) for base in bases_of(model))


def enable_lora(model: keras.Model, rank: int = 8) -> keras.Model:
    """Add LoRA adapters of `rank` to every base of `model` (see the module docstring).

    The bases are then frozen except for their adapters (as keras-hub's `enable_lora`
    leaves a backbone); `tfl.freeze` / `tfl.unfreeze` and the phases take it from there.

    Args:
        model: a tfl task (all its bases get adapters) or a base.
        rank: the rank r of A·B (>= 1); the update is scaled by α/r with α = r (Keras).

    Returns:
        `model`.

    Raises:
        ValueError: a bad rank, a base with adapters already, or a base with no layer that
            supports LoRA.
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"Received rank={rank!r}; expected an integer >= 1, e.g. 8.")
    for base in bases_of(model):
        if lora_layers(base):
            raise ValueError(f"Base {base.name!r} already has LoRA adapters.")
        if hasattr(base, "enable_lora"):  # keras-hub backbones: query and value projections
            base.enable_lora(rank)
        else:
            targets = _image_targets(base)
            if not targets:
                raise ValueError(
                    f"Base {base.name!r} ({type(base).__name__}) has no convolution or dense "
                    "layer that supports LoRA; fine-tune it without train.peft."
                )
            for layer in targets:
                layer.enable_lora(rank)
        train_adapters_only(base)
    return model


def train_adapters_only(base: keras.Model, layers: Iterable | None = None) -> keras.Model:
    """Make the adapters of `layers` (default: all of `base`) the only trainable weights.

    `tfl.unfreeze` calls it for a base with adapters, with the layers of the chosen block
    groups. Takes effect at the next `compile()`.
    """
    scope = base.weights if layers is None else [w for lay in layers for w in lay.weights]
    chosen = {id(w) for w in scope if _is_adapter(w)}
    base.trainable = True
    for weight in base.weights:
        weight.trainable = id(weight) in chosen
    return base


def revive_adapters(model: keras.Model, seed: int | None = None) -> int:
    """Re-draw A for adapters whose A and B are both zero; returns how many.

    Keras' weight files keep only the merged kernel and load adapters as zeros, which
    would never train again (each gets a zero gradient from the other). Fresh A (He
    uniform, as Keras draws it) with B = 0 leaves the outputs unchanged and lets training
    continue from the merged kernel.
    """
    revived = 0
    initializer = keras.initializers.HeUniform(seed=seed)
    for base in bases_of(model):
        for layer in lora_layers(base):
            a, b = layer.lora_kernel_a, layer.lora_kernel_b
            if not np.any(keras.ops.convert_to_numpy(a)) and not np.any(
                keras.ops.convert_to_numpy(b)
            ):
                a.assign(initializer(a.shape, dtype=a.dtype))
                revived += 1
    return revived


class ReviveAdapters(keras.callbacks.Callback):
    """At the start of each `fit`, `revive_adapters` (after a `BackupAndRestore` restored
    merged kernels); `tfl.fit_phases` adds it for a model with adapters."""

    def on_train_begin(self, logs=None):
        revive_adapters(self.model)


def adapter_counts(model: keras.Model) -> dict[str, int]:
    """Parameters of `model`: `adapters` (LoRA A and B), `base` (all base weights, adapters
    excluded) and `total` (every weight of the model, adapters included); see the module
    example."""

    def count(weights) -> int:
        return int(sum(np.prod(w.shape) for w in weights))

    base_weights = [w for base in bases_of(model) for w in base.weights]
    adapters = [w for w in base_weights if _is_adapter(w)]
    return {
        "adapters": count(adapters),
        "base": count(base_weights) - count(adapters),
        "total": count(model.weights),
    }


def merged_max_difference(model: keras.Model, reloaded: keras.Model, x) -> float:
    """The largest |difference| between `model` (with adapters) and `reloaded` (its saved
    file, kernels merged) on the inputs `x`."""
    a = keras.tree.flatten(model.predict(x, verbose=0))
    b = keras.tree.flatten(reloaded.predict(x, verbose=0))
    return float(
        max(np.max(np.abs(np.asarray(p) - np.asarray(q))) for p, q in zip(a, b, strict=True))
    )


__all__ = [
    "ADAPTER_NAMES",
    "LORA_LEARNING_RATE",
    "METHODS",
    "ReviveAdapters",
    "adapter_counts",
    "enable_lora",
    "has_lora",
    "lora_layers",
    "merged_max_difference",
    "revive_adapters",
    "train_adapters_only",
]
