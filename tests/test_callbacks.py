import csv
import glob
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import images, tiny_image_base

import tfl
from tfl.callbacks import ReduceLROnPlateau, restore_checkpoint_best, standard_callbacks
from tfl.linter import TransferWarning

X = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
Y = X.sum(axis=1, keepdims=True)


def _model(lr=0.1):
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(lr), "mse")
    return model


class _Script(keras.callbacks.Callback):
    """Sets `val_loss` per epoch from a script and records the weights at each epoch end."""

    def __init__(self, values):
        super().__init__()
        self.values = values
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]
        self.weights[epoch] = self.model.get_weights()


def _fit(model, callbacks, initial_epoch, epochs):
    return model.fit(
        X,
        Y,
        batch_size=8,
        initial_epoch=initial_epoch,
        epochs=epochs,
        callbacks=callbacks,
        verbose=0,
    )


def _no_tb(run_dir, **kwargs):
    return standard_callbacks(run_dir, tensorboard=False, **kwargs)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _transfer_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, TransferWarning)]


def _assert_weights_equal(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


def _best_weights(run_dir):
    return keras.saving.load_model(run_dir / "best.keras").get_weights()


# --- standard_callbacks ---------------------------------------------------------------------


def test_standard_callbacks_order_paths_and_switches(tmp_path, monkeypatch):
    monkeypatch.setattr("tfl.callbacks._has_tensorboard", lambda: True)
    run = tmp_path / "runs" / "a"
    cbs = standard_callbacks(run, verbose=0)
    assert run.is_dir()
    assert [type(cb) for cb in cbs][:1] == [keras.callbacks.TerminateOnNaN]
    csv_logger, backup, ckpt, stop, reduce, board = cbs[1:]
    assert isinstance(csv_logger, keras.callbacks.CSVLogger) and csv_logger.append
    assert csv_logger.filename == str(run / "history.csv")
    assert isinstance(backup, keras.callbacks.BackupAndRestore)
    assert backup.backup_dir == str(run / "backup")
    assert isinstance(ckpt, keras.callbacks.ModelCheckpoint) and ckpt.save_best_only
    assert ckpt.filepath == str(run / "best.keras") and ckpt.monitor == "val_loss"
    assert isinstance(stop, keras.callbacks.EarlyStopping) and stop.restore_best_weights
    assert stop.patience == 5
    assert isinstance(reduce, ReduceLROnPlateau)
    assert (reduce.patience, reduce.factor, reduce.min_lr) == (2, 0.2, 1e-7)
    assert isinstance(board, keras.callbacks.TensorBoard)
    assert board.log_dir == str(run / "logs")
    # A loss is minimised, a Keras accuracy maximised: "auto" is resolved up front.
    assert ckpt.mode == "min"
    assert standard_callbacks(run, monitor="val_accuracy")[3].mode == "max"
    none = dict(checkpoint=False, early_stopping=False, reduce_lr=False, tensorboard=False)
    only = standard_callbacks(run, csv_log=False, backup=False, terminate_on_nan=False, **none)
    assert only == []


def test_standard_callbacks_without_tensorboard_package_leave_it_out(tmp_path, monkeypatch):
    monkeypatch.setattr("tfl.callbacks._has_tensorboard", lambda: False)
    with pytest.warns(UserWarning, match="pip install tensorboard"):
        cbs = standard_callbacks(tmp_path)
    assert len(cbs) == 6
    assert not any(isinstance(cb, keras.callbacks.TensorBoard) for cb in cbs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(standard_callbacks(tmp_path, tensorboard=False)) == 6


@pytest.mark.parametrize(
    "kwargs, text",
    [
        (dict(run_dir=3), "run_dir=3"),
        (dict(monitor=""), "monitor=''"),
        (dict(mode="best"), "mode='best'"),
        (dict(patience=-1), "patience=-1"),
        (dict(reduce_lr_patience=1.5), "reduce_lr_patience=1.5"),
        (dict(reduce_lr_factor=1.0), "reduce_lr_factor=1.0"),
        (dict(min_lr=-1e-3), "min_lr=-0.001"),
        (dict(backup="yes"), "backup='yes'"),
        (dict(verbose=3), "verbose=3"),
    ],
)
def test_standard_callbacks_bad_arguments_name_the_value(tmp_path, kwargs, text):
    kwargs.setdefault("run_dir", tmp_path)
    with pytest.raises(ValueError, match="Received " + text.replace(".", r"\.")):
        standard_callbacks(**kwargs)


def _two_phases(run_dir, **kwargs):
    cbs = standard_callbacks(run_dir, verbose=0, **kwargs)
    model = _model(lr=0.1)
    _fit(model, [_Script([1.0, 0.9, 0.8, 0.7]), *cbs], 0, 2)
    model.compile(keras.optimizers.SGD(0.05), "mse")  # phase 2: a new optimizer
    _fit(model, [_Script([1.0, 0.9, 0.8, 0.7]), *cbs], 2, 4)


def test_history_csv_appends_across_phases(tmp_path):
    _two_phases(tmp_path, tensorboard=False)
    rows = _read_csv(tmp_path / "history.csv")
    header = rows[0]
    assert header == ["epoch", "learning_rate", "loss", "val_loss"]
    assert [r for r in rows if r[0] == "epoch"] == [header]  # header once
    epochs = [int(r[0]) for r in rows[1:]]
    assert epochs == [0, 1, 2, 3]
    lrs = [float(r[1]) for r in rows[1:]]
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.05, 0.05], rtol=1e-6)
    np.testing.assert_allclose([float(r[3]) for r in rows[1:]], [1.0, 0.9, 0.8, 0.7])


