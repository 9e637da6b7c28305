import csv
import json
import os
import re

import keras
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf
from helpers import images, tiny_image_base
from sklearn import metrics as skm

import tfl
from tfl.data.splits import LabelMap
from tfl.evaluate import (
    classification_metrics,
    evaluate_model,
    plot_confusion,
    plot_history,
    plot_reliability,
    save_metrics,
    write_report,
)
from tfl.studies import (
    cross_validate,
    stratified_folds,
    transfer_verdict,
)


def _random_problem(n=80, k=4, seed=0, never_predicted=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class occurs
    probs = rng.dirichlet(np.ones(k), size=n)
    if never_predicted is not None:  # this column is never the argmax
        probs[:, never_predicted] *= 0.01
        probs /= probs.sum(axis=1, keepdims=True)
    return y, probs


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _png(path):
    assert os.path.getsize(path) > 0
    return matplotlib.image.imread(path)  # raises if it is not a readable PNG


# --- classification_metrics -------------------------------------------------------------------


@pytest.mark.parametrize("never_predicted", [None, 2])
def test_metrics_match_sklearn(never_predicted):
    y, probs = _random_problem(never_predicted=never_predicted)
    k = probs.shape[1]
    m = classification_metrics(y, probs, labels=["a", "b", "c", "d"], top_k=(2, 3))
    pred = probs.argmax(axis=1)
    labels = list(range(k))

    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    got = m["per_class"]
    assert list(got) == ["a", "b", "c", "d"]
    np.testing.assert_allclose([got[n]["precision"] for n in got], p)
    np.testing.assert_allclose([got[n]["recall"] for n in got], r)
    np.testing.assert_allclose([got[n]["f1"] for n in got], f)
    assert [got[n]["support"] for n in got] == s.tolist()
    for average in ("macro", "weighted"):
        expected = skm.precision_recall_fscore_support(
            y, pred, labels=labels, average=average, zero_division=0
        )[:3]
        got_avg = m[f"{average}_avg"]
        np.testing.assert_allclose([got_avg[k] for k in ("precision", "recall", "f1")], expected)
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=labels).tolist()
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, probs, labels=labels))
    for top in (2, 3):
        expected = skm.top_k_accuracy_score(y, probs, k=top, labels=labels)
        assert m[f"top_{top}_accuracy"] == pytest.approx(expected)
    if never_predicted is not None:
        assert got["c"]["precision"] == 0.0 and got["c"]["support"] > 0
    json.dumps(m)  # JSON-friendly throughout


def test_ece_and_reliability_table_by_hand():
    # confidence (max prob), correct?: 0.95 yes, 0.95 no, 0.55 yes, 0.70 no, 0.62 no
    probs = np.array([[0.95, 0.05], [0.05, 0.95], [0.55, 0.45], [0.3, 0.7], [0.62, 0.38]])
    y = np.array([0, 0, 0, 0, 1])
    m = classification_metrics(y, probs)
    # 15 bins of width 1/15: 0.95 -> (14/15, 1], 0.55 -> (8/15, 9/15], 0.62 -> (9/15, 10/15],
    # 0.70 -> (10/15, 11/15]. ECE = 2/5·|0.5 − 0.95| + 1/5·|1 − 0.55| + 1/5·0.62 + 1/5·0.70
    assert m["ece"] == pytest.approx(0.18 + 0.09 + 0.124 + 0.14)
    table = m["reliability"]
    assert len(table) == 15
    assert {i: row["count"] for i, row in enumerate(table) if row["count"]} == {
        8: 1,
        9: 1,
        10: 1,
        14: 2,
    }
    assert table[14]["accuracy"] == 0.5 and table[14]["confidence"] == pytest.approx(0.95)
    assert table[0]["accuracy"] is None and table[0]["lower"] == 0.0
    assert table[14]["upper"] == 1.0


def test_top_k_only_for_k_below_the_number_of_classes():
    probs = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    y = np.array([0, 1, 2, 0])
    m = classification_metrics(y, probs, top_k=(1, 2, 5))
    assert m["top_1_accuracy"] == m["accuracy"] == 0.25
    assert m["top_2_accuracy"] == 0.5  # rows 0 and 1 (true class among the two largest)
    assert "top_5_accuracy" not in m  # 3 classes: top-5 would always be 1


