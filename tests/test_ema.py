"""`Phase(ema=...)`: Keras' optimizer EMA, evaluated and saved through `SwapEMAWeights`."""

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
    best = str(tmp_path / "last.keras")
    phases = [
        Phase(2, trainable=None, learning_rate=1e-2, ema=0.5, name="head"),  # cached features
        Phase(2, trainable="all", learning_rate=1e-3, ema=0.5, name="finetune"),
    ]
    x, y = images(16), np.arange(16) % 3
    validation = (images(6, seed=1), np.arange(6) % 3)
    history = fit_phases(
        model,
        phases,
        x,
        y,
        validation_data=validation,
        batch_size=8,
        cache="memory",
        lint=False,
        verbose=0,
        callbacks=[
            raw,
            BackupAndRestore(str(tmp_path / "backup")),
            keras.callbacks.ModelCheckpoint(best),  # every epoch: the last one is kept
        ],
    )
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == 0.5
    final = [np.array(w) for w in model.trainable_weights]
    differences = [np.abs(a - b).max() for a, b in zip(final, raw.raw[-1], strict=True)]
    assert max(differences) > 1e-4  # the average is not the last step's weights

    # Validation ran on the average (the logged val_loss is the final model's).
    logs = model.evaluate(*validation, return_dict=True, verbose=0)
    assert logs["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    # The average is what is saved: the last checkpoint and the phase's backup weights.
    saved = keras.saving.load_model(best)
    np.testing.assert_allclose(saved.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0), atol=1e-6)  # fmt: skip
    copy = tfl.ImageClassifier(tiny_image_base(), 3)
    keras.saving.load_weights(copy, str(tmp_path / "backup" / "phase-1.weights.h5"))
    np.testing.assert_allclose(copy.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0), atol=1e-6)  # fmt: skip
    # The head phase trained on cached features and ended with its own average too.
    keras.saving.load_weights(copy, str(tmp_path / "backup" / "phase-0.weights.h5"))
    head_raw = raw.raw[1]  # the head's weights after the 2nd epoch's last step
    head_saved = [np.array(w) for w in copy.head.weights]
    assert max(np.abs(a - b).max() for a, b in zip(head_saved, head_raw, strict=True)) > 1e-4


def test_ema_momentum_must_be_in_0_1():
    with pytest.raises(ValueError, match="ema=1.0; expected None or a momentum in"):
        Phase(1, ema=1.0)
    assert "ema" not in Phase(1).describe()  # plans of runs saved before it still match
