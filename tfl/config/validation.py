"""`validate`: every value and combination of a run configuration, checked before any work.

Each section has its own checker (`check_data`, `check_model` in `tfl.config.model_checks`,
`check_train`, `check_runtime`), which returns the normalised section or raises the first
`ConfigError` it finds. What a recipe allows comes from its `RecipeKind` (the recipe table),
not from branches on its name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from tfl.config.base_checks import check_unfreeze_groups
from tfl.config.file_checks import check_encoding_settings, check_text_files
from tfl.config.files import default_name
from tfl.config.model_checks import (
    WHOLE,
    candidate_bases,
    check_group,
    check_image_size,
    check_model,
    check_weights,
)
from tfl.config.robustness_checks import check_evaluate, check_train_extras
from tfl.config.schema import (
    CACHE_MODES,
    IMAGE_POOLINGS,
    OPTIMIZERS,
    PRECISIONS,
    RANK_SCORES,
    RECIPE_KINDS,
    RECIPES,
    SOURCES,
    STRATEGIES,
    TRAIN_SCHEDULES,
    ConfigError,
    DataConfig,
    ModelConfig,
    RankConfig,
    RecipeKind,
    RunConfig,
    RuntimeConfig,
    TrainConfig,
)
from tfl.config.values import (
    check_bool,
    check_choice,
    check_int,
    check_mapping,
    check_number,
    check_path,
    check_string,
    is_int,
    listing,
    received,
    show,
    unknown_key,
)
from tfl.data.images import AUGMENTATIONS, RESIZE_POLICIES
from tfl.data.splits import SPLIT_NAMES


def validate(config: RunConfig) -> RunConfig:
    """Check every value and combination; return the normalised configuration.

    Normalising: numeric strings become numbers ("1e-3"), names are lowercased where the
    choices are, `weights: pretrained` of image bases becomes "imagenet", a single unfreeze
    group becomes a list, multitask tasks get their default head and label column, and an
    empty `name` becomes `default_name(config)`. Validating twice gives the same result.

    Raises:
        ConfigError: the first problem found: `"<key>: <what is wrong>. <fix>"`.

    Example:
    >>> from tfl.config import ConfigError, from_dict, validate
    >>> validate(from_dict({"data": {"image_size": 64}})).name
    'image_classification-mnist5k'
    >>> try:
    ...     validate(from_dict({"data": {"batch_size": 0}}))
    ... except ConfigError as e:
    ...     print(e)
    data.batch_size: received 0; expected a positive integer. Use e.g. data.batch_size: 32.
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"Received {type(config).__name__}; expected a tfl.config.RunConfig.")
    kind = RECIPE_KINDS[check_choice("recipe", config.recipe, RECIPES)]
    name = check_string("name", config.name, none_ok=True)
    output = check_string("output", config.output, none_ok=True)
    seed = check_int("seed", config.seed, 0, 0)
    data = check_data(config.data, kind)
    model = check_model(config.model, kind, data)
    train = check_train(config.train, kind, data, model)
    rank = check_rank(config.rank, kind, data, model)
    checked = RunConfig(
        recipe=kind.name,
        name=name,
        output=output,
        seed=seed,
        data=data,
        model=model,
        train=train,
        evaluate=check_evaluate(config.evaluate, kind),
        runtime=check_runtime(config.runtime, config.output),
        rank=rank,
    )
    return dataclasses.replace(checked, name=name or default_name(checked))


# === runtime ===


