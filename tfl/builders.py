"""Build a run's objects from a validated configuration, once, at the edge.

keras-hub builds a task's backbone and preprocessor once (`from_preset`) and hands the built
objects to the task; Lightning's CLI instantiates model, data and trainer once, then calls
`fit`. These functions do the same for tfl: each turns a validated `tfl.config.RunConfig`
into one object, and the run (`tfl.run.Run`), the studies and the reloading of a finished run
take those objects from here instead of reading the config again.

- `get_strategy(config)`: the `tf.distribute` strategy of `runtime:` (one per process).
- `load_data(config, strategy)`: the `tfl.data` loader for `data:` at the base's input size,
  with the task's targets (derived labels computed on the fly).
- `build_model(config, data, strategy)`: the recipe's task model on freshly loaded
  pretrained base(s), in the strategy's scope.
- `make_phases(config)`: the fine-tuning schedule of `train:` as `tfl.Phase`s.

What differs per recipe comes from its `tfl.config.RecipeKind` (which task model, which
modality), not from branches on the recipe's name.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import keras
import tensorflow as tf

from tfl.config import RECIPE_KINDS, RunConfig
from tfl.tasks import Task

_STRATEGIES: dict[tuple[str, int], tf.distribute.Strategy] = {}


def get_strategy(config: RunConfig) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy of `config.runtime` (one per process and setting).

    Example:
    >>> from tfl.builders import get_strategy
    >>> from tfl.config import RunConfig
    >>> type(get_strategy(RunConfig())).__name__
    '_DefaultDistributionStrategy'
    """
    from tfl.distribute import get_strategy as strategy_for

    key = (config.runtime.strategy, config.runtime.cpu_devices)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = strategy_for(*key)
    return _STRATEGIES[key]


def is_text(config: RunConfig) -> bool:
    """Whether the run reads text (else images)."""
    return RECIPE_KINDS[config.recipe].is_text


def bases(config: RunConfig) -> tuple[str, ...]:
    """The run's base name(s) as a tuple."""
    base = config.model.base
    return tuple(base) if isinstance(base, tuple | list) else (base,)


def image_size(config: RunConfig) -> int:
    """The image side for `config`: `data.image_size`, or the (first) base's default.

    Example:
    >>> from tfl.builders import image_size
    >>> from tfl.config import RunConfig
    >>> image_size(RunConfig())
    96
    """
    if config.data.image_size:
        return int(config.data.image_size)
    from tfl.backbones import get_spec

    return int(get_spec(bases(config)[0])[1].default_size)


def text_columns(config: RunConfig) -> str | list[str]:
    """`data.text_column` as the text loaders take it (a list for text pairs)."""
    column = config.data.text_column
    return list(column) if isinstance(column, tuple | list) else column


# === Data ===


def load_data(config: RunConfig, strategy=None, run_dir: str | None = None):
    """`config.data` as a `tfl.data.DataSplits`, with the task's targets.

    Batches hold `data.batch_size` examples per replica of `strategy` (default: the
    config's own), sharded as the strategy needs (`tfl.distribute.shard`). For a multitask
    run each split's labels become `{task: labels}` (derived labels such as `label:parity`
    computed on the fly). Labels, counts and skipped inputs are written to `run_dir`.
    """
    from tfl.distribute import shard

    strategy = get_strategy(config) if strategy is None else strategy
    data = _read_splits(config, strategy.num_replicas_in_sync, run_dir)
    data = with_task_targets(data, Task.from_config(config))
    return dataclasses.replace(
        data,
        train=shard(data.train, strategy),
        validation=shard(data.validation, strategy),
        test=shard(data.test, strategy),
        train_in_order=shard(data.train_in_order, strategy),
    )


def _read_splits(config: RunConfig, replicas: int, run_dir: str | None):
    import tfl.data

    data = config.data
    common = dict(
        batch_size=data.batch_size * replicas,
        seed=config.seed,
        run_dir=run_dir,
        max_per_class=data.max_per_class,
    )
    images = dict(
        resize=data.resize,
        augment=list(data.augment) or None,
        mixup=data.mixup,
        cutmix=data.cutmix,
    )
    if data.source == "tfds":
        kwargs = dict(common, data_dir=data.data_dir, download=data.download)
        if not is_text(config):
            kwargs.update(images, image_size=image_size(config))
        return tfl.data.from_tfds(data.name, **kwargs)
    if data.source == "folder":
        return tfl.data.from_folder(
            data.path, image_size(config), splits=tuple(data.splits), **images, **common
        )
    loader = tfl.data.from_csv if data.source == "csv" else tfl.data.from_jsonl
    splits = tuple(data.splits)
    common.update(text_encoding(config))
    return loader(data.path, text_columns(config), data.label_column, splits=splits, **common)


