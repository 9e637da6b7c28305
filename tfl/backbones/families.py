"""The registry of image bases: a backbone name -> its `Family` and `Variant`.

One name for every base (`"resnet50"`, `"efficientnet_v2_s"`, `"mobilenet_v2_torchvision"`),
looked up with `get_spec`; the facts themselves are data in `tfl.backbones.family_table`,
registered here at import. `register_family` adds (or replaces) a family of your own.
"""

from __future__ import annotations

import dataclasses
import difflib

from tfl.backbones.family_table import FAMILIES, TORCHVISION_FAMILIES
from tfl.backbones.spec import Family, Variant

__all__ = [
    "FAMILIES",
    "TORCHVISION_FAMILIES",
    "Family",
    "Variant",
    "get_family",
    "get_spec",
    "list_backbones",
    "list_families",
    "register_family",
]

_FAMILIES: dict[str, Family] = {}
_VARIANTS: dict[str, tuple[Family, Variant]] = {}


def register_family(family: Family, override: bool = False) -> None:
    """Add a family (and its variants) to the registry.

    Args:
        family: the `Family` to add.
        override: replace a registered family of the same name (and any variants of the same
            names). Without it, a clash raises.

    Raises:
        ValueError: the family name, or one of its variant names, is already registered.

    Example:
    >>> base, _ = get_spec("mobilenet_v2")
    >>> register_family(dataclasses.replace(base, name="my_mobilenet_v2", variants=(
    ...     Variant("my_mnv2", 1280, 224, constructor="MobileNetV2"),)))
    >>> get_spec("my_mnv2")[0].name
    'my_mobilenet_v2'
    """
    # Variant names another family already has (the same family's are replaced wholesale).
    clashes = [
        v.name
        for v in family.variants
        if v.name in _VARIANTS and _VARIANTS[v.name][0].name != family.name
    ]
    if not override and (family.name in _FAMILIES or clashes):
        what = f"family {family.name!r}" if family.name in _FAMILIES else f"variants {clashes}"
        raise ValueError(
            f"Received a Family whose {what} is already registered; pass override=True to "
            "replace it."
        )
    if family.name in _FAMILIES:
        for variant in _FAMILIES.pop(family.name).variants:
            _VARIANTS.pop(variant.name, None)
    for name in clashes:
        old_family, _ = _VARIANTS[name]
        remaining = tuple(v for v in old_family.variants if v.name != name)
        _VARIANTS.pop(name)
        if remaining:
            _register(dataclasses.replace(old_family, variants=remaining))
        else:
            _FAMILIES.pop(old_family.name, None)
    _register(family)


def _register(family: Family) -> None:
    _FAMILIES[family.name] = family
    for variant in family.variants:
        _VARIANTS[variant.name] = (family, variant)


for _family in (*FAMILIES, *TORCHVISION_FAMILIES):
    register_family(_family)


def list_backbones() -> list[str]:
    """All registered backbone names, sorted.

    Example:
    >>> "resnet50" in list_backbones()
    True
    """
    return sorted(_VARIANTS)


def list_families() -> list[str]:
    """All registered family names, sorted.

    Example:
    >>> "efficientnet" in list_families()
    True
    """
    return sorted(_FAMILIES)


def get_family(name: str) -> Family:
    """The `Family` of a family name (`"resnet"`) or a backbone name (`"resnet50"`).

    Example:
    >>> get_family("resnet50").name
    'resnet'
    """
    if name in _FAMILIES:
        return _FAMILIES[name]
    return get_spec(name)[0]


def get_spec(name: str) -> tuple[Family, Variant]:
    """The family and variant of a backbone name.

    Args:
        name: a name from `list_backbones()`, e.g. `"efficientnet_b0"`.

    Raises:
        ValueError: the name is unknown; the message lists close matches.

    Example:
    >>> family, variant = get_spec("efficientnet_b0")
    >>> family.preprocessing, variant.feature_dim, family.min_size
    ('none', 1280, 32)
    """
    if name in _VARIANTS:
        return _VARIANTS[name]
    # Also suggest from the keras.applications constructor names ("ResNet50V2").
    aliases = {v.name: v.name for _, v in _VARIANTS.values()}
    aliases.update({v.constructor.lower(): v.name for _, v in _VARIANTS.values() if v.constructor})
    query = str(name).lower()
    close = difflib.get_close_matches(query, aliases, n=5, cutoff=0.6)
    suggestions = list(dict.fromkeys(aliases[c] for c in close))
    hint = f" Did you mean {', '.join(map(repr, suggestions))}?" if suggestions else ""
    raise ValueError(
        f"Unknown backbone {name!r}.{hint} See tfl.list_backbones() for all {len(_VARIANTS)} names."
    )
