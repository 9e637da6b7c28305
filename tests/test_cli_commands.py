"""`tfl cv`, `tfl compare` and `tfl predict` (tfl.studies, tfl.predict) end to end, tiny."""

import dataclasses
import io
import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import TEXTS, tiny_bert, tiny_bert_preprocessor

import tfl
import tfl.fitting
from tfl import cli
from tfl import config as config_lib
from tfl.backbones import build_application
from tfl.data import LabelMap, image_pipeline
from tfl.data.bundled import load_mnist_5k
from tfl.evaluate import softmax

TINY = [
    "--image-size", "32", "--data.max-per-class", "{train: 4, validation: 2, test: 2}",
    "--epochs-head", "1", "--epochs-finetune", "1", "--batch-size", "10",
]  # fmt: skip
# MobileNet v1 at 32 px: the base whose full fine-tuning step traces fastest (about 2 s per
# fold against 5 s for MobileNetV3Small), with "pretrained" weights from a file saved here,
# so the studies need no offline asset.
STUDY_BASE = "mobilenet"
POOLED = 10 * (4 + 2)  # MNIST-5k digits in the train + validation splits of TINY


@pytest.fixture(scope="module")
def pretrained_file(tmp_path_factory):
    """A weights file standing in for pretrained weights, and the weights it holds."""
    # Its own seed: the tests seed 0 before each test, and a scratch model initialised from
    # that same state would equal these weights (it happened when test order changed).
    keras.utils.set_random_seed(20251124)
    base = build_application(STUDY_BASE, (32, 32, 3))
    path = str(tmp_path_factory.mktemp("weights") / "base.weights.h5")
    base.save_weights(path)
    return path, base.get_weights()


def _study_flags(path):
    return [*TINY, "--model.base", STUDY_BASE, "--model.weights", path]


def _record_fits(monkeypatch):
    """Wrap tfl.fit_phases (which cross_validate calls per fold): each model and its base's
    weights when its training starts."""
    seen = []
    original = tfl.fitting.fit_phases

    def recording(model, phases, *args, **kwargs):
        seen.append({"model": model, "start": model.backbone.get_weights(), "phases": phases})
        history = original(model, phases, *args, **kwargs)
        # One epoch barely moves the base (the stand-in weights give near-zero features), so
        # move it here: a model or variable carried into the next fold would start off.
        for variable in model.backbone.weights:
            variable.assign(variable + 1.0)
        return history

    monkeypatch.setattr(tfl.fitting, "fit_phases", recording)
    return seen


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_cv_scores_each_fold_on_a_fresh_pretrained_model(
    tmp_path, capsys, monkeypatch, pretrained_file
):
    path, pretrained = pretrained_file
    seen = _record_fits(monkeypatch)
    out_dir = str(tmp_path / "cv")
    # The head phase only (on cached features): the fold mechanics are the same, and the
    # base is moved after each fold's training by the hook instead.
    argv = ["cv", *_study_flags(path), "--epochs-finetune", "0", "--folds", "3"]
    argv += ["--output", out_dir]
    assert cli.main(argv) == cli.EXIT_OK
    out = capsys.readouterr().out

    with open(os.path.join(out_dir, "cv.json")) as f:
        result = json.load(f)
    scores = [m["accuracy"] for m in result["fold_metrics"]]
    assert len(scores) == 3 and result["accuracy"]["values"] == pytest.approx(scores)
    assert result["accuracy"]["mean"] == pytest.approx(np.mean(scores))
    assert result["accuracy"]["std"] == pytest.approx(np.std(scores, ddof=1))
    # The pooled data is train + validation (the test split stays untouched), held out once.
    assert result["num_examples"] == POOLED and sum(result["fold_sizes"]) == POOLED
    assert result["phases"] == ["head"]
    for i, score in enumerate(scores):
        assert f"Fold {i + 1}/3: training..." in out  # progress as each fold starts
        assert f"Fold {i + 1}/3: accuracy {score:.4f}" in out
    mean, std = result["accuracy"]["mean"], result["accuracy"]["std"]
    assert f"Accuracy {mean:.4f} ± {std:.4f}" in out
    with open(os.path.join(out_dir, "cv.md")) as f:
        assert f"Accuracy {mean:.4f} ± {std:.4f}" in f.read()
    assert LabelMap.load(out_dir).names == [str(d) for d in range(10)]
    assert (
        config_lib.load_yaml(os.path.join(out_dir, "config.yaml"))["model"]["base"] == "mobilenet"
    )

    # Every fold trained a new model that started from the pretrained weights, not from the
    # previous fold's fine-tuned ones, and no two folds share a variable.
    assert len(seen) == 3
    for fold in seen:
        assert _same(fold["start"], pretrained)
    ids = [{id(v) for v in fold["model"].variables} for fold in seen]
    assert not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])


