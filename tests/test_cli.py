import json
import os
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfl import cli
from tfl.data.bundled import grey_digits_dataset, load_mnist_5k

TINY = [
    "--image-size", "32", "--data.max-per-class", "{train: 4, validation: 2, test: 2}",
    "--epochs-head", "1", "--epochs-finetune", "1", "--batch-size", "10",
]  # fmt: skip


@pytest.mark.assets
def test_tfl_train_end_to_end_writes_a_reloadable_run(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    argv = ["train", *TINY, "--train.lr-find", "true", "--output", run_dir]
    assert cli.main(argv) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert f"Run directory: {run_dir}" in out and "Test accuracy:" in out
    # Output that is not a terminal gets one line per epoch, without the history's
    # bookkeeping columns and without progress-bar redraws.
    epochs = [line.split(" - ")[0] for line in out.splitlines() if line.startswith("Epoch ")]
    assert epochs == ["Epoch 1/1", "Epoch 2/2"]
    assert "\r" not in out and "phase:" not in out and "learning_rate:" not in out
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert [p["name"] for p in metrics["phases"]] == ["head", "finetune"]
    assert metrics["history"]["epoch"] == [0, 1]
    assert metrics["history"]["phase"] == [0, 1]
    with open(os.path.join(run_dir, "history.csv")) as f:
        assert len(f.read().strip().splitlines()) == 1 + 2  # header + one epoch per phase
    # The standard callbacks' files: the best checkpoint over both phases, TensorBoard logs.
    best = keras.saving.load_model(os.path.join(run_dir, "best.keras"), safe_mode=True)
    assert best.count_params() > 0
    assert os.listdir(os.path.join(run_dir, "logs"))
    # The label map travels with the run (tfl.data writes it), for predict and export.
    from tfl.data import LabelMap

    assert LabelMap.load(run_dir).names == [str(d) for d in range(10)]
    with open(os.path.join(run_dir, "data.json")) as f:
        assert "mnist5k" in f.read()
    # The effective config, plots, evaluation and report.
    from tfl.config import from_dict, load_yaml

    assert from_dict(load_yaml(os.path.join(run_dir, "config.yaml"))).data.image_size == 32
    for name in ("history.png", "evaluation.json", "evaluation_confusion.png", "report.md"):
        assert os.path.getsize(os.path.join(run_dir, name)) > 0, name
    with open(os.path.join(run_dir, "evaluation.json")) as f:
        evaluation = json.load(f)
    assert evaluation["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert len(evaluation["confusion_matrix"]) == 10
    with open(os.path.join(run_dir, "report.md")) as f:
        report = f.read()
    assert "history.png" in report and f"{metrics['test_accuracy']:.3f}"[:4] in report
    # The learning-rate finder ran on the head phase (cached features) and set its rate.
    assert os.path.getsize(os.path.join(run_dir, "lr_find.png")) > 0
    assert "![lr_find](lr_find.png)" in report
    assert "Learning-rate finder: head learning rate" in report
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"), safe_mode=True)
    images, labels = load_mnist_5k()
    ds = grey_digits_dataset(images[:20], labels[:20], 32, 10)
    accuracy = model.evaluate(ds, verbose=0)[1]
    assert np.isfinite(accuracy)
    # `tfl evaluate RUN_DIR` reloads the run and evaluates it again: the same test accuracy.
    capsys.readouterr()
    assert cli.main(["evaluate", run_dir]) == cli.EXIT_OK
    with open(os.path.join(run_dir, "evaluation_test.json")) as f:
        assert json.load(f)["accuracy"] == pytest.approx(evaluation["accuracy"], abs=1e-6)

    # New labelled data: a folder holding only some of the classes keeps the run's indices.
    from tfl.run import evaluate_run

    folder = os.path.join(os.path.dirname(run_dir), "new_digits")
    for digit in (3, 5, 7):
        os.makedirs(os.path.join(folder, str(digit)))
        for i in np.flatnonzero(labels == digit)[-2:]:
            png = tf.io.encode_png(images[i].reshape(28, 28, 1).astype("uint8")).numpy()
            with open(os.path.join(folder, str(digit), f"{i}.png"), "wb") as f:
                f.write(png)
    capsys.readouterr()
    assert cli.main(["evaluate", run_dir, "--data", folder]) == cli.EXIT_OK
    assert "evaluation_data_new_digits.json" in capsys.readouterr().out
    new = evaluate_run(run_dir, data=folder)
    assert new["num_examples"] == 6
    rows = np.asarray(new["confusion_matrix"]).sum(axis=1)
    assert rows.tolist() == [0, 0, 0, 2, 0, 2, 0, 2, 0, 0]  # true labels 3, 5 and 7
    assert os.path.exists(os.path.join(run_dir, "evaluation_data_new_digits.json"))


def test_print_config_writes_the_effective_config_and_does_no_work(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  head_epochs: 3\n")
    argv = ["train", "--config", str(config), "--seed", "7", "--print-config"]
    assert cli.main([*argv, "--output", str(tmp_path / "run")]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "head_epochs: 3" in out and "seed: 7" in out and "finetune_epochs: 5" in out
    assert not (tmp_path / "run").exists()


# Ten kinds of bad configuration, each stopped before any work with one message that names the
# key and the fix (tests/test_config.py checks the validator itself in more detail).
BAD_CONFIGS = {
    "below the base's minimum input": (
        ["--image-size", "16"],
        "data.image_size: 'mobilenet_v2_torchvision' needs height and width of at least 32 "
        "(received 16)",
    ),
    "negative epochs": (["--epochs-head", "-1"], "train.head_epochs"),
    "misspelt key": (["--set", "train.head_epoch=2"], "Did you mean 'head_epochs'?"),
    "unknown recipe": (["--recipe", "image_clasification"], "Did you mean 'image_classification'"),
    "unknown base": (["--model.base", "mobilenet_v9"], "model.base: unknown image base"),
    "bad choice": (["--train.optimizer", "adamm"], "Did you mean 'adam'"),
    "wrong type": (["--data.batch-size", "eight"], "data.batch_size: received 'eight'"),
    "augmentation with a forced cache": (
        ["--data.augment", "flip", "--train.cache", "true"],
        "train.cache: received true with random augmentation",
    ),
    "image weights for a text base": (
        ["--recipe", "text_classification", "--model.weights", "imagenet"],
        "model.weights: received 'imagenet', but a text preset",
    ),
    "missing data folder": (
        ["--data.source", "folder", "--data.path", "/nonexistent/images"],
        "data.path: the folder '/nonexistent/images' does not exist",
    ),
    "one key given twice": (
        ["--train.head-epochs", "2", "--set", "train.head_epochs=3"],
        "train.head_epochs: given twice",
    ),
    "unknown key in the YAML file": (
        ["--config", "{yaml}"],
        "train.warmup: unknown key; valid keys in train:",
    ),
    "YAML syntax error": (["--config", "{broken_yaml}"], "broken.yaml:2:1: not valid YAML"),
    # What the base's family table, the file headers and a decode of the files can tell.
    "unfreeze: not a block group": (
        ["--train.unfreeze", "top9999"],
        "train.unfreeze: 'top9999' is not a block group of mobilenet_v2_torchvision; its groups "
        "are 'stem', 'stage1', 'stage2', 'stage3', 'stage4', 'top'. For the top N blocks give a "
        "number: train.unfreeze: 5",
    ),
    "unfreeze: more blocks than the base has": (
        ["--train.unfreeze", "9999"],
        "train.unfreeze: received 9999 top blocks, but mobilenet_v2_torchvision has 5",
    ),
    "unfreeze: a text base's layer it lacks": (
        ["--recipe", "text_classification", "--train.unfreeze", "layer_6"],
        "train.unfreeze: 'layer_6' is not a block group of all-minilm-l6-v2",
    ),
    "image size far over the base's": (
        ["--data.image-size", "100000"],
        "data.image_size: received 100000, over 4x the 224 px that mobilenet_v2_torchvision's "
        "weights were trained at (at most 896)",
    ),
    "CSV column not in the header": (
        [
            "--recipe",
            "text_classification",
            "--data.source",
            "csv",
            "--data.path",
            "{csv}",
            "--data.label-column",
            "stars",
        ],
        "data.label_column: column 'stars' is not in",
    ),  # fmt: skip
    "one Latin-1 byte in a UTF-8 CSV": (
        ["--recipe", "text_classification", "--data.source", "csv", "--data.path", "{latin1}"],
        "latin1.csv row 3 is not utf-8 text (byte 22 of the file). Set data.encoding",
    ),
    "unknown codec": (["--data.encoding", "utf-9"], "data.encoding: received 'utf-9'"),
}


@pytest.mark.parametrize("kind", BAD_CONFIGS)
def test_bad_config_exits_2_before_any_work_naming_the_key(kind, capsys, tmp_path):
    (tmp_path / "run.yaml").write_text("train:\n  head_epochs: 2\n  warmup: 3\n")
    (tmp_path / "broken.yaml").write_text("train: [1,\n")
    (tmp_path / "reviews.csv").write_text("text,label\nfun,pos\n")
    (tmp_path / "latin1.csv").write_bytes("text,label\nfun,pos\ncafé,pos\n".encode("latin-1"))
    files = {"yaml": "run.yaml", "broken_yaml": "broken.yaml", "csv": "reviews.csv"}
    files = {k: tmp_path / v for k, v in {**files, "latin1": "latin1.csv"}.items()}
    flags, message = BAD_CONFIGS[kind]
    flags = [f.format(**files) for f in flags]
    run_dir = tmp_path / "run"
    started = time.perf_counter()
    assert cli.main(["train", *flags, "--output", str(run_dir)]) == cli.EXIT_USAGE
    assert time.perf_counter() - started < 5  # refused by validation, before any work
    err = capsys.readouterr().err
    assert err.startswith("tfl train: error: ") and message in err
    assert len(err.strip().splitlines()) == 1  # one message, no traceback
    assert not run_dir.exists()  # nothing was started


def test_evaluate_of_a_missing_run_exits_2(capsys):
    assert cli.main(["evaluate", "/nonexistent/run"]) == cli.EXIT_USAGE
    assert "not a finished tfl run directory" in capsys.readouterr().err
