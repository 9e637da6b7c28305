"""`Phase(ema=...)`: Keras' optimizer EMA, evaluated and saved through `SwapEMAWeights`.

A run's fine-tuning phase with `train.ema` is exercised in `tests/test_cli_commands.py` (the
trained run) and under MirroredStrategy in `tests/test_distribute.py`; here the head phase
on cached features, whose EMA is the same mechanism on a cheaper step.
"""

import keras
import numpy as np
import pytest
from helpers import images, tiny_image_base

import tfl
from tfl.callbacks import BackupAndRestore
from tfl.fitting import fit_phases
from tfl.phases import Phase


class _RawWeights(keras.callbacks.Callback):
    """The trained weights at each epoch end, before `SwapEMAWeights` swaps the average in
    (it goes after the BackupAndRestore, and this callback before it)."""

    def __init__(self):
        super().__init__()
        self.raw = []

    def on_epoch_end(self, epoch, logs=None):
        self.raw.append([np.array(w) for w in self.model.trainable_weights])


def test_ema_weights_differ_from_the_raw_ones_and_are_validated_and_saved(tmp_path):
    keras.utils.set_random_seed(0)
    model = tfl.ImageClassifier(tiny_image_base(), 3)
    raw = _RawWeights()
    x, y = images(16), np.arange(16) % 3
    validation = (images(6, seed=1), np.arange(6) % 3)
    history = fit_phases(
        model,
        [Phase(2, trainable=None, learning_rate=1e-1, ema=0.5, name="head")],
        x,
        y,
        validation_data=validation,
        batch_size=8,
        cache="memory",  # the head trains on cached features
        lint=False,
        verbose=0,
        callbacks=[raw, BackupAndRestore(str(tmp_path / "backup"))],
    )
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == 0.5
    final = [np.array(w) for w in model.trainable_weights]
    assert max(np.abs(a - b).max() for a, b in zip(final, raw.raw[-1], strict=True)) > 1e-4

    # Validation ran on the average: the logged val_loss is the final model's.
    logs = model.evaluate(*validation, return_dict=True, verbose=0)
    assert logs["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    # The average is what is saved: the phase's weights file holds it.
    keras.saving.load_weights(model, str(tmp_path / "backup" / "phase-0.weights.h5"))
    saved = [np.array(w) for w in model.trainable_weights]
    for a, b in zip(saved, final, strict=True):
        np.testing.assert_array_equal(a, b)


def test_ema_momentum_must_be_in_0_1():
    with pytest.raises(ValueError, match="ema=1.0; expected None or a momentum in"):
        Phase(1, ema=1.0)
    assert "ema" not in Phase(1).describe()  # plans of runs saved before it still match