def test_compare_prints_three_methods_and_a_verdict(tmp_path, capsys, monkeypatch, pretrained_file):
    path, pretrained = pretrained_file
    seen = _record_fits(monkeypatch)
    out_dir = str(tmp_path / "compare")
    argv = ["compare", *_study_flags(path), "--folds", "2", "--epochs", "1", "--output", out_dir]
    assert cli.main(argv) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "Model 1/6: training..." in out and "Model 6/6: training..." in out
    with open(os.path.join(out_dir, "compare.json")) as f:
        result = json.load(f)
    assert result["epochs"] == 1 and result["folds"] == 2
    for method in ("scratch", "probe", "fine_tune"):
        cv = result["methods"][method]
        assert len(cv["accuracy"]["values"]) == 2 and sum(cv["fold_sizes"]) == POOLED
        mean, std = cv["accuracy"]["mean"], cv["accuracy"]["std"]
        assert f"| {method.replace('_', '-')} | {mean:.4f} ± {std:.4f} |" in out
    verdicts = ("transfer helps", "transfer hurts", "no significant difference")
    assert result["verdict"] in verdicts
    assert f"**{result['verdict']}**" in out
    assert f"{result['verdict'].capitalize()}: " in out and "McNemar p = " in out
    assert result["n"] == POOLED and result["low"] <= result["difference"] <= result["high"]
    with open(os.path.join(out_dir, "compare.md")) as f:
        report = f.read()
    assert f"**{result['verdict']}**" in report and "Effect: " in report
    # Scratch really starts from random weights; probe and fine-tune from the pretrained file.
    assert len(seen) == 6
    for fold in seen:
        is_scratch = fold["phases"][0].name == "scratch"
        assert _same(fold["start"], pretrained) != is_scratch


def test_compare_budget_defaults_to_the_configured_epochs(monkeypatch, pretrained_file, tmp_path):
    path, pretrained = pretrained_file
    from tfl import studies

    calls = {}

    def fake_compare(build_pretrained, build_scratch, x, y, **kwargs):
        calls.update(kwargs, x=x, y=y)
        calls["pretrained"] = build_pretrained().backbone.get_weights()
        calls["scratch"] = build_scratch().backbone.get_weights()
        score = {"mean": 0.5, "std": 0.0, "values": [0.5, 0.5]}
        methods = {m: {"accuracy": score, "macro_f1": score} for m in studies.METHODS}
        return {"methods": methods, "metric": "accuracy", "verdict": "transfer helps"}

    monkeypatch.setattr(studies.transfer, "compare_transfer", fake_compare)
    flags = _study_flags(path) + ["--epochs-head", "2", "--epochs-finetune", "3"]
    args = cli.build_parser().parse_args(["compare", *flags, "--output", str(tmp_path / "c")])
    studies.compare_config(config_lib.from_args(args), folds=2)
    assert calls["epochs"] == 5 and calls["folds"] == 2 and calls["batch_size"] == 10
    assert calls["x"].shape == (POOLED, 32, 32, 3) and sorted(set(calls["y"])) == list(range(10))
    assert _same(calls["pretrained"], pretrained)
    assert not _same(calls["scratch"], pretrained)


# === tfl predict ===


