"""Per-block learning rates and weight decay without biases/norms."""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import images, tiny_bert, tiny_image_base

import tfl
from tfl.freezing import block_groups
from tfl.lr_schedules import WarmupDecay
from tfl.optimizers import (
    adamw,
    block_lr_multipliers,
    exclude_bias_and_norm,
    lr_multiplier_class,
    with_lr_multipliers,
)

NO_DECAY_NAMES = {"bias", "gamma", "beta"}


def _image_model(architecture="resnet50", train_batchnorm=False):
    # ResNet50 at 32x32: randomly initialised MobileNets have vanishing gradients (~1e-11).
    model = tfl.ImageClassifier(tiny_image_base(architecture), num_classes=3)
    tfl.unfreeze(model, top_n="all", train_batchnorm=train_batchnorm)
    return model


def _group_of(model):
    """Hand mapping: id(weight) -> block group of the model's base ("head" outside it)."""
    groups = {}
    for name, layers in block_groups(model.backbone).items():
        for layer in layers:
            groups.update({id(w): name for w in layer.weights})
    return lambda v: groups.get(id(v), "head")


def _gradients(model, x=None, y=None):
    x = images(4) if x is None else x
    y = np.arange(len(x)) % 3 if y is None else y
    loss_fn = model.head.default_loss()
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


def _step(optimizer, variables, grads, steps=1):
    """Apply `grads` `steps` times; return the change of each variable (before - after)."""
    before = [v.numpy().copy() for v in variables]
    for _ in range(steps):
        optimizer.apply([tf.constant(g) for g in grads], variables)
    return [b - v.numpy() for b, v in zip(before, variables, strict=True)]


def _effective_rate(delta, grad):
    """The `r` of `delta = r * grad` (least squares)."""
    return float(np.sum(delta * grad) / np.sum(grad * grad))


# --- 1. Per-block update ratio with SGD --------------------------------------------------------

MULTIPLIERS = {"stem|stage1": 0.1, "stage2": 0.5, "head": 2.0}
BY_GROUP = {"stem": 0.1, "stage1": 0.1, "stage2": 0.5, "stage3": 1.0, "stage4": 1.0, "head": 2.0}


def test_sgd_moves_each_block_by_lr_times_multiplier_times_gradient():
    model = _image_model()
    group = _group_of(model)
    variables = model.trainable_variables
    grads = _gradients(model)
    lr = 0.5
    opt = with_lr_multipliers(keras.optimizers.SGD(lr), model, multipliers=MULTIPLIERS)
    deltas = _step(opt, variables, grads)
    rates = {}
    for v, d, g in zip(variables, deltas, grads, strict=True):
        m = BY_GROUP[group(v)]
        assert opt.lr_multiplier(v) == m
        np.testing.assert_allclose(d, lr * m * g, rtol=1e-4, atol=1e-7)
        if np.abs(g).max() > 1e-6:
            rates.setdefault(group(v), []).append(_effective_rate(d, g))
    assert set(rates) == set(BY_GROUP)
    # The ratio between blocks is the ratio of their multipliers.
    for name, values in rates.items():
        np.testing.assert_allclose(np.array(values) / rates["stage4"][0], BY_GROUP[name], rtol=1e-3)


def test_without_multipliers_every_block_moves_at_the_same_rate():
    model = _image_model()
    grads = _gradients(model)
    plain = keras.optimizers.SGD(0.5)
    wrapped = with_lr_multipliers(keras.optimizers.SGD(0.5), model)
    for opt in (plain, wrapped):
        deltas = _step(opt, model.trainable_variables, grads)
        rates = [_effective_rate(d, g) for d, g in zip(deltas, grads, strict=True) if np.any(g)]
        np.testing.assert_allclose(rates, 0.5, rtol=1e-3)


# --- 2. Adam (not gradient scaling) and AdamW (decay scaled per block) --------------------------


