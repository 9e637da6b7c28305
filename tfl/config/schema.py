"""The schema of a run: its sections as frozen dataclasses, the choices, the recipe kinds.

A run is described by one `RunConfig`: a few top-level keys (`recipe`, `name`, `output`,
`seed`) and five sections, each a frozen dataclass: `data` (`DataConfig`), `model`
(`ModelConfig`), `train` (`TrainConfig`), `evaluate` (`EvaluateConfig`) and `runtime`
(`RuntimeConfig`). Each leaf carries its flag help in the field's metadata.

The recipes are data (`RECIPE_KINDS`): what each reads (images or text), which task model
it builds, how many bases it takes and which schedules and heads it allows. The run layer
consults that table instead of branching on recipe names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfl.data.images import AUGMENTATIONS

SOURCES = ("tfds", "folder", "csv", "jsonl")
IMAGE_SOURCES = ("tfds", "folder")
TEXT_SOURCES = ("tfds", "csv", "jsonl")
TRAIN_SCHEDULES = ("two_phase", "feature_extraction", "gradual_unfreezing", "partial", "auto")
# What ranks the candidates of `tfl rank` / `model.base: auto` (tfl.studies.rank).
RANK_SCORES = ("logme", "probe", "leep")
# feature_extraction trains a classical classifier on frozen features: "logistic" is the
# linear softmax head (multinomial logistic regression), "svm" the squared-hinge head.
FEATURE_EXTRACTION_HEADS = ("svm", "logistic")
IMAGE_POOLINGS = ("avg", "max")
WEIGHTS = ("imagenet", "pretrained", "none")
CACHE_MODES = ("auto", "memory", True, False)
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")  # tfl.distribute
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
PEFT_METHODS = (None, "lora")  # tfl.peft
TTA_TRANSFORMS = ("flip", "crops")  # tfl.tta
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


@dataclasses.dataclass(frozen=True)
class RecipeKind:
    """What a recipe is, as data.

    Attributes:
        name: the recipe's name (`recipe:` in the YAML file, `--recipe`).
        modality: `"image"` or `"text"`: what its data holds.
        model: the task model it builds: `"image"` (`ImageClassifier`), `"text"`
            (`TextClassifier`), `"fusion"` (`FusionClassifier`) or `"multitask"`
            (`MultiTaskModel`).
        bases: how many pretrained bases `model.base` names.
        schedules: the `train.schedule` values it accepts (None: all).
        heads: the `model.head` values it accepts (None: every head).
        studies: whether `tfl cv` / `tfl compare` can study it (one single-label output).
    """

    name: str
    modality: str
    model: str
    bases: int = 1
    schedules: tuple[str, ...] | None = None
    heads: tuple[str, ...] | None = None
    studies: bool = True

    @property
    def is_text(self) -> bool:
        return self.modality == "text"

    @property
    def sources(self) -> tuple[str, ...]:
        """The `data.source` values that hold this recipe's kind of data."""
        return TEXT_SOURCES if self.is_text else IMAGE_SOURCES


