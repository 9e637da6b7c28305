"""Models saved by an earlier tfl (before its modules were reorganised) still load.

`tests/legacy/*.keras` were written by `tests/legacy/make_legacy_models.py` with tfl at commit
1c1e278 and are kept as they are; their predictions at save time are in
`legacy_models.json`. They cover every serialised tfl class: the four task models, the image
backbone, all heads and their losses and metrics, mean pooling, per-block learning-rate
optimizers and the two learning-rate schedules (L2-SP is not part of a saved model).
"""

import json
import os

import keras
import numpy as np
import pytest

import tfl  # noqa: F401  (registers tfl's classes)

HERE = os.path.join(os.path.dirname(__file__), "legacy")
with open(os.path.join(HERE, "legacy_models.json")) as _file:
    RECORD = json.load(_file)
TEXTS = np.array(["good movie", "bad movie", "fun fun", "dull movie", "good fun", "bad dull"])


def _images(seed):
    return np.random.default_rng(seed).uniform(0, 255, (4, 32, 32, 3)).astype("float32")


INPUTS = {"text_classifier": TEXTS, "multitask": _images(0), "fusion": _images(1)}


@pytest.mark.parametrize("name", sorted(RECORD["models"]))
def test_a_model_saved_by_the_earlier_tfl_loads_and_predicts_the_same(name):
    expected = RECORD["models"][name]
    model = keras.saving.load_model(os.path.join(HERE, f"{name}.keras"), safe_mode=True)
    assert type(model).__name__ == expected["class"]
    assert type(model.optimizer).__name__ == expected["optimizer"]
    got = model.predict(INPUTS[name], verbose=0)
    want = expected["predictions"]
    if isinstance(want, dict):
        assert sorted(got) == sorted(want)
        for head, values in want.items():
            np.testing.assert_allclose(got[head], values, atol=1e-5)
    else:
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_the_legacy_text_model_keeps_its_optimizer_schedule_and_state():
    model = keras.saving.load_model(os.path.join(HERE, "text_classifier.keras"), safe_mode=True)
    schedule = model.optimizer._learning_rate
    assert type(schedule).__name__ == "WarmupDecay"
    assert schedule.get_config()["total_steps"] == 10
    # The optimizer's state came back too: it continues from the saved step.
    assert int(model.optimizer.iterations.numpy()) == 2
