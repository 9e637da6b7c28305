"""Ranking bases before training: the scores' maths, `tfl rank`, `model.base: auto`."""

import json
import os

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from tfl import cli
from tfl.studies.transferability import leep, linear_probe, logme, logme_evidence

# --- the scores ------------------------------------------------------------------------------


def test_logme_evidence_is_the_gaussian_marginal_likelihood():
    """y ~ N(0, F F^T / alpha + I / beta) once w is integrated out (You et al. 2021, eq. 2),
    with D > N so that the zero eigenvalues of F^T F count too."""
    rng = np.random.default_rng(0)
    f, y = rng.normal(size=(5, 8)), rng.normal(size=5)
    for alpha, beta in ((0.5, 2.0), (3.0, 0.7)):
        cov = f @ f.T / alpha + np.eye(5) / beta
        direct = multivariate_normal(np.zeros(5), cov).logpdf(y) / 5
        assert logme_evidence(f, y, alpha, beta) == pytest.approx(direct, abs=1e-10)


def test_logme_maximises_the_evidence_is_order_invariant_and_rises_with_separability():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 20)
    features = rng.normal(size=(60, 6))
    noise_score = logme(features, labels)
    # the same features, columns in another order: the same score
    assert logme(features[:, ::-1], labels) == pytest.approx(noise_score, abs=1e-9)
    # labels that become linearly separable: one column now says the class
    separable = features.copy()
    separable[:, 0] = labels * 4.0
    assert logme(separable, labels) > noise_score + 0.1
    # the fixed point is the maximum: moving alpha or beta lowers the evidence
    from tfl.studies import transferability

    mixed = features + np.eye(3, 6)[labels]  # some signal, some noise: finite alpha and beta
    target = (labels == 1).astype(float)
    u, s, _ = np.linalg.svd(mixed, full_matrices=False)
    alpha, beta = transferability._maximise(u, s**2, 6, u.T @ target, float(target @ target))
    best = logme_evidence(mixed, target, alpha, beta)
    for a, b in (
        (alpha * 1.5, beta),
        (alpha / 1.5, beta),
        (alpha, beta * 1.5),
        (alpha, beta / 1.5),
    ):
        assert logme_evidence(mixed, target, a, b) < best


def test_leep_is_the_log_likelihood_of_the_expected_empirical_predictor():
    rng = np.random.default_rng(2)
    theta = rng.dirichlet(np.ones(4), size=12)  # 12 examples, 4 source classes
    y = np.arange(12) % 3
    # by hand, loop by loop (Nguyen et al. 2020, eq. 1-3)
    joint = np.zeros((3, 4))
    for i in range(12):
        for z in range(4):
            joint[y[i], z] += theta[i, z] / 12
    conditional = joint / joint.sum(axis=0)
    expected = np.mean(
        [np.log(sum(conditional[y[i], z] * theta[i, z] for z in range(4))) for i in range(12)]
    )
    assert leep(theta, y) == pytest.approx(expected, abs=1e-12)
    # a source classifier whose classes say the target class scores higher (and LEEP <= 0)
    informative = np.eye(4)[y] * 0.96 + 0.01
    assert leep(theta, y) < leep(informative, y) <= 0
    with pytest.raises(ValueError, match="apply a softmax"):
        leep(np.log(theta), y)


def test_linear_probe_predicts_each_example_with_the_fold_that_never_saw_it():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 15)
    separable = rng.normal(size=(30, 5)) + labels[:, None] * 5.0
    result = linear_probe(separable, labels, folds=3, steps=100)
    assert result["accuracy"] >= 0.95 and len(result["fold_accuracy"]) == 3
    noise = linear_probe(rng.normal(size=(30, 5)), rng.permutation(labels), folds=3, steps=100)
    assert noise["accuracy"] < 0.8


# --- tfl rank and model.base auto, end to end on tiny data ----------------------------------

TINY = [
    "--data.image-size", "32",
    "--data.max-per-class", "{train: 3, validation: 2, test: 2}",
    "--batch-size", "10",
]  # fmt: skip