RECIPE_KINDS: dict[str, RecipeKind] = {
    kind.name: kind
    for kind in (
        RecipeKind("image_classification", "image", "image"),
        RecipeKind("text_classification", "text", "text"),
        RecipeKind(
            "feature_extraction",
            "image",
            "image",
            schedules=("feature_extraction",),
            heads=FEATURE_EXTRACTION_HEADS,
        ),
        RecipeKind("feature_fusion", "image", "fusion", bases=2),
        RecipeKind("multitask", "image", "multitask", studies=False),
    )
}
RECIPES = tuple(RECIPE_KINDS)
TEXT_RECIPES = tuple(name for name, kind in RECIPE_KINDS.items() if kind.is_text)


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
    encoding: str = _leaf(
        "auto",
        "csv/jsonl encoding: auto (UTF-8, with or without a byte-order mark) or a codec name, "
        "e.g. latin-1, cp1252",
        text=True,
    )
    encoding_errors: str = _leaf(
        "stop", "csv/jsonl rows the encoding cannot read: stop | skip (into bad_inputs.txt)"
    )


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
        "a tfl.list_backbones() name or a text preset; feature_fusion: two, comma-separated; "
        "auto or several names: rank them first (tfl rank) and train the winner",
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
    cut: str | None = _leaf(
        None, "image bases: cut the base after this block group, e.g. stage3 (null = whole)"
    )
    fusion: str = _leaf("concat", "feature_fusion: concat | add | multiply | projection")
    tasks: dict[str, dict[str, str]] = _leaf(
        {}, "multitask: '{name: {head: classification, label_column: label}}'"
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The `train:` section: the fine-tuning schedule and its optimisation settings.

    Schedules map to `tfl.phases` presets: `two_phase` (head_epochs on the frozen base,
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
        "two_phase",
        "two_phase | feature_extraction | gradual_unfreezing | partial | auto (from the "
        "ranking's probe accuracy and the data size)",
    )
    head_epochs: int = _leaf(10, "epochs on the frozen base (the new head only)")
    finetune_epochs: int = _leaf(5, "epochs with the base (partly) trainable")
    unfreeze: str | int | tuple[str, ...] = _leaf(
        "all", "what fine-tunes: all | top N blocks | group names, comma-separated", listy=True
    )
    head_learning_rate: float = _leaf(1e-3, "learning rate of the head phase")
    finetune_learning_rate: float | str = _leaf(
        "auto", "peak rate of fine-tuning (auto: 1e-4 image, 5e-5 text, 5e-4 LoRA)"
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
    wise: float | str | None = _leaf(
        None,
        "WiSE-FT: blend the probe's and the fine-tuned weights: auto (the blend alpha with the "
        "best validation accuracy) | alpha in [0, 1] (1 = fine-tuned) | null (off)",
    )
    ema: float | None = _leaf(
        None, "moving average of the weights (Keras' optimizer EMA) with this momentum, e.g. 0.9"
    )
    peft: str | None = _leaf(None, "parameter-efficient fine-tuning: lora | null (every weight)")
    lora_rank: int = _leaf(8, "rank of the LoRA adapters (train.peft: lora)")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """The `evaluate:` section.

    Example:
    >>> from tfl.config import EvaluateConfig
    >>> EvaluateConfig().top_k
    5
    """

    top_k: int = _leaf(5, "also report top-k accuracy (when there are more than k classes)")
    calibrate: bool = _leaf(
        True,
        "fit a temperature on the validation split after training (stored in the saved model)",
    )
    tta: tuple[str, ...] = _leaf(
        (),
        f"test-time augmentation of image runs' evaluation: {', '.join(TTA_TRANSFORMS)}",
        listy=True,
    )


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
class RankConfig:
    """The `rank:` section: what `tfl rank` (and `model.base: auto`) compares, and how.

    The candidates are every combination of `model.base` (a name, a list, or auto: the bases
    whose pretrained weights install offline) with these lists; an empty list means the
    value configured elsewhere (`model.cut`, `data.image_size`, `model.pooling`,
    `model.weights`).

    Example:
    >>> from tfl.config import RankConfig
    >>> RankConfig().score, RankConfig().folds
    ('logme', 5)
    """

    cuts: tuple[str, ...] = _leaf(
        (),
        "image bases: block groups to cut after, e.g. stage3,top (whole = full base)",
        listy=True,
    )
    image_sizes: tuple[int, ...] = _leaf((), "image sides to compare, e.g. 64,96", listy=True)
    poolings: tuple[str, ...] = _leaf((), "poolings to compare, e.g. mean,pooled", listy=True)
    weights: tuple[str, ...] = _leaf(
        (), "weights to compare, e.g. imagenet,none (a random twin as a check)", listy=True
    )
    score: str = _leaf("logme", f"what picks the winner: {' | '.join(RANK_SCORES)}")
    folds: int = _leaf(5, "folds of the cross-validated linear probe")
    max_examples: int | None = _leaf(
        2000, "score at most this many train + validation examples (null = all)"
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
    rank: RankConfig = dataclasses.field(default_factory=RankConfig)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "runtime": RuntimeConfig,
    "rank": RankConfig,
}


TOP_LEAVES = ("recipe", "name", "output", "seed")


def leaf_fields() -> dict[str, dataclasses.Field]:
    """Every leaf as `"section.leaf"` (or `"leaf"` at the top) -> its dataclass field."""
    leaves = {f.name: f for f in dataclasses.fields(RunConfig) if f.name in TOP_LEAVES}
    for section, cls in SECTIONS.items():
        leaves.update({f"{section}.{f.name}": f for f in dataclasses.fields(cls)})
    return leaves


LEAVES: tuple[str, ...] = tuple(leaf_fields())