def check_runtime(runtime: RuntimeConfig, output: str | None = None) -> RuntimeConfig:
    """The `runtime:` section (strategy, precision, XLA, logical CPU devices)."""
    strategy = check_choice("runtime.strategy", runtime.strategy, STRATEGIES)
    if strategy == "multi_worker" and not output:
        # Every worker (and a restarted job) must agree on the run directory: the chief
        # writes it and the other workers resume from its backup.
        raise ConfigError(
            "output",
            "runtime.strategy multi_worker needs an explicit run directory (the default "
            "runs/<name>-<time> differs between workers and restarts)",
            "Pass the same --output on every worker, on a file system they all can read.",
        )
    precision = check_choice("runtime.precision", runtime.precision, PRECISIONS)
    jit = runtime.jit_compile
    if isinstance(jit, str) and jit.lower() in ("true", "false"):
        jit = jit.lower() == "true"
    if not isinstance(jit, bool):
        jit = check_choice("runtime.jit_compile", jit, ("auto",), "Use auto, true or false.")
    cpu_devices = check_int("runtime.cpu_devices", runtime.cpu_devices, 1, 2)
    if cpu_devices > 1 and strategy != "mirrored":
        raise ConfigError(
            "runtime.cpu_devices",
            f"received {cpu_devices} with runtime.strategy {strategy}; only the mirrored "
            "strategy uses several CPU devices",
            "Add --runtime.strategy mirrored, or leave runtime.cpu_devices at 1.",
        )
    return RuntimeConfig(
        strategy=strategy, precision=precision, jit_compile=jit, cpu_devices=cpu_devices
    )


# === data ===


def check_data(data: DataConfig, kind: RecipeKind) -> DataConfig:
    """The `data:` section, for a recipe of `kind`."""
    source = _check_source(data.source, kind)
    checked = DataConfig(
        source=source,
        name=check_string("data.name", data.name, none_ok=source != "tfds"),
        path=_check_data_path(data.path, source),
        text_column=_check_text_column(data.text_column),
        label_column=check_string("data.label_column", data.label_column),
        data_dir=check_string("data.data_dir", data.data_dir, none_ok=True),
        download=check_bool("data.download", data.download),
        splits=_check_splits(data.splits),
        max_per_class=_check_max_per_class(data.max_per_class),
        batch_size=check_int("data.batch_size", data.batch_size, 1, 32),
        **_check_images(data, kind),
        sequence_length=_check_sequence_length(data.sequence_length, kind),
        **check_encoding_settings(data.encoding, data.encoding_errors, source),
    )
    check_text_files(checked)  # their columns and encoding, before any work
    return checked


def _check_source(source, kind: RecipeKind) -> str:
    source = check_choice("data.source", source, SOURCES)
    if source not in kind.sources:
        what, reads = ("images", "text") if kind.is_text else ("text", "images")
        fix = (
            "Use data.source: csv or jsonl with data.path, or an image recipe."
            if kind.is_text
            else "Use recipe: text_classification for text files, or data.source: folder."
        )
        raise ConfigError(
            "data.source",
            f"{source!r} holds {what}, but {kind.name} reads {reads} from {listing(kind.sources)}",
            fix,
        )
    return source


def _check_data_path(path, source: str):
    if source == "tfds":
        if path is not None:
            raise ConfigError(
                "data.path",
                f"received {path!r}, but source tfds reads the dataset named by data.name",
                "Remove data.path, or set data.source to folder / csv / jsonl.",
            )
        return None
    if path is None:
        raise ConfigError(
            "data.path",
            f"source {source} needs a path, received null",
            f"Set data.path to the {'image folder' if source == 'folder' else source} to read.",
        )
    kind = "folder" if source == "folder" else "file"
    fix = (
        "Pass an existing folder with one subfolder per class."
        if kind == "folder"
        else f"Pass an existing .{source} file (or a mapping of split -> file)."
    )
    if isinstance(path, Mapping) and source != "folder":
        for split, split_path in path.items():
            if split not in SPLIT_NAMES:
                raise unknown_key("data.path", split, SPLIT_NAMES)
            check_path(f"data.path.{split}", split_path, kind, fix)
        return dict(path)
    return check_path("data.path", path, kind, fix)


def _check_text_column(text_column):
    if isinstance(text_column, tuple) and len(text_column) == 1:
        text_column = text_column[0]
    if not isinstance(text_column, tuple):
        return check_string("data.text_column", text_column)
    if len(text_column) != 2 or not all(isinstance(c, str) and c for c in text_column):
        raise ConfigError(
            "data.text_column",
            f"{received(text_column)}; expected one column name or a list of two (text pairs)",
            "Use e.g. data.text_column: text, or [premise, hypothesis].",
        )
    return text_column


