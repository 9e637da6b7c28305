"""Transfer models: a pretrained base (or two) under new heads, as `keras.Model`s.

All four classes follow keras-hub's Task pattern (they subclass `keras_hub.models.Task`): they
take already-built bases, build a functional graph in `__init__`, store every constructor
argument, and serialise the bases as nested objects. They work with plain
`compile`/`fit`/`evaluate`/`predict` and `.keras` save/load. A task with a `preprocessor`
(e.g. a keras-hub BERT preprocessor) accepts raw inputs such as strings in `fit`/`predict`.

`compile()` with no arguments picks the head's loss and metrics and an Adam optimizer whose
learning rate suits the current state: 1e-3 while the base is frozen (training a new head),
1e-4 for an unfrozen image base and 5e-5 for an unfrozen text base (fine-tuning pretrained
weights gently), 5e-4 when the base trains through LoRA adapters (`tfl.peft`). Remember that Keras applies `trainable` changes only at `compile()`: call it
again after `tfl.freeze` / `tfl.unfreeze`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import keras
import keras_hub

from tfl.backbones import ImageBackbone
from tfl.backbones.text import MeanPooling
from tfl.freezing import RecompileWarning
from tfl.heads import ClassificationHead, Head, MultiLabelHead, get_head
from tfl.peft import LORA_LEARNING_RATE, has_lora

TEXT_POOLINGS = ("mean", "pooled")


def _is_text_backbone(backbone) -> bool:
    return isinstance(backbone, keras_hub.models.Backbone) and isinstance(backbone.input, dict)


def base_features(backbone: keras.Model, text_pooling: str = "mean", name: str | None = None):
    """The inputs and the pooled feature vector of a base, for building a task graph.

    Args:
        backbone: an `ImageBackbone` (pooled), or a keras-hub text backbone such as
            `keras_hub.models.BertBackbone`.
        text_pooling: for text bases, `"mean"` (masked mean of the token outputs, as
            sentence-transformers) or `"pooled"` (BERT's pooler on the [CLS] token).
        name: name of the pooling layer of a text base.

    Returns:
        `(inputs, features)`: the base's input tensor(s) and a `(batch, dim)` tensor.
    """
    if isinstance(backbone, ImageBackbone):
        if backbone.pooling is None:
            raise ValueError(
                f"ImageBackbone {backbone.architecture!r} has pooling=None; a head needs a "
                "feature vector. Build it with pooling='avg' (default) or 'max'."
            )
        return backbone.input, backbone(backbone.input)
    if _is_text_backbone(backbone):
        if text_pooling not in TEXT_POOLINGS:
            raise ValueError(
                f"Received text_pooling={text_pooling!r}; expected one of {TEXT_POOLINGS}."
            )
        inputs = backbone.input
        outputs = backbone(inputs)
        if text_pooling == "pooled":
            return inputs, outputs["pooled_output"]
        pooled = MeanPooling(name=name or "mean_pooling")(
            [outputs["sequence_output"], inputs["padding_mask"]]
        )
        return inputs, pooled
    raise TypeError(
        f"Received a base of type {type(backbone).__name__}; expected a tfl.ImageBackbone or "
        "a keras-hub text backbone (e.g. keras_hub.models.BertBackbone)."
    )


def _unused_layers(bases, text_pooling: str) -> list[keras.layers.Layer]:
    """Base layers a task's graph never uses: BERT's pooler under mean pooling."""
    if text_pooling != "mean":
        return []
    return [
        layer
        for b in bases
        if _is_text_backbone(b)
        for layer in b.layers
        if layer.name == "pooled_dense"
    ]


def _bases_are_frozen(bases) -> bool:
    return not any(b.trainable_weights for b in bases)


class TransferTask(keras_hub.models.Task):
    """Shared `compile` defaults for tfl tasks (see the module docstring)."""

    def _bases(self) -> list[keras.Model]:
        return [self.backbone]

    def _heads(self) -> Head | dict[str, Head]:
        return self.head

    def _default_learning_rate(self) -> float:
        bases = self._bases()
        if _bases_are_frozen(bases):
            return 1e-3
        if has_lora(self):  # adapters start at zero: LoRA trains them ~10x faster (Hu et al.)
            return LORA_LEARNING_RATE
        return 5e-5 if any(_is_text_backbone(b) for b in bases) else 1e-4

    def compile(
        self, optimizer="auto", loss="auto", *, metrics="auto", label_smoothing=0.0, **kwargs
    ):
        """`keras.Model.compile` with defaults from the head(s) and the base's state.

        Args:
            optimizer: `"auto"` (Adam; 1e-3 with a frozen base, 1e-4 image / 5e-5 text when
                any base weight is trainable), or any value Keras accepts.
            loss: `"auto"` (the head's default loss), or any value Keras accepts.
            metrics: `"auto"` (the head's default metrics), or any value Keras accepts.
            label_smoothing: label smoothing of the `"auto"` loss (classification and
                multi-label heads), in [0, 1).
            **kwargs: passed to `keras.Model.compile`.
        """
        # Weights outside the graph (BERT's pooler under mean pooling) get no gradient; keep
        # them frozen so Keras does not warn about them at every step.
        for layer in _unused_layers(self._bases(), getattr(self, "_text_pooling", None)):
            layer.trainable = False
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(self._default_learning_rate())
        heads = self._heads()
        if loss == "auto":
            if isinstance(heads, dict):
                # Smoothing applies to the classification heads of a multi-task model.
                loss = {
                    k: h.default_loss(
                        label_smoothing=label_smoothing
                        if isinstance(h, ClassificationHead | MultiLabelHead)
                        else 0.0
                    )
                    for k, h in heads.items()
                }
            else:
                loss = heads.default_loss(label_smoothing=label_smoothing)
        elif label_smoothing:
            raise ValueError(
                f"Received label_smoothing={label_smoothing!r} with loss={loss!r}: it applies to "
                "the head's default loss (loss='auto'); set it on your own loss instead."
            )
        if metrics == "auto":
            if isinstance(heads, dict):
                metrics = {k: h.default_metrics() for k, h in heads.items()}
            else:
                metrics = heads.default_metrics()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        self._fit_trainable = None

    def compile_from_config(self, config):
        """Compile from a saved config (Keras skips this for a custom `compile` otherwise).

        Restores the saved optimizer, loss and metrics of a `.keras` file, and builds the
        optimizer so that its saved state (moments, step count) loads into it.
        """
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _trainable_state(self) -> list[dict]:
        """Per base: its `trainable` flag and the indices of its frozen (nested) layers."""
        state = []
        for base in self._bases():
            layers = list(base._flatten_layers(include_self=False, recursive=True))
            frozen = [i for i, layer in enumerate(layers) if not layer.trainable]
            state.append({"trainable": base.trainable, "frozen": frozen})
        return state

    def _set_trainable_state(self, state: list[dict]):
        for base, saved in zip(self._bases(), state, strict=True):
            base.trainable = True
            layers = list(base._flatten_layers(include_self=False, recursive=True))
            for i in saved["frozen"]:
                layers[i].trainable = False
            base.trainable = saved["trainable"]

    def get_config(self):
        config = super().get_config()
        if isinstance(getattr(self, "head", None), Head):
            config["head"] = keras.layers.serialize(self.head)
        # Keras rebuilds the bases from their constructor arguments, which would make every
        # layer trainable again; keep what was frozen so training (and the saved optimizer's
        # state, one slot per trainable weight) carries on where it was.
        config["trainable_state"] = self._trainable_state()
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        state = config.pop("trainable_state", None)
        if isinstance(config.get("head"), dict):
            config["head"] = keras.layers.deserialize(config["head"])
        model = super().from_config(config)
        if state is not None:
            model._set_trainable_state(state)
        return model

    def _trainable_fingerprint(self) -> tuple:
        return tuple(id(v) for v in self.trainable_variables)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, warning when trainability changed since the last `fit`.

        Keras builds the training step once per `compile()`: `trainable` flags changed after
        a `fit` (e.g. by `tfl.unfreeze`) are ignored until you compile again.
        """
        current = self._trainable_fingerprint()
        previous = getattr(self, "_fit_trainable", None)
        if previous is not None and previous != current:
            warnings.warn(
                f"The trainable weights of {self.name!r} changed since the last fit(), but Keras "
                "keeps training the old set until the model is compiled again. Call "
                "model.compile(...) after tfl.freeze/tfl.unfreeze.",
                RecompileWarning,
                stacklevel=2,
            )
        self._fit_trainable = previous if previous is not None else current
        return super().fit(*args, **kwargs)


@keras.saving.register_keras_serializable(package="tfl")
class ImageClassifier(TransferTask):
    """A pretrained image base under a new head; takes raw 0–255 RGB pixels.

    Args:
        backbone: a `tfl.ImageBackbone`.
        num_classes: number of classes (outputs) for a head given by name.
        head: a `tfl.heads.Head`, or a name: "classification" (default), "mlp", "multilabel",
            "regression", "svm".
        preprocessor: optional callable applied to the inputs inside `fit`/`predict`.

    Example:
    >>> base = ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None)
    >>> model = ImageClassifier(base, num_classes=3)
    >>> model.predict(np.zeros((2, 32, 32, 3)), verbose=0).shape
    (2, 3)
    """

    def __init__(
        self, backbone, num_classes=None, head="classification", preprocessor=None, **kwargs
    ):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head = get_head(head, num_classes)

        # === Functional Model ===
        inputs, features = base_features(backbone)
        outputs = self.head(features)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = self.head.units


@keras.saving.register_keras_serializable(package="tfl")
class TextClassifier(TransferTask):
    """A pretrained text encoder (keras-hub BERT family) under a new head.

    With a `preprocessor` (e.g. `tfl.backbones.text.bert_preprocessor(...)`), `fit`/`predict` take raw
    strings. Unlike image bases, the text base runs with the outer `training` flag, so its
    dropout regularises fine-tuning as in BERT's recipe; it has LayerNorm, not BatchNorm.

    Args:
        backbone: a keras-hub text backbone, e.g. `tfl.backbones.text.load_bert_backbone()`.
        num_classes: number of classes (outputs) for a head given by name.
        head: a `tfl.heads.Head` or a head name (see `ImageClassifier`).
        preprocessor: a keras-hub preprocessor (tokenizer + packer) or None.
        pooling: "mean" (masked mean of token outputs) or "pooled" (BERT's [CLS] pooler).
    """

    def __init__(
        self,
        backbone,
        num_classes=None,
        head="classification",
        preprocessor=None,
        pooling="mean",
        **kwargs,
    ):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head = get_head(head, num_classes)

        # === Functional Model ===
        self._text_pooling = pooling
        inputs, features = base_features(backbone, text_pooling=pooling)
        outputs = self.head(features)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = self.head.units
        self.pooling = pooling

    def get_config(self):
        config = super().get_config()
        config.update(pooling=self.pooling)
        return config


FUSIONS = ("concat", "add", "multiply", "projection")
_MERGES = {
    "concat": keras.layers.Concatenate,
    "add": keras.layers.Add,
    "multiply": keras.layers.Multiply,
    "projection": keras.layers.Add,
}


def check_fusion(fusion: str, feature_dims: Sequence[int] | None = None) -> None:
    """Raise `ValueError` unless `fusion` is one of `FUSIONS` and suits the bases' feature sizes.

    The one check of `FusionClassifier`'s `fusion` (the constructor calls it), for validation
    of settings too: `"add"` and `"multiply"` combine the feature vectors element by element,
    so they need equal feature sizes.

    Args:
        fusion: `"concat"`, `"add"`, `"multiply"` or `"projection"`.
        feature_dims: the feature size of each base (e.g. `get_spec(name)[1].feature_dim`), or
            `None` to check only the name.

    Example:
    >>> check_fusion("add", [576, 576])
    >>> check_fusion("add", [576, 1280])
    Traceback (most recent call last):
    ...
    ValueError: fusion='add' needs equal feature sizes; the bases give [576, 1280]. Use
    fusion='projection' or 'concat'.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"Received fusion={fusion!r}; expected one of {FUSIONS}.")
    if feature_dims is not None and fusion in ("add", "multiply"):
        dims = list(feature_dims)
        if len(set(dims)) > 1:
            raise ValueError(
                f"fusion={fusion!r} needs equal feature sizes; the bases give {dims}. "
                "Use fusion='projection' or 'concat'."
            )


def _features_of_bases(backbones: list, text_pooling: str) -> tuple:
    """Inputs and one feature vector per base; image bases of one input shape share it."""
    shared = all(isinstance(b, ImageBackbone) for b in backbones) and (
        len({tuple(b.input.shape) for b in backbones}) == 1
    )
    if shared:
        inputs = backbones[0].input
        return inputs, [b(inputs) for b in backbones]
    inputs, features = [], []
    for i, b in enumerate(backbones):
        base_inputs, f = base_features(b, text_pooling, name=f"mean_pooling_{i}")
        inputs.append(base_inputs)
        features.append(f)
    return inputs, features


def _fuse(features: list, fusion: str, projection_dim: int):
    """One fused vector: concatenated, added, multiplied, or projected and added."""
    if fusion == "projection":
        features = [
            keras.layers.Dense(projection_dim, name=f"projection_{i}")(f)
            for i, f in enumerate(features)
        ]
    return _MERGES[fusion](name="fusion")(features)


@keras.saving.register_keras_serializable(package="tfl")
class FusionClassifier(TransferTask):
    """Two (or more) pretrained bases whose features are fused under one head.

    Image bases with the same input shape share one image input (two CNNs looking at the
    same picture, e.g. the "VGG + ResNet features" recipe); otherwise the model takes a tuple
    with one input per base, e.g. `(images, token_dict)` (pass a tuple, not a list: keras-hub's
    input pipeline cannot convert a list that mixes arrays and dicts).

    Args:
        backbones: a list of at least two bases (`ImageBackbone` or keras-hub text backbones).
        num_classes: number of classes for a head given by name.
        head: a `tfl.heads.Head` or a head name.
        fusion: "concat", "add", "multiply" (the last two need equal feature sizes, or use
            "projection"), or "projection" (each feature vector is projected to
            `projection_dim` by a learned Dense layer, then the projections are added).
        projection_dim: size of the learned projection.
        text_pooling: pooling of text bases ("mean" or "pooled").
    """

    def __init__(
        self,
        backbones,
        num_classes=None,
        head="classification",
        fusion="concat",
        projection_dim=256,
        text_pooling="mean",
        preprocessor=None,
        **kwargs,
    ):
        backbones = list(backbones)
        if len(backbones) < 2:
            raise ValueError(f"FusionClassifier needs at least two bases; got {len(backbones)}.")
        check_fusion(fusion)
        # === Layers ===
        self.backbones = backbones
        self.backbone = None
        self.preprocessor = preprocessor
        self.head = get_head(head, num_classes)

        # === Functional Model ===
        self._text_pooling = text_pooling
        inputs, features = _features_of_bases(backbones, text_pooling)
        check_fusion(fusion, [f.shape[-1] for f in features])
        fused = _fuse(features, fusion, projection_dim)
        outputs = self.head(fused)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.fusion = fusion
        self.projection_dim = projection_dim
        self.text_pooling = text_pooling
        self.num_classes = self.head.units

    def _bases(self):
        return self.backbones

    def get_config(self):
        config = super().get_config()
        del config["backbone"]
        config.update(
            backbones=[keras.layers.serialize(b) for b in self.backbones],
            fusion=self.fusion,
            projection_dim=self.projection_dim,
            text_pooling=self.text_pooling,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config["backbones"] = [keras.layers.deserialize(b) for b in config["backbones"]]
        return super().from_config(config)


@keras.saving.register_keras_serializable(package="tfl")
class MultiTaskModel(TransferTask):
    """One shared pretrained base under several named heads, a loss per head.

    `fit` takes targets as a dict keyed by head name; `predict` returns a dict.
    `compile(loss_weights={...})` weighs the heads' losses.

    Args:
        backbone: an `ImageBackbone` or a keras-hub text backbone.
        heads: a dict `{name: Head}` (heads given as `Head` instances).
        text_pooling: pooling of a text base.

    Example:
    >>> base = ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None)
    >>> model = MultiTaskModel(base, {"digit": ClassificationHead(10), "size": RegressionHead(1)})
    >>> sorted(model.predict(np.zeros((2, 32, 32, 3)), verbose=0))
    ['digit', 'size']
    """

    def __init__(self, backbone, heads, text_pooling="mean", preprocessor=None, **kwargs):
        if not isinstance(heads, dict) or not heads:
            raise ValueError(f"Received heads={heads!r}; expected a non-empty dict name -> Head.")
        for key, head in heads.items():
            if not isinstance(head, Head):
                raise ValueError(
                    f"heads[{key!r}] is a {type(head).__name__}; expected a tfl.heads.Head, "
                    "e.g. ClassificationHead(10)."
                )
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.heads = dict(heads)

        # === Functional Model ===
        self._text_pooling = text_pooling
        inputs, features = base_features(backbone, text_pooling)
        outputs = {
            name: keras.layers.Identity(name=name)(head(features)) for name, head in heads.items()
        }
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.text_pooling = text_pooling

    def _heads(self):
        return self.heads

    def get_config(self):
        config = super().get_config()
        config.update(
            heads={k: keras.layers.serialize(h) for k, h in self.heads.items()},
            text_pooling=self.text_pooling,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config["heads"] = {k: keras.layers.deserialize(h) for k, h in config["heads"].items()}
        return super().from_config(config)
