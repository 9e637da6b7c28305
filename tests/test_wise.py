"""WiSE-FT in `fit_phases`: θ(α) between the probe (α = 0) and the fine-tuned model (α = 1)."""

import os

import keras
import numpy as np
import pytest
from helpers import images, tiny_image_base

import tfl
from tfl.callbacks import BackupAndRestore
from tfl.fitting import fit_phases
from tfl.phases import feature_extraction, two_phase
from tfl.wise import interpolate, snapshot

LABELS = np.arange(16) % 3


def _outputs_with(model, path, x):
    """`model`'s outputs with the weights of a phase's backup file (the model left as it was)."""
    current = snapshot(model)
    keras.saving.load_weights(model, path, objects_to_skip=[model.optimizer])
    out = np.asarray(model(x, training=False))
    interpolate(model, current, current, 1.0)
    return out


@pytest.fixture(scope="module")
def blended(tmp_path_factory):
    """A run with wise="auto", its backup (one weights file per phase) and arguments."""
    backup = str(tmp_path_factory.mktemp("wise") / "backup")
    keras.utils.set_random_seed(0)
    model = tfl.ImageClassifier(tiny_image_base(), 3)
    args = dict(
        x=images(16),
        y=LABELS,
        validation_data=(images(9, seed=1), np.arange(9) % 3),
        batch_size=8,
        verbose=0,
        lint=False,
    )
    # The top block fine-tunes (its training step traces faster than the whole base's).
    phases = two_phase(1, 1, unfreeze=1, head_learning_rate=1e-2, finetune_learning_rate=1e-3)
    history = fit_phases(model, phases, callbacks=[BackupAndRestore(backup)], wise="auto", **args)
    return model, phases, backup, args, history


def test_auto_tries_the_grid_and_keeps_the_best_validation_accuracy(blended):
    model, _, _, args, history = blended
    wise = history.wise
    assert [row["alpha"] for row in wise["grid"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert wise["probe_phase"] == "head"
    best = max(row["accuracy"] for row in wise["grid"])
    chosen = next(row for row in wise["grid"] if row["alpha"] == wise["alpha"])
    assert chosen["accuracy"] == best
    assert chosen["loss"] == min(r["loss"] for r in wise["grid"] if r["accuracy"] == best)
    logs = model.evaluate(*args["validation_data"], return_dict=True, verbose=0)
    assert logs["loss"] == pytest.approx(chosen["loss"], rel=1e-5)  # the model is that blend


@pytest.mark.parametrize("alpha, phase", [(0.0, "phase-0"), (1.0, "phase-1")])
def test_alpha_0_is_the_probe_and_1_the_fine_tuned_model_also_after_a_restart(
    blended, alpha, phase
):
    """Run again with the same backup, as after a kill once training was done: both ends
    come from the phases' weight files, and the blend is the one asked for."""
    model, phases, backup, args, _ = blended
    x = args["x"][:4]
    history = fit_phases(model, phases, callbacks=[BackupAndRestore(backup)], wise=alpha, **args)
    assert history.wise == {"alpha": alpha, "grid": [], "probe_phase": "head"}
    expected = _outputs_with(model, os.path.join(backup, f"{phase}.weights.h5"), x)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), expected, atol=1e-6)
    other = _outputs_with(model, os.path.join(backup, "phase-1.weights.h5" if alpha == 0 else "phase-0.weights.h5"), x)  # fmt: skip
    assert np.abs(other - expected).max() > 1e-4  # the probe and the fine-tuned model differ


def test_interpolate_blends_every_float_weight_linearly():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    start = snapshot(model)
    end = [w + 1.0 for w in start]
    interpolate(model, start, end, 0.25)
    for got, a in zip(model.get_weights(), start, strict=True):
        np.testing.assert_allclose(got, a + 0.25, atol=1e-6)


def test_bad_blends_are_refused_before_training():
    model = tfl.ImageClassifier(tiny_image_base(), 3)
    with pytest.raises(ValueError, match=r"wise=2; expected None, 'auto' or a blend"):
        fit_phases(model, two_phase(1, 1), images(4), LABELS[:4], wise=2)
    with pytest.raises(ValueError, match="needs a phase with trainable=None followed by one"):
        fit_phases(model, feature_extraction(1), images(4), LABELS[:4], wise=0.5)
    with pytest.raises(ValueError, match="wise='auto' without validation data"):
        fit_phases(model, two_phase(1, 1), images(4), LABELS[:4], wise="auto")