def test_soft_and_one_hot_labels_count_as_their_argmax():
    y, probs = _random_problem(n=30, k=3, seed=1)
    soft = np.full((30, 3), 0.2)
    soft[np.arange(30), y] = 0.6
    expected = classification_metrics(y, probs)
    assert classification_metrics(soft, probs) == expected
    assert classification_metrics(np.eye(3)[y], probs) == expected
    assert classification_metrics(y[:, None], probs) == expected


def test_label_map_names():
    labels = LabelMap(["cat", "dog"])
    m = classification_metrics([0, 1], np.array([[0.8, 0.2], [0.4, 0.6]]), labels=labels)
    assert m["names"] == ["cat", "dog"] and list(m["per_class"]) == ["cat", "dog"]


@pytest.mark.parametrize(
    "y, probs, kwargs, message",
    [
        ([0, 1], np.array([[0.5, 0.5]]), {}, "Received 2 labels and 1 rows of probs"),
        ([0, 3], np.array([[0.5, 0.5], [0.5, 0.5]]), {}, "class index 3"),
        ([0, 1], np.array([[2.0, -1.0], [0.5, 0.5]]), {}, "apply a softmax first"),
        ([0, 1], np.array([[0.2, 0.2], [0.5, 0.5]]), {}, "row sums in [0.4, 1]"),
        ([0], np.array([0.5]), {}, "expected (N, K) class probabilities"),
        ([0, 1], np.eye(2), {"labels": ["a"]}, "Received 1 label names for 2 classes"),
        ([0, 1], np.eye(2), {"top_k": (0,)}, "Received top_k=(0,)"),
        ([0.5, 1], np.eye(2), {}, "non-integer values"),
    ],
)
def test_metric_errors_name_the_bad_value(y, probs, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        classification_metrics(y, probs, **kwargs)


# --- evaluate_model ---------------------------------------------------------------------------


def _oracle(num_classes=3):
    """A model whose input is the one-hot label: its prediction is the label itself."""
    dense = keras.layers.Dense(num_classes, activation="softmax", use_bias=False)
    model = keras.Sequential([keras.Input((num_classes,)), dense])
    dense.kernel.assign(10.0 * np.eye(num_classes))
    return model


def test_evaluate_model_pairs_each_prediction_with_its_label_in_one_pass():
    y = np.arange(30) % 3
    x = np.eye(3, dtype="float32")[y]
    # Reshuffled on every pass: predict() then a second pass for labels would mismatch them.
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(30, seed=1).batch(7)
    m = evaluate_model(_oracle(), ds, labels=["r", "g", "b"], top_k=(2,))
    assert m["accuracy"] == 1.0 and m["num_examples"] == 30
    assert m["confusion_matrix"] == [[10, 0, 0], [0, 10, 0], [0, 0, 10]]
    assert m["outputs"] == "probabilities" and m["top_2_accuracy"] == 1.0


def test_evaluate_model_softmaxes_svm_scores():
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3, head="svm")
    x, y = images(6), np.array([0, 1, 2, 0, 1, 2])
    scores = model.predict(x, verbose=0).astype("float64")
    m = evaluate_model(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
    assert m["outputs"] == "scores"
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(6), y])), rel=1e-5)
    assert m["accuracy"] == pytest.approx(np.mean(scores.argmax(axis=1) == y))


def test_evaluate_model_errors():
    with pytest.raises(ValueError, match="infinite dataset"):
        evaluate_model(
            _oracle(), tf.data.Dataset.from_tensor_slices((np.eye(3), [0, 1, 2])).repeat()
        )
    x_only = tf.data.Dataset.from_tensor_slices(np.eye(3, dtype="float32")).batch(2)
    with pytest.raises(ValueError, match=r"not \(x, y\)"):
        evaluate_model(_oracle(), x_only)
    multilabel = tfl.ImageClassifier(tiny_image_base(), num_classes=3, head="multilabel")
    with pytest.raises(ValueError, match="MultiLabelHead; the tfl.evaluate metrics are for"):
        evaluate_model(multilabel, tf.data.Dataset.from_tensor_slices((images(2), [0, 1])).batch(2))


# --- plots ------------------------------------------------------------------------------------


