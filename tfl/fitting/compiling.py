"""Setting a model up for one phase: its trainable set, its optimizer, `compile`.

Keras reads `trainable` only at `compile()`, so a phase first sets the trainable block groups
(`apply_trainable`), then makes the phase's optimizer with its schedule and per-block rates
(`make_optimizer`: call it after the trainable set is applied) and compiles (`compile_phase`).
`compile_like` compiles the head model of a cached phase as its task is compiled.
"""

from __future__ import annotations

from typing import Any

import keras

from tfl.freezing import bases_of, freeze, unfreeze
from tfl.phases import Phase


def _learning_rate(phase: Phase, model) -> Any:
    if phase.learning_rate != "auto":
        return phase.learning_rate
    if hasattr(model, "_default_learning_rate"):
        return model._default_learning_rate()
    return 1e-4 if any(b.trainable_weights for b in bases_of(model)) else 1e-3


def _make_schedule(phase: Phase, peak: float, steps: int | None):
    if isinstance(peak, keras.optimizers.schedules.LearningRateSchedule):
        return peak
    if phase.schedule == "constant" and not phase.warmup:
        return float(peak)
    if not steps:
        raise ValueError(
            f"Phase {phase.name!r} uses schedule={phase.schedule!r} / warmup={phase.warmup!r}, "
            "which need the number of steps per epoch, but the data has no known length. "
            "Pass steps_per_epoch=... to fit_phases (or use schedule='constant')."
        )
    from tfl.lr_schedules import OneCycle, WarmupDecay

    total = steps * phase.epochs
    if phase.schedule == "onecycle":
        return OneCycle(float(peak), total_steps=total)
    return WarmupDecay(
        float(peak),
        total_steps=total,
        warmup_steps=int(round(phase.warmup * total)),
        decay=phase.schedule,
    )


def make_optimizer(phase: Phase, model: keras.Model, steps_per_epoch: int | None = None):
    """The optimizer of `phase` for `model`, with its schedule and per-block rates.

    Call it after the phase's trainable set is applied: "auto" rates and the block
    multipliers depend on it.

    Example:
    >>> from tfl.fitting import apply_trainable, make_optimizer
    >>> model = ImageClassifier(ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None), 3)
    >>> phase = Phase(2, trainable=1, learning_rate=1e-3, schedule="cosine", warmup=0.1)
    >>> [group for group, n in trainable_groups(apply_trainable(model, phase)).items() if n]
    ['stage3', 'top']
    >>> schedule = make_optimizer(phase, model, steps_per_epoch=50)._learning_rate
    >>> type(schedule).__name__, schedule.total_steps, schedule.warmup_steps
    ('WarmupDecay', 100, 10)
    """
    rate = _make_schedule(phase, _learning_rate(phase, model), steps_per_epoch)
    spec = phase.optimizer
    if isinstance(spec, keras.optimizers.Optimizer):
        if phase.learning_rate != "auto" or phase.schedule != "constant" or phase.warmup:
            raise ValueError(
                f"Phase {phase.name!r} got an optimizer instance and learning_rate/schedule/"
                "warmup; set the rate on the optimizer, or pass the optimizer by name."
            )
        optimizer = spec
    elif isinstance(spec, str):
        config = {"learning_rate": rate}
        if phase.weight_decay is not None:
            config["weight_decay"] = phase.weight_decay
        try:
            optimizer = keras.optimizers.get({"class_name": spec, "config": config})
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"Received optimizer={spec!r} with {sorted(config)}: {error}. Use a Keras "
                "optimizer name such as 'adam', 'adamw' or 'sgd' (weight_decay needs an "
                "optimizer that supports it, e.g. 'adamw')."
            ) from None
    elif callable(spec):
        optimizer = spec(rate)
    else:
        raise ValueError(
            f"Received optimizer={spec!r}; expected a name, a keras Optimizer or a callable."
        )
    if phase.ema is not None:
        # Keras' own weight averaging: read when the optimizer is built (at the first step).
        optimizer.use_ema, optimizer.ema_momentum = True, float(phase.ema)
    if phase.weight_decay:
        from tfl.optimizers import exclude_bias_and_norm

        exclude_bias_and_norm(optimizer)
    if phase.layer_decay is not None or phase.lr_multipliers:
        from tfl.optimizers import with_lr_multipliers

        optimizer = with_lr_multipliers(
            optimizer, model, multipliers=phase.lr_multipliers, layer_decay=phase.layer_decay
        )
    return optimizer


def apply_trainable(model: keras.Model, phase: Phase) -> keras.Model:
    """Set the trainable block groups of `model`'s bases for `phase` (before `compile`)."""
    trainable = phase.trainable
    if not phase.trains_base:
        return freeze(model)
    if trainable == "all":
        return unfreeze(model, top_n="all", train_batchnorm=phase.train_batchnorm)
    if isinstance(trainable, int):
        return unfreeze(model, top_n=trainable, train_batchnorm=phase.train_batchnorm)
    return unfreeze(model, groups=list(trainable), train_batchnorm=phase.train_batchnorm)


def compile_phase(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    phase: Phase,
    loss="auto",
    metrics="auto",
    compile_kwargs: dict | None = None,
) -> None:
    """Compile `model` for `phase` with `optimizer` (after `apply_trainable`).

    A tfl task compiles with its head's defaults for `"auto"` and the phase's label
    smoothing; another model keeps the loss and metrics it was compiled with for `"auto"`.
    """
    from tfl.models import TransferTask

    compile_kwargs = compile_kwargs or {}

    if isinstance(model, TransferTask):
        model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
            label_smoothing=phase.label_smoothing,
            **compile_kwargs,
        )
        return
    if phase.label_smoothing:
        raise ValueError(
            f"Phase {phase.name!r} sets label_smoothing={phase.label_smoothing}, which needs a "
            "tfl task model; for another model pass a loss with label smoothing as loss=."
        )
    previous = getattr(model, "_compile_config", None)
    previous = previous.config if previous is not None else {}
    if loss == "auto":
        loss = previous.get("loss")
        if loss is None:
            raise ValueError(
                f"{type(model).__name__} is not a tfl task and was never compiled: pass loss=... "
                "(and metrics=...) to fit_phases."
            )
    if metrics == "auto":
        metrics = previous.get("metrics")
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, **compile_kwargs)


def compile_like(head_model: keras.Model, model: keras.Model) -> None:
    """Compile `head_model` (from `tfl.cache.split_at_bases(model)`) as `model` is compiled.

    It shares `model`'s optimizer, loss and metrics, so training it on cached features
    trains the task's own head and optimizer state.
    """
    config = model._compile_config.config
    head_model.compile(
        optimizer=model.optimizer,
        loss=config["loss"],
        loss_weights=config["loss_weights"],
        metrics=config["metrics"],
        weighted_metrics=config["weighted_metrics"],
        jit_compile=config["jit_compile"],
        steps_per_execution=config["steps_per_execution"],
    )
