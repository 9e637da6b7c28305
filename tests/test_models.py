import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    IMAGE_SHAPE,
    TEXT_LABELS,
    TEXTS,
    assert_keras_round_trip,
    images,
    tiny_bert,
    tiny_bert_preprocessor,
    tiny_image_base,
)

import tfl


def test_image_backbone_takes_raw_pixels_and_pools():
    base = tiny_image_base("resnet50")
    assert base(images(2)).shape == (2, 2048)
    assert base.feature_dim == 2048
    assert tiny_image_base("resnet50", pooling=None)(images(2)).shape == (2, 1, 1, 2048)
    # ResNet is a "caffe" family: the preprocessing layer must be inside the model.
    np.testing.assert_allclose(
        base.get_layer("preprocessing")(images(2)).numpy(),
        keras.applications.resnet.preprocess_input(images(2)),
        rtol=1e-5,
        atol=1e-4,
    )


def test_image_backbone_inference_mode_off_trains_batchnorm_for_scratch_runs(tmp_path):
    """A pretrained base never updates BatchNorm; one built for scratch training does."""
    x = images(16)

    def moving_means(model):
        return [
            layer.moving_mean.numpy().copy()
            for layer in model.backbone.base.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        ]

    moved = {}
    for mode in (True, False):
        base = tfl.ImageBackbone(
            "mobilenet_v3_small", (32, 32, 3), weights=None, inference_mode=mode
        )
        model = tfl.ImageClassifier(base, num_classes=2)
        tfl.unfreeze(model, top_n="all", train_batchnorm=True)
        before = moving_means(model)
        model(x, training=True)  # what each step of `fit` does (no gradient needed here)
        after = moving_means(model)
        moved[mode] = sum(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert moved[True] == 0 and moved[False] == len(before)
    assert base.get_config()["inference_mode"] is False
    path = str(tmp_path / "scratch.keras")
    model.save(path)
    assert keras.saving.load_model(path).backbone.inference_mode is False
    config = base.get_config()
    del config["inference_mode"]  # a model saved before the option: a pretrained base
    assert tfl.ImageBackbone.from_config(config).inference_mode is True


def test_image_backbone_errors():
    with pytest.raises(ValueError, match="pooling='mean'"):
        tfl.ImageBackbone("resnet50", input_shape=IMAGE_SHAPE, pooling="mean")
    with pytest.raises(ValueError, match="pooling=None"):
        tfl.ImageClassifier(tiny_image_base(pooling=None), num_classes=2)


@pytest.mark.parametrize("head", ["classification", "mlp", "multilabel", "regression", "svm"])
def test_image_classifier_fits_with_each_head_and_round_trips(head, tmp_path):
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3, head=head)
    x = images(8)
    y = np.arange(8) % 3
    if head == "multilabel":
        y = np.eye(3, dtype="float32")[y]
    elif head == "regression":
        y = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    tfl.freeze(model)
    model.compile()
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert model.predict(x, verbose=0).shape == (8, 3)
    assert_keras_round_trip(model, x, tmp_path)


def test_image_classifier_works_with_tf_data_and_evaluate():
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=2)
    tfl.freeze(model)
    model.compile()
    ds = tf.data.Dataset.from_tensor_slices((images(8), np.arange(8) % 2)).batch(4)
    model.fit(ds, epochs=1, verbose=0)
    loss, accuracy = model.evaluate(ds, verbose=0)
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0


def test_compile_auto_learning_rate_follows_base_state():
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=2)
    tfl.freeze(model)
    model.compile()
    assert np.isclose(float(model.optimizer.learning_rate), 1e-3)
    tfl.unfreeze(model, top_n="all")
    model.compile()
    assert np.isclose(float(model.optimizer.learning_rate), 1e-4)
    assert model.loss.name == "sparse_categorical_crossentropy"


