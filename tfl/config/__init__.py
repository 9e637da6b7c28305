"""The run configuration of `tfl train`: schema, per-recipe defaults, validation, YAML, flags.

A run is described by one `RunConfig`: a few top-level keys (`recipe`, `name`, `output`,
`seed`) and five sections, each a frozen dataclass: `data` (`DataConfig`), `model`
(`ModelConfig`), `train` (`TrainConfig`), `evaluate` (`EvaluateConfig`) and `runtime`
(`RuntimeConfig`). The same tree is the YAML file of `tfl train --config run.yaml` and the
output of `tfl train --print-config`.

Where values come from, lowest to highest: the recipe's defaults (`defaults(recipe)`), the
YAML file, then command-line flags (one flag per leaf, `--data.batch-size 16`, or
`--set data.batch_size=16` for any leaf). `validate` checks every value before any work
starts and raises ONE `ConfigError` naming the key, what is wrong and the fix, e.g.
`"data.batch_size: received 0; expected an integer >= 1. Use a positive batch size such as
data.batch_size: 32."`.

The modules, one concept each:

- `tfl.config.schema`: the dataclasses, the choices and the recipe kinds (`RECIPE_KINDS`).
- `tfl.config.defaults`: each recipe's default configuration.
- `tfl.config.values`: the checkers of one value and the words of their messages.
- `tfl.config.validation` and `tfl.config.model_checks`: `validate`, section by section.
- `tfl.config.files`: dicts, YAML files, the run's name and directory.
- `tfl.config.flags`: the command-line flags.
"""

from tfl._deprecation import moved_names
from tfl.config.defaults import defaults
from tfl.config.files import default_name, from_dict, load_yaml, run_dir, to_dict, to_yaml
from tfl.config.flags import (
    FLAG_ALIASES,
    add_arguments,
    flag_name,
    from_args,
    parse_recipe_args,
    parse_value,
)
from tfl.config.schema import (
    CACHE_MODES,
    FEATURE_EXTRACTION_HEADS,
    IMAGE_POOLINGS,
    IMAGE_SOURCES,
    LEAVES,
    OPTIMIZERS,
    PRECISIONS,
    RANK_SCORES,
    RECIPE_KINDS,
    RECIPES,
    SECTIONS,
    SOURCES,
    STRATEGIES,
    TASK_KEYS,
    TEXT_RECIPES,
    TEXT_SOURCES,
    TRAIN_SCHEDULES,
    WEIGHTS,
    ConfigError,
    DataConfig,
    EvaluateConfig,
    ModelConfig,
    RankConfig,
    RecipeKind,
    RunConfig,
    RuntimeConfig,
    TrainConfig,
)
from tfl.config.validation import validate

# Derived labels are part of the task description now (tfl.tasks.DERIVED_LABELS).
__getattr__ = moved_names(__name__, {"DERIVED_LABELS": "tfl.tasks:DERIVED_LABELS"})

__all__ = [
    "CACHE_MODES",
    "FEATURE_EXTRACTION_HEADS",
    "FLAG_ALIASES",
    "IMAGE_POOLINGS",
    "IMAGE_SOURCES",
    "LEAVES",
    "OPTIMIZERS",
    "PRECISIONS",
    "RECIPES",
    "RECIPE_KINDS",
    "SECTIONS",
    "SOURCES",
    "STRATEGIES",
    "TASK_KEYS",
    "TEXT_RECIPES",
    "TEXT_SOURCES",
    "RANK_SCORES",
    "TRAIN_SCHEDULES",
    "WEIGHTS",
    "ConfigError",
    "DataConfig",
    "EvaluateConfig",
    "ModelConfig",
    "RecipeKind",
    "RunConfig",
    "RankConfig",
    "RuntimeConfig",
    "TrainConfig",
    "add_arguments",
    "default_name",
    "defaults",
    "flag_name",
    "from_args",
    "from_dict",
    "load_yaml",
    "parse_recipe_args",
    "parse_value",
    "run_dir",
    "to_dict",
    "to_yaml",
    "validate",
]
