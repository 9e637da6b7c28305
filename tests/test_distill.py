"""`tfl distill` (tfl.distill, tfl.backbones.shallow): students, the loss, the run directory."""

import json
import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from helpers import TEXT_LABELS, TEXTS, images, tiny_bert, tiny_bert_preprocessor

import tfl
from tfl import builders, cli
from tfl import config as config_lib
from tfl.backbones.layer_groups import cut_at_group
from tfl.backbones.shallow import shallow_bert, shallow_copy
from tfl.data import BadInputReport, DataSplits, LabelMap
from tfl.distill import losses
from tfl.distill.run import Distillation
from tfl.distill.settings import StudentSpec
from tfl.distill.students import build_student

TINY_DATA = {
    "image_size": 32,
    "max_per_class": {"train": 3, "validation": 2, "test": 2},
    "batch_size": 10,
}


# === Students start from the teacher's layers ===


def test_a_cut_cnn_student_is_the_teachers_base_up_to_the_cut():
    teacher = tfl.ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None)
    student = shallow_copy(teacher, "stage2")
    assert list(student.block_groups()) == ["stem", "stage1", "stage2"]
    weights = {layer.name: layer.get_weights() for layer in teacher.base.layers}
    copied = [layer for layer in student.base.layers if layer.weights]
    assert len(copied) == 60  # every layer with weights of stem, stage1 and stage2 ...
    for layer in copied:  # ... holds the teacher's values
        for mine, theirs in zip(layer.get_weights(), weights[layer.name], strict=True):
            np.testing.assert_array_equal(mine, theirs)
    # Its features are the teacher's activations where it was cut, pooled.
    x = images(2)
    cut = cut_at_group(teacher.base, "mobilenet_v3_small", "stage2")
    expected = np.mean(cut(teacher.get_layer("preprocessing")(x)), axis=(1, 2))
    np.testing.assert_allclose(student(x), expected, atol=1e-5)


def test_a_shallow_bert_keeps_evenly_spaced_teacher_layers():
    teacher = keras_hub.models.BertBackbone(
        10, num_layers=4, num_heads=2, hidden_dim=4, intermediate_dim=8, max_sequence_length=8
    )
    student = shallow_bert(teacher, 2)  # layers 0 and 3 (first and last), as DistilBERT
    assert student.num_layers == 2
    for mine, theirs in [
        ("transformer_layer_0", "transformer_layer_0"),
        ("transformer_layer_1", "transformer_layer_3"),
        ("token_embedding", "token_embedding"),
        ("embeddings_layer_norm", "embeddings_layer_norm"),
        ("pooled_dense", "pooled_dense"),
    ]:
        for a, b in zip(
            student.get_layer(mine).get_weights(),
            teacher.get_layer(theirs).get_weights(),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)


