"""A base's layers by block group (stem, stage1..N, top), matched by session-stable names.

A family's groups are regexes on layer names (see `tfl.backbones.family_table`). Keras names
some layers itself (`conv2d_17`): those numbers count every layer of that class built in the
Python session, so `stable_layer_names` gives each such layer the name it would have in a
fresh session, and `group_layers` matches that name.
"""

from __future__ import annotations

import re

import keras

from tfl.backbones.families import get_family
from tfl.backbones.spec import Family


def _snake_case(name: str) -> str:
    # What Keras turns a class name into for automatic layer names (BatchNormalization ->
    # batch_normalization, Conv2D -> conv2d).
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def stable_layer_names(model: keras.Model) -> dict[int, str]:
    """Layer names with Keras's session-dependent auto-numbering replaced by a fresh session's.

    A layer Keras named itself (`conv2d_57`) gets the name it would have had if the model were
    the first thing built in the session: by creation order among the model's own auto-named
    layers of that class (`conv2d`, `conv2d_1`, ...). Other names are kept.

    Returns:
        `{id(layer): name}` for every layer of `model.layers`.

    Example:
    >>> _ = keras.layers.Conv2D(1, 1)  # takes "conv2d" in this session
    >>> x = keras.Input((4, 4, 1))
    >>> model = keras.Model(x, keras.layers.Conv2D(1, 1)(x))
    >>> [stable_layer_names(model)[id(layer)] for layer in model.layers][1:]
    ['conv2d']
    """
    auto: dict[str, list[tuple[int, keras.layers.Layer]]] = {}
    names = {}
    for layer in model.layers:
        names[id(layer)] = layer.name
        base = _snake_case(type(layer).__name__)
        match = re.fullmatch(rf"{re.escape(base)}(?:_(\d+))?", layer.name)
        if match:
            auto.setdefault(base, []).append((int(match.group(1) or 0), layer))
    for base, numbered in auto.items():
        for rank, (_, layer) in enumerate(sorted(numbered, key=lambda item: item[0])):
            names[id(layer)] = base if rank == 0 else f"{base}_{rank}"
    return names


def group_layers(
    model: keras.Model, family_or_name: Family | str
) -> dict[str, list[keras.layers.Layer]]:
    """The layers of a base by block group, in the family's group order (bottom to top).

    Groups hold the layers that have weights (what freezing is about); inputs, activations,
    padding and pooling layers are left out. Each such layer joins the first group whose regex
    `re.search`es its stable name (see `stable_layer_names`); one that matches no group raises,
    so that no layer silently stays out of freezing and unfreezing.

    Args:
        model: a base built by `build_application` (or the same architecture).
        family_or_name: a `Family`, a family name (`"resnet"`) or a backbone name (`"resnet50"`).

    Returns:
        `{group name: [layers with weights, in model.layers order]}` for every group of the
        family.

    Raises:
        ValueError: a layer with weights matches no group.

    Example:
    >>> from tfl.backbones import build_application
    >>> base = build_application("mobilenet_v3_small", input_shape=(32, 32, 3))
    >>> {name: len(layers) for name, layers in group_layers(base, "mobilenet_v3_small").items()}
    {'stem': 8, 'stage1': 12, 'stage2': 40, 'stage3': 24, 'top': 2}
    """
    family = family_or_name if isinstance(family_or_name, Family) else get_family(family_or_name)
    patterns = [(group, re.compile(pattern)) for group, pattern in family.groups]
    groups: dict[str, list[keras.layers.Layer]] = {group: [] for group, _ in family.groups}
    names = stable_layer_names(model)
    for layer in model.layers:
        if not layer.weights:
            continue
        name = names[id(layer)]
        group = next((g for g, pattern in patterns if pattern.search(name)), None)
        if group is not None:
            groups[group].append(layer)
        else:
            shown = name if name == layer.name else f"{layer.name} (stable name {name!r})"
            raise ValueError(
                f"Layer {shown!r} ({type(layer).__name__}) of model {model.name!r} has weights "
                f"but matches none of the block groups of family {family.name!r} "
                f"({', '.join(family.group_names)}), so freezing by groups would miss it. Add "
                "a pattern for it to the family's groups and re-register the family with "
                "register_family(..., override=True)."
            )
    return groups


def cut_at_group(model: keras.Model, family_or_name: Family | str, group: str) -> keras.Model:
    """`model` cut after block group `group`: its input to the output of that group's last
    layer (in `model.layers` order, weightless layers such as a residual add included).

    Choosing how deep to cut a pretrained base is one of the transfer decisions: the last
    block groups are the most specific to the source task (Yosinski et al. 2014), and an
    earlier cut can transfer better to data far from ImageNet, at a lower cost.

    Raises:
        ValueError: `group` is not one of the family's groups (the message lists them), or no
            layer of the model belongs to it.

    Example:
    >>> from tfl.backbones import build_application
    >>> base = build_application("mobilenet_v3_small", input_shape=(32, 32, 3))
    >>> cut_at_group(base, "mobilenet_v3_small", "stage2").output.shape
    (None, 2, 2, 48)
    """
    family = family_or_name if isinstance(family_or_name, Family) else get_family(family_or_name)
    if group not in family.group_names:
        raise ValueError(
            f"Received cut={group!r}; the {family.name} family's block groups are "
            f"{', '.join(family.group_names)} (bottom to top)."
        )
    patterns = [(g, re.compile(pattern)) for g, pattern in family.groups]
    names = stable_layer_names(model)
    last = None
    for layer in model.layers:
        matched = next((g for g, pattern in patterns if pattern.search(names[id(layer)])), None)
        if matched == group:
            last = layer
    if last is None:
        raise ValueError(f"No layer of {model.name!r} belongs to block group {group!r}.")
    return keras.Model(model.input, last.output, name=f"{model.name}_to_{group}")