def test_adam_first_step_moves_each_weight_by_lr_times_multiplier():
    model = _image_model()
    group = _group_of(model)
    variables = model.trainable_variables
    grads = _gradients(model)
    lr = 1e-2
    opt = with_lr_multipliers(keras.optimizers.Adam(lr), model, multipliers=MULTIPLIERS)
    deltas = _step(opt, variables, grads)
    # Adam's first step, by hand: lr * m * g / (|g| + eps / sqrt(1 - beta_2)) ~ lr * m * sign(g).
    eps = opt.epsilon / math.sqrt(1 - opt.beta_2)
    checked = set()
    for v, d, g in zip(variables, deltas, grads, strict=True):
        m = BY_GROUP[group(v)]
        np.testing.assert_allclose(d, lr * m * g / (np.abs(g) + eps), rtol=1e-3, atol=1e-6)
        big = np.abs(g) > 1e-2
        if big.any():
            np.testing.assert_allclose(np.abs(d[big]), lr * m, rtol=1e-3)
            checked.add(group(v))
    assert checked == set(BY_GROUP)
    # Scaling the gradient instead would do nothing: Adam normalises the scale away.
    steps = []
    for scale in (1.0, 0.1):
        v = keras.Variable(np.ones(3, "float32"))
        keras.optimizers.Adam(lr).apply([tf.constant([scale, -scale, 2 * scale])], [v])
        steps.append(1.0 - v.numpy())
    np.testing.assert_allclose(steps[0], steps[1], rtol=1e-4)


def test_adamw_decays_each_kernel_by_its_block_multiplier_and_skips_biases_and_norms():
    model = _image_model("mobilenet_v3_small", train_batchnorm=True)
    group = _group_of(model)
    variables = model.trainable_variables
    assert {v.name for v in variables} >= {"kernel", "bias", "gamma", "beta"}
    lr, wd, k = 0.1, 0.5, 3
    opt = with_lr_multipliers(
        exclude_bias_and_norm(keras.optimizers.AdamW(lr, weight_decay=wd)),
        model,
        multipliers=MULTIPLIERS,
    )
    before = [v.numpy().copy() for v in variables]
    # Zero gradients: Adam's own step is exactly 0, only the decoupled decay moves weights.
    _step(opt, variables, [np.zeros(v.shape, "float32") for v in variables], steps=k)
    for v, b in zip(variables, before, strict=True):
        if v.name in NO_DECAY_NAMES:
            np.testing.assert_array_equal(v.numpy(), b)
        else:
            factor = (1 - lr * BY_GROUP.get(group(v), 1.0) * wd) ** k
            np.testing.assert_allclose(v.numpy(), b * factor, rtol=1e-5, atol=1e-8)


def test_adamw_helper_skips_bert_layernorm_and_biases_exactly():
    model = tfl.TextClassifier(tiny_bert(), num_classes=2)
    variables = model.trainable_variables
    lr, wd, k = 0.1, 0.2, 2
    opt = adamw(lr, weight_decay=wd)
    assert type(opt) is keras.optimizers.AdamW
    before = [v.numpy().copy() for v in variables]
    _step(opt, variables, [np.zeros(v.shape, "float32") for v in variables], steps=k)
    names = set()
    for v, b in zip(variables, before, strict=True):
        names.add(v.name)
        expected = b if v.name in NO_DECAY_NAMES else b * (1 - lr * wd) ** k
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-6, atol=0)
    assert names >= {"kernel", "embeddings", "bias", "gamma", "beta"}


# --- 3. Schedules: the multiplier applies to the scheduled value --------------------------------


def test_multiplier_scales_the_scheduled_learning_rate():
    base = tiny_bert()  # a base on its own: groups only, no head
    schedule = WarmupDecay(0.2, total_steps=10, warmup_steps=2)
    opt = with_lr_multipliers(
        keras.optimizers.SGD(schedule), base, multipliers={"embeddings": 0.1, "layer_0": 0.5}
    )
    assert isinstance(opt.learning_rate, tf.Tensor | tf.Variable)
    by_group = {"embeddings": 0.1, "layer_0": 0.5, "layer_1": 1.0, "pooler": 1.0}
    groups = {
        id(w): name
        for name, layers in block_groups(base).items()
        for layer in layers
        for w in layer.weights
    }
    variables = base.trainable_variables
    ones = [np.ones(v.shape, "float32") for v in variables]
    first = _step(opt, variables, ones)  # step 0: warm-up starts at 0
    second = _step(opt, variables, ones)  # step 1: 0.2 * 1 / 2
    for v, d0, d1 in zip(variables, first, second, strict=True):
        np.testing.assert_array_equal(d0, 0.0)
        np.testing.assert_allclose(d1, 0.1 * by_group[groups[id(v)]], rtol=1e-3)


# --- 4. tf.distribute ----------------------------------------------------------------------------

TEXT_MULTIPLIERS = {"embeddings": 0.1, "layer_0": 0.5, "head": 2.0}
TEXT_BY_GROUP = {"embeddings": 0.1, "layer_0": 0.5, "layer_1": 1.0, "head": 2.0}

