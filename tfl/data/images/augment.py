"""Augmentation of the training split: keras preprocessing layers, then mixup / cutmix.

- `AUGMENTATIONS`: the names `augment=` accepts (each a keras layer with tfl's settings).
- `augment_layers`: names and keras layers -> the layers to apply to each batch.
- `mixer`: a batch function that mixes images and makes one-hot soft labels (MixUp, CutMix).
- `describe_augment`: the JSON description of `augment=` saved in `info["settings"]` and
  hashed into the datasets' fingerprints.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def _augmentation_layers(seed: int) -> dict[str, Any]:
    """{name: a factory of the keras layer that name stands for}."""
    return {
        "flip": lambda: keras.layers.RandomFlip("horizontal", seed=seed),
        "rotation": lambda: keras.layers.RandomRotation(0.1, seed=seed),
        "zoom": lambda: keras.layers.RandomZoom(0.1, seed=seed),
        "translation": lambda: keras.layers.RandomTranslation(0.1, 0.1, seed=seed),
        "contrast": lambda: keras.layers.RandomContrast(0.2, seed=seed),
        "brightness": lambda: keras.layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed),
        "randaugment": lambda: keras.layers.RandAugment(value_range=(0, 255), seed=seed),
    }


AUGMENTATIONS = tuple(_augmentation_layers(0))


def augment_layers(augment: Any, seed: int) -> list[Any]:
    """`augment=` (None, a name, a keras layer, or a list of them) -> keras layers."""
    if augment is None:
        return []
    if isinstance(augment, keras.layers.Layer):
        return [augment]
    if isinstance(augment, str):
        augment = [augment]
    factories = _augmentation_layers(seed)
    layers = []
    for item in augment:
        if isinstance(item, keras.layers.Layer):
            layers.append(item)
        elif isinstance(item, str) and item.lower() in factories:
            layers.append(factories[item.lower()]())
        else:
            raise ValueError(
                f"Received augment item {item!r}; expected names from {list(AUGMENTATIONS)} "
                "or keras layers (e.g. keras.layers.RandomFlip())."
            )
    return layers


def describe_augment(augment: Any) -> Any:
    """`augment=` as JSON: lower-case names, `[class name, config]` for keras layers."""
    if augment is None:
        return None
    items = [augment] if isinstance(augment, (str, keras.layers.Layer)) else list(augment)
    out = []
    for item in items:
        if isinstance(item, keras.layers.Layer):
            try:
                out.append([type(item).__name__, item.get_config()])
            except Exception:  # noqa: BLE001 - a custom layer without get_config
                out.append(repr(item))
        else:
            out.append(str(item).lower())
    return out


def check_mix(name: str, value: float, upper: float | None = None) -> float:
    """A mixup / cutmix Beta alpha as a float; raises naming the value when out of range."""
    value = float(value)
    if value < 0 or (upper is not None and value > upper):
        bound = f"in [0, {upper}]" if upper is not None else ">= 0"
        raise ValueError(
            f"Received {name}={value}; expected a Beta-distribution alpha {bound} (0 = off; "
            f"{'1.0' if name == 'cutmix' else '0.2'} is a common choice)."
        )
    return value


def mixer(mixup: float, cutmix: float, num_classes: int | None, seed: int):
    """A batch function `(x, y) -> (x, soft y)`; with both on each batch uses one of them."""
    if not mixup and not cutmix:
        return None
    if not num_classes:
        raise ValueError(
            f"Received mixup={mixup}, cutmix={cutmix} without num_classes; mixing needs it to "
            "make one-hot labels. Pass num_classes=."
        )
    mix_up = keras.layers.MixUp(alpha=mixup, seed=seed) if mixup else None
    cut_mix = keras.layers.CutMix(factor=(cutmix, cutmix), seed=seed) if cutmix else None

    def apply(layer, x, y):
        out = layer({"images": x, "labels": y}, training=True)
        return tf.cast(out["images"], tf.float32), tf.cast(out["labels"], tf.float32)

    def mix(x, y):
        y = tf.one_hot(tf.cast(y, tf.int32), num_classes, dtype=tf.float32)
        if mix_up is None:
            return apply(cut_mix, x, y)
        if cut_mix is None:
            return apply(mix_up, x, y)
        return tf.cond(
            tf.random.uniform([]) < 0.5,
            lambda: apply(mix_up, x, y),
            lambda: apply(cut_mix, x, y),
        )

    return mix