def _write_history_csv(path):
    rows = [
        # epoch, accuracy, loss, val_accuracy, val_loss, learning_rate, phase
        (0, 0.40, 1.20, 0.45, 1.10, 1e-3, 0),
        (1, 0.60, 0.90, 0.55, 1.00, 1e-3, 0),
        (2, 0.70, 0.70, 0.65, 0.95, 1e-4, 1),
        (3, 0.80, 0.50, 0.60, 0.97, 1e-4, 1),
    ]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"] + ["learning_rate", "phase"]
        )
        writer.writerows(rows)
    return str(path)


def test_plot_history_from_csv_dict_and_phase_history(tmp_path):
    csv_path = _write_history_csv(tmp_path / "history.csv")
    phases = [
        {"name": "head", "start_epoch": 0, "end_epoch": 2},
        {"name": "finetune", "start_epoch": 2, "end_epoch": 4},
    ]
    image = _png(plot_history(csv_path, tmp_path / "a.png", phases=phases))
    assert image.shape[:2] == (400, 1000)  # one figure, two panels side by side

    state = tmp_path / "phases.json"
    state.write_text(json.dumps({"plan": [], "done": phases}))
    _png(plot_history(csv_path, tmp_path / "b.png", phases=str(state)))

    log = {"loss": [1.0, 0.8], "val_loss": [1.1, 0.9], "phase": [0, 1]}  # phases from column
    _png(plot_history(log, tmp_path / "c.png"))

    history = tfl.PhaseHistory()
    history.add_epoch(0, {"loss": 1.0, "accuracy": 0.5, "phase": 0})
    history.phases = [{"name": "only", "start_epoch": 0, "end_epoch": 1}]
    _png(plot_history(history, tmp_path / "d.png"))

    with pytest.raises(FileNotFoundError, match="missing.csv"):
        plot_history(str(tmp_path / "missing.csv"), tmp_path / "e.png")
    with pytest.raises(ValueError, match="phases\\[0\\]"):
        plot_history(log, tmp_path / "f.png", phases=[{"name": "x"}])


def test_plot_confusion_grows_with_classes_and_plot_reliability(tmp_path):
    small = _png(plot_confusion([[3, 1], [0, 4]], ["cat", "dog"], tmp_path / "small.png"))
    rng = np.random.default_rng(0)
    big_matrix = rng.integers(0, 5, (50, 50))
    names = [f"class_{i}" for i in range(50)]
    big = _png(plot_confusion(big_matrix, names, tmp_path / "big.png", normalize=False))
    assert big.shape[0] > 2 * small.shape[0]  # room for 50 labels
    with pytest.raises(ValueError, match="Received 1 names for a 2 x 2 matrix"):
        plot_confusion([[1, 0], [0, 1]], ["a"], tmp_path / "x.png")

    y, probs = _random_problem()
    table = classification_metrics(y, probs)["reliability"]
    _png(plot_reliability(table, tmp_path / "reliability.png"))


# --- save_metrics and write_report ------------------------------------------------------------


def test_save_metrics_writes_json_and_confusion_png(tmp_path):
    y, probs = _random_problem()
    m = classification_metrics(y, probs)
    json_path, png_path = save_metrics(tmp_path / "run", m, name="test")
    assert json_path == str(tmp_path / "run" / "test.json")
    with open(json_path) as f:
        assert json.load(f) == json.loads(json.dumps(m))
    _png(png_path)


