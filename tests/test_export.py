"""tfl.export and `tfl export`: every format reloads without tfl and computes what Keras does."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import TEXT_LABELS, TEXTS, images, tiny_bert, tiny_bert_preprocessor, tiny_image_base

import tfl
from tfl import cli
from tfl.export import ExportError, export_model, save_keras
from tfl.heads import ClassificationHead, RegressionHead, SVMHead
from tfl.predict import read_image

TINY = [
    "--image-size", "32", "--data.max-per-class", "{train: 4, validation: 2, test: 2}",
    "--epochs-head", "1", "--epochs-finetune", "1", "--batch-size", "10",
]  # fmt: skip


def _sharpen(model, scale=8.0):
    """Scale the heads' output kernels: peaked probabilities make parity a stricter test
    (a random-init head gives near-uniform ones, where any export looks right)."""
    heads = getattr(model, "heads", None)
    for head in heads.values() if isinstance(heads, dict) else [model.head]:
        kernel = head.output_dense.kernel
        kernel.assign(kernel * scale)


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory):
    """A TINY `tfl train` run (offline MobileNetV2, MNIST-5k digits) exported in every format."""
    root = tmp_path_factory.mktemp("export")
    run_dir = str(root / "run")
    assert cli.main(["train", *TINY, "--output", run_dir]) == cli.EXIT_OK
    code = cli.main(["export", run_dir])
    with open(os.path.join(run_dir, "export", "export.json")) as f:
        report = json.load(f)
    return run_dir, code, report


@pytest.mark.assets
def test_tfl_export_writes_every_format_and_each_matches_keras(exported_run, capsys):
    run_dir, code, report = exported_run
    assert code == cli.EXIT_OK
    out = os.path.join(run_dir, "export")
    sizes = {k: v["bytes"] for k, v in report["files"].items()}
    assert set(sizes) == {
        "keras",
        "saved_model",
        "tflite_float32",
        "tflite_float16",
        "tflite_dynamic_int8",
        "tflite_int8",
    }
    # Half-precision and int8 weights shrink the file about 2x and 4x.
    assert sizes["tflite_float16"] < 0.6 * sizes["tflite_float32"]
    assert sizes["tflite_int8"] < 0.35 * sizes["tflite_float32"]
    assert sizes["tflite_dynamic_int8"] < 0.35 * sizes["tflite_float32"]
    # Each weight stored once in the SavedModel (keras-team/keras#23553 worked around).
    assert sizes["saved_model"] < 1.4 * sizes["tflite_float32"]
    # The exported .keras has no optimizer state: far smaller than the run's model.keras.
    assert sizes["keras"] < 0.6 * os.path.getsize(os.path.join(run_dir, "model.keras"))
    assert report["passed"] is True and report["failures"] == []
    # The run was calibrated (evaluate.calibrate): every file above matched the Keras model
    # with its temperature, so each outputs the calibrated probabilities.
    keras_model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    with open(os.path.join(run_dir, "metrics.json")) as f:
        temperature = json.load(f)["calibration"]["temperature"]
    assert keras_model.head.temperature == pytest.approx(temperature) != 1.0
    parity = report["parity"]
    for name in ("keras", "saved_model/serving_default", "saved_model/serving_preprocessed"):
        assert parity[name]["passed"] and parity[name]["max_abs_diff"] <= parity[name]["limit"]
    assert parity["keras"]["max_abs_diff"] == 0  # the same kernels in the same process
    assert parity["tflite_float32"]["passed"]
    for q in ("float16", "dynamic_int8", "int8"):
        quality = parity[f"tflite_{q}"]["quality"]["probabilities"]
        # At most 0.03, or one changed answer of the check's examples.
        allowed = max(0.03, 1 / quality["examples"])
        assert quality["keras_accuracy"] - quality["accuracy"] <= allowed + 1e-9
    assert report["examples"] == 20  # the run's validation split: 2 digits x 10 classes
    # The checks ran in processes that never imported tfl (the TFLite one not even TF).
    assert report["worker_saved_model"]["modules"]["tfl"] is False
    assert report["worker_saved_model"]["modules"]["keras_hub"] is False
    assert report["worker_tflite"]["modules"] == {
        "tfl": False,
        "keras": False,
        "keras_hub": False,
        "tensorflow": False,
    }
    assert report["worker_tflite"]["runtime"] == "ai_edge_litert"
    with open(os.path.join(out, "labels.txt")) as f:
        assert f.read().split() == [str(d) for d in range(10)]
    with open(os.path.join(out, "signatures.txt")) as f:
        signatures = f.read()
    assert "signature_def['serving_default']" in signatures
    assert "signature_def['serving_preprocessed']" in signatures
    with open(os.path.join(out, "export.md")) as f:
        md = f.read()
    assert "| tflite_int8 |" in md and "## Bad inputs" in md


@pytest.mark.assets
def test_saved_model_serves_encoded_images_of_any_size_like_tfl_predict(exported_run, tmp_path):
    run_dir, _, _ = exported_run
    serve = tf.saved_model.load(os.path.join(run_dir, "export", "saved_model"))
    signature = serve.signatures["serving_default"]
    rng = np.random.default_rng(0)
    files = {
        "wide.jpg": tf.io.encode_jpeg(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)),
        "grey.png": tf.io.encode_png(rng.integers(0, 255, (40, 40, 1), dtype=np.uint8)),
        "tall.png": tf.io.encode_png(rng.integers(0, 255, (70, 20, 3), dtype=np.uint8)),
    }
    paths = []
    for name, contents in files.items():
        paths.append(str(tmp_path / name))
        tf.io.write_file(paths[-1], contents)
    out = signature(images=tf.stack(list(files.values())))
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    expected = model.predict(np.stack([read_image(p, 32) for p in paths]), verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert out["top_k_indices"].shape == (3, 5)
    labels = [v.decode() for v in out["top_k_labels"].numpy()[:, 0]]
    assert labels == [str(i) for i in expected.argmax(-1)]
    # Bad input is an error for that request only; the loaded model keeps serving.
    with pytest.raises(tf.errors.InvalidArgumentError, match="an image is empty"):
        signature(images=tf.constant([b""]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        signature(images=tf.constant([b"not an image"]))
    assert signature(images=tf.stack(list(files.values())[:1]))["probabilities"].shape == (1, 10)


@pytest.mark.assets
def test_export_report_lists_refused_bad_inputs(exported_run):
    _, _, report = exported_run
    messages = {p["name"]: p["message"] for p in report["probes"]}
    assert all(p["error"] for p in report["probes"])
    assert "empty (0 bytes)" in messages["empty bytes"]
    assert "Unknown image file format" in messages["not an image"]
    assert "string" in messages["floats instead of strings"]
    assert report["worker_saved_model"]["serves_after_probes"] is True


@pytest.mark.assets
def test_an_export_with_a_wrong_preprocessing_still_fails(exported_run, tmp_path, monkeypatch):
    """The run's real MobileNetV2 exported with Keras' x / 127.5 - 1 instead of torchvision's
    mean / std in the graph: the check compares it with the right Keras model and fails."""
    from tfl.export import exporting

    run_dir, _, _ = exported_run
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"), safe_mode=True)
    broken = model.__class__.from_config(model.get_config())
    broken.set_weights(model.get_weights())
    broken.backbone.get_layer("preprocessing").mode = "tf"
    write = exporting.export_saved_model
    monkeypatch.setattr(
        exporting, "export_saved_model", lambda _, *args, **kw: write(broken, *args, **kw)
    )
    with pytest.raises(ExportError, match=r"serving_preprocessed: max \|difference\|.* > limit"):
        export_model(model, str(tmp_path), formats=["saved_model"], examples=images(16))
    with open(tmp_path / "export.json") as f:
        parity = json.load(f)["parity"]["saved_model/serving_preprocessed"]
    entry = parity["outputs"]["probabilities"]
    # Far beyond float rounding (a float32 TFLite file stays within 1e-5, 1% of the limit).
    assert entry["max_abs_diff"] > 20 * entry["limit"]


@pytest.mark.assets
def test_int8_tflite_runs_any_batch_with_litert(exported_run):
    from ai_edge_litert.interpreter import Interpreter

    run_dir, _, _ = exported_run
    path = os.path.join(run_dir, "export", "model_int8.tflite")
    runner = Interpreter(model_path=path).get_signature_runner("serving_preprocessed")
    for n in (1, 3):
        out = runner(images=images(n, seed=1).astype("float32"))
        assert out["probabilities"].shape == (n, 10)
        np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=0.05)


def test_float32_limits_pass_rounding_and_fail_real_errors():
    # A real MobileNetV2 folder run (96 px, 10 digits) failed export: TFLite float32 was
    # 1.04e-05 from Keras (the old fixed limit: 1e-5) with top-1 agreement 1.0. The limits
    # come from benchmarks/export_parity.py: float32 rounding in other kernels stays far
    # below them; a wrong preprocessing or padding moves outputs far above.
    probabilities = np.random.default_rng(0).dirichlet(np.ones(10) * 0.1, size=32)
    keras_out = {"probabilities": probabilities.astype("float32")}
    for kind in ("saved_model", "float32"):
        tolerance = tfl.export.TOLERANCES[kind]
        rounded = {"probabilities": keras_out["probabilities"] + 1.04e-5}
        assert tolerance.compare(rounded, keras_out)["probabilities"]["passed"]
        wrong = {"probabilities": keras_out["probabilities"][:, ::-1]}
        assert not tolerance.compare(wrong, keras_out)["probabilities"]["passed"]
    # Unbounded outputs (SVM scores, regression values) scale their limit with their size:
    # the real MobileNetV2's SVM scores (up to 21.7) were 2.8e-5 off in TFLite float32.
    tolerance = tfl.export.TOLERANCES["float32"]
    scores = {"scores": np.array([[-21.7, 3.0], [12.0, -4.0]])}
    assert tolerance.compare({"scores": scores["scores"] + 2.8e-5}, scores)["scores"]["passed"]
    small = {"values": scores["scores"] / 1000}
    assert not tolerance.compare({"values": small["values"] + 2.8e-5}, small)["values"]["passed"]


def test_parity_failure_raises_names_the_artefact_and_keeps_the_report(tmp_path, monkeypatch):
    model = tfl.ImageClassifier(tiny_image_base("mobilenet"), 3)
    strict = tfl.export.Tolerance(probabilities=-1.0, rtol=0.0, atol=-1.0)  # all fail
    monkeypatch.setitem(tfl.export.TOLERANCES, "saved_model", strict)
    with pytest.raises(ExportError, match=r"saved_model/serving_default: max \|difference\|"):
        export_model(model, str(tmp_path), formats=["saved_model"], examples=images(4))
    with open(tmp_path / "export.json") as f:
        report = json.load(f)
    assert report["passed"] is False and len(report["failures"]) == 2
    assert os.path.isdir(tmp_path / "saved_model")  # nothing deleted on failure
    assert "**no**" in (tmp_path / "export.md").read_text()


def test_text_classifier_exports_tokenizer_in_the_graph(tmp_path):
    import tensorflow_text  # noqa: F401  (what a server does before loading)

    model = tfl.TextClassifier(tiny_bert(), 2, preprocessor=tiny_bert_preprocessor())
    _sharpen(model)
    report = export_model(
        model,
        str(tmp_path),
        formats=["saved_model", "tflite"],
        quantizations=["float32", "dynamic_int8"],
        labels=["neg", "pos"],
        examples=TEXTS,
        targets=TEXT_LABELS,
    )
    assert report["passed"] and "tensorflow_text" in report["requires"]
    assert report["inputs"] == {
        "serving_default": ["texts"],
        "serving_preprocessed": ["token_ids", "segment_ids", "padding_mask"],
    }
    assert report["parity"]["saved_model/serving_default"]["max_abs_diff"] <= 1e-5
    assert report["parity"]["tflite_float32"]["max_abs_diff"] <= 1e-5
    serve = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    out = serve(texts=tf.constant(["good fun", "dull movie", ""]))
    expected = model.predict(np.array(["good fun", "dull movie", ""]), verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert out["top_k_labels"].numpy()[0, 0].decode() in ("neg", "pos")


def test_fusion_classifier_export_matches_keras(tmp_path):
    bases = [tiny_image_base("mobilenet"), tiny_image_base("mobilenet")]
    model = tfl.FusionClassifier(bases, 4)
    _sharpen(model)
    report = export_model(
        model, str(tmp_path), formats=["saved_model", "tflite"], quantizations=["float32"],
        examples=images(6), targets=np.arange(6) % 4,
    )  # fmt: skip
    assert report["passed"]
    assert report["parity"]["saved_model/serving_default"]["max_abs_diff"] <= 1e-5
    assert report["parity"]["tflite_float32"]["max_abs_diff"] <= 1e-5


def test_multitask_model_exports_one_output_per_head(tmp_path):
    heads = {"digit": ClassificationHead(3), "size": RegressionHead(1), "margin": SVMHead(2)}
    model = tfl.MultiTaskModel(tiny_image_base("mobilenet"), heads)
    _sharpen(model)
    labels = {"digit": ["a", "b", "c"], "margin": ["no", "yes"]}
    targets = {"digit": np.arange(6) % 3, "size": np.linspace(0, 1, 6), "margin": np.arange(6) % 2}
    report = export_model(
        model, str(tmp_path), formats=["saved_model", "tflite"],
        quantizations=["float32", "dynamic_int8"], labels=labels, examples=images(6),
        targets=targets, max_accuracy_drop=0.5,
    )  # fmt: skip
    assert report["passed"]
    serve = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    png = tf.io.encode_png(images(1)[0].astype("uint8"))
    out = serve(images=tf.stack([png]))
    assert {"digit_probabilities", "size_values", "margin_scores", "margin_probabilities"} <= set(
        out
    )
    assert out["digit_top_k_labels"].numpy()[0, 0].decode() in labels["digit"]
    assert (tmp_path / "labels_margin.txt").read_text().split() == ["no", "yes"]
    assert report["parity"]["tflite_float32"]["max_abs_diff"] <= 1e-5


def test_save_keras_drops_optimizer_state_and_still_trains(tmp_path):
    model = tfl.ImageClassifier(tiny_image_base("mobilenet"), 3)
    model.compile()
    x, y = images(8), np.arange(8) % 3
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "full.keras")
    save_keras(model, str(tmp_path / "slim.keras"))
    assert os.path.getsize(tmp_path / "slim.keras") < 0.6 * os.path.getsize(tmp_path / "full.keras")
    assert model.optimizer.iterations.numpy() == 1  # the model itself is untouched
    restored = keras.saving.load_model(tmp_path / "slim.keras", safe_mode=True)
    np.testing.assert_allclose(restored(x), model(x), atol=1e-6)
    restored.fit(x, y, epochs=1, verbose=0)  # reloads ready to train again


def test_bad_export_arguments_name_the_value(tmp_path):
    model = tfl.ImageClassifier(tiny_image_base("mobilenet"), 3)
    with pytest.raises(ValueError, match=r"formats=\['onnx'\]"):
        export_model(model, str(tmp_path), formats=["onnx"], examples=images(2))
    with pytest.raises(ValueError, match="without examples"):
        export_model(model, str(tmp_path), formats=["saved_model"])
    with pytest.raises(ValueError, match="Received 2 labels for a model with 3 outputs"):
        export_model(model, str(tmp_path), labels=["a", "b"], check=False)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "{tmp}/missing"], "missing"),
        (["export", "{run}", "--examples", "0"], "examples=0"),
        (["export", "{run}", "--max-accuracy-drop", "1.5"], "max_accuracy_drop=1.5"),
    ],
)
@pytest.mark.assets
def test_tfl_export_bad_usage_exits_2(argv, message, exported_run, tmp_path, capsys):
    run_dir, _, _ = exported_run
    argv = [a.format(tmp=tmp_path, run=run_dir) for a in argv]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("tfl export: error:") and message in err


def test_quantised_accuracy_allows_one_changed_answer_and_no_more():
    """On 20 examples one flip is 0.05 > 0.03: it passes; two flips of 20 do not."""
    from tfl.export.parity import _judge
    from tfl.export.signatures import Output

    labels = np.arange(20) % 2
    ref = {"probabilities": np.eye(2, dtype=np.float32)[labels]}
    outputs = [Output(head=None, kind="probabilities", labels=["a", "b"])]

    def judged(flips):
        got = ref["probabilities"].copy()
        got[:flips] = got[:flips, ::-1]
        return _judge("tflite_int8", "int8", {"probabilities": got}, ref, outputs,
                      {None: labels}, max_accuracy_drop=0.03)  # fmt: skip

    assert judged(1)["passed"]
    failed = judged(2)
    assert not failed["passed"]
    assert "0.1000 > max_accuracy_drop 0.03" in failed["failures"][0]
