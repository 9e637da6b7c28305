"""The five recipes in recipes/: each --smoke run writes a complete, reloadable run directory,
and a recipe's flags are exactly `tfl train --recipe NAME`'s."""

import importlib.util
import json
import os
import re

import keras
import numpy as np
import pytest

import tfl
from tfl import cli
from tfl import config as config_lib

RECIPES_DIR = os.path.join(os.path.dirname(__file__), "..", "recipes")
NAMES = config_lib.RECIPES


def load_recipe(name: str):
    """Import recipes/<name>.py by path (the recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", f"{RECIPES_DIR}/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_smoke(name: str, tmp_path, capsys, *flags: str) -> tuple[dict, str]:
    """`main(["--smoke", "--output", DIR])` and the checks every recipe's run dir must pass."""
    recipe = load_recipe(name)
    run_dir = str(tmp_path / "run")
    result = recipe.main(["--smoke", "--output", run_dir, *flags])
    out = capsys.readouterr().out
    assert sorted(result) == ["config", "metrics", "model", "run_dir"]
    assert result["run_dir"] == run_dir
    assert f"Run directory: {run_dir}" in out and "Test accuracy: " in out
    # config.yaml: the recipe's effective configuration, readable back.
    config = config_lib.validate(
        config_lib.from_dict(config_lib.load_yaml(os.path.join(run_dir, "config.yaml")))
    )
    assert config.recipe == name and config == result["config"]
    # metrics.json: the test accuracy, the same number main() returned.
    with open(os.path.join(run_dir, "metrics.json")) as f:
        summary = json.load(f)
    assert summary["evaluated_on"] == "test"
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["test_accuracy"] == pytest.approx(result["metrics"]["accuracy"])
    with open(os.path.join(run_dir, "report.md")) as f:
        assert f.read().startswith(f"# {name}: ")
    return result, out


def assert_reloads(result: dict, x) -> keras.Model:
    """model.keras reloads (safe mode) and computes what the trained model computes."""
    restored = keras.saving.load_model(
        os.path.join(result["run_dir"], "model.keras"), safe_mode=True
    )
    model = result["model"]
    assert type(restored) is type(model)
    if model.preprocessor is not None:  # raw strings in: each model's own preprocessor
        expected = model(model.preprocessor(x), training=False)
        got = restored(restored.preprocessor(x), training=False)
    else:  # called directly: the same computation as predict, without tracing one
        expected, got = model(x, training=False), restored(x, training=False)
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5),
        expected,
        got,
    )
    return restored


def images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (n, 32, 32, 3)).astype("float32")


def pretrained_base() -> tfl.ImageBackbone:
    """A fresh copy of the smoke runs' pretrained base (the offline ImageNet MobileNetV2)."""
    return tfl.ImageBackbone("mobilenet_v2_torchvision", (32, 32, 3), weights="imagenet")


# === The convention the notebooks are generated from ===


@pytest.mark.parametrize("name", NAMES)
def test_recipe_file_follows_the_convention(name):
    with open(f"{RECIPES_DIR}/{name}.py") as f:
        text = f.read()
    # jupytext percent format: a markdown title cell first, the script entry as the last cell.
    assert text.startswith("# %% [markdown]\n# # ")
    assert text.endswith('\n# %%\nif __name__ == "__main__":\n    main()\n')
    for cell in re.split(r"^# %%", text, flags=re.M)[1:]:
        if cell.startswith(" [markdown]"):
            lines = cell.strip("\n").splitlines()[1:]
            assert all(line == "#" or line.startswith("# ") for line in lines), cell
    assert f"python recipes/{name}.py --smoke" in text and f"tfl train --recipe {name}" in text
    recipe = load_recipe(name)
    assert name == recipe.RECIPE and recipe.__doc__ is None
    assert all(isinstance(flag, str) for flag in recipe.SMOKE)


# === Flags: the same as `tfl train --recipe NAME` ===


