"""Phases as data: what one stretch of fine-tuning trains, and the usual plans of them.

A `Phase` says what one stretch of training does: how many epochs, which block groups of the
pretrained base train, the optimizer, the learning rate and its schedule, per-block learning
rate multipliers. `tfl.fitting.fit_phases` runs a list of them with plain `model.fit`.

Presets cover the usual recipes: `two_phase` (a linear probe, then fine-tuning at a lower
learning rate: LP-FT), `gradual_unfreezing` (ULMFiT: one more block group per phase, top
down), `partial_unfreezing` (only the top blocks ever train) and `feature_extraction` (the
base never trains).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import keras

SCHEDULES = ("constant", "cosine", "linear", "onecycle")


@dataclasses.dataclass(frozen=True)
class Phase:
    """One stretch of training: what trains, for how long, with which optimizer and rate.

    Args:
        epochs: number of epochs (>= 1).
        trainable: which block groups of the base(s) train; the head always trains.
            `None` (base frozen: a linear probe or feature extraction), `"all"`, an integer
            `n` (the top `n` blocks, see `tfl.unfreeze`) or group names / regexes such as
            `["stage4", "top"]`.
        learning_rate: the peak learning rate, or `"auto"`: 1e-3 while the base is frozen,
            1e-4 (image) / 5e-5 (text) when part of it trains (5e-4 through LoRA adapters,
            `tfl.peft`). A
            `keras.optimizers.schedules.LearningRateSchedule` is used as given.
        optimizer: an optimizer name (`"adam"`, `"adamw"`, `"sgd"`, ...), an unbuilt
            `keras.optimizers.Optimizer`, or a callable `learning_rate -> optimizer`. An
            optimizer instance can serve one phase of one run only (it is built for the
            variables of that phase), so presets use names.
        schedule: `"constant"`, `"cosine"` or `"linear"` decay to zero over the phase, or
            `"onecycle"` (`tfl.lr_schedules.OneCycle`).
        warmup: fraction of the phase's steps spent warming up linearly from 0 (in [0, 1)).
        weight_decay: decoupled weight decay; biases and normalization parameters are
            excluded. Needs an optimizer that supports it (e.g. `"adamw"`).
        layer_decay: layer-wise learning-rate decay: the top block trains at the full rate,
            the one below at `layer_decay` times it, and so on (e.g. 0.65–0.95).
        lr_multipliers: learning-rate multipliers per block group name or regex (and
            `"head"`); they override `layer_decay` where both apply.
        train_batchnorm: also train BatchNorm scale and offset (their statistics never move).
        label_smoothing: label smoothing of the head's default loss (tfl tasks).
        name: a name for logs and the `phase` column (default `phase<i>`).
        ema: keep an exponential moving average of the trained weights with this momentum
            (Keras' optimizer `use_ema` / `ema_momentum`, e.g. 0.99), validate and
            checkpoint on it each epoch and end the phase with it
            (`keras.callbacks.SwapEMAWeights`). The average covers about 1 / (1 − ema)
            steps: keep that well under the phase's steps. None (default): off.
    """

    epochs: int
    trainable: None | str | int | Sequence[str] = None
    learning_rate: Any = "auto"
    optimizer: Any = "adam"
    schedule: str = "constant"
    warmup: float = 0.0
    weight_decay: float | None = None
    layer_decay: float | None = None
    lr_multipliers: dict[str, float] | None = None
    train_batchnorm: bool = False
    label_smoothing: float = 0.0
    name: str | None = None
    ema: float | None = None

    def __post_init__(self):
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise ValueError(f"Received epochs={self.epochs!r}; expected an integer >= 1.")
        t = self.trainable
        if isinstance(t, bool) or (isinstance(t, int) and t < 0):
            raise ValueError(
                f"Received trainable={t!r}; expected None, 'all', a number of top blocks >= 0 "
                "or a list of block group names."
            )
        if isinstance(t, str) and t != "all":
            object.__setattr__(self, "trainable", (t,))
        elif isinstance(t, Iterable) and not isinstance(t, str):
            object.__setattr__(self, "trainable", tuple(t))
        lr = self.learning_rate
        if not (
            lr == "auto"
            or isinstance(lr, keras.optimizers.schedules.LearningRateSchedule)
            or (isinstance(lr, int | float) and not isinstance(lr, bool) and lr > 0)
        ):
            raise ValueError(
                f"Received learning_rate={lr!r}; expected 'auto', a positive number or a "
                "keras.optimizers.schedules.LearningRateSchedule."
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Received schedule={self.schedule!r}; expected one of {SCHEDULES}.")
        if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule) and (
            self.schedule != "constant" or self.warmup
        ):
            raise ValueError(
                "Received a LearningRateSchedule as learning_rate together with "
                f"schedule={self.schedule!r}, warmup={self.warmup!r}: give either your own "
                "schedule or a peak rate with schedule=/warmup=, not both."
            )
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(
                f"Received warmup={self.warmup!r}; expected a fraction of the phase in [0, 1)."
            )
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(
                f"Received layer_decay={self.layer_decay!r}; expected a value in (0, 1], "
                "e.g. 0.65-0.95."
            )
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"Received weight_decay={self.weight_decay!r}; expected >= 0.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"Received label_smoothing={self.label_smoothing!r}; expected a value in [0, 1)."
            )
        if self.ema is not None and (
            isinstance(self.ema, bool)
            or not isinstance(self.ema, int | float)
            or not 0.0 < self.ema < 1.0
        ):
            raise ValueError(
                f"Received ema={self.ema!r}; expected None or a momentum in (0, 1), e.g. 0.99."
            )
        if isinstance(self.optimizer, keras.optimizers.Optimizer) and self.optimizer.built:
            raise ValueError(
                f"Received an optimizer that is already built ({self.optimizer.name!r}); a "
                "phase needs a fresh one. Pass its name (e.g. 'adam') or a new instance."
            )

    @property
    def trains_base(self) -> bool:
        """Whether any block of the base trains in this phase."""
        return self.trainable is not None and self.trainable != 0

    def describe(self) -> dict:
        """A JSON-friendly summary (used to check that a resumed run has the same plan).

        `ema` appears only when set, so the plans of runs saved before it existed still match.
        """

        def plain(value):
            if isinstance(value, int | float | str | bool) or value is None:
                return value
            if isinstance(value, tuple | list):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {str(k): plain(v) for k, v in value.items()}
            return type(value).__name__

        described = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if self.ema is None:
            del described["ema"]
        return described


# --- Presets -----------------------------------------------------------------------------


def two_phase(
    head_epochs: int = 5,
    finetune_epochs: int = 5,
    unfreeze: str | int | Sequence[str] = "all",
    head_learning_rate: float = 1e-3,
    finetune_learning_rate: float | str = "auto",
    optimizer: str = "adam",
    schedule: str = "cosine",
    warmup: float = 0.1,
    layer_decay: float | None = None,
    weight_decay: float | None = None,
    label_smoothing: float = 0.0,
    ema: float | None = None,
) -> list[Phase]:
    """Linear probe, then fine-tune (LP-FT): the keras.io guide and fastai's `fine_tune`.

    Phase 1 trains only the new head on the frozen base at a high rate, so random head
    weights do not send large gradients into the pretrained features. Phase 2 unfreezes the
    base (BatchNorm stays frozen) and trains everything at a 10–20x lower rate ("auto":
    1e-4 for image bases, 5e-5 for text bases) with a short warmup and cosine decay.

    Args:
        head_epochs: epochs of phase 1 (0 skips it).
        finetune_epochs: epochs of phase 2 (0 skips it).
        unfreeze: what trains in phase 2: `"all"`, the top `n` blocks, or group names.
        head_learning_rate: the constant rate of phase 1.
        finetune_learning_rate: the peak rate of phase 2.
        optimizer: optimizer name for both phases (`"adamw"` with `weight_decay`).
        schedule: phase 2's schedule (see `Phase`).
        warmup: phase 2's warmup fraction.
        layer_decay: phase 2's layer-wise learning-rate decay (e.g. 0.8), or None.
        weight_decay: decoupled weight decay in both phases (biases and norms excluded).
        label_smoothing: label smoothing of the loss in both phases.
        ema: the weights' moving-average momentum in both phases (see `Phase`), or None.

    Returns:
        The phases, for `fit_phases`.

    Example:
    >>> [(p.name, p.trainable, p.learning_rate) for p in two_phase(2, 3)]
    [('head', None, 0.001), ('finetune', 'all', 'auto')]
    """
    phases = []
    if head_epochs:
        phases.append(
            Phase(
                head_epochs,
                trainable=None,
                learning_rate=head_learning_rate,
                optimizer=optimizer,
                weight_decay=weight_decay,
                label_smoothing=label_smoothing,
                name="head",
                ema=ema,
            )
        )
    if finetune_epochs:
        phases.append(
            Phase(
                finetune_epochs,
                trainable=unfreeze,
                learning_rate=finetune_learning_rate,
                optimizer=optimizer,
                schedule=schedule,
                warmup=warmup,
                layer_decay=layer_decay,
                weight_decay=weight_decay,
                label_smoothing=label_smoothing,
                name="finetune",
                ema=ema,
            )
        )
    if not phases:
        raise ValueError("Received head_epochs=0 and finetune_epochs=0; nothing would train.")
    return phases


def gradual_unfreezing(
    num_blocks: int,
    epochs_per_phase: int = 1,
    head_epochs: int | None = None,
    head_learning_rate: float = 1e-3,
    learning_rate: float | str = "auto",
    optimizer: str = "adam",
    schedule: str = "constant",
    layer_decay: float | None = None,
) -> list[Phase]:
    """ULMFiT's gradual unfreezing: the head, then one more block group per phase, top down.

    Phase 0 trains the head on the frozen base; phase k (1..num_blocks) trains the top k
    blocks (a trailing "top"/"pooler" group opens with the block beneath it). ULMFiT pairs it
    with discriminative rates: `layer_decay=1/2.6` reproduces its per-layer factor.

    Args:
        num_blocks: how many block groups to open in all (see `tfl.block_groups`).
        epochs_per_phase: epochs of each unfreezing phase.
        head_epochs: epochs of phase 0 (default `epochs_per_phase`; 0 skips it).
        head_learning_rate: the rate of phase 0.
        learning_rate: the (peak) rate of the unfreezing phases ("auto": see `Phase`).
        optimizer: optimizer name.
        schedule: schedule of each unfreezing phase.
        layer_decay: layer-wise learning-rate decay in the unfreezing phases.

    Example:
    >>> [p.trainable for p in gradual_unfreezing(3)]
    [None, 1, 2, 3]
    """
    if not isinstance(num_blocks, int) or num_blocks < 1:
        raise ValueError(f"Received num_blocks={num_blocks!r}; expected an integer >= 1.")
    head_epochs = epochs_per_phase if head_epochs is None else head_epochs
    phases = []
    if head_epochs:
        phases.append(
            Phase(head_epochs, None, head_learning_rate, optimizer=optimizer, name="head")
        )
    for k in range(1, num_blocks + 1):
        phases.append(
            Phase(
                epochs_per_phase,
                trainable=k,
                learning_rate=learning_rate,
                optimizer=optimizer,
                schedule=schedule,
                layer_decay=layer_decay,
                name=f"unfreeze{k}",
            )
        )
    return phases


def partial_unfreezing(
    top_n: int = 1, head_epochs: int = 5, finetune_epochs: int = 5, **kwargs
) -> list[Phase]:
    """`two_phase` where phase 2 trains only the top `top_n` blocks (the rest stay frozen).

    Example:
    >>> [p.trainable for p in partial_unfreezing(top_n=2)]
    [None, 2]
    """
    if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1:
        raise ValueError(f"Received top_n={top_n!r}; expected an integer >= 1.")
    return two_phase(head_epochs, finetune_epochs, unfreeze=top_n, **kwargs)


def feature_extraction(
    epochs: int = 10, learning_rate: float = 1e-3, optimizer: str = "adam", **kwargs
) -> list[Phase]:
    """One phase: the base never trains; the head learns on its features.

    Example:
    >>> feature_extraction(3)[0].trains_base
    False
    """
    return [Phase(epochs, None, learning_rate, optimizer=optimizer, name="features", **kwargs)]
