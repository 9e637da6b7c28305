"""Checks of the `model:` section: bases, weights, head, pooling, fusion and tasks.

Which bases exist and how small an image each accepts come from the family table
(`tfl.backbones`), the fusion rules from `tfl.models`, the derived labels from `tfl.tasks`:
validation asks them instead of keeping its own copies.
"""

from __future__ import annotations

import os
from typing import Any

import keras_hub

from tfl.backbones import (
    OFFLINE_IMAGE_BASES,
    check_input_size,
    get_family,
    get_spec,
    list_backbones,
)
from tfl.backbones.text import MINILM
from tfl.config.base_checks import check_image_size_limit
from tfl.config.files import normalise_key
from tfl.config.schema import (
    IMAGE_POOLINGS,
    TASK_KEYS,
    WEIGHTS,
    ConfigError,
    DataConfig,
    ModelConfig,
    RecipeKind,
)
from tfl.config.values import (
    check_choice,
    check_mapping,
    check_string,
    did_you_mean,
    listing,
    show,
    unknown_key,
)
from tfl.heads import HEADS
from tfl.models import FUSIONS, TEXT_POOLINGS, check_fusion
from tfl.tasks import DERIVED_LABELS, parse_label_column

AUTO = "auto"  # model.base: rank the bases whose weights install offline, train the winner
WHOLE = "whole"  # model.cut / rank.cuts: the whole base, not cut


def check_model(model: ModelConfig, kind: RecipeKind, data: DataConfig) -> ModelConfig:
    """The `model:` section for a recipe of `kind`, given the checked `data` section."""
    base, bases = _check_bases(model.base, kind)
    cut = _check_cut(model.cut, bases, kind)
    weights = _check_weights_of(model.weights, bases, kind)
    head = check_choice("model.head", model.head, kind.heads or sorted(HEADS))
    pooling = check_choice(
        "model.pooling", model.pooling, TEXT_POOLINGS if kind.is_text else IMAGE_POOLINGS
    )
    fusion = _check_fusion(model.fusion, bases, kind)
    tasks = _check_tasks(model.tasks, kind, data)
    if not kind.is_text and data.image_size is not None:
        for b in bases:
            check_image_size(b, data.image_size)
            check_image_size_limit(b, data.image_size, data.batch_size)
    return ModelConfig(
        base=base, weights=weights, head=head, pooling=pooling, fusion=fusion, tasks=tasks, cut=cut
    )


def _check_bases(base: Any, kind: RecipeKind) -> tuple[Any, tuple[str, ...]]:
    """`model.base` (normalised) and the tuple of bases it names."""
    if kind.bases > 1:
        if not isinstance(base, tuple) or len(base) != kind.bases:
            count = len(base) if isinstance(base, tuple) else 1
            raise ConfigError(
                "model.base",
                f"{kind.name} fuses exactly two bases, received {count}: {show(base)}",
                "Use e.g. model.base: [mobilenet_v2_torchvision, efficientnet_b0].",
            )
        bases = tuple(
            _check_image_base(f"model.base[{i}]", b, kind.name) for i, b in enumerate(base)
        )
        return bases, bases
    check = _check_text_base if kind.is_text else _check_image_base
    if base == AUTO or isinstance(base, tuple):
        return _check_candidates(base, kind, check)
    base = check("model.base", base, kind.name)
    return base, (base,)


def candidate_bases(model: ModelConfig, kind: RecipeKind) -> tuple[str, ...]:
    """The base names `model.base` names (checked): `auto` is the offline pretrained bases.

    Example:
    >>> from tfl.config import RECIPE_KINDS, ModelConfig
    >>> candidate_bases(ModelConfig(base="auto"), RECIPE_KINDS["image_classification"])
    ('mobilenet_v2_torchvision', 'efficientnet_lite0')
    """
    if model.base == AUTO:
        return (MINILM,) if kind.is_text else OFFLINE_IMAGE_BASES
    return tuple(model.base) if isinstance(model.base, tuple) else (model.base,)