def _print_config(capsys, call) -> str:
    capsys.readouterr()
    call()
    return capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_recipe_flags_are_tfl_train_flags(name, capsys, tmp_path):
    recipe = load_recipe(name)
    run_dir = str(tmp_path / "run")
    flags = ["--seed", "3", "--data.batch-size", "4", "--set", "train.head_epochs=2"]
    flags += ["--output", run_dir, "--print-config"]
    result = {}
    printed = _print_config(capsys, lambda: result.update(recipe.main(flags)))
    expected = _print_config(capsys, lambda: cli.main(["train", "--recipe", name, *flags]))
    assert printed == expected
    assert "seed: 3" in printed and "head_epochs: 2" in printed
    assert result["config"].recipe == name and result["config"].data.batch_size == 4
    assert not os.path.exists(run_dir)  # --print-config does no work
    # --smoke is exactly the recipe's SMOKE flags, and explicit flags after it win.
    smoke = _print_config(capsys, lambda: recipe.main(["--smoke", "--print-config", "--seed", "5"]))
    argv = ["train", "--recipe", name, *recipe.SMOKE, "--seed", "5", "--print-config"]
    assert smoke == _print_config(capsys, lambda: cli.main(argv))
    # A --set of a key that SMOKE also sets is not "given twice": SMOKE is only a default.
    smoke_set = recipe.main(["--smoke", "--set", "train.head_epochs=3", "--print-config"])
    assert smoke_set["config"].train.head_epochs == 3
    # A --config file of this recipe is read as `tfl train --config` reads it.
    path = tmp_path / "run.yaml"
    path.write_text(f"recipe: {name}\ntrain:\n  head_epochs: 7\n")
    from_file = _print_config(
        capsys, lambda: recipe.main(["--config", str(path), "--print-config"])
    )
    assert "head_epochs: 7" in from_file
    argv = ["train", "--config", str(path), "--print-config"]
    assert from_file == _print_config(capsys, lambda: cli.main(argv))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--recipe", "text_classification"], "Run python recipes/text_classification.py"),
        (["--set", "recipe=multitask"], "Run python recipes/multitask.py"),
        (["--config", "{yaml}"], "Run python recipes/feature_fusion.py"),
        (["--recipe", "image_clasification"], "the recipes are image_classification, "),
        (["--data.batch-size", "0"], "data.batch_size: received 0"),
    ],
)
def test_recipe_rejects_another_recipe_and_bad_values(argv, message, capsys, tmp_path):
    path = tmp_path / "fusion.yaml"
    path.write_text("recipe: feature_fusion\n")
    argv = [a.replace("{yaml}", str(path)) for a in argv]
    recipe = load_recipe("image_classification")
    with pytest.raises(SystemExit) as exit:
        recipe.main([*argv, "--output", str(tmp_path / "run")])
    assert exit.value.code == 2  # a usage error, as `tfl train` exits
    err = capsys.readouterr().err
    assert message in err
    if "recipe" in message.lower():
        assert "this script is the image_classification recipe" in err
    assert not os.path.exists(tmp_path / "run")


# === Smoke runs ===


@pytest.mark.assets
def test_text_classification_smoke_uses_minilm_its_preprocessor_and_mean_pooling(tmp_path, capsys):
    result, out = run_smoke("text_classification", tmp_path, capsys)
    model = result["model"]
    assert isinstance(model, tfl.TextClassifier) and model.pooling == "mean"
    assert model.backbone.num_layers == 6  # all-MiniLM-L6-v2
    assert model.preprocessor.sequence_length == 16  # --smoke's --data.sequence-length
    assert "Sequence length: 16 tokens" in out and "[CLS]" in out
    with open(os.path.join(result["run_dir"], "metrics.json")) as f:
        assert [p["name"] for p in json.load(f)["phases"]] == ["head"]  # --smoke: no phase 2
    restored = assert_reloads(result, np.array(["a gripping, moving film", "dull and flat"]))
    assert restored.preprocessor.sequence_length == 16  # the preprocessor travels with it


@pytest.mark.assets
def test_feature_fusion_offline_fails_with_the_librarys_message(tmp_path, monkeypatch):
    # Offline: Keras cannot fetch EfficientNet-B0's ImageNet weights (simulated, so the test
    # is the same on a machine with network). Nothing may train.
    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", no_network)
    recipe = load_recipe("feature_fusion")
    monkeypatch.setattr(recipe.Run, "fit", lambda *a, **k: pytest.fail("it trained"))
    monkeypatch.chdir(tmp_path)  # the default run dir is runs/... under the working dir
    with pytest.raises(OSError, match="ImageNet weights of 'efficientnet_b0'") as error:
        recipe.main([])
    assert "offline" in str(error.value).lower()


@pytest.mark.assets
def test_multitask_smoke_reports_each_head(tmp_path, capsys):
    result, out = run_smoke("multitask", tmp_path, capsys)
    metrics = result["metrics"]
    with open(os.path.join(result["run_dir"], "evaluation.json")) as f:
        evaluation = json.load(f)
    for name, classes in (("digit", 10), ("parity", 2)):
        assert 0.0 <= evaluation[name]["accuracy"] <= 1.0
        assert evaluation[name]["accuracy"] == pytest.approx(metrics[name]["accuracy"])
        assert np.shape(evaluation[name]["confusion_matrix"]) == (classes, classes)
        assert f"Test accuracy ({name}): {metrics[name]['accuracy']:.4f}" in out
        with open(os.path.join(result["run_dir"], "report.md")) as f:
            assert f"Head `{name}`: test accuracy {metrics[name]['accuracy']:.4f}" in f.read()
    mean = (metrics["digit"]["accuracy"] + metrics["parity"]["accuracy"]) / 2
    assert metrics["accuracy"] == pytest.approx(mean)
    with open(os.path.join(result["run_dir"], "metrics.json")) as f:
        history = json.load(f)["history"]
    assert {"digit_accuracy", "parity_accuracy", "val_parity_accuracy"} <= set(history)
    # The parity labels shown are derived from the digits shown.
    digits = json.loads(re.search(r"digit: (\[.*\])", out)[1])
    parity = json.loads(re.search(r"parity: (\[.*\])", out)[1])
    assert parity == [d % 2 for d in digits] and len(digits) == 8
    restored = assert_reloads(result, images())
    assert sorted(restored.predict(images(), verbose=0)) == ["digit", "parity"]