def text_encoding(config: RunConfig) -> dict:
    """`data.encoding` and `data.encoding_errors` as the text loaders take them.

    Example:
    >>> from tfl.builders import text_encoding
    >>> from tfl.config import RunConfig
    >>> text_encoding(RunConfig())
    {'encoding': 'auto', 'encoding_errors': 'stop'}
    """
    return {"encoding": config.data.encoding, "encoding_errors": config.data.encoding_errors}


def with_task_targets(data, task: Task):
    """`data` with each split's labels mapped to `task`'s targets (unchanged for one output)."""
    if not task.is_multi:
        return data

    def targets(x, y):
        return x, task.targets(y)

    splits = {
        name: None if ds is None else ds.map(targets)
        for name, ds in (
            ("train", data.train),
            ("validation", data.validation),
            ("test", data.test),
            ("train_in_order", data.train_in_order),
        )
    }
    # The cached features keep their targets: the fingerprints say which ones.
    fingerprints = {name: f"{f}|{task.fingerprint()}" for name, f in data.fingerprints.items()}
    return dataclasses.replace(data, **splits, fingerprints=fingerprints)


def load_new_data(config: RunConfig, path: str, labels):
    """Labelled data that the run never saw, read like its training data, as one split.

    Image recipes: a folder with one subfolder per class (`root/<class>/*`, or a split layout,
    whose `test` split is used); text recipes: a CSV/TSV or JSONL file with the run's text
    and label columns. Class names must be among the run's `labels` (a folder may hold only
    some of them); the label indices are the run's. Returns a `DataSplits` whose `train` is
    the data.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Received data={path!r}, which does not exist. Pass a folder of class subfolders "
            "(image runs) or a CSV/JSONL file with the run's columns (text runs)."
        )
    common = dict(batch_size=config.data.batch_size, seed=config.seed)
    reader = _new_text_data if is_text(config) else _new_image_data
    data = reader(config, path, labels, common)
    return with_task_targets(data, Task.from_config(config))


def _new_text_data(config: RunConfig, path: str, labels, common: dict):
    import tfl.data

    if os.path.isdir(path):
        raise ValueError(
            f"Received data={path!r}, a folder; this text run reads a CSV/TSV or JSONL "
            f"file with columns {config.data.text_column!r} and {config.data.label_column!r}."
        )
    loader = tfl.data.from_jsonl if path.endswith((".jsonl", ".json")) else tfl.data.from_csv
    data = loader(
        path,
        text_columns(config),
        config.data.label_column,
        splits=(1.0,),
        labels=labels.names,
        **text_encoding(config),
        **common,
    )
    return dataclasses.replace(data, validation=None, test=None)


def _new_image_data(config: RunConfig, path: str, labels, common: dict):
    import tfl.data
    from tfl.data.images import folder_layout

    if not os.path.isdir(path):
        raise ValueError(
            f"Received data={path!r}, not a folder; an image run reads a folder with one "
            "subfolder of images per class."
        )
    layout, _ = folder_layout(path)
    kwargs = {} if layout == "split" else {"splits": (1.0,)}
    data = tfl.data.from_folder(
        path,
        image_size(config),
        class_names=labels.names,
        resize=config.data.resize,
        **kwargs,
        **common,
    )
    split = data.test if layout == "split" and data.test is not None else data.train
    return dataclasses.replace(data, train=split, validation=None, test=None)


# === Model ===


def build_model(config: RunConfig, data, strategy=None) -> keras.Model:
    """The recipe's task model on freshly loaded pretrained base(s), built in the scope of
    `strategy` (default: the config's own). Every call builds a new model and loads the
    weights afresh (nothing is shared between two calls), as cross-validation needs."""
    strategy = get_strategy(config) if strategy is None else strategy
    with strategy.scope():
        model = _MODELS[RECIPE_KINDS[config.recipe].model](config, data)
        if config.train.peft == "lora":
            from tfl.peft import enable_lora

            enable_lora(model, config.train.lora_rank)
        return model


def _weights(value: str):
    if value in ("imagenet", "pretrained"):
        return "imagenet"
    return None if value == "none" else value


def _image_backbones(config: RunConfig) -> list:
    import tfl

    size = image_size(config)
    weights = config.model.weights
    weights = weights if isinstance(weights, tuple | list) else (weights,) * len(bases(config))
    return [
        tfl.ImageBackbone(
            name,
            (size, size, 3),
            weights=_weights(w),
            pooling=config.model.pooling,
            # A randomly initialised base needs BatchNorm's batch statistics to train.
            inference_mode=w != "none",
            cut=config.model.cut,
        )
        for name, w in zip(bases(config), weights, strict=True)
    ]


def _head(config: RunConfig) -> str:
    return Task.from_config(config).outputs[0].head


def _image_model(config: RunConfig, data) -> keras.Model:
    import tfl

    return tfl.ImageClassifier(_image_backbones(config)[0], len(data.labels), head=_head(config))


def _fusion_model(config: RunConfig, data) -> keras.Model:
    import tfl

    return tfl.FusionClassifier(
        _image_backbones(config), len(data.labels), head=_head(config), fusion=config.model.fusion
    )


def _multitask_model(config: RunConfig, data) -> keras.Model:
    import tfl
    from tfl.heads import get_head

    task = Task.from_config(config)
    sizes = task.num_classes(data.labels.names)
    heads = {out.name: get_head(out.head, sizes[out.name]) for out in task.outputs}
    return tfl.MultiTaskModel(_image_backbones(config)[0], heads)


def _text_model(config: RunConfig, data) -> keras.Model:
    import tfl

    preset = bases(config)[0]
    backbone = tfl.backbones.text.load_bert_backbone(
        preset, load_weights=config.model.weights != "none"
    )
    length = config.data.sequence_length
    preprocessor = tfl.data.text_preprocessor(data, preset, sequence_length=length)
    return tfl.TextClassifier(
        backbone,
        len(data.labels),
        head=_head(config),
        preprocessor=preprocessor,
        pooling=config.model.pooling,
    )


# The task model each RecipeKind.model names.
_MODELS: dict[str, Callable[[RunConfig, object], keras.Model]] = {
    "image": _image_model,
    "fusion": _fusion_model,
    "multitask": _multitask_model,
    "text": _text_model,
}


# === Phases ===


def make_phases(config: RunConfig) -> list:
    """The fine-tuning phases of `config.train` (see `tfl.config.TrainConfig`).

    Example:
    >>> from tfl.builders import make_phases
    >>> from tfl.config import RunConfig
    >>> [(p.name, p.epochs) for p in make_phases(RunConfig())]
    [('head', 10), ('finetune', 5)]
    """
    phases = _phases(config)
    if config.train.ema is not None:  # the weights' moving average in every phase
        phases = [dataclasses.replace(p, ema=config.train.ema) for p in phases]
    return phases


def _phases(config: RunConfig) -> list:
    import tfl

    t = config.train
    if t.schedule == "feature_extraction":
        return tfl.feature_extraction(
            t.head_epochs,
            learning_rate=t.head_learning_rate,
            optimizer=t.optimizer,
            label_smoothing=t.label_smoothing,
            weight_decay=t.weight_decay,
        )
    if t.schedule == "gradual_unfreezing":
        return tfl.gradual_unfreezing(
            t.unfreeze if isinstance(t.unfreeze, int) else 4,
            epochs_per_phase=t.finetune_epochs,
            head_epochs=t.head_epochs,
            head_learning_rate=t.head_learning_rate,
            learning_rate=t.finetune_learning_rate,
            optimizer=t.optimizer,
            layer_decay=t.layer_decay,
        )
    unfreeze = list(t.unfreeze) if isinstance(t.unfreeze, tuple) else t.unfreeze
    return tfl.two_phase(
        t.head_epochs,
        t.finetune_epochs,
        unfreeze=unfreeze,
        head_learning_rate=t.head_learning_rate,
        finetune_learning_rate=t.finetune_learning_rate,
        optimizer=t.optimizer,
        layer_decay=t.layer_decay,
        weight_decay=t.weight_decay,
        label_smoothing=t.label_smoothing,
    )


__all__ = [
    "bases",
    "build_model",
    "get_strategy",
    "image_size",
    "is_text",
    "load_data",
    "load_new_data",
    "make_phases",
    "text_columns",
    "text_encoding",
    "with_task_targets",
]