def _check_candidates(base: Any, kind: RecipeKind, check) -> tuple[Any, tuple[str, ...]]:
    """`model.base: auto` or a list of names for a one-base recipe: candidates to rank."""
    if not kind.studies:
        raise ConfigError(
            "model.base",
            f"received {show(base)}, but {kind.name} cannot rank candidates (several heads)",
            "Give one base, or rank with tfl rank --recipe image_classification first.",
        )
    if base == AUTO:
        return AUTO, ()
    bases = tuple(check(f"model.base[{i}]", b, kind.name) for i, b in enumerate(base))
    if len(set(bases)) != len(bases):
        raise ConfigError(
            "model.base", f"received {show(base)}, with a repeated name", "List each once."
        )
    if len(bases) == 1:
        return bases[0], bases
    return bases, bases


def _check_cut(cut: Any, bases: tuple[str, ...], kind: RecipeKind) -> str | None:
    if cut is None or cut == WHOLE:
        return None
    cut = check_string("model.cut", cut)
    if kind.is_text or kind.bases > 1:
        raise ConfigError(
            "model.cut",
            f"received {cut!r}, but {kind.name} cannot cut its base (one image base only)",
            "Remove model.cut.",
        )
    for b in bases:
        check_group("model.cut", cut, b)
    return cut


def check_group(key: str, group: Any, base: str) -> None:
    """Raise a `ConfigError` unless `group` is a block group of the image base `base`."""
    names = get_family(base).group_names
    if group not in names:
        raise ConfigError(
            key,
            f"{group!r} is not a block group of {base} (its groups: {', '.join(names)})",
            did_you_mean(str(group), names) or f"Use one of them, or {WHOLE} for the whole base.",
        )


def _check_weights_of(weights: Any, bases: tuple[str, ...], kind: RecipeKind):
    if not isinstance(weights, tuple):
        return check_weights("model.weights", weights, kind.is_text)
    if kind.bases == 1 or len(weights) != len(bases):
        if kind.bases == 1 and len(weights) == 1:
            return check_weights("model.weights", weights[0], kind.is_text)
        raise ConfigError(
            "model.weights",
            f"received {len(weights)} values {show(weights)} for {len(bases)} base(s)",
            "Give one value for all bases, or (feature_fusion) one per base.",
        )
    return tuple(
        check_weights(f"model.weights[{i}]", w, kind.is_text) for i, w in enumerate(weights)
    )


def _check_fusion(fusion: Any, bases: tuple[str, ...], kind: RecipeKind) -> str:
    fusion = check_choice("model.fusion", fusion, FUSIONS)
    if kind.bases == 1 and fusion != "concat":
        raise ConfigError(
            "model.fusion",
            f"received {fusion!r}, but {kind.name} has one base and fuses nothing",
            "Remove it, or use recipe: feature_fusion.",
        )
    if kind.bases > 1:
        try:  # the model's own check (FusionClassifier runs it too)
            check_fusion(fusion, [get_spec(b)[1].feature_dim for b in bases])
        except ValueError as error:
            raise ConfigError(
                "model.fusion", _first_sentence(error), "Use model.fusion: concat or projection."
            ) from None
    return fusion


def _first_sentence(error: Exception) -> str:
    return str(error).split(". ", 1)[0]


def check_image_size(base: str, size: int) -> None:
    try:  # the backbone's own check (ImageBackbone runs it too)
        check_input_size(base, size)
    except ValueError as error:
        raise ConfigError(
            "data.image_size",
            _first_sentence(error),
            "Raise data.image_size to at least that, or set it to null for the size the "
            "weights were trained at.",
        ) from None


def _check_tasks(tasks: Any, kind: RecipeKind, data: DataConfig) -> dict:
    tasks = check_mapping("model.tasks", tasks)
    if kind.model != "multitask":
        if tasks:
            raise ConfigError(
                "model.tasks",
                f"received tasks {listing(list(tasks))}, but {kind.name} trains one head",
                "Remove model.tasks, or use recipe: multitask.",
            )
        return {}
    if not tasks:
        raise ConfigError(
            "model.tasks",
            "multitask needs at least one task, received none",
            "Add tasks, e.g. model.tasks: {digit: {head: classification, label_column: "
            "label}, parity: {head: classification, label_column: 'label:parity'}}.",
        )
    return {task: _check_task(task, spec, data) for task, spec in tasks.items()}