# What the trained run also does (the last tests of this file check its files): WiSE-FT,
# the weights' moving average, calibration (on by default) and TTA in its evaluation.
SHIFT_FLAGS = ["--train.wise", "auto", "--train.ema", "0.5", "--evaluate.tta", "crops"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One `tfl train` TINY run (the offline MobileNetV2) and PNGs of MNIST-5k digits."""
    root = tmp_path_factory.mktemp("predict")
    run_dir = str(root / "run")
    assert cli.main(["train", *TINY, *SHIFT_FLAGS, "--output", run_dir]) == cli.EXIT_OK
    images, labels = load_mnist_5k()
    picks = [int(np.flatnonzero(labels == d)[-1]) for d in (3, 7)]
    pngs = []
    for i in picks:
        png = str(root / f"digit{i}.png")
        tf.io.write_file(png, tf.io.encode_png(images[i].reshape(28, 28, 1).astype("uint8")))
        pngs.append(png)
    return run_dir, pngs, images[picks]


def _preprocessed(raw, config):
    """The images through tfl.data's training pipeline (uint8 28x28 -> RGB float at 32 px)."""
    ds = tf.data.Dataset.from_tensor_slices((raw.reshape(-1, 28, 28, 1), np.zeros(len(raw))))
    size = config["data"]["image_size"]
    x, _ = next(iter(image_pipeline(ds, size, resize=config["data"]["resize"], batch_size=8)))
    return x.numpy()


@pytest.mark.assets
def test_predict_images_matches_model_predict_on_the_training_preprocessing(trained_run, capsys):
    run_dir, pngs, raw = trained_run
    config = config_lib.load_yaml(os.path.join(run_dir, "config.yaml"))
    names = LabelMap.load(run_dir).names
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    expected = model.predict(_preprocessed(raw, config), verbose=0)

    assert cli.main(["predict", run_dir, *pngs, "--top-k", "3", "--json"]) == cli.EXIT_OK
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == pngs
    for row, probs in zip(rows, expected, strict=True):
        order = np.argsort(-probs)[:3]
        assert [p["label"] for p in row["top_k"]] == [names[i] for i in order]
        got = [p["probability"] for p in row["top_k"]]
        np.testing.assert_allclose(got, probs[order], atol=2e-6)
        assert row["label"] == names[order[0]] and row["outputs"] == "probabilities"

    # The plain format: `file  label  probability`.
    assert cli.main(["predict", run_dir, pngs[0]]) == cli.EXIT_OK
    best = int(np.argmax(expected[0]))
    assert capsys.readouterr().out == f"{pngs[0]}  {names[best]}  {expected[0][best]:.4f}\n"


@pytest.mark.assets
def test_predict_skips_a_corrupt_file_by_name(trained_run, tmp_path, capsys, monkeypatch):
    run_dir, pngs, _ = trained_run
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    loaded = []
    load_model = keras.saving.load_model
    monkeypatch.setattr(keras.saving, "load_model", lambda p: loaded.append(p) or load_model(p))
    argv = ["predict", run_dir, str(bad), pngs[1], "--checkpoint", "best"]
    assert cli.main(argv) == cli.EXIT_OK
    assert loaded == [os.path.join(run_dir, "best.keras")]
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{pngs[1]}  ") and len(captured.out.splitlines()) == 1
    assert f"tfl predict: skipped {bad}: not a readable image" in captured.err
    # Nothing readable: exit 1.
    missing = str(tmp_path / "missing.png")
    assert cli.main(["predict", run_dir, str(bad), missing]) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert f"skipped {missing}: cannot be read" in err
    assert "no input could be read" in err and "Traceback" not in err
    assert len(loaded) == 1  # the inputs are read first: no model is loaded for nothing


def _hand_made_run(run_dir, model, config, labels):
    os.makedirs(run_dir)
    model.save(os.path.join(run_dir, "model.keras"))
    LabelMap(labels).save(run_dir)
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:
        f.write(config_lib.to_yaml(config))


def _png(path, seed=0, shape=(40, 30, 3)):
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    tf.io.write_file(str(path), tf.io.encode_png(pixels))
    return str(path)


def _small_image_config(recipe, **model):
    config = config_lib.defaults(recipe)
    data = {"image_size": 32, "resize": "pad"}
    model = {"base": "mobilenet_v3_small", "weights": "none", **model}
    tree = config_lib.to_dict(config)
    tree["data"].update(data)
    tree["model"].update(model)
    return config_lib.validate(config_lib.from_dict(tree))


def test_predict_svm_head_shows_a_softmax_of_scores(tmp_path, capsys):
    config = _small_image_config("feature_extraction")
    base = tfl.ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None)
    model = tfl.ImageClassifier(base, 3, head="svm")
    run_dir = str(tmp_path / "run")
    _hand_made_run(run_dir, model, config, ["cat", "dog", "fox"])
    png = _png(tmp_path / "wide.png")  # 40x30: the run's "pad" policy letterboxes it

    assert cli.main(["predict", run_dir, png, "--top-k", "2"]) == cli.EXIT_OK
    captured = capsys.readouterr()
    assert "softmax of the scores" in captured.err
    image = tfl.data.resize_image(tfl.data.decode_image(tf.io.read_file(png)), (32, 32), "pad")
    scores = model.predict(image[None], verbose=0)
    probs = softmax(scores.astype("float64"))[0]
    order = np.argsort(-probs)[:2]
    shown = "  ".join(f"{['cat', 'dog', 'fox'][i]} {probs[i]:.4f}" for i in order)
    assert captured.out == f"{png}  {shown} (softmax of scores)\n"