DISTRIBUTED_SCRIPT = """
import json, os, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, keras_hub, numpy as np
import tfl
from tfl.optimizers import exclude_bias_and_norm, with_lr_multipliers

LR, WD = 0.5, 0.1
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=10, num_layers=2, num_heads=2, hidden_dim=4, intermediate_dim=8,
        max_sequence_length=8, dropout=0.0,
    )
    model = tfl.TextClassifier(bert, num_classes=2)
    sgd = exclude_bias_and_norm(keras.optimizers.SGD(LR, weight_decay=WD))
    opt = with_lr_multipliers(sgd, model, multipliers=json.loads(sys.argv[1]))
    model.compile(optimizer=opt, loss=model.head.default_loss())
rng = np.random.default_rng(0)
x = {
    "token_ids": rng.integers(0, 10, (8, 8)),
    "segment_ids": np.zeros((8, 8), "int32"),
    "padding_mask": (np.arange(8)[None, :] < rng.integers(2, 9, (8, 1))).astype("int32"),
}
y = np.arange(8) % 2
variables = model.trainable_variables
with tf.GradientTape() as tape:
    loss = model.head.default_loss()(y, model(x, training=True))
grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, variables)]
before = [v.numpy() for v in variables]
model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
groups = {
    id(w): name
    for name, layers in tfl.block_groups(model.backbone).items()
    for layer in layers
    for w in layer.weights
}
rows = []
for v, g, b in zip(variables, grads, before):
    rows.append({
        "group": groups.get(id(v), "head"),
        "name": v.name,
        "grad": g.ravel().tolist(),
        "weight": b.ravel().tolist(),
        "delta": (b - v.numpy()).ravel().tolist(),
    })
print("RESULT" + json.dumps({"replicas": strategy.num_replicas_in_sync, "rows": rows}))
"""


def test_multipliers_and_scaled_decay_hold_under_mirrored_strategy():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED_SCRIPT, json.dumps(TEXT_MULTIPLIERS)],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["replicas"] == 2
    lr, wd = 0.5, 0.1
    rates, names = {}, set()
    for row in result["rows"]:
        m = TEXT_BY_GROUP[row["group"]]
        g, w, d = (np.array(row[k]) for k in ("grad", "weight", "delta"))
        decay = 0.0 if row["name"] in NO_DECAY_NAMES else wd
        names.add(row["name"])
        # Keras decays first (p -= lr*m*wd*p), then steps with the all-reduced gradient.
        np.testing.assert_allclose(d, lr * m * (g + decay * w), rtol=1e-3, atol=1e-6)
        if np.abs(g).max() > 1e-4:
            rates.setdefault(row["group"], []).append(_effective_rate(d - lr * m * decay * w, g))
    assert names >= {"kernel", "embeddings", "bias", "gamma", "beta"}
    assert set(rates) == set(TEXT_BY_GROUP)
    for name, values in rates.items():
        np.testing.assert_allclose(
            np.array(values) / rates["layer_1"][0], TEXT_BY_GROUP[name], rtol=1e-3
        )


# --- 5. Layer-wise decay values -------------------------------------------------------------------


def test_layer_decay_on_an_image_classifier():
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    assert block_lr_multipliers(model, layer_decay=0.5) == {
        "stem": 0.125,
        "stage1": 0.25,
        "stage2": 0.5,
        "stage3": 1.0,
        "top": 1.0,
        "head": 1.0,
    }
    assert set(block_lr_multipliers(model).values()) == {1.0}
    opt = with_lr_multipliers("adam", model, layer_decay=0.5)
    group = _group_of(model)
    expected = {"stem": 0.125, "stage1": 0.25, "stage2": 0.5, "stage3": 1.0, "top": 1.0}
    for v in model.weights:
        assert opt.lr_multiplier(v) == expected.get(group(v), 1.0)
    assert opt.lr_multiplier(keras.Variable(1.0)) == 1.0  # a variable of no model it knows


def test_layer_decay_on_a_bert_text_classifier():
    model = tfl.TextClassifier(tiny_bert(), num_classes=2)
    assert block_lr_multipliers(model, layer_decay=0.8) == pytest.approx(
        {"embeddings": 0.64, "layer_0": 0.8, "layer_1": 1.0, "pooler": 1.0, "head": 1.0}
    )
    values = block_lr_multipliers(model, 0.8, multipliers={"layer_.*": 0.3, "head": 5})
    assert values == pytest.approx(
        {"embeddings": 0.64, "layer_0": 0.3, "layer_1": 0.3, "pooler": 1.0, "head": 5.0}
    )
    opt = with_lr_multipliers(keras.optimizers.Adam(), model, layer_decay=0.8)
    embedding = model.backbone.get_layer("token_embedding").embeddings
    assert opt.lr_multiplier(embedding) == pytest.approx(0.64)
    assert opt.lr_multiplier(model.head.weights[0]) == 1.0