def test_text_classifier_on_raw_strings_and_round_trip(tmp_path):
    model = tfl.TextClassifier(
        tiny_bert(), num_classes=2, preprocessor=tiny_bert_preprocessor(), pooling="mean"
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(TEXTS, TEXT_LABELS, epochs=3, batch_size=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    probs = model.predict(TEXTS, verbose=0)
    assert probs.shape == (6, 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    restored = assert_keras_round_trip(model, TEXTS, tmp_path)
    assert restored.pooling == "mean"


def test_unfrozen_text_base_with_mean_pooling_trains_without_gradient_warnings():
    model = tfl.TextClassifier(
        tiny_bert(), num_classes=2, preprocessor=tiny_bert_preprocessor(), pooling="mean"
    )
    tfl.unfreeze(model, top_n="all")
    model.compile()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Gradients do not exist")
        model.fit(TEXTS, TEXT_LABELS, epochs=1, verbose=0)
    assert tfl.trainable_groups(model)["layer_0"] > 0
    assert not model.backbone.get_layer("pooled_dense").trainable_weights


def test_text_classifier_pooled_and_bad_pooling():
    model = tfl.TextClassifier(
        tiny_bert(), num_classes=2, preprocessor=tiny_bert_preprocessor(), pooling="pooled"
    )
    assert model.predict(TEXTS, verbose=0).shape == (6, 2)
    with pytest.raises(ValueError, match="text_pooling='cls'"):
        tfl.TextClassifier(tiny_bert(), num_classes=2, pooling="cls")


def test_fusion_of_two_image_bases_shares_the_image_input(tmp_path):
    x = images(8)
    v3 = [tiny_image_base("mobilenet_v3_small"), tiny_image_base("mobilenet_v3_small")]
    mixed = [tiny_image_base("mobilenet_v3_small"), tiny_image_base("mobilenet_v2")]
    for fusion in ("add", "multiply"):
        with pytest.raises(ValueError, match="equal feature sizes"):
            tfl.FusionClassifier(mixed, num_classes=3, fusion=fusion)
        model = tfl.FusionClassifier(v3, num_classes=3, fusion=fusion)
        assert len(model.inputs) == 1 and model.predict(x, verbose=0).shape == (8, 3)
    concat = tfl.FusionClassifier(mixed, num_classes=3, fusion="concat")
    assert len(concat.inputs) == 1 and concat.predict(x, verbose=0).shape == (8, 3)
    # One fusion trained and saved end to end (the mode is one constructor argument).
    model = tfl.FusionClassifier(mixed, num_classes=3, fusion="projection", projection_dim=16)
    tfl.freeze(model)
    model.compile()
    model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
    assert not any(b.trainable_weights for b in model.backbones)
    assert_keras_round_trip(model, x, tmp_path)


def test_check_fusion_is_the_constructors_check():
    tfl.models.check_fusion("concat", [576, 1280])
    tfl.models.check_fusion("add", [576, 576])
    tfl.models.check_fusion("multiply")  # no sizes: the name only
    with pytest.raises(
        ValueError, match=r"fusion='sum'.*'concat', 'add', 'multiply', 'projection'"
    ):
        tfl.models.check_fusion("sum")
    with pytest.raises(ValueError, match=r"fusion='add' needs equal feature sizes.*\[576, 1280\]"):
        tfl.models.check_fusion("add", [576, 1280])
    with pytest.raises(ValueError, match=r"fusion='sum'"):
        tfl.FusionClassifier([tiny_image_base(), tiny_image_base()], num_classes=2, fusion="sum")


def test_fusion_of_image_and_text_takes_one_input_per_base(tmp_path):
    bert = tiny_bert()
    model = tfl.FusionClassifier(
        [tiny_image_base(), bert], num_classes=2, fusion="projection", projection_dim=8
    )
    assert len(model.inputs) == 4  # images + token_ids, segment_ids, padding_mask
    tokens = tiny_bert_preprocessor()(TEXTS)
    x = (images(6), tokens)  # a tuple: one entry per base
    tfl.freeze(model)  # the inputs are the subject
    model.compile()
    model.fit(x, TEXT_LABELS, epochs=1, verbose=0)
    assert_keras_round_trip(model, x, tmp_path)


def test_multitask_model_dict_targets_losses_and_round_trip(tmp_path):
    heads = {"digit": tfl.ClassificationHead(3), "size": tfl.RegressionHead(1)}
    model = tfl.MultiTaskModel(tiny_image_base(), heads)
    tfl.freeze(model)  # the heads' targets and losses are the subject
    model.compile(loss_weights={"digit": 1.0, "size": 0.5})
    x = images(8)
    y = {"digit": np.arange(8) % 3, "size": np.linspace(0, 1, 8).astype("float32")[:, None]}
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert {"digit_loss", "size_loss", "digit_accuracy", "size_mae"} <= set(history.history)
    out = model.predict(x, verbose=0)
    assert out["digit"].shape == (8, 3) and out["size"].shape == (8, 1)
    assert_keras_round_trip(model, x, tmp_path)


def test_multitask_model_rejects_bad_heads():
    with pytest.raises(ValueError, match="heads\\['digit'\\] is a str"):
        tfl.MultiTaskModel(tiny_image_base(), {"digit": "classification"})


def test_reloaded_task_keeps_its_frozen_blocks_and_optimizer_state(tmp_path):
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    tfl.unfreeze(model, top_n=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y = images(8), np.arange(8) % 3
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert tfl.trainable_groups(restored) == tfl.trainable_groups(model)
    assert len(restored.trainable_weights) == len(model.trainable_weights)
    assert int(restored.optimizer.iterations) == 4
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    # Training carries on identically from the saved state.
    model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    restored.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    for a, b in zip(model.weights, restored.weights, strict=True):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-6)
