"""The run configuration on the command line: one flag per leaf, `--set`, `--config FILE`.

Precedence, lowest to highest: the recipe's defaults, a recipe script's `--smoke` flags, the
`--config` YAML file, then the flags (`--data.batch-size 16`, or `--set data.batch_size=16`
for any leaf). The result is validated before any work starts.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

import yaml

from tfl.config.defaults import defaults
from tfl.config.files import from_dict, load_yaml, merge_tree, normalise_key, to_dict
from tfl.config.schema import RECIPES, ConfigError, RunConfig, leaf_fields
from tfl.config.validation import validate
from tfl.config.values import check_choice, unknown_key

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
    for leaf, field in leaf_fields().items():
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
    field = leaf_fields().get(leaf)
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
    key = ".".join(normalise_key(part) for part in key.strip().split("."))
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
                raise unknown_key("", part, [f.name for f in dataclasses.fields(RunConfig)])
            raise ConfigError(
                key,
                f"{where} is a value, not a section",
                f"Set {where} itself, e.g. --set {where}=...",
            )
        node = child
    old = node.get(parts[-1])
    if key == "data.max_per_class" and isinstance(value, dict) and isinstance(old, dict):
        value = {**old, **{normalise_key(k): v for k, v in value.items()}}  # as in a YAML file
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
        base = merge_tree(tree, base)
    try:
        config = from_dict(from_file, base=base)
    except ConfigError as e:
        raise ConfigError(e.key, f"{e.message} (in {path})", e.fix) from None
    tree = to_dict(config)
    for key, value in overrides.items():
        _deep_set(tree, key, value)
    return validate(merge_tree(tree, base))


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
        recipe = check_choice("recipe", recipe, RECIPES)
        smoke_args = parser.parse_args(list(smoke)) if args.smoke else None
        return from_args(args, recipe=recipe, smoke=smoke_args), args
    except ConfigError as error:
        parser.error(str(error))  # exits with status 2