def _check_task(task: Any, spec: Any, data: DataConfig) -> dict:
    key = f"model.tasks.{task}"
    if not isinstance(task, str) or not task:
        raise ConfigError(key, "task names must be non-empty strings", "Rename it.")
    spec = {normalise_key(k): v for k, v in check_mapping(key, spec).items()}
    for k in spec:
        if k not in TASK_KEYS:
            raise unknown_key(key, k, TASK_KEYS)
    return {
        "head": check_choice(f"{key}.head", spec.get("head", "classification"), sorted(HEADS)),
        "label_column": _check_label_column(
            f"{key}.label_column", spec.get("label_column", task), data
        ),
    }


def _check_label_column(key: str, value: Any, data: DataConfig) -> str:
    """A task's `label_column`: the data's label column, or it with a derivation."""
    value = check_string(key, value)
    try:
        column, _ = parse_label_column(value, data.label_column)
    except ValueError as error:
        derivation = value.rsplit(":", 1)[1]
        raise ConfigError(
            key,
            str(error),
            did_you_mean(derivation, list(DERIVED_LABELS))
            or "Use '<column>:parity', or a plain column name.",
        ) from None
    if column != data.label_column:
        raise ConfigError(
            key,
            f"received {value!r}, but the data has one label column, {data.label_column!r} "
            f"(data.label_column); every task learns it or a label derived from it",
            f"Use label_column: {data.label_column} or '{data.label_column}:parity'.",
        )
    return value


def _text_presets() -> list[str]:
    return [MINILM, *keras_hub.models.BertBackbone.presets]


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.startswith((".", "~"))


def _is_text_preset(value: str) -> bool:
    return value in _text_presets() or "://" in value or _looks_like_path(value)


def _check_image_base(key: str, base: Any, recipe: str) -> str:
    base = check_string(key, base)
    if base in list_backbones():
        return base
    if _is_text_preset(base):
        raise ConfigError(
            key,
            f"{base!r} is a text preset, but {recipe} needs an image base",
            "Use an image base from tfl.list_backbones() (e.g. mobilenet_v2_torchvision, "
            "offline), or recipe: text_classification.",
        )
    raise ConfigError(
        key,
        f"unknown image base {base!r}",
        (did_you_mean(base, list_backbones()) + " " if did_you_mean(base, list_backbones()) else "")
        + "See tfl.list_backbones() for all names.",
    )


def _check_text_base(key: str, base: Any, recipe: str) -> str:
    base = check_string(key, base)
    if base in list_backbones():
        raise ConfigError(
            key,
            f"{base!r} is an image base, but {recipe} needs a text preset",
            f"Use a text preset such as {MINILM!r} (offline) or a keras-hub BERT preset, or an "
            "image recipe.",
        )
    if base in _text_presets() or "://" in base:
        return base
    if _looks_like_path(base) or os.path.exists(base):
        folder = os.path.expanduser(base)
        if not os.path.isdir(folder):
            raise ConfigError(
                key,
                f"the text preset folder {base!r} does not exist",
                "Pass an existing Hugging Face BERT folder or keras-hub preset folder, or "
                f"{MINILM!r}.",
            )
        return base
    hint = did_you_mean(base, _text_presets())
    raise ConfigError(
        key,
        f"unknown text preset {base!r}",
        (hint + " " if hint else "")
        + f"Use {MINILM!r} (offline), a keras-hub BERT preset (keras_hub.models.BertBackbone"
        ".presets), a kaggle:// or hf:// handle, or a local folder.",
    )


def check_weights(key: str, weights: Any, text: bool) -> str:
    if weights is None:
        return "none"
    weights = check_string(key, weights)
    lowered = weights.lower()
    if lowered in WEIGHTS:
        if text and lowered == "imagenet":
            raise ConfigError(
                key,
                "received 'imagenet', but a text preset carries its own pretrained weights",
                f"Use {key}: pretrained (or none for random initialisation).",
            )
        return "imagenet" if lowered == "pretrained" and not text else lowered
    if text:
        raise ConfigError(
            key,
            f"received {weights!r}; text bases take pretrained or none (the preset's weights)",
            did_you_mean(lowered, WEIGHTS)
            or "Put a fine-tuned text base in a preset folder and pass it as model.base.",
        )
    if not os.path.isfile(os.path.expanduser(weights)):
        hint = did_you_mean(lowered, WEIGHTS)
        raise ConfigError(
            key,
            f"the weights file {weights!r} does not exist",
            hint
            or "Pass imagenet, none (random initialisation, not pretrained) or the path "
            "of an existing weights file (saved with model.save_weights).",
        )
    return weights
