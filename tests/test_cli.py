import importlib.util
import json
import os

import keras
import numpy as np
import pytest

from tfl import cli
from tfl.datasets import grey_digits_dataset, load_mnist_5k

TINY = [
    "--image-size", "32", "--train-size", "40", "--val-size", "20", "--test-size", "20",
    "--epochs-head", "1", "--epochs-finetune", "1", "--batch-size", "10",
]  # fmt: skip


@pytest.mark.assets
def test_tfl_train_end_to_end_writes_a_reloadable_run(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    assert cli.main(["train", *TINY, "--output", run_dir]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert f"Run directory: {run_dir}" in out and "Test accuracy:" in out
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
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"), safe_mode=True)
    images, labels = load_mnist_5k()
    ds = grey_digits_dataset(images[:20], labels[:20], 32, 10)
    accuracy = model.evaluate(ds, verbose=0)[1]
    assert np.isfinite(accuracy)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--image-size", "16"], "below MobileNetV2's minimum of 32"),
        (["train", "--epochs-head", "-1"], "expected an integer >= 0, received '-1'"),
        (["train", "--train-size", "0"], "expected a positive integer, received '0'"),
        (["train", "--train-size", "45"], "--train-size 45 must be a multiple of 10"),
        (["train", "--test-size", "4990"], "more than the 5,000 images of MNIST-5k"),
    ],
)
def test_tfl_train_bad_arguments_exit_2_with_a_clear_message(argv, message, capsys, tmp_path):
    argv = [*argv, "--output", str(tmp_path / "run")]
    try:
        code = cli.main(argv)
    except SystemExit as exit:  # argparse rejects type errors itself
        code = exit.code
    assert code == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.assets
def test_quickstart_recipe_smoke_runs():
    path = os.path.join(os.path.dirname(__file__), "..", "recipes", "quickstart.py")
    spec = importlib.util.spec_from_file_location("quickstart", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    accuracy = recipe.main(["--smoke"])
    assert 0.0 <= accuracy <= 1.0