def _check_splits(splits) -> tuple[float, ...]:
    if not isinstance(splits, tuple) or len(splits) != 3:
        raise ConfigError(
            "data.splits",
            f"{received(splits)}; expected three fractions [train, validation, test]",
            "Use e.g. data.splits: [0.8, 0.1, 0.1].",
        )
    splits = tuple(check_number(f"data.splits[{i}]", s, 0.1, low=0.0) for i, s in enumerate(splits))
    if abs(sum(splits) - 1.0) > 1e-6 or splits[0] <= 0:
        raise ConfigError(
            "data.splits",
            f"received {show(splits)} (sum {sum(splits):g}); expected non-negative fractions "
            "[train, validation, test] with train > 0 that sum to 1",
            "Use e.g. data.splits: [0.8, 0.1, 0.1].",
        )
    return splits


def _check_max_per_class(max_per_class):
    if max_per_class is None:
        return None
    max_per_class = dict(check_mapping("data.max_per_class", max_per_class))
    for split, cap in max_per_class.items():
        if split not in SPLIT_NAMES:
            raise unknown_key("data.max_per_class", split, SPLIT_NAMES)
        max_per_class[split] = check_int(f"data.max_per_class.{split}", cap, 1, 50, none_ok=True)
    return max_per_class


def _check_images(data: DataConfig, kind: RecipeKind) -> dict:
    """image_size, resize, augment, mixup and cutmix (text recipes have none of them)."""
    image_size = data.image_size
    if kind.is_text and image_size is not None:
        raise ConfigError(
            "data.image_size",
            f"received {show(image_size)}, but {kind.name} has no images",
            "Remove it (data.image_size: null).",
        )
    image_size = check_int("data.image_size", image_size, 1, 96, none_ok=True)
    resize = check_choice("data.resize", data.resize, RESIZE_POLICIES)
    augment = data.augment
    if isinstance(augment, str):
        augment = (augment,)
    if augment is None:
        augment = ()
    if not isinstance(augment, tuple):
        raise ConfigError(
            "data.augment",
            f"{received(augment)}; expected a list of names from {listing(AUGMENTATIONS)}",
            "Use e.g. data.augment: [flip, rotation], or [] for none.",
        )
    augment = tuple(
        check_choice(f"data.augment[{i}]", a, AUGMENTATIONS) for i, a in enumerate(augment)
    )
    mixup = check_number("data.mixup", data.mixup, 0.2, low=0.0)
    cutmix = check_number("data.cutmix", data.cutmix, 1.0, low=0.0, high=1.0)
    if kind.is_text and (augment or mixup or cutmix):
        key = "data.augment" if augment else "data.mixup" if mixup else "data.cutmix"
        raise ConfigError(
            key,
            f"augmentation, mixup and cutmix are for images; {kind.name} has none",
            "Remove it (data.augment: [], data.mixup: 0, data.cutmix: 0).",
        )
    return dict(image_size=image_size, resize=resize, augment=augment, mixup=mixup, cutmix=cutmix)


def _check_sequence_length(sequence_length, kind: RecipeKind):
    if not kind.is_text and sequence_length != "auto":
        raise ConfigError(
            "data.sequence_length",
            f"received {show(sequence_length)}, but {kind.name} has no texts",
            "Remove it (data.sequence_length: auto).",
        )
    if sequence_length != "auto" and (not is_int(sequence_length) or sequence_length < 3):
        raise ConfigError(
            "data.sequence_length",
            f"{received(sequence_length)}; expected auto or an integer >= 3 (tokens, [CLS] "
            "and [SEP] included)",
            "Use data.sequence_length: auto (fits 95% of the training texts) or e.g. 128.",
        )
    return sequence_length


# === train ===