def test_a_shallow_text_student_reads_the_teachers_tokens_and_starts_from_its_head():
    teacher = tfl.TextClassifier(tiny_bert(), 2, preprocessor=tiny_bert_preprocessor())
    config = config_lib.validate(config_lib.defaults("text_classification"))
    data = DataSplits(None, None, None, LabelMap(["neg", "pos"]), BadInputReport())
    student = build_student(StudentSpec("shallow", 1), teacher, config, data)
    assert student.backbone.num_layers == 1 and student.preprocessor is teacher.preprocessor
    for a, b in zip(student.head.get_weights(), teacher.head.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # same width: the teacher's head is the start
    # The Distiller feeds both the same token ids (a dict of inputs); the teacher teaches.
    student.head.set_weights([np.zeros_like(w) for w in student.head.get_weights()])
    teacher.head.output_dense.bias.assign([2.0, -2.0])
    distiller = losses.make_distiller(teacher, student, temperature=2.0, alpha=0.5)
    losses.compile_distiller(distiller, 1e-2)
    tokens = teacher.preprocessor(TEXTS)
    loss = float(distiller.compute_loss(tokens, TEXT_LABELS, distiller(tokens)))
    assert np.isfinite(loss) and float(distiller.distillation_loss_tracker.result()) > 0


# === The loss ===


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_the_loss_is_hintons_on_temperature_softened_teacher_outputs():
    def tiny(seed):
        keras.utils.set_random_seed(seed)
        x = keras.Input((5,))
        return keras.Model(x, tfl.ClassificationHead(4)(x))

    teacher, student = tiny(1), tiny(2)
    t, alpha = 3.0, 0.3
    distiller = losses.make_distiller(teacher, student, temperature=t, alpha=alpha)
    losses.compile_distiller(distiller, 1e-3)
    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32") * 3
    y = np.array([0, 1, 2, 3, 0, 1])
    got = float(distiller.compute_loss(x, y, distiller(x)))

    p_t, p_s = np.asarray(teacher(x), np.float64), np.asarray(student(x), np.float64)
    soft_t, soft_s = _softmax(np.log(p_t) / t), _softmax(np.log(p_s) / t)
    kl = np.mean(np.sum(soft_t * np.log(soft_t / soft_s), axis=1))
    ce = np.mean(-np.log(p_s[np.arange(6), y]))
    assert soft_t.max() < p_t.max()  # the teacher's outputs really are softened
    np.testing.assert_allclose(got, alpha * ce + (1 - alpha) * t**2 * kl, rtol=1e-4)
    # alpha = 1: the labels alone (the no-teacher baseline).
    labels_only = losses.make_distiller(teacher, student, temperature=t, alpha=1.0)
    losses.compile_distiller(labels_only, 1e-3)
    np.testing.assert_allclose(float(labels_only.compute_loss(x, y, labels_only(x))), ce, rtol=1e-5)


# === tfl distill end to end (a tiny image teacher) ===


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A finished run directory (untrained: the plumbing is what is tested)."""
    run_dir = str(tmp_path_factory.mktemp("teacher") / "run")
    tree = config_lib.to_dict(config_lib.defaults("image_classification"))
    tree["data"].update(TINY_DATA)
    tree["model"].update(base="mobilenet", weights="none")  # MobileNet v1: fast to trace
    tree["output"] = run_dir
    config = config_lib.validate(config_lib.from_dict(tree))
    os.makedirs(run_dir)
    data = builders.load_data(config, run_dir=run_dir)
    builders.build_model(config, data).save(os.path.join(run_dir, "model.keras"))
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:
        f.write(config_lib.to_yaml(config))
    return run_dir


class _Kill(keras.callbacks.Callback):
    """Stops the process's fit after an epoch (after its backup), as a kill would."""

    def __init__(self, after_epoch, seen):
        super().__init__()
        self.after_epoch, self.seen = after_epoch, seen

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.setdefault("began", []).append(epoch)
        self.seen.setdefault("weights", []).append(self.model.student.get_weights())

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.after_epoch:
            self.seen["killed"] = self.model.student.get_weights()
            raise RuntimeError("killed")


@pytest.fixture(scope="module")
def distilled(teacher_run, tmp_path_factory):
    """`tfl distill` killed after its first epoch, then run again to the end (resumed)."""
    out = str(tmp_path_factory.mktemp("student") / "run")
    argv = ["distill", teacher_run, "--student", "shallow:stage2", "--epochs", "2"]
    argv += ["--output", out]
    original = Distillation._callbacks
    first, second = {}, {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Distillation, "_callbacks", lambda s, v: [*original(s, v), _Kill(0, first)])
        assert cli.main([*argv, "--no-compare"]) == cli.EXIT_FAILURE
        patch.setattr(Distillation, "_callbacks", lambda s, v: [*original(s, v), _Kill(9, second)])
        assert cli.main(argv) == cli.EXIT_OK
    return out, first, second


def test_a_killed_distillation_resumes_where_it_stopped(distilled):
    out, first, second = distilled
    assert first["began"] == [0]
    assert second["began"] == [1]  # the restarted process skips the epoch it finished
    for restored, saved in zip(second["weights"][0], first["killed"], strict=True):
        np.testing.assert_array_equal(restored, saved)  # from the backup, not a fresh start
    with open(os.path.join(out, "history.csv")) as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["0", "1"]
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f)["history"]["epoch"] == [0, 1]