def test_report_holds_the_key_numbers_and_links_only_existing_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _write_history_csv(run / "history.csv")
    (run / "backup").mkdir()
    (run / "backup" / "phases.json").write_text(
        json.dumps(
            {
                "plan": [],
                "done": [
                    {"name": "head", "start_epoch": 0, "end_epoch": 2},
                    {"name": "finetune", "start_epoch": 2, "end_epoch": 4},
                ],
            }
        )
    )
    plot_history(run / "history.csv", run / "history.png")
    y, probs = _random_problem(never_predicted=2)
    m = classification_metrics(y, probs, labels=["a", "b", "c", "d"], top_k=(2,))
    info = {
        "classes": ["a", "b", "c", "d"],
        "num_examples": {"train": 500, "test": 80},
        "bad_files": 3,
    }
    kwargs = dict(
        title="MNIST fine-tune",
        config={"epochs": {"head": 2, "finetune": 2}, "base": "mobilenet_v3_small"},
        metrics=m,
        data_info=info,
        notes=["seed 0"],
        timing={"train": 12.34},
    )
    path = write_report(run, **kwargs)
    text = _read(path)

    assert text.startswith("# MNIST fine-tune\n")
    assert "| `epochs.head` | 2 |" in text and "| `base` | mobilenet_v3_small |" in text
    assert "| train | 500 |" in text and "| test | 80 |" in text and "Skipped inputs: 3" in text
    # Phases from backup/phases.json, best per phase from history.csv
    assert "| head | 1–2 | 0.5500 | 1.0000 |" in text
    assert "| finetune | 3–4 | 0.6500 | 0.9500 |" in text
    assert f"| accuracy | {m['accuracy']:.4f} |" in text
    assert f"| macro F1 | {m['macro_avg']['f1']:.4f} |" in text
    assert f"| top-2 accuracy | {m['top_2_accuracy']:.4f} |" in text
    assert f"| ECE (15 bins) | {m['ece']:.4f} |" in text
    worst = text.split("classes by F1")[1].split("\n")[4]
    assert worst.startswith("| c | 0.0000 |")  # never predicted: F1 0, listed first
    assert "| train | 12.3 |" in text and "- seed 0" in text

    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links == ["history.png"]
    assert all(os.path.isfile(run / link) for link in links)
    assert _read(write_report(run, **kwargs)) == text  # deterministic


def test_report_lists_only_the_settings_that_differ_from_the_recipe_defaults(tmp_path):
    from tfl import config as config_lib

    defaults = config_lib.to_dict(config_lib.validate(config_lib.defaults("image_classification")))
    flags = {"data": {"image_size": 64, "max_per_class": {"train": 10}}, "seed": 3}
    config = config_lib.to_dict(config_lib.validate(config_lib.from_dict(flags)))
    text = _read(
        write_report(
            tmp_path, title="run", config=config, defaults=defaults, config_file="config.yaml"
        )
    )
    settings = text.split("## Run")[1].split("##")[0]
    rows = [line for line in settings.splitlines() if line.startswith("| `")]
    assert rows == [
        "| `seed` | 3 |",
        "| `data.max_per_class.train` | 10 |",
        "| `data.image_size` | 64 |",
    ]
    everything = _read(write_report(tmp_path, title="all", config=config))
    total = len(re.findall(r"^\| `", everything, re.M))
    assert f"({total - 3} more at their defaults: [`config.yaml`](config.yaml))" in settings
    same = _read(write_report(tmp_path, title="d", config=defaults, defaults=defaults))
    assert "All settings are the recipe's defaults" in same and "| `seed`" not in same


# --- folds, cross-validation, the negative-transfer check ------------------------------------


def test_stratified_folds_partition_and_balance():
    y = np.repeat([0, 1, 2], [10, 6, 4])
    folds = stratified_folds(y, folds=2, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(20))
    for fold in folds:
        assert np.bincount(y[fold], minlength=3).tolist() == [5, 3, 2]
    assert [f.tolist() for f in stratified_folds(y, 2, seed=3)] == [f.tolist() for f in folds]
    assert [f.tolist() for f in stratified_folds(y, 2, seed=4)] != [f.tolist() for f in folds]
    with pytest.raises(ValueError, match=r"Received folds=21 for 20 examples"):
        stratified_folds(y, folds=21)


def test_cross_validate_builds_a_fresh_model_per_fold():
    x, y = images(12), np.arange(12) % 3
    built = []

    def build():
        built.append(tfl.ImageClassifier(tiny_image_base(), num_classes=3))
        return built[-1]

    result = cross_validate(build, x, y, folds=2, phases=tfl.feature_extraction(1), batch_size=8)
    assert len(built) == 2
    ids = [{id(v) for v in m.variables} for m in built]
    assert not ids[0] & ids[1]  # nothing carried between folds
    assert result["fold_sizes"] == [6, 6]
    assert [m["num_examples"] for m in result["fold_metrics"]] == [6, 6]
    values = [m["accuracy"] for m in result["fold_metrics"]]
    assert result["accuracy"]["values"] == values
    assert result["accuracy"]["mean"] == pytest.approx(np.mean(values))
    assert result["accuracy"]["std"] == pytest.approx(np.std(values, ddof=1))
    f1 = [m["macro_avg"]["f1"] for m in result["fold_metrics"]]
    assert result["macro_f1"]["values"] == f1