def test_tensorboard_appends_across_phases(tmp_path):
    pytest.importorskip("tensorboard")
    _two_phases(tmp_path)
    steps = []
    for path in glob.glob(str(tmp_path / "logs" / "train" / "events.out.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            steps += [event.step for v in event.summary.value if v.tag == "epoch_loss"]
    assert sorted(steps) == [0, 1, 2, 3]


def test_csv_columns_stay_aligned_when_a_phase_adds_a_metric(tmp_path):
    cbs = standard_callbacks(tmp_path, monitor="loss", verbose=0, tensorboard=False)
    model = _model()
    _fit(model, cbs, 0, 1)
    model.compile(keras.optimizers.SGD(0.05), "mse", metrics=["mae"])
    _fit(model, cbs, 1, 2)
    rows = _read_csv(tmp_path / "history.csv")
    assert rows[0] == ["epoch", "learning_rate", "loss", "val_loss", "mae", "val_mae"]
    assert rows[1][0] == "0" and rows[1][4] == "NA"  # phase 1 had no mae
    assert rows[2][0] == "1" and float(rows[2][1]) == pytest.approx(0.05)
    loss, mae = float(rows[2][2]), float(rows[2][4])
    assert mae > 0 and mae**2 <= loss * (1 + 1e-5)  # mean |e| squared <= mean e^2


def test_early_stopping_state_restarts_in_each_phase(tmp_path):
    cbs = standard_callbacks(tmp_path, patience=2, reduce_lr=False, tensorboard=False, verbose=0)
    model = _model()
    worse = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    script = _Script(worse)
    first = _fit(model, [script, *cbs], 0, 10)
    assert first.epoch == [0, 1, 2]  # best at 0, stopped after 2 epochs without improvement
    _assert_weights_equal(model.get_weights(), script.weights[0])  # best weights restored
    # Phase 2: the stop of phase 1 does not carry over, and patience counts afresh (with
    # phase 1's state, epoch 3 would stop at once: best 1.0, already waited 2 epochs).
    model.compile(keras.optimizers.SGD(0.01), "mse")
    second = _fit(model, [_Script(worse), *cbs], 3, 10)
    assert second.epoch == [3, 4, 5]


def test_reduce_lr_acts_per_phase_and_a_new_optimizer_keeps_its_rate(tmp_path):
    cbs = standard_callbacks(
        tmp_path, reduce_lr_patience=1, reduce_lr_factor=0.5, patience=10, tensorboard=False
    )
    flat = [1.0] * 6
    model = _model(lr=0.1)
    first = _fit(model, [_Script(flat), *cbs], 0, 3)
    np.testing.assert_allclose(first.history["learning_rate"], [0.1, 0.1, 0.05], rtol=1e-6)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.025)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    second = _fit(model, [_Script(flat), *cbs], 3, 6)
    # Phase 2 starts from its own rate and with a fresh plateau count (carried-over state
    # would reduce at epoch 3 already, logging 0.005 at epoch 4 and 0.0025 at epoch 5).
    np.testing.assert_allclose(second.history["learning_rate"], [0.01, 0.01, 0.005], rtol=1e-6)


def test_reduce_lr_stands_aside_for_a_schedule_once_per_fit():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    flat = [1.0] * 4

    keras_model = _model()
    keras_model.compile(keras.optimizers.SGD(schedule), "mse")
    keras_cb = keras.callbacks.ReduceLROnPlateau(patience=0)
    with pytest.raises(TypeError, match="not settable"):
        _fit(keras_model, [_Script(flat), keras_cb], 0, 2)

    model = _model()
    model.compile(keras.optimizers.SGD(schedule), "mse")
    cb = ReduceLROnPlateau(patience=0, factor=0.5)
    for start in (0, 2):
        history, messages = _transfer_warnings(_fit, model, [_Script(flat), cb], start, start + 2)
        assert len(messages) == 1 and "schedule wins" in messages[0]
    # The schedule alone sets the rate: two steps per epoch halve it every epoch.
    np.testing.assert_allclose(history.history["learning_rate"], [0.0125, 0.00625], rtol=1e-5)
    assert int(model.optimizer.iterations) == 8


def test_checkpoint_keeps_the_best_of_the_whole_run(tmp_path):
    cbs = standard_callbacks(tmp_path, reduce_lr=False, tensorboard=False, verbose=0)
    model = _model()
    script = _Script([0.5, 0.3, 0.4, 0.35, 0.1])
    _fit(model, [script, *cbs], 0, 2)
    model.compile(keras.optimizers.SGD(0.05), "mse")
    _fit(model, [script, *cbs], 2, 4)  # phase 2 is worse than phase 1's best (0.3)
    _assert_weights_equal(_best_weights(tmp_path), script.weights[1])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    _fit(model, [script, *cbs], 4, 5)  # phase 3 beats it
    _assert_weights_equal(_best_weights(tmp_path), script.weights[4])


def test_restore_checkpoint_best_survives_a_restart(tmp_path):
    history_csv = tmp_path / "history.csv"
    values = [0.5, 0.3, 0.4]
    model = _model()
    script = _Script(values)
    _fit(model, [script, *standard_callbacks(tmp_path, tensorboard=False, verbose=0)], 0, 2)

    # A new process: fresh callbacks on the same run directory.
    fresh = standard_callbacks(tmp_path, tensorboard=False, verbose=0)
    assert restore_checkpoint_best(fresh, history_csv) == pytest.approx(0.3)
    _fit(model, [script, *fresh], 2, 3)  # 0.4 is worse than the run's best
    _assert_weights_equal(_best_weights(tmp_path), script.weights[1])

    # Without it, the fresh checkpoint would take the first epoch it sees.
    forgetful = standard_callbacks(tmp_path, tensorboard=False, verbose=0)
    _fit(model, [script, *forgetful], 2, 3)
    _assert_weights_equal(_best_weights(tmp_path), script.weights[2])


def test_restore_checkpoint_best_reads_the_monitored_column(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(
        "epoch,loss,val_accuracy,val_f\n0,0.9,0.5,2\n1,0.5,NA,3\n2,0.4,0.75,1\n3,0.3,0.7,nan\n"
    )
    assert restore_checkpoint_best(_no_tb(tmp_path, monitor="val_accuracy"), path) == (0.75)
    assert restore_checkpoint_best(_no_tb(tmp_path, monitor="loss"), path) == 0.3
    custom = _no_tb(tmp_path, monitor="val_f", mode="max")
    assert restore_checkpoint_best(custom, path) == 3.0
    assert custom[3].best == 3.0
    with pytest.raises(ValueError, match="monitor='val_f' and mode='auto'.*mode='min'"):
        restore_checkpoint_best(_no_tb(tmp_path, monitor="val_f"), path)
    # Nothing to restore: no file, no column, no checkpoint.
    assert restore_checkpoint_best(_no_tb(tmp_path), tmp_path / "none.csv") is None
    assert restore_checkpoint_best(_no_tb(tmp_path, monitor="val_auc"), path) is None
    assert restore_checkpoint_best(_no_tb(tmp_path, checkpoint=False), path) is None


def test_backup_resumes_a_killed_fit_and_is_deleted_after_a_finished_one(tmp_path):
    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    cbs = standard_callbacks(tmp_path, monitor="loss", tensorboard=False, verbose=0)
    model = _model()
    with pytest.raises(KeyboardInterrupt):
        _fit(model, [*cbs, Kill()], 0, 4)
    cbs[1].csv_file.close()  # what the killed process would have left to the OS
    assert os.path.exists(tmp_path / "backup" / "latest.weights.h5")
    saved = model.get_weights()

    restarted = _model()  # a new process: same architecture, fresh weights
    history = _fit(restarted, standard_callbacks(tmp_path, monitor="loss", tensorboard=False), 0, 4)
    assert history.epoch == [2, 3]  # resumed after the two epochs that ran
    assert not os.path.exists(tmp_path / "backup")
    assert [int(r[0]) for r in _read_csv(tmp_path / "history.csv")[1:]] == [0, 1, 2, 3]
    assert not np.array_equal(restarted.get_weights()[0], saved[0])  # trained on from there


def test_checkpoint_of_a_tfl_model_reloads(tmp_path):
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    tfl.freeze(model)  # the checkpoint is the subject, not what trains
    model.compile()
    x, y = images(8), np.arange(8) % 3
    cbs = standard_callbacks(tmp_path, monitor="loss", tensorboard=False, verbose=0)
    model.fit(x, y, batch_size=4, epochs=1, callbacks=cbs, verbose=0)
    restored = keras.saving.load_model(tmp_path / "best.keras")
    assert type(restored) is tfl.ImageClassifier
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_a_kill_between_the_csv_row_and_the_backup_leaves_no_duplicate_epoch(tmp_path):
    """The CSV row of an epoch is written before its backup: a kill in between re-runs it."""

    class KillBeforeBackup(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    cbs = standard_callbacks(tmp_path, monitor="loss", tensorboard=False, verbose=0)
    csv_logger, backup = cbs[1], cbs[2]
    with pytest.raises(KeyboardInterrupt):  # epoch 1 is logged, then the kill, then no backup
        _fit(_model(), [csv_logger, KillBeforeBackup(), backup], 0, 4)
    csv_logger.csv_file.close()
    assert [int(r[0]) for r in _read_csv(tmp_path / "history.csv")[1:]] == [0, 1]
    history = _fit(_model(), standard_callbacks(tmp_path, monitor="loss", tensorboard=False), 0, 4)
    assert history.epoch == [1, 2, 3]  # epoch 1 runs again from the backup of epoch 0
    assert [int(r[0]) for r in _read_csv(tmp_path / "history.csv")[1:]] == [0, 1, 2, 3]


def test_backup_and_best_checkpoint_are_replaced_whole_never_half_written(tmp_path):
    """Files are written beside their target and renamed: a kill mid-write breaks nothing."""
    from tfl.callbacks import BackupAndRestore, ModelCheckpoint

    best = tmp_path / "best.keras"
    (tmp_path / "best.partial.keras").write_bytes(b"left by a run killed mid-write")
    checkpoint = ModelCheckpoint(str(best), monitor="loss", save_best_only=True)
    backup = BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    model = _model()
    _fit(model, [checkpoint, backup], 0, 2)
    assert sorted(os.listdir(tmp_path / "backup")) == [
        "latest.weights.h5",
        "training_metadata.json",
    ]
    assert not (tmp_path / "best.partial.keras").exists()
    reloaded = keras.saving.load_model(str(best))
    np.testing.assert_allclose(reloaded.predict(X, verbose=0), model.predict(X, verbose=0))

    # A kill while the next backup was being written leaves the previous one loadable.
    (tmp_path / "backup" / "partial.weights.h5").write_bytes(b"\x89HDF\r\n half a file")
    restarted = _model()
    history = _fit(restarted, [BackupAndRestore(str(tmp_path / "backup"))], 0, 3)
    assert history.epoch == [2]