def test_the_student_run_directory_works_with_evaluate_predict_and_export(
    distilled, teacher_run, tmp_path, capsys
):
    """evaluate and predict through the CLI; export through `tfl.export.export_run` (what
    `tfl export RUN_DIR --format tflite --quantize int8` runs), which tfl distill's
    comparison called for the student and the teacher."""
    out, _, _ = distilled
    for name in ("config.yaml", "labels.json", "model.keras", "best.keras", "history.png"):
        assert os.path.exists(os.path.join(out, name)), name
    with open(os.path.join(out, "distill.json")) as f:
        record = json.load(f)
    assert record["student"] == "shallow:stage2" and record["settings"]["alpha"] == 0.5
    with open(os.path.join(out, "report.md")) as f:
        assert "| `distill.student` | shallow:stage2 |" in f.read()
    student = keras.saving.load_model(os.path.join(out, "model.keras"))
    assert student.backbone.cut == "stage2"
    teacher = keras.saving.load_model(os.path.join(teacher_run, "model.keras"))
    assert student.count_params() < teacher.count_params()
    with open(os.path.join(out, "evaluation.json")) as f:
        accuracy = json.load(f)["accuracy"]

    assert cli.main(["evaluate", out]) == cli.EXIT_OK
    capsys.readouterr()
    with open(os.path.join(out, "evaluation_test.json")) as f:
        assert json.load(f)["accuracy"] == pytest.approx(accuracy)
    png = str(tmp_path / "digit.png")
    tf.io.write_file(png, tf.io.encode_png(images(1)[0].astype("uint8")))
    assert cli.main(["predict", out, png]) == cli.EXIT_OK
    assert capsys.readouterr().out.startswith(f"{png}  ")
    with open(os.path.join(out, "comparison.json")) as f:
        comparison = json.load(f)
    assert comparison["student"]["int8_bytes"] < comparison["teacher"]["int8_bytes"]
    assert comparison["student"]["int8_bytes"] == os.path.getsize(
        os.path.join(out, "export", "model_int8.tflite")
    )
    for row in comparison.values():
        if isinstance(row, dict) and "role" in row:
            assert row["batch1_ms_median"] > 0 and row["throughput_per_s"] > 0
            assert row["parity_passed"] is not None
    with open(os.path.join(out, "export", "export.json")) as f:
        assert json.load(f)["parity"]["tflite_int8"]["quality"]  # checked against Keras
    with open(os.path.join(out, "comparison.md")) as f:
        assert "| int8 TFLite size |" in f.read()


def test_resuming_with_other_settings_is_refused(distilled, teacher_run, capsys):
    out, _, _ = distilled
    argv = ["distill", teacher_run, "--student", "shallow:stage2", "--epochs", "2"]
    assert cli.main([*argv, "--alpha", "0.9", "--output", out]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "alpha differ" in err and "cannot be resumed" in err


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--student", "shallow:stage7"], ["'shallow:stage7'", "shallow:stage3, shallow:stage2"]),
        (["--student", "shallow:3"], ["block groups stem, stage1", "shallow:stage3"]),
        (["--student", "mobilenet_v9"], ["'mobilenet_v9'", "mobilenet_v2"]),
        (["--student", "inception_v3"], ["'inception_v3'", "at least 75"]),
        (["--student", "resnet50", "--student-weights", "nope.h5"], ["'nope.h5'", "none"]),
        (["--student-weights", "none"], ["shallow student", "Drop --student-weights"]),
        (["--temperature", "0"], ["--temperature: received 0", "--temperature 4"]),
        (["--alpha", "1.5"], ["--alpha: received 1.5", "[0, 1]"]),
        (["--budget-mb", "1", "--student", "shallow:stage2"], ["--budget-mb", "--student shallow"]),
    ],
)
def test_bad_settings_exit_2_before_any_work(teacher_run, tmp_path, capsys, flags, words):
    out = str(tmp_path / "never")
    assert cli.main(["distill", teacher_run, *flags, "--output", out]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tfl distill: error: ")
    for word in words:
        assert word in err
    assert not os.path.exists(out)  # nothing was written


def test_a_directory_that_is_not_a_finished_run_exits_2(tmp_path, capsys):
    assert cli.main(["distill", str(tmp_path / "missing")]) == cli.EXIT_USAGE
    assert "not a finished tfl run directory" in capsys.readouterr().err