def check_train(
    train: TrainConfig, kind: RecipeKind, data: DataConfig, model: ModelConfig
) -> TrainConfig:
    """The `train:` section, given the checked `data` and `model` sections."""
    schedule, head_epochs, finetune_epochs = _check_schedule(train, kind)
    unfreeze = _check_unfreeze(train.unfreeze, schedule)
    # The base's own block groups (each candidate's, when the base is ranked first).
    check_unfreeze_groups(unfreeze, schedule, kind, candidate_bases(model, kind))
    head_lr = check_number(
        "train.head_learning_rate", train.head_learning_rate, 0.001, 0.0, low_open=True
    )
    finetune_lr = train.finetune_learning_rate
    if finetune_lr != "auto":
        finetune_lr = check_number(
            "train.finetune_learning_rate", finetune_lr, 0.0001, 0.0, low_open=True
        )
    optimizer = check_choice("train.optimizer", train.optimizer, OPTIMIZERS)
    weight_decay = check_number("train.weight_decay", train.weight_decay, 0.05, 0.0, none_ok=True)
    layer_decay = check_number(
        "train.layer_decay", train.layer_decay, 0.8, 0.0, 1.0, low_open=True, none_ok=True
    )
    label_smoothing = check_number(
        "train.label_smoothing", train.label_smoothing, 0.1, 0.0, 1.0, high_open=True
    )
    _check_smoothing_heads(label_smoothing, model)
    l2sp = check_number("train.l2sp", train.l2sp, 0.01, 0.0, none_ok=True)
    cache = _check_cache(train.cache, data)
    _check_mixing(data, kind, model)
    patience = check_int(
        "train.early_stopping_patience", train.early_stopping_patience, 0, 5, none_ok=True
    )
    return TrainConfig(
        schedule=schedule,
        head_epochs=head_epochs,
        finetune_epochs=finetune_epochs,
        unfreeze=unfreeze,
        head_learning_rate=head_lr,
        finetune_learning_rate=finetune_lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        layer_decay=layer_decay,
        label_smoothing=label_smoothing,
        l2sp=l2sp,
        cache=cache,
        early_stopping_patience=patience,
        lr_find=check_bool("train.lr_find", train.lr_find),
        **check_train_extras(train, schedule, head_epochs, finetune_epochs, model),
    )


def _check_schedule(train: TrainConfig, kind: RecipeKind) -> tuple[str, int, int]:
    schedule = check_choice("train.schedule", train.schedule, TRAIN_SCHEDULES)
    head_epochs = check_int("train.head_epochs", train.head_epochs, 0, 10)
    finetune_epochs = check_int("train.finetune_epochs", train.finetune_epochs, 0, 5)
    if kind.schedules is not None and schedule not in kind.schedules:
        raise ConfigError(
            "train.schedule",
            f"received {schedule!r}, but recipe {kind.name} never trains the base",
            "Use train.schedule: feature_extraction, or recipe: image_classification to fine-tune.",
        )
    if schedule == "feature_extraction" and finetune_epochs:
        raise ConfigError(
            "train.finetune_epochs",
            f"received {finetune_epochs}, but schedule feature_extraction never fine-tunes "
            "the base",
            "Set train.finetune_epochs: 0 (train.head_epochs sets the epochs), or use "
            "schedule: two_phase.",
        )
    if not head_epochs and not finetune_epochs:
        raise ConfigError(
            "train.head_epochs",
            "train.head_epochs and train.finetune_epochs are both 0: nothing would train",
            "Set at least one of them to 1 or more.",
        )
    return schedule, head_epochs, finetune_epochs


def _check_unfreeze(unfreeze, schedule: str):
    bad = ConfigError(
        "train.unfreeze",
        f"{received(unfreeze)}; expected all, a number of top blocks >= 1 or a list of block "
        "group names",
        "Use e.g. train.unfreeze: all, 2 or [stage4, top].",
    )
    if isinstance(unfreeze, str) and unfreeze != "all":
        unfreeze = (unfreeze,)
    if is_int(unfreeze):
        unfreeze = check_int("train.unfreeze", unfreeze, 1, 2)
    elif isinstance(unfreeze, tuple):
        if not unfreeze or not all(isinstance(u, str) and u for u in unfreeze):
            raise bad
    elif unfreeze != "all":
        raise bad
    if schedule == "partial" and not is_int(unfreeze):
        raise ConfigError(
            "train.unfreeze",
            f"received {show(unfreeze)}, but schedule partial trains the top N blocks",
            "Use an integer, e.g. train.unfreeze: 2, or schedule: two_phase.",
        )
    if schedule == "gradual_unfreezing" and isinstance(unfreeze, tuple):
        raise ConfigError(
            "train.unfreeze",
            f"received {show(unfreeze)}, but gradual_unfreezing opens one block group at a "
            "time from the top",
            "Use train.unfreeze: all or the number of groups to open, e.g. 3.",
        )
    return unfreeze


