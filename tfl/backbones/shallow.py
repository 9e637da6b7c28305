"""Shallower copies of a base, initialised from its own layers: students for distillation.

DistilBERT (Sanh et al. 2019) made a half-depth student from BERT by keeping every other
transformer layer, initialised with the teacher's weights. The same idea for each kind of base:

- keras-hub BERT (`shallow_bert`): a `BertBackbone` with fewer transformer layers, taken evenly
  from the teacher's (`evenly_spaced`: the first and the last always; 12 -> 6 keeps layers
  0, 2, 4, 7, 9, 11, DistilBERT's choice), plus the teacher's embeddings and pooler.
- image bases (`shallow_image_backbone`): the `keras.applications` graph cut after one of its
  block groups (`cut_at_group`; the groups are the family table's: stem, stage1..n, top),
  every kept layer initialised from the teacher. The feature vector is then narrower (MobileNetV2
  cut after stage3 gives 96 features instead of 1280), so a task needs a new head on it.

`depths(backbone)` lists the depths a shallow copy can take, deepest first; `shallow_copy`
dispatches on the kind of base. These are model-layer pieces: they know nothing of runs or
configs (`tfl.distill` builds students with them).
"""

from __future__ import annotations

import keras
import keras_hub
import numpy as np

from tfl.backbones.image import ImageBackbone
from tfl.backbones.layer_groups import cut_at_group


def evenly_spaced(total: int, keep: int) -> list[int]:
    """Which of `total` layers a `keep`-layer copy takes: evenly spaced, first and last kept.

    Example:
    >>> evenly_spaced(12, 6)  # DistilBERT's layers of BERT-base
    [0, 2, 4, 7, 9, 11]
    >>> evenly_spaced(6, 3), evenly_spaced(6, 1)
    ([0, 2, 5], [0])
    """
    if not isinstance(keep, int) or isinstance(keep, bool) or not 1 <= keep <= total:
        raise ValueError(f"Received keep={keep!r}; expected an integer in [1, {total}].")
    return [int(i) for i in np.round(np.linspace(0, total - 1, keep))]


def _copy_weights(target: keras.Model, source: keras.Model) -> None:
    """Copy `source`'s weights into `target` layer by layer (same construction, same order)."""
    target_layers = [layer for layer in target.layers if layer.weights]
    source_layers = [layer for layer in source.layers if layer.weights]
    if len(target_layers) != len(source_layers):
        raise ValueError(
            f"Cannot copy {source.name!r} into {target.name!r}: {len(source_layers)} layers "
            f"with weights against {len(target_layers)}."
        )
    for to, frm in zip(target_layers, source_layers, strict=True):
        to.set_weights(frm.get_weights())


def shallow_image_backbone(backbone: ImageBackbone, cut: str) -> ImageBackbone:
    """An `ImageBackbone` of `backbone`'s architecture cut after `cut`, with its weights.

    Args:
        backbone: the teacher's base.
        cut: the last block group kept (not the base's last group: that is a copy).

    Returns:
        A new `ImageBackbone(..., cut=cut)` whose every layer starts from the
        teacher's weights; it runs in inference mode like the teacher's (BatchNorm frozen).

    Example:
        Building two bases takes seconds; see `tests/test_distill.py`:

            student = shallow_image_backbone(teacher_base, "stage2")
            student.feature_dim  # 48 for MobileNetV3-Small: the channels after stage2
    """
    groups = list(backbone.block_groups())
    if cut not in groups[:-1]:
        raise ValueError(
            f"Received cut={cut!r}; a shallower copy of {backbone.architecture!r} "
            f"keeps the groups up to one of {groups[:-1]}."
        )
    student = ImageBackbone(
        backbone.architecture,
        backbone.image_shape,
        weights=None,
        pooling=backbone.pooling,
        inference_mode=backbone.inference_mode,
        cut=cut,
    )
    _copy_weights(student.base, cut_at_group(backbone.base, backbone.family, cut))
    return student


def shallow_bert(backbone, num_layers: int):
    """A keras-hub `BertBackbone` with `num_layers` of `backbone`'s transformer layers.

    The layers kept are `evenly_spaced(backbone.num_layers, num_layers)`; the embeddings, their
    LayerNorm and the pooler are copied too, so every weight starts from the teacher's.

    Example:
    >>> teacher = keras_hub.models.BertBackbone(10, num_layers=4, num_heads=2, hidden_dim=4,
    ...                                         intermediate_dim=8, max_sequence_length=8)
    >>> student = shallow_bert(teacher, 2)
    >>> student.num_layers, student.hidden_dim
    (2, 4)
    """
    total = backbone.num_layers
    if not isinstance(num_layers, int) or not 1 <= num_layers < total:
        raise ValueError(
            f"Received num_layers={num_layers!r}; a shallower copy of a {total}-layer BERT "
            f"keeps 1 to {total - 1} layers."
        )
    config = dict(backbone.get_config(), num_layers=num_layers)
    config.pop("name", None)
    student = type(backbone).from_config(config)
    picked = evenly_spaced(total, num_layers)
    for layer in student.layers:
        if not layer.weights:
            continue
        name = layer.name
        if name.startswith("transformer_layer_"):
            name = f"transformer_layer_{picked[int(name.rsplit('_', 1)[1])]}"
        layer.set_weights(backbone.get_layer(name).get_weights())
    return student


def depths(backbone) -> list[int | str]:
    """The depths `shallow_copy` accepts for `backbone`, deepest first.

    Transformer layers kept (`total - 1` down to 1) for BERT; the last block group kept for an
    image base (every group but the last, top down).

    Example:
    >>> depths(keras_hub.models.BertBackbone(10, num_layers=4, num_heads=2, hidden_dim=4,
    ...                                      intermediate_dim=8, max_sequence_length=8))
    [3, 2, 1]
    """
    if isinstance(backbone, ImageBackbone):
        return list(backbone.block_groups())[:-1][::-1]
    if isinstance(backbone, keras_hub.models.BertBackbone):
        return list(range(backbone.num_layers - 1, 0, -1))
    raise TypeError(
        f"Received a base of type {type(backbone).__name__}; shallow copies are made of "
        "tfl.ImageBackbone and keras-hub BertBackbone bases."
    )


def shallow_copy(backbone, depth: int | str):
    """A shallower copy of `backbone` initialised from its layers (see the module docstring).

    Args:
        backbone: an `ImageBackbone` or a keras-hub `BertBackbone`.
        depth: one of `depths(backbone)`: the last block group kept, or the number of
            transformer layers kept.
    """
    if isinstance(backbone, ImageBackbone):
        return shallow_image_backbone(backbone, depth)
    depths(backbone)  # raises for other kinds of base
    return shallow_bert(backbone, depth)


__all__ = [
    "cut_at_group",
    "depths",
    "evenly_spaced",
    "shallow_bert",
    "shallow_copy",
    "shallow_image_backbone",
]