def test_rank_refuses_a_bad_candidate_before_any_work(tmp_path, capsys):
    out = str(tmp_path / "rank")
    argv = ["rank", "--model.base", "mobilenet_v2_torchvision,mobilenet_v9", "--output", out]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "model.base[1]: unknown image base 'mobilenet_v9'" in err and "Did you mean" in err
    assert not os.path.exists(out)
    argv = ["rank", "--rank.cuts", "stage9", "--output", out]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "rank.cuts[0]: 'stage9' is not a block group" in capsys.readouterr().err


def test_rank_writes_its_report_reports_a_failed_candidate_and_reuses_features(tmp_path, capsys):
    bad = tmp_path / "broken.weights.h5"
    bad.write_bytes(b"not a weights file")
    out = str(tmp_path / "rank")
    argv = ["rank", *TINY, "--model.base", "mobilenet_v3_small", "--rank.weights",
            f"none,{bad}", "--model.cut", "stage2", "--rank.folds", "2",
            "--output", out]  # fmt: skip
    assert cli.main(argv) == cli.EXIT_OK
    printed = capsys.readouterr().out
    with open(os.path.join(out, "rank.json")) as f:
        result = json.load(f)
    scored = [r for r in result["candidates"] if "error" not in r]
    assert len(scored) == 1 and result["failed"] == [
        "mobilenet_v3_small@stage2 32px (broken.weights.h5)"
    ]
    assert scored[0]["feature_dim"] == 48  # cut after stage2: 48 channels, not 576
    assert scored[0]["examples"] == 50 and not scored[0]["cached"]
    assert "FAILED to load" in printed and "Recommendation: **" in printed
    assert "tfl train --config " in printed and os.path.exists(os.path.join(out, "winner.yaml"))
    for name in ("rank.md", "rank.png", "config.yaml"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    # the same ranking again: every feature comes from the cache, none is extracted
    assert cli.main([*argv[:-1], out + "-again"]) == cli.EXIT_OK
    with open(os.path.join(out + "-again", "rank.json")) as f:
        again = json.load(f)
    assert all(r["cached"] for r in again["candidates"] if "error" not in r)
    assert [r["probe_accuracy"] for r in again["candidates"] if "error" not in r] == [
        r["probe_accuracy"] for r in scored
    ]


def test_train_with_base_auto_ranks_then_trains_the_winner_on_its_cached_features(
    tmp_path, monkeypatch
):
    from tfl.cache import cache_dir

    # A cache of its own: the workers of a parallel test run share the default one.
    monkeypatch.setenv("TFL_CACHE_DIR", str(tmp_path / "cache"))

    out = str(tmp_path / "run")
    argv = ["train", *TINY, "--model.base", "auto", "--train.schedule", "auto",
            "--epochs-head", "1", "--epochs-finetune", "1", "--rank.folds", "2",
            "--output", out]  # fmt: skip
    before = set(os.listdir(cache_dir())) if os.path.isdir(cache_dir()) else set()
    assert cli.main(argv) == cli.EXIT_OK
    with open(os.path.join(out, "rank.json")) as f:
        ranking = json.load(f)
    with open(os.path.join(out, "report.md")) as f:
        report = f.read()
    winner = ranking["winner"]["settings"]
    assert winner["base"] in ("mobilenet_v2_torchvision", "efficientnet_lite0")
    assert f"Ranked {len(ranking['candidates'])} candidate(s) before training" in report
    assert "Trained: **" in report
    with open(os.path.join(out, "config.yaml")) as f:
        config = f.read()
    assert f"base: {winner['base']}" in config  # the run trained the winner, as ranked
    assert f"schedule: {ranking['schedule']}" in config
    # the winner's head phase read the features the ranking had extracted: nothing new
    new = set(os.listdir(cache_dir())) - before
    extracted = [r for r in ranking["candidates"] if "error" not in r and not r["cached"]]
    assert len([n for n in new if not n.startswith("leep-")]) == 2 * len(extracted)


def test_a_base_cut_after_a_block_group_trains_saves_and_reloads(tmp_path):
    from helpers import assert_keras_round_trip, images

    import tfl

    base = tfl.ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None, cut="stage1")
    assert base.feature_dim == 24 and base.cut == "stage1"  # stride 8: 24 channels
    assert list(base.block_groups())[-1] == "stage1"  # nothing above the cut
    restored = assert_keras_round_trip(tfl.ImageClassifier(base, 3), images(4), tmp_path)
    assert restored.backbone.cut == "stage1" and restored.backbone.feature_dim == 24