def test_predict_multitask_gives_one_label_per_head(tmp_path, capsys):
    config = _small_image_config("multitask")
    base = tfl.ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None)
    heads = {"digit": tfl.ClassificationHead(10), "parity": tfl.ClassificationHead(2)}
    model = tfl.MultiTaskModel(base, heads)
    run_dir = str(tmp_path / "run")
    _hand_made_run(run_dir, model, config, [str(d) for d in range(10)])
    png = _png(tmp_path / "x.png", shape=(32, 32, 1))

    assert cli.main(["predict", run_dir, png, "--json"]) == cli.EXIT_OK
    row = json.loads(capsys.readouterr().out)
    image = tfl.data.resize_image(tfl.data.decode_image(tf.io.read_file(png)), (32, 32), "pad")
    out = model.predict(image[None], verbose=0)
    assert set(row["tasks"]) == {"digit", "parity"}
    digit, parity = out["digit"][0], out["parity"][0]
    assert row["tasks"]["digit"]["label"] == str(int(np.argmax(digit)))
    assert row["tasks"]["parity"]["label"] == ["even", "odd"][int(np.argmax(parity))]
    assert row["tasks"]["parity"]["probability"] == pytest.approx(parity.max(), abs=1e-6)
    assert cli.main(["predict", run_dir, png]) == cli.EXIT_OK
    line = capsys.readouterr().out
    assert line.startswith(f"{png}  digit: ") and "  parity: " in line


