"""What a run's base(s) allow, checked from the family table before anything is built.

- `check_unfreeze_groups`: `train.unfreeze` names block groups the base has, or counts no
  more blocks than it has. An image base's groups are its family's (`tfl.get_spec`); a text
  base's are "embeddings", "layer_0".."layer_{n-1}" and "pooler", known offline when its
  config.json is local (the offline MiniLM, a folder); for a preset name that would need a
  download, the check is left to `tfl.unfreeze`. The choice itself is `tfl.freezing.
  select_groups`, the one `unfreeze` makes.
- `check_image_size_limit`: `data.image_size` at most `MAX_SIZE_FACTOR` times the size the
  base's weights were trained at (see its docstring for why).
"""

from __future__ import annotations

import re
from typing import Any

from tfl.backbones import get_spec
from tfl.backbones.text import num_layers, resolve_text_preset
from tfl.config.schema import ConfigError, RecipeKind
from tfl.config.values import did_you_mean, listing
from tfl.freezing import TRAILING_GROUPS, select_groups

# The largest data.image_size, in multiples of the size the base's weights were trained at.
MAX_SIZE_FACTOR = 4


def check_image_size_limit(base: str, size: int, batch_size: int) -> None:
    """Refuses an image side over `MAX_SIZE_FACTOR` x the base's default size.

    Why 4x: activation memory grows with the square of the side, so at 4x a batch takes 16x
    the memory of the same batch at the size the weights were trained at (an ImageNet
    MobileNetV2 batch of 32 at 224 px, trained, already needs a few GB), and a pretrained
    base's filters, tuned to objects of ImageNet scale, gain nothing from inputs that much
    larger (FixRes, Touvron et al. 2019, gains from about 1.15x). Beyond it a run would far
    more likely stop with an out-of-memory error after minutes of loading than learn.

    Example:
    >>> from tfl.config.base_checks import check_image_size_limit
    >>> check_image_size_limit("mobilenet_v2_torchvision", 896, 32)
    >>> check_image_size_limit("mobilenet_v2_torchvision", 100000, 32)
    Traceback (most recent call last):
    ...
    tfl.config.schema.ConfigError: data.image_size: received 100000, over 4x the 224 px that mobilenet_v2_torchvision's weights were trained at (at most 896): one batch of 32 images would hold 3.84 TB of input pixels alone, its activations many times more. Use at most 896 (or null for 224).
    """
    default = get_spec(base)[1].default_size
    limit = MAX_SIZE_FACTOR * default
    if size <= limit:
        return
    raise ConfigError(
        "data.image_size",
        f"received {size}, over {MAX_SIZE_FACTOR}x the {default} px that {base}'s weights were "
        f"trained at (at most {limit}): one batch of {batch_size} images would hold "
        f"{_bytes(batch_size * size * size * 3 * 4)} of input pixels alone, its activations "
        "many times more",
        f"Use at most {limit} (or null for {default}).",
    )


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1000
    return f"{n:.3g} PB"


def _group_names(base: str, kind: RecipeKind) -> list[str] | None:
    """The base's block groups, bottom to top; None when they cannot be known offline."""
    if not kind.is_text:
        return get_spec(base)[0].group_names
    try:
        layers = num_layers(resolve_text_preset(base))
    except (OSError, ValueError, ImportError):
        return None
    if layers is None:
        return None
    return ["embeddings", *(f"layer_{i}" for i in range(layers)), "pooler"]


def check_unfreeze_groups(unfreeze: Any, schedule: str, kind: RecipeKind, bases) -> None:
    """`train.unfreeze` against each base's block groups (see the module docstring)."""
    if unfreeze == "all" or schedule == "feature_extraction":
        return
    for base in bases:
        names = _group_names(base, kind)
        if names is None:
            continue
        blocks = [n for n in names if n not in TRAILING_GROUPS]
        if isinstance(unfreeze, int):
            if unfreeze > len(blocks):
                raise ConfigError(
                    "train.unfreeze",
                    f"received {unfreeze} top blocks, but {base} has {len(blocks)} "
                    f"({listing(blocks)})",
                    f"Use a number from 1 to {len(blocks)}, or all.",
                )
            continue
        for pattern in unfreeze:
            try:
                select_groups(names, groups=[pattern])
            except ValueError:
                raise ConfigError(
                    "train.unfreeze",
                    f"{pattern!r} is not a block group of {base}; its groups are {listing(names)}",
                    _unfreeze_hint(pattern, names, len(blocks)),
                ) from None


def _unfreeze_hint(pattern: str, names: list[str], blocks: int) -> str:
    top = re.fullmatch(r"top[\s_-]*(\d+)", pattern.strip().lower())
    if top:
        n = int(top.group(1))
        return (
            f"For the top N blocks give a number: train.unfreeze: {min(n, blocks)} "
            f"(at most {blocks} here), or all."
        )
    return did_you_mean(pattern, names) or (
        f"Use all, a number of top blocks (1 to {blocks}) or some of those group names."
    )
