"""Checks of the settings for fine-tuning that holds up under shift.

`train.wise` (WiSE-FT, `tfl.wise`), `train.ema` (the weights' moving average), `train.peft`
and `train.lora_rank` (LoRA, `tfl.peft`), `evaluate.calibrate` (temperature scaling,
`tfl.calibration`) and `evaluate.tta` (test-time augmentation, `tfl.tta`): each value, and
what it needs of the rest of the run, checked before any work.
"""

from __future__ import annotations

from typing import Any

from tfl.config.schema import (
    PEFT_METHODS,
    TTA_TRANSFORMS,
    ConfigError,
    EvaluateConfig,
    ModelConfig,
    RecipeKind,
    TrainConfig,
)
from tfl.config.values import check_bool, check_choice, check_int, check_number, listing, show


def check_wise(wise: Any, schedule: str, head_epochs: int, finetune_epochs: int):
    """`train.wise`: null, auto or an α in [0, 1], with a probe and a fine-tuning phase."""
    if wise is None:
        return None
    if isinstance(wise, str) and wise.lower() == "auto":
        wise = "auto"
    else:
        try:
            wise = check_number("train.wise", wise, 0.5, 0.0, 1.0)
        except ConfigError as error:
            raise ConfigError(
                "train.wise",
                error.message.replace("expected a number", "expected auto, null or a number"),
                "Use train.wise: auto (alpha chosen on the validation split) or e.g. 0.5.",
            ) from None
    if schedule == "feature_extraction" or not finetune_epochs:
        raise ConfigError(
            "train.wise",
            f"received {show(wise)}, but this run never fine-tunes the base "
            f"(schedule {schedule}, train.finetune_epochs {finetune_epochs}): there is no "
            "fine-tuned model to blend with the probe",
            "Remove it (train.wise: null), or fine-tune: schedule two_phase with "
            "train.finetune_epochs >= 1.",
        )
    if not head_epochs:
        raise ConfigError(
            "train.wise",
            f"received {show(wise)} with train.head_epochs 0: WiSE-FT blends the fine-tuned "
            "model with the one at the end of the probe (head) phase, and there is none",
            "Set train.head_epochs to 1 or more (e.g. 10), or train.wise: null.",
        )
    return wise


def check_peft(peft: Any, rank: Any, schedule: str, model: ModelConfig) -> tuple[Any, int]:
    """`train.peft` (null or lora) and `train.lora_rank`."""
    peft = check_choice("train.peft", peft, PEFT_METHODS, "Use train.peft: lora, or null.")
    rank = check_int("train.lora_rank", rank, 1, 8)
    if peft is None:
        return None, rank
    if schedule == "feature_extraction":
        raise ConfigError(
            "train.peft",
            f"received {peft!r}, but schedule feature_extraction never trains the base (its "
            "adapters would never train)",
            "Remove it (train.peft: null), or use schedule: two_phase.",
        )
    weights = model.weights if isinstance(model.weights, tuple) else (model.weights,)
    if "none" in weights:
        raise ConfigError(
            "train.peft",
            f"received {peft!r} with model.weights none: LoRA adapts pretrained weights, and a "
            "random base has none to adapt",
            "Use model.weights: pretrained (or imagenet), or train.peft: null.",
        )
    return peft, rank


def check_train_extras(
    train: TrainConfig, schedule: str, head_epochs: int, finetune_epochs: int, model: ModelConfig
) -> dict:
    """The checked `wise`, `ema`, `peft` and `lora_rank` of the `train:` section."""
    ema = check_number("train.ema", train.ema, 0.9, 0.0, 1.0, True, True, none_ok=True)
    peft, rank = check_peft(train.peft, train.lora_rank, schedule, model)
    return dict(
        wise=check_wise(train.wise, schedule, head_epochs, finetune_epochs),
        ema=ema,
        peft=peft,
        lora_rank=rank,
    )


def check_tta(tta: Any, kind: RecipeKind) -> tuple[str, ...]:
    """`evaluate.tta`: a list of transforms, none for text."""
    if tta is None or tta is False:
        tta = ()
    if isinstance(tta, str):
        tta = (tta,)
    if not isinstance(tta, tuple | list):
        raise ConfigError(
            "evaluate.tta",
            f"received {show(tta)}; expected a list of names from {listing(TTA_TRANSFORMS)}",
            "Use e.g. evaluate.tta: [crops], or [] for none.",
        )
    tta = tuple(check_choice(f"evaluate.tta[{i}]", t, TTA_TRANSFORMS) for i, t in enumerate(tta))
    if len(set(tta)) != len(tta):
        raise ConfigError("evaluate.tta", f"received {show(tta)} with repeats", "Name each once.")
    if tta and kind.is_text:
        raise ConfigError(
            "evaluate.tta",
            f"test-time augmentation (flips, crops) is for images; {kind.name} reads text",
            "Remove it (evaluate.tta: []).",
        )
    return tta


def check_evaluate(evaluate: EvaluateConfig, kind: RecipeKind) -> EvaluateConfig:
    """The `evaluate:` section."""
    return EvaluateConfig(
        top_k=check_int("evaluate.top_k", evaluate.top_k, 1, 5),
        calibrate=check_bool("evaluate.calibrate", evaluate.calibrate),
        tta=check_tta(evaluate.tta, kind),
    )


__all__ = ["check_evaluate", "check_peft", "check_train_extras", "check_tta", "check_wise"]