def test_predict_text_lines_from_a_file_and_stdin(tmp_path, capsys, monkeypatch):
    config = config_lib.validate(config_lib.defaults("text_classification"))
    model = tfl.TextClassifier(tiny_bert(), 2, preprocessor=tiny_bert_preprocessor())
    run_dir = str(tmp_path / "run")
    _hand_made_run(run_dir, model, config, ["negative", "positive"])
    file = tmp_path / "reviews.txt"
    file.write_text(f"{TEXTS[0]}\n\n  {TEXTS[1]}  \n", encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{TEXTS[2]}\n"))

    assert cli.main(["predict", run_dir, str(file), "-", "--json"]) == cli.EXIT_OK
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == [f"{file}:1", f"{file}:3", "<stdin>:1"]
    probs = model.predict(np.array(TEXTS[:3]), verbose=0)
    for row, p in zip(rows, probs, strict=True):
        assert row["label"] == ["negative", "positive"][int(np.argmax(p))]
        assert row["probability"] == pytest.approx(p.max(), abs=1e-6)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    assert cli.main(["predict", run_dir, str(latin1)]) == cli.EXIT_FAILURE
    assert f"skipped {latin1}:1: not utf-8 text" in capsys.readouterr().err


# === Bad usage: exit 2, one message on stderr, no traceback, nothing written ===

BAD_USAGE = {
    "predict: missing run dir": (
        ["predict", "/nonexistent/run", "a.png"],
        "tfl predict: error: Received run directory '/nonexistent/run', which does not exist",
    ),
    "predict: --top-k 0": (["predict", "{run}", "a.png", "--top-k", "0"], "--top-k 0"),
    "predict: not a run": (["predict", "{tmp}", "a.png"], "is not a finished tfl run directory"),
    "cv: --folds 1": (["cv", "--folds", "1", "--output", "{out}"], "Received --folds 1"),
    "compare: --epochs 0": (["compare", "--epochs", "0", "--output", "{out}"], "--epochs 0"),
    "cv: bad config": (
        ["cv", "--train.head-epochs", "-1", "--output", "{out}"],
        "train.head_epochs",
    ),
    "compare: multitask": (
        ["compare", "--recipe", "multitask", "--output", "{out}"],
        "tfl compare is not supported for recipe 'multitask'",
    ),
    "cv: regression head": (
        ["cv", "--model.head", "regression", "--output", "{out}"],
        "tfl cv scores single-label classification",
    ),
}


@pytest.mark.parametrize("kind", BAD_USAGE)
def test_bad_usage_exits_2_with_one_message(kind, tmp_path, capsys):
    argv, message = BAD_USAGE[kind]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("seed: 0\n")
    fill = {"run": str(tmp_path / "run"), "tmp": str(tmp_path), "out": str(tmp_path / "out")}
    argv = [a.format(**fill) for a in argv]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"tfl {argv[0]}: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cv_and_compare_pool_text_strings(tmp_path, capsys, monkeypatch):
    """Text recipes: the pooled inputs are strings; compare's scratch arm is the preset's
    architecture with random weights. A tiny BERT stands in for the preset here."""
    loads = []

    def fake_backbone(preset, load_weights=True):
        loads.append(load_weights)
        return tiny_bert()

    monkeypatch.setattr(tfl.text, "load_bert_backbone", fake_backbone)
    monkeypatch.setattr(tfl.data, "text_preprocessor", lambda *a, **k: tiny_bert_preprocessor())
    out_dir = str(tmp_path / "cv")
    argv = ["cv", "--recipe", "text_classification", "--folds", "2", "--output", out_dir]
    argv += ["--data.max-per-class", "{train: 4, validation: 2}", "--batch-size", "6"]
    argv += ["--epochs-finetune", "0"]
    assert cli.main(argv) == cli.EXIT_OK
    with open(os.path.join(out_dir, "cv.json")) as f:
        result = json.load(f)
    assert result["num_examples"] == 2 * (4 + 2) and result["fold_sizes"] == [6, 6]
    assert result["labels"] == LabelMap.load(out_dir).names and len(result["labels"]) == 2
    assert loads == [True, True]  # a freshly loaded pretrained base per fold

    from tfl import studies

    args = cli.build_parser().parse_args(argv[:1] + ["--recipe", "text_classification"])
    config = config_lib.from_args(args)
    scratch = dataclasses.replace(config, model=dataclasses.replace(config.model, weights="none"))
    data = tfl.data.from_texts(TEXTS, np.arange(len(TEXTS)) % 2, splits=(1.0,))
    model = studies.build_model(scratch, data)
    assert loads[-1] is False and model.output.shape == (None, 2)


# === A run with WiSE-FT, EMA, calibration and TTA (tfl.post_training) ===


def _read(run_dir, name):
    with open(os.path.join(run_dir, name), encoding="utf-8") as f:
        return json.load(f) if name.endswith(".json") else f.read()


@pytest.mark.assets
def test_the_run_reports_which_model_it_saved_and_how(trained_run):
    run_dir = trained_run[0]
    metrics = _read(run_dir, "metrics.json")
    wise, calibration = metrics["wise"], metrics["calibration"]
    assert wise["alpha"] in [row["alpha"] for row in wise["grid"]]
    assert set(calibration) == {"temperature", "validation", "test"}
    assert metrics["tta"] == ["crops"]
    head, finetune = metrics["phases"]
    assert head["trainable_params"] == 1280 * 10 + 10  # the probe trains the head only
    assert finetune["trainable_params"] > 2_000_000 and finetune["seconds_per_step"] > 0

    report = _read(run_dir, "report.md")
    assert "## Model" in report and "| WiSE-FT α | validation loss |" in report
    assert f"blended with the probe at α = {wise['alpha']:.2f} (WiSE-FT)" in report
    assert "the moving average of the weights (momentum 0.5)" in report
    assert f"T = {calibration['temperature']:.3f}" in report and "| test |" in report
    for png in ("reliability_calibrated.png", "reliability_uncalibrated.png"):
        assert os.path.getsize(os.path.join(run_dir, png)) > 0 and f"({png})" in report

    # model.keras carries the temperature and evaluates (with the run's TTA) as the run did.
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    assert model.head.temperature == pytest.approx(calibration["temperature"])
    evaluation = _read(run_dir, "evaluation.json")
    assert evaluation["ece"] == pytest.approx(calibration["test"]["after"]["ece"])
    assert cli.main(["evaluate", run_dir]) == cli.EXIT_OK
    again = _read(run_dir, "evaluation_test.json")
    assert again["accuracy"] == evaluation["accuracy"]
    assert again["ece"] == pytest.approx(evaluation["ece"], abs=1e-5)


@pytest.mark.assets
def test_predict_with_tta_averages_the_crops(trained_run, capsys):
    from tfl.predict import read_image
    from tfl.tta import with_tta

    run_dir, pngs, _ = trained_run
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    expected = with_tta(model, ["crops"]).predict(read_image(pngs[0], 32)[None], verbose=0)[0]
    # --tta alone: the run's evaluate.tta (crops).
    assert cli.main(["predict", run_dir, pngs[0], "--tta", "--json", "--top-k", "10"]) == 0
    row = json.loads(capsys.readouterr().out)
    got = {p["label"]: p["probability"] for p in row["top_k"]}
    np.testing.assert_allclose([got[str(d)] for d in range(10)], expected, atol=2e-6)