def _check_smoothing_heads(label_smoothing: float, model: ModelConfig) -> None:
    heads = [t["head"] for t in model.tasks.values()] or [model.head]
    for head in heads:
        if label_smoothing and head in ("svm", "regression"):
            raise ConfigError(
                "train.label_smoothing",
                f"received {label_smoothing:g}, but the {head} head has no class "
                "probabilities to smooth",
                "Use train.label_smoothing: 0, or a classification head.",
            )


def _check_mixing(data: DataConfig, kind: RecipeKind, model: ModelConfig) -> None:
    """mixup / cutmix mix one-hot class labels: one probability head only."""
    if not (data.mixup or data.cutmix):
        return
    multi = kind.model == "multitask"
    if multi or model.head not in ("classification", "mlp", "logistic"):
        what = "multitask" if multi else f"the {model.head} head"
        raise ConfigError(
            "data.mixup" if data.mixup else "data.cutmix",
            f"mixup and cutmix mix one-hot class labels; {what} cannot train on them",
            "Set data.mixup: 0 and data.cutmix: 0, or use a classification head.",
        )


def _check_cache(cache, data: DataConfig):
    cache = check_choice("train.cache", cache, CACHE_MODES)
    augmented = data.augment or data.mixup or data.cutmix
    if cache is True and augmented:
        raise ConfigError(
            "train.cache",
            "received true with random augmentation (data.augment / mixup / cutmix): cached "
            "features of the frozen phases would freeze one random draw",
            "Use train.cache: auto or false (the base then runs in every step), or turn "
            "augmentation off.",
        )
    return cache


# === rank ===


def _listed(key: str, value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str | int) and not isinstance(value, bool):
        return (value,)
    if not isinstance(value, tuple):
        raise ConfigError(key, f"{received(value)}; expected a list", f"Use e.g. {key}: [a, b].")
    return value


def check_rank(rank: RankConfig, kind: RecipeKind, data: DataConfig, model: ModelConfig):
    """The `rank:` section, given the checked `data` and `model` sections: every candidate
    it makes is checked here (block groups of each base, sizes each base accepts)."""
    from tfl.models import TEXT_POOLINGS

    bases = candidate_bases(model, kind)
    cuts = _listed("rank.cuts", rank.cuts)
    sizes = _listed("rank.image_sizes", rank.image_sizes)
    if kind.is_text and (cuts or sizes):
        key = "rank.cuts" if cuts else "rank.image_sizes"
        raise ConfigError(key, f"{kind.name} has no images to cut or resize", f"Remove {key}.")
    for i, cut in enumerate(cuts):
        if cut != WHOLE:
            for base in bases:
                check_group(f"rank.cuts[{i}]", cut, base)
    sizes = tuple(check_int(f"rank.image_sizes[{i}]", s, 1, 96) for i, s in enumerate(sizes))
    for size in sizes:
        for base in bases:
            check_image_size(base, size)
    poolings = tuple(
        check_choice(f"rank.poolings[{i}]", p, TEXT_POOLINGS if kind.is_text else IMAGE_POOLINGS)
        for i, p in enumerate(_listed("rank.poolings", rank.poolings))
    )
    weights = tuple(
        check_weights(f"rank.weights[{i}]", w, kind.is_text)
        for i, w in enumerate(_listed("rank.weights", rank.weights))
    )
    score = check_choice("rank.score", rank.score, RANK_SCORES)
    if score == "leep" and kind.is_text:
        raise ConfigError(
            "rank.score",
            "leep needs a base that keeps its source classifier; text bases have none",
            "Use rank.score: probe or logme.",
        )
    return RankConfig(
        cuts=cuts,
        image_sizes=sizes,
        poolings=poolings,
        weights=weights,
        score=score,
        folds=check_int("rank.folds", rank.folds, 2, 5),
        max_examples=check_int("rank.max_examples", rank.max_examples, 10, 2000, none_ok=True),
    )