def test_two_bases_of_one_architecture_are_told_apart_by_identity_not_path():
    first, second = tiny_image_base(), tiny_image_base()
    model = tfl.FusionClassifier([first, second], num_classes=3)
    stem_a = block_groups(first)["stem"][0].weights[0]
    stem_b = block_groups(second)["stem"][0].weights[0]
    assert stem_a.path == stem_b.path
    values = block_lr_multipliers(model, multipliers={f"{first.name}/.*": 0.1})
    assert values[f"{first.name}/stem"] == 0.1 and values[f"{second.name}/stem"] == 1.0
    opt = with_lr_multipliers(keras.optimizers.SGD(0.1), model, multipliers={"stem": 0.5})
    assert opt.lr_multiplier(stem_a) == opt.lr_multiplier(stem_b) == 0.5
    opt = with_lr_multipliers(keras.optimizers.SGD(0.1), model, multipliers=values)
    assert (opt.lr_multiplier(stem_a), opt.lr_multiplier(stem_b)) == (0.1, 1.0)


def test_bad_multiplier_arguments_name_the_value():
    model = tfl.TextClassifier(tiny_bert(), num_classes=2)
    with pytest.raises(ValueError, match=r"'stage9' matches no block group.*'layer_0'"):
        block_lr_multipliers(model, multipliers={"stage9": 0.1})
    with pytest.raises(ValueError, match=r"layer_decay=1.5"):
        block_lr_multipliers(model, layer_decay=1.5)
    with pytest.raises(ValueError, match=r"multipliers\['head'\]=-1"):
        block_lr_multipliers(model, multipliers={"head": -1})
    built = keras.optimizers.Adam()
    built.build(model.trainable_variables)
    with pytest.raises(ValueError, match="already built"):
        with_lr_multipliers(built, model)
    with pytest.raises(TypeError, match="inner optimizer"):
        with_lr_multipliers(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()), model)
    with pytest.raises(TypeError, match="no pretrained base"):
        with_lr_multipliers("adam", keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


# --- Every built-in optimizer class ---------------------------------------------------------------

BUILTINS = sorted(
    (
        c
        for c in vars(keras.optimizers).values()
        if isinstance(c, type)
        and issubclass(c, keras.optimizers.Optimizer)
        and c
        not in (
            keras.optimizers.Optimizer,
            keras.optimizers.LossScaleOptimizer,
            keras.optimizers.MultiOptimizer,
        )
    ),
    key=lambda c: c.__name__,
)


def test_every_builtin_optimizer_passes_the_multiplier_to_its_update():
    base = tiny_bert()
    variables = base.trainable_variables
    groups = {
        id(w): n for n, layers in block_groups(base).items() for lay in layers for w in lay.weights
    }
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=v.shape).astype("float32") for v in variables]
    initial = [v.numpy().copy() for v in variables]
    assert len(BUILTINS) >= 13
    for cls in BUILTINS:
        for v, value in zip(variables, initial, strict=True):
            v.assign(value)
        plain = _step(cls(learning_rate=0.01), variables, grads, steps=2)
        for v, value in zip(variables, initial, strict=True):
            v.assign(value)
        opt = with_lr_multipliers(cls(learning_rate=0.01), base, multipliers={"layer_0": 1e-3})
        assert isinstance(opt, cls) and type(opt).__name__ == f"{cls.__name__}WithLRMultipliers"
        scaled = _step(opt, variables, grads, steps=2)
        for v, p, q in zip(variables, plain, scaled, strict=True):
            where = f"{cls.__name__}: {v.path}"
            if groups[id(v)] == "layer_0":
                assert not np.allclose(p, q), where
                if cls is not keras.optimizers.Ftrl:  # FTRL re-solves weights: not a step size
                    assert np.linalg.norm(q) < 0.1 * np.linalg.norm(p), where
            else:
                np.testing.assert_allclose(q, p, rtol=1e-5, atol=1e-8, err_msg=where)


