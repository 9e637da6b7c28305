"""What a family of image bases is: `Family` (shared facts) and `Variant` (one model).

These are the rows of the family table (`tfl.backbones.family_table`); the registry
(`tfl.backbones.families`) looks them up by name.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Mapping
from typing import Any

import keras

from tfl.backbones.preprocessing import check_preprocessing_mode


@dataclasses.dataclass(frozen=True)
class Variant:
    """One model of a family, e.g. `resnet50` of `resnet`.

    Args:
        name: the registry name, lowercase (`"resnet50"`, `"efficientnet_v2_s"`).
        feature_dim: channels of the last feature map (`include_top=False`).
        default_size: the side the ImageNet weights were trained at.
        constructor: the attribute of `keras.applications` that builds it (`"ResNet50"`).
        builder: instead of `constructor`, a function `(input_shape, weights) -> keras.Model`
            returning the headless base.
        classifier_builder: for a `builder` base that keeps its source classifier, a function
            `(input_shape, weights) -> keras.Model` returning the base WITH it (logits over
            the source classes, e.g. ImageNet's 1000); what LEEP scores
            (`tfl.backbones.source_classifier`). `constructor` bases get theirs from
            keras.applications (`include_top=True`).

    Example:
    >>> Variant("resnet50", feature_dim=2048, default_size=224, constructor="ResNet50").name
    'resnet50'
    """

    name: str
    feature_dim: int
    default_size: int
    constructor: str | None = None
    builder: Callable[..., keras.Model] | None = None
    classifier_builder: Callable[..., keras.Model] | None = None

    def __post_init__(self):
        if (self.constructor is None) == (self.builder is None):
            raise ValueError(
                f"Variant {self.name!r}: pass exactly one of constructor= (a keras.applications "
                f"name) or builder= (a function); received constructor={self.constructor!r}, "
                f"builder={self.builder!r}."
            )


@dataclasses.dataclass(frozen=True)
class Family:
    """A family of variants that share preprocessing, minimum input and block groups.

    Args:
        name: the family name (`"resnet"`).
        preprocessing: an `ImagePreprocessing` mode: `"caffe"`, `"tf"`, `"torch"` or `"none"`.
        min_size: the smallest height and width the family accepts.
        groups: ordered `(group name, regex)` pairs. A layer belongs to the first group whose
            regex `re.search`es its name (Keras auto-names as in a fresh session, see the module
            docstring). Names are `"stem"`, `"stage1"`, ..., `"top"`, bottom to top.
        variants: the family's `Variant`s.
        reference_module: the `keras.applications` submodule whose `preprocess_input` the
            preprocessing reproduces (`"resnet"`), or `None` for bases from elsewhere.
        constructor_kwargs: extra constructor arguments, e.g. `{"include_preprocessing": True}`
            for families that rescale inside the network (their `preprocessing` must then be
            `"none"`: never rescale twice). Stored read-only; not part of the hash.

    Example:
    >>> family, variant = get_spec("resnet50")
    >>> family.name, family.preprocessing, [name for name, _ in family.groups]
    ('resnet', 'caffe', ['stem', 'stage1', 'stage2', 'stage3', 'stage4'])
    """

    name: str
    preprocessing: str
    min_size: int
    groups: tuple[tuple[str, str], ...]
    variants: tuple[Variant, ...]
    reference_module: str | None = None
    constructor_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self):
        check_preprocessing_mode(self.preprocessing)
        object.__setattr__(self, "groups", tuple((str(g), str(p)) for g, p in self.groups))
        object.__setattr__(self, "variants", tuple(self.variants))
        object.__setattr__(
            self, "constructor_kwargs", types.MappingProxyType(dict(self.constructor_kwargs))
        )
        if not self.variants:
            raise ValueError(f"Family {self.name!r} has no variants.")
        group_names = [g for g, _ in self.groups]
        if not group_names or len(set(group_names)) != len(group_names):
            raise ValueError(
                f"Family {self.name!r}: groups need distinct names; received {group_names}."
            )
        for group, pattern in self.groups:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(
                    f"Family {self.name!r}: group {group!r} has an invalid regex {pattern!r}: {e}"
                ) from e
        if self.constructor_kwargs.get("include_preprocessing") and self.preprocessing != "none":
            raise ValueError(
                f"Family {self.name!r} rescales inside the network (include_preprocessing=True) "
                f"but also has preprocessing={self.preprocessing!r}; use preprocessing='none' "
                "so inputs are not rescaled twice."
            )

    @property
    def group_names(self) -> list[str]:
        """The group names, bottom to top."""
        return [g for g, _ in self.groups]
