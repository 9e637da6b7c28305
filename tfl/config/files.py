"""A configuration as a tree: from and to nested dicts, YAML files, and the run's names.

`from_dict` merges a parsed YAML tree onto a recipe's defaults (structure only: unknown keys
and sections that are not mappings are refused; `validate` checks the values). `to_dict` and
`to_yaml` write every key; `load_yaml` reads a file strictly (duplicate keys are an error,
syntax errors name the line). `default_name` and `run_dir` name a run and its directory.

Gotcha handled for you: PyYAML reads `1e-3` (no dot) as the STRING "1e-3"; numeric fields
accept such strings and `validate` turns them into floats.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

import yaml

from tfl.config.defaults import defaults
from tfl.config.schema import SECTIONS, ConfigError, RunConfig
from tfl.config.values import check_mapping, unknown_key


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


def normalise_key(name: Any) -> Any:
    # Hyphens are accepted for underscores ("batch-size"), as in the flags.
    return name.replace("-", "_") if isinstance(name, str) else name


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
    return merge_tree(d, base, merge_caps=True)


def merge_tree(d: Any, base: RunConfig | None, merge_caps: bool = False) -> RunConfig:
    d = {normalise_key(k): v for k, v in check_mapping("config", d).items()}
    if base is None:
        recipe = d.get("recipe", "image_classification")
        base = defaults(recipe)
    known = [f.name for f in dataclasses.fields(RunConfig)]
    changes: dict[str, Any] = {}
    for name, value in d.items():
        if name not in known:
            raise unknown_key("", name, known)
        if name not in SECTIONS:
            changes[name] = _freeze(value)
            continue
        section = getattr(base, name)
        fields = [f.name for f in dataclasses.fields(section)]
        updates = {}
        for leaf, leaf_value in check_mapping(name, value).items():
            leaf = normalise_key(leaf)
            if leaf not in fields:
                raise unknown_key(name, leaf, fields)
            old = getattr(section, leaf)
            if (
                merge_caps
                and leaf == "max_per_class"
                and isinstance(leaf_value, Mapping)
                and old is not None
            ):
                leaf_value = {**old, **{normalise_key(k): v for k, v in leaf_value.items()}}
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