def test_custom_optimizer_class_gets_a_registered_subclass_on_demand():
    @keras.saving.register_keras_serializable(package="test_optimizers")
    class HalfSGD(keras.optimizers.SGD):
        def update_step(self, gradient, variable, learning_rate):
            return super().update_step(gradient, variable, learning_rate * 0.5)

    base = tiny_bert()
    opt = with_lr_multipliers(HalfSGD(0.2), base, multipliers={"layer_1": 0.1})
    assert isinstance(opt, HalfSGD) and lr_multiplier_class(HalfSGD) is type(opt)
    variable = block_groups(base)["layer_1"][0].trainable_weights[0]
    delta = _step(
        opt,
        base.trainable_variables,
        [np.ones(v.shape, "float32") for v in base.trainable_variables],
    )
    index = [id(v) for v in base.trainable_variables].index(id(variable))
    np.testing.assert_allclose(delta[index], 0.2 * 0.5 * 0.1, rtol=1e-4)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(restored) is type(opt)
    assert restored.lr_multipliers == opt.lr_multipliers

    class OwnDecaySGD(keras.optimizers.SGD):
        def _apply_weight_decay(self, variables):
            pass

    with pytest.warns(UserWarning, match="scales its learning rates per block, but not its decay"):
        with_lr_multipliers(OwnDecaySGD(0.1, weight_decay=0.1), base, layer_decay=0.5)
    # Rebuilt on other variables, the saved multipliers cannot apply: a warning, then an error
    # at the first update rather than silently wrong learning rates.
    others = base.trainable_variables[:-1]
    with pytest.warns(UserWarning, match=r"saved with \d+ learning-rate multipliers"):
        restored.build(others)
    with pytest.raises(ValueError, match="with_lr_multipliers"):
        restored.apply([np.zeros(v.shape, "float32") for v in others], others)


# --- 6. fit end to end, and .keras save / load ----------------------------------------------------


def _moved(before, variables):
    return [np.median(np.abs(b - v.numpy())) for b, v in zip(before, variables, strict=True)]


def test_fit_with_layer_decay_moves_lower_blocks_less_and_round_trips(tmp_path):
    model = _image_model()
    group = _group_of(model)
    lr = 1e-3
    # Eager: a traced step of ResNet50 costs seconds; graph mode is covered under tf.distribute.
    model.compile(
        optimizer=with_lr_multipliers(keras.optimizers.Adam(lr), model, layer_decay=0.5),
        run_eagerly=True,
    )
    variables = model.trainable_variables
    before = [v.numpy().copy() for v in variables]
    x, y = images(8), np.arange(8) % 3
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    moved = {}
    for v, step in zip(variables, _moved(before, variables), strict=True):
        moved.setdefault(group(v), []).append(step)
    # One Adam step moves a weight by about lr * multiplier.
    expected = {"stem": 0.0625, "stage1": 0.125, "stage2": 0.25, "stage3": 0.5, "stage4": 1.0}
    for name, m in expected.items():
        np.testing.assert_allclose(np.median(moved[name]), lr * m, rtol=0.05)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_keras_model_with_a_tfl_base_restores_optimizer_class_and_multipliers(tmp_path):
    base = tiny_image_base()
    inputs = keras.Input(base.input.shape[1:])
    outputs = keras.layers.Dense(3, activation="softmax", name="classifier")(base(inputs))
    model = keras.Model(inputs, outputs)
    schedule = WarmupDecay(1e-3, total_steps=20, warmup_steps=2)
    opt = with_lr_multipliers(
        exclude_bias_and_norm(keras.optimizers.AdamW(schedule)), model, layer_decay=0.5
    )
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", run_eagerly=True)
    x, y = images(8), np.arange(8) % 3
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
    new = restored.optimizer
    assert type(new) is type(opt) and isinstance(new, keras.optimizers.AdamW)
    pattern = new._exclude_from_weight_decay_pattern.pattern  # Keras alone would drop it
    assert pattern == opt._exclude_from_weight_decay_pattern.pattern
    assert not new._use_weight_decay(restored.get_layer("classifier").bias)
    assert isinstance(new._learning_rate, WarmupDecay)
    assert new._learning_rate.get_config() == schedule.get_config()
    assert new.lr_multipliers == opt.lr_multipliers
    assert sorted(set(new.lr_multipliers)) == [0.125, 0.25, 0.5, 1.0]
    assert int(new.iterations) == 2
    for a, b in zip(new.variables, opt.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    stem = block_groups(restored.get_layer(base.name))["stem"][0].weights[0]
    assert new.lr_multiplier(stem) == 0.125
    restored.fit(x, y, batch_size=4, epochs=1, verbose=0)  # resumes with the same multipliers
    assert int(new.iterations) == 4


def test_tfl_task_restores_its_optimizer(tmp_path):
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    opt = with_lr_multipliers(keras.optimizers.SGD(0.1), model, layer_decay=0.5)
    model.compile(optimizer=opt, run_eagerly=True)
    model.fit(images(4), np.arange(4) % 3, verbose=0)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored.optimizer) is type(opt)
