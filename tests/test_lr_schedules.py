"""Learning-rate schedules (warm-up and decay, one-cycle) and an optimizer's peak rate."""

import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_bert

import tfl
from tfl.freezing import block_groups
from tfl.lr_schedules import OneCycle, WarmupDecay, max_learning_rate
from tfl.optimizers import with_lr_multipliers

# --- max_learning_rate ------------------------------------------------------------------------------


def test_max_learning_rate_of_floats_schedules_and_multipliers():
    assert max_learning_rate(keras.optimizers.SGD(0.05)) == pytest.approx(0.05)
    assert max_learning_rate(keras.optimizers.Adam(OneCycle(3e-3, 100))) == 3e-3
    cosine = keras.optimizers.schedules.CosineDecay(1e-4, 1000, warmup_target=1e-3, warmup_steps=50)
    assert max_learning_rate(keras.optimizers.Adam(cosine)) == pytest.approx(1e-3)
    piecewise = keras.optimizers.schedules.PiecewiseConstantDecay([10, 20], [1e-3, 5e-3, 1e-4])
    assert max_learning_rate(keras.optimizers.SGD(piecewise)) == pytest.approx(5e-3)
    wrapped = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(2e-4))
    assert max_learning_rate(wrapped) == pytest.approx(2e-4)

    base = tiny_bert()
    opt = with_lr_multipliers(keras.optimizers.Adam(1e-3), base, multipliers={"layer_1": 3.0})
    embeddings = block_groups(base)["embeddings"][0].weights
    assert max_learning_rate(opt) == pytest.approx(3e-3)
    assert max_learning_rate(opt, embeddings) == pytest.approx(1e-3)
    assert max_learning_rate(opt, []) == 0.0


# --- Schedules ---------------------------------------------------------------------------------------


def _torch_one_cycle(step, max_lr, total, pct_start, div, final_div):
    """PyTorch OneCycleLR (cos, two phases), transcribed from torch/optim/lr_scheduler.py."""
    initial = max_lr / div
    phases = [
        (float(pct_start * total) - 1, initial, max_lr),
        (float(total - 1), max_lr, initial / final_div),
    ]
    start = 0.0
    for i, (end, lo, hi) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            pct = (step - start) / (end - start)
            return hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1)
        start = end
    raise AssertionError


def test_warmup_decay_values_match_hand_computation():
    cosine = WarmupDecay(1e-3, total_steps=110, warmup_steps=10, final_learning_rate=1e-4)
    linear = WarmupDecay(1e-3, total_steps=110, warmup_steps=10, decay="linear")
    constant = WarmupDecay(1e-3, total_steps=110, warmup_steps=10, decay="constant")
    hand = {
        0: (0.0, 0.0, 0.0),
        4: (4e-4, 4e-4, 4e-4),
        10: (1e-3, 1e-3, 1e-3),
        35: (1e-4 + 9e-4 * (1 + math.cos(math.pi / 4)) / 2, 7.5e-4, 1e-3),
        60: (5.5e-4, 5e-4, 1e-3),
        110: (1e-4, 0.0, 1e-3),
        500: (1e-4, 0.0, 1e-3),
    }
    for step, values in hand.items():
        got = [float(s(step)) for s in (cosine, linear, constant)]
        np.testing.assert_allclose(got, values, rtol=1e-5, atol=1e-10)
    assert float(WarmupDecay(2e-3, total_steps=5)(0)) == pytest.approx(2e-3)


def test_one_cycle_matches_pytorch_at_every_step():
    schedule = OneCycle(1e-2, total_steps=40, pct_start=0.3, div_factor=25.0, final_div_factor=1e4)
    got = np.array([float(schedule(s)) for s in range(40)])
    torch = np.array([_torch_one_cycle(s, 1e-2, 40, 0.3, 25.0, 1e4) for s in range(40)])
    np.testing.assert_allclose(got, torch, rtol=1e-5, atol=1e-12)
    assert got[0] == pytest.approx(4e-4, rel=1e-5) and got.max() == pytest.approx(1e-2, rel=1e-5)
    assert float(schedule(1000)) == pytest.approx(4e-8, rel=1e-5)  # constant after the cycle


def test_schedules_run_in_graph_mode_and_round_trip_their_config():
    schedules = [
        WarmupDecay(3e-4, total_steps=50, warmup_steps=5, decay="linear", final_learning_rate=1e-5),
        OneCycle(1e-3, total_steps=30, pct_start=0.4, div_factor=10, final_div_factor=100),
    ]
    for schedule in schedules:
        steps = tf.Variable(0, dtype="int64")
        graph = tf.function(lambda schedule=schedule, steps=steps: schedule(steps))
        for step in (0, 3, 12, 29, 60):
            steps.assign(step)
            np.testing.assert_allclose(float(graph()), float(schedule(step)), rtol=1e-6)
        config = keras.saving.serialize_keras_object(schedule)
        assert config["registered_name"] == f"tfl>{type(schedule).__name__}"
        restored = keras.saving.deserialize_keras_object(config)
        assert type(restored) is type(schedule) and restored.get_config() == schedule.get_config()
        opt = keras.optimizers.Adam(schedule)
        restored_opt = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
        assert restored_opt._learning_rate.get_config() == schedule.get_config()


BAD_SCHEDULES = [
    (lambda: WarmupDecay(1e-3, total_steps=10, warmup_steps=20), r"warmup_steps=20 > total"),
    (lambda: WarmupDecay(1e-3, total_steps=0), r"total_steps=0"),
    (lambda: WarmupDecay(-1.0, total_steps=10), r"peak_learning_rate=-1.0"),
    (lambda: WarmupDecay(1e-3, 10, decay="step"), r"decay='step'"),
    (lambda: WarmupDecay(1e-3, 10, final_learning_rate=1e-2), r"final_learning_rate=0.01"),
    (lambda: WarmupDecay(1e-3, 10, decay="constant", final_learning_rate=1e-4), "constant"),
    (lambda: OneCycle(1e-3, total_steps=10, pct_start=1.2), r"pct_start=1.2"),
    (lambda: OneCycle(1e-3, total_steps=4, pct_start=0.25), r"pct_start=0.25 with total"),
    (lambda: OneCycle(1e-3, total_steps=100, div_factor=0), r"div_factor=0"),
]


def test_bad_schedule_arguments_name_the_value():
    for build, message in BAD_SCHEDULES:
        with pytest.raises(ValueError, match=message):
            build()


def test_the_old_names_in_tfl_optimizers_still_work_and_warn():
    for name in ("WarmupDecay", "OneCycle", "max_learning_rate"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert getattr(tfl.optimizers, name) is getattr(tfl, name)
        assert [w.category for w in caught] == [DeprecationWarning]
        assert f"tfl.lr_schedules.{name}" in str(caught[0].message)
