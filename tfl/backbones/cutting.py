"""A base cut after one of its block groups: the shallower half of a shallow copy.

`cut_after_group` is what `ImageBackbone(..., last_group=...)` builds on (and what
`tfl.backbones.shallow` copies a teacher's weights through).
"""

from __future__ import annotations

import keras

from tfl.backbones.layer_groups import group_layers
from tfl.backbones.spec import Family


def cut_after_group(base: keras.Model, family: Family | str, group: str) -> keras.Model:
    """`base` (a headless `keras.applications` graph) up to the end of block group `group`.

    The cut is where the next group begins: the input of its first layer with weights (so a
    residual block's addition and activation stay with their block). The layers are shared
    with `base`, not copied.

    Args:
        base: a base built by `tfl.backbones.build_application` (or the same architecture).
        family: its `Family` or family / backbone name (whose block groups are used).
        group: a group name of the family (`"stage3"`); the last group gives `base` itself.

    Raises:
        ValueError: `group` is not one of the family's groups.

    Example:
    >>> from tfl.backbones import build_application
    >>> base = build_application("mobilenet_v3_small", (32, 32, 3))
    >>> cut_after_group(base, "mobilenet_v3_small", "stage2").output.shape
    (None, 2, 2, 48)
    """
    groups = group_layers(base, family)
    names = list(groups)
    if group not in names:
        raise ValueError(
            f"Received group={group!r}; the block groups of {base.name!r} are {names}."
        )
    later = [layer for name in names[names.index(group) + 1 :] for layer in groups[name]]
    if not later:
        return base
    order = {id(layer): i for i, layer in enumerate(base.layers)}
    first = min(later, key=lambda layer: order[id(layer)])
    return keras.Model(base.input, first.input, name=f"{base.name}_to_{group}")


__all__ = ["cut_after_group"]
