"""Checking one configuration value: the checkers and the words of their messages.

Every checker returns the normalised value or raises `ConfigError(key, what is wrong, fix)`,
with the value shown as the user would write it in YAML (`show`) and a "Did you mean" hint
for close misspellings (`did_you_mean`).

Example:
>>> from tfl.config.values import check_choice
>>> check_choice("train.optimizer", "AdamW", ("adam", "adamw"))
'adamw'
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

from tfl.config.schema import LEAVES, ConfigError


def listing(choices: Sequence[Any]) -> str:
    return ", ".join(show(c) for c in choices)


def show(value: Any) -> str:
    """A value as the user would write it in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def did_you_mean(value: Any, choices: Sequence[Any], n: int = 3) -> str:
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), names, n=n, cutoff=0.6)
    if not close and len(str(value)) >= 3:  # a prefix or part: "text" -> text_classification
        close = [c for c in names if str(value).lower() in c.lower()][:n]
    return f"Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def received(value: Any) -> str:
    kind = type(value).__name__
    return (
        f"received {show(value)} ({kind})" if isinstance(value, str) else f"received {show(value)}"
    )


def unknown_key(where: str, name: Any, known: Sequence[str]) -> ConfigError:
    key = f"{where}.{name}" if where else str(name)
    hint = did_you_mean(name, known, n=1)
    if not hint:  # the right leaf in the wrong section ("data.head_epochs")?
        elsewhere = [leaf for leaf in LEAVES if leaf.rsplit(".", 1)[-1] == str(name)]
        if elsewhere:
            hint = f"Did you mean {elsewhere[0]!r}?"
    valid = f"valid keys{' in ' + where if where else ''}: {listing(known)}"
    return ConfigError(key, f"unknown key; {valid}", hint or "Remove it or fix its spelling.")


def check_mapping(key: str, value: Any) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            key,
            f"expected a section of keys and values, {received(value)}",
            f"Write it as a mapping, e.g. '{key}: {{...}}' or indented keys under '{key}:'.",
        )
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(
    key: str, value: Any, minimum: int, example: int, none_ok: bool = False
) -> int | None:
    if value is None and none_ok:
        return None
    if not is_int(value) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        what += " or null" if none_ok else ""
        raise ConfigError(key, f"{received(value)}; expected {what}", f"Use e.g. {key}: {example}.")
    return int(value)


def check_number(
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
        raise ConfigError(key, f"{received(value)}; expected {what}", f"Use e.g. {key}: {example}.")
    return number


def check_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"{received(value)}; expected true or false", f"Use {key}: false.")
    return value


def check_string(key: str, value: Any, none_ok: bool = False) -> str | None:
    if value is None and none_ok:
        return None
    if not isinstance(value, str) or not value:
        what = "a non-empty string" + (" or null" if none_ok else "")
        raise ConfigError(key, f"{received(value)}; expected {what}", f'Quote it: {key}: "...".')
    return value


def check_choice(key: str, value: Any, choices: Sequence[Any], fix: str = "") -> Any:
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
        f"{received(value)}; expected one of {listing(choices)}",
        did_you_mean(value, choices) or fix or "Pick one of those.",
    )


def check_path(key: str, value: Any, kind: str, fix: str) -> str:
    path = os.path.expanduser(check_string(key, value))
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