def test_cross_validate_rejects_a_model_that_shares_weights_between_folds():
    x, y = images(8), np.arange(8) % 2
    base = tiny_image_base()  # built once outside: fold 2 would start from fold 1's weights

    def build():
        return tfl.ImageClassifier(base, num_classes=2)

    with pytest.raises(ValueError, match="shares .* variables with fold 0"):
        cross_validate(build, x, y, folds=2, phases=tfl.feature_extraction(1), batch_size=8)


def _predictions(n_wrong, n=300, offset=0):
    """Predictions of an all-zero label vector with `n_wrong` mistakes starting at `offset`."""
    pred = np.zeros(n, dtype=int)
    pred[offset : offset + n_wrong] = 1
    return pred


@pytest.mark.parametrize(
    "scratch, probe, fine_tune, verdict, method",
    [
        # a clear gain: scratch wrong on 90 of 300, fine-tune on 15 of them only
        (_predictions(90), _predictions(60), _predictions(15), "transfer helps", "fine_tune"),
        (_predictions(90), _predictions(20), _predictions(95), "transfer helps", "probe"),
        # a clear loss: scratch wrong on 10, the better transfer method on 60
        (_predictions(10), _predictions(60), _predictions(70), "transfer hurts", "probe"),
        # no difference: as many mistakes, on other examples
        (
            _predictions(30),
            _predictions(40, offset=100),
            _predictions(30, offset=200),
            "no significant difference",
            "fine_tune",
        ),
    ],
)
def test_transfer_verdict_on_known_answers(scratch, probe, fine_tune, verdict, method):
    y = np.zeros(300, dtype=int)
    result = transfer_verdict(y, scratch, probe, fine_tune)
    assert result["verdict"] == verdict and result["method"] == method
    chosen = fine_tune if method == "fine_tune" else probe
    assert result["difference"] == pytest.approx(np.mean(chosen == 0) - np.mean(scratch == 0))
    assert result["low"] <= result["difference"] <= result["high"]
    if verdict == "no significant difference":
        assert result["p_value"] > 0.025 and result["low"] < 0 < result["high"]
    else:
        assert result["p_value"] < 1e-4 and result["low"] * result["high"] > 0


def test_transfer_verdict_concludes_from_three_folds_with_one_collapsed_scratch_fold():
    """The case the per-fold rule (mean > 2 std over 3 folds) called "no difference": scratch
    0.617 / 0.862 / 0.880, fine-tune 0.95 on each fold of 333 examples."""
    y = np.zeros(999, dtype=int)
    scratch = np.concatenate([_predictions(w, 333) for w in (128, 46, 40)])
    fine_tune = np.concatenate([_predictions(w, 333) for w in (17, 17, 16)])
    probe = np.concatenate([_predictions(w, 333) for w in (38, 38, 37)])
    result = transfer_verdict(y, scratch, probe, fine_tune)
    assert result["verdict"] == "transfer helps" and result["p_value"] < 1e-20
    assert 0.12 < result["low"] < result["difference"] < result["high"] < 0.2


def test_mcnemar_exact_matches_the_binomial_by_hand():
    from tfl.evaluate.significance import mcnemar_exact

    # b = 6 examples only A gets right, c = 1 only B: p = 2 * P(X <= 1), X ~ Bin(7, 1/2)
    a = np.array([1, 1, 1, 1, 1, 1, 0, 1, 0], bool)
    b = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0], bool)
    result = mcnemar_exact(a, b)
    assert (result["a_only"], result["b_only"], result["both"], result["neither"]) == (6, 1, 1, 1)
    assert result["p_value"] == pytest.approx(2 * (1 + 7) / 2**7)
    assert mcnemar_exact(b, a)["p_value"] == pytest.approx(result["p_value"])  # symmetric


def test_transfer_verdict_rejects_predictions_of_other_lengths():
    with pytest.raises(ValueError, match="Received 2 probe predictions for 3 labels"):
        transfer_verdict([0, 1, 0], [0, 1, 0], [0, 1], [0, 1, 0])
