"""What tfl prints: no TensorFlow start-up lines, and one line per epoch off a terminal."""

import contextlib
import os
import re
import subprocess
import sys

import keras
import numpy as np

from tfl.fitting.history import PhaseHistory, PhaseLogs
from tfl.fitting.progress import EpochProgress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# absl's pre-initialisation warning, absl/TensorFlow log lines (I0000 00:00:... file.cc:12]),
# and the words of the start-up lines themselves.
TF_LOG_LINE = re.compile(
    r"absl::InitializeLog|^[IWEF]\d{4} \d\d:\d\d:|oneDNN custom operations|cuda|"
    r"cpu_feature_guard|rebuild TensorFlow",
    re.I | re.M,
)


def _tfl(*argv, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    environ.update(PYTHONPATH=ROOT, **env)
    environ.pop("TFL_TF_LOGS", None)
    return subprocess.run(
        [sys.executable, "-m", "tfl.cli", *argv],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


def test_help_and_print_config_print_no_tensorflow_log_line(tmp_path):
    # TensorFlow's C++ start-up lines came twice (once per TF library loaded) on every command,
    # even with TF_CPP_MIN_LOG_LEVEL=3: they are written before absl logging is initialised.
    done = _tfl("--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: tfl")
    assert not TF_LOG_LINE.search(done.stdout + done.stderr), done.stderr
    done = _tfl("train", "--print-config", TF_CPP_MIN_LOG_LEVEL="3")
    assert done.returncode == 0 and done.stdout.startswith("recipe: image_classification\n")
    assert done.stderr == "", done.stderr


def test_fit_to_a_file_prints_one_line_per_epoch_without_bookkeeping_columns(tmp_path):
    # The callbacks fit_phases adds to every phase: the history's bookkeeping, the progress.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(loss="mse", metrics=["mae"])
    record = PhaseHistory()
    callbacks = [PhaseLogs(0, record), EpochProgress()]
    x, y = np.ones((8, 2)), np.zeros(8)
    path = tmp_path / "train.log"
    with open(path, "w") as log, contextlib.redirect_stdout(log):  # not a terminal
        model.fit(x, y, validation_data=(x, y), batch_size=4, epochs=3, callbacks=callbacks)
    lines = path.read_text().splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all(" - 2 steps - " in line and " - val_mae: " in line for line in lines)
    text = path.read_text()
    assert "\r" not in text and "\b" not in text  # no progress-bar redraws in a log file
    assert "phase:" not in text and "learning_rate:" not in text
    # The columns are still in the history (and so in history.csv).
    assert record.history["phase"] == [0, 0, 0] and len(record.history["learning_rate"]) == 3


def test_epoch_progress_keeps_keras_bar_when_asked():
    progress = EpochProgress()
    progress.set_params({"verbose": 1, "epochs": 2, "steps": 3})
    assert progress.verbose == 1  # verbose=1 is Keras' bar, on any stream
    progress.set_params({"verbose": "auto", "epochs": 2, "steps": 3})
    assert progress.verbose == 2  # pytest's captured stdout is not a terminal
