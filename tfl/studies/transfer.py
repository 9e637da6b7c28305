"""Does transfer help? Scratch vs linear probe vs fine-tune on the same folds, and a verdict.

- `compare_transfer(build_pretrained, build_scratch, x, y)`: the three methods on the same
  stratified folds with the same epoch budget (`tfl.studies.cross_validate` for each).
- `transfer_verdict(y_true, scratch, probe, fine_tune)`: the verdict from paired per-example
  predictions on the held-out folds (McNemar's exact test, a bootstrap interval).
- `format_comparison(result)`: the Markdown table and the verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras
import numpy as np

from tfl.evaluate.report import markdown_table
from tfl.studies.folds import cross_validate

METHODS = ("scratch", "probe", "fine_tune")
ALPHA = 0.05
VERDICT_RULE = (
    "paired over the held-out examples of all folds: the better transfer method (probe or "
    "fine-tune, by pooled accuracy) vs scratch, McNemar's exact test on the examples exactly "
    "one of them gets right; 'transfer helps' / 'transfer hurts' if p < 0.025 (0.05 halved "
    "for having picked the better of two methods), else 'no significant difference'; the "
    "effect is the accuracy difference with its 95% paired-bootstrap interval"
)


def _pooled(name: str, values, n: int | None) -> np.ndarray:
    array = np.asarray(values).reshape(-1)
    if n is not None and len(array) != n:
        raise ValueError(
            f"Received {len(array)} {name} predictions for {n} labels; expected one predicted "
            "class per held-out example, in the same order for every method."
        )
    return array


def transfer_verdict(y_true, scratch, probe, fine_tune, alpha: float = ALPHA) -> dict:
    """The negative-transfer verdict from paired per-example predictions.

    Every method predicted the same held-out examples (the folds of `compare_transfer`,
    pooled). The better transfer method by accuracy (probe or fine-tune) is compared with
    scratch example by example with McNemar's exact test (`tfl.evaluate.significance`):
    "transfer helps" if it is right significantly more often (p < alpha / 2: the level is
    halved because the better of two methods was picked first), "transfer hurts" if
    significantly less often, else "no significant difference". Pooling examples over folds
    keeps the test's power at 2-3 folds, where a rule on per-fold means cannot conclude
    anything (3 differences and their spread); the effect size is the accuracy difference
    with its paired-bootstrap interval at level 1 - alpha.

    Args:
        y_true: the true class of each held-out example `(N,)`.
        scratch, probe, fine_tune: each method's predicted class of the same examples.
        alpha: the significance level (0.05).

    Returns:
        A dict: `verdict`, `method` (the transfer method compared), `difference` (its
        accuracy minus scratch's), `low` / `high` (the interval), `p_value`, `a_only` /
        `b_only` (examples only the transfer method / only scratch got right), `n`, `tests`
        (`tfl.evaluate.significance.compare_paired` of probe and of fine-tune vs scratch)
        and `rule`.

    Example:
    >>> from tfl.studies import transfer_verdict
    >>> y = np.zeros(100, int)
    >>> wrong = lambda k: np.r_[np.ones(k, int), np.zeros(100 - k, int)]  # k mistakes
    >>> transfer_verdict(y, wrong(40), wrong(20), wrong(5))["verdict"]
    'transfer helps'
    >>> transfer_verdict(y, wrong(10), wrong(12), wrong(11))["verdict"]
    'no significant difference'
    """
    from tfl.evaluate.significance import compare_paired

    y = _pooled("true", y_true, None)
    if not len(y):
        raise ValueError("Received no held-out examples; expected predictions of >= 1 example.")
    preds = {
        m: _pooled(m, v, len(y)) for m, v in zip(METHODS, (scratch, probe, fine_tune), strict=True)
    }
    tests = {m: compare_paired(y, preds[m], preds["scratch"], alpha) for m in METHODS[1:]}
    method = (
        "fine_tune"
        if tests["fine_tune"]["accuracy_a"] >= tests["probe"]["accuracy_a"]
        else ("probe")
    )
    test = tests[method]
    significant = test["p_value"] < alpha / 2
    if significant and test["difference"] > 0:
        verdict = "transfer helps"
    elif significant and test["difference"] < 0:
        verdict = "transfer hurts"
    else:
        verdict = "no significant difference"
    return {
        "verdict": verdict,
        "method": method,
        "difference": test["difference"],
        "low": test["low"],
        "high": test["high"],
        "confidence": test["confidence"],
        "p_value": test["p_value"],
        "a_only": test["a_only"],
        "b_only": test["b_only"],
        "n": int(len(y)),
        "tests": tests,
        "rule": VERDICT_RULE,
    }


def pooled_predictions(results: Mapping, y) -> tuple[np.ndarray, dict]:
    """The held-out labels and each method's predictions, pooled over the folds.

    Args:
        results: method -> its `cross_validate` result (all on the same folds).
        y: the labels `cross_validate` was given.
    """
    y = np.asarray(y)
    order = None
    preds = {}
    for method, cv in results.items():
        index = np.concatenate([np.asarray(i, dtype=np.int64) for i in cv["held_out"]])
        if order is not None and not np.array_equal(index, order):
            raise ValueError(
                f"Received {method} results on other folds; a paired test needs the same folds."
            )
        order = index
        preds[method] = np.concatenate([np.asarray(p, dtype=np.int64) for p in cv["predictions"]])
    return y[order], preds


def compare_transfer(
    build_pretrained: Callable[[], keras.Model],
    build_scratch: Callable[[], keras.Model],
    x,
    y,
    *,
    folds: int = 3,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 32,
    metric: str = "accuracy",
    scratch_learning_rate: float = 1e-3,
    fit_kwargs: Mapping | None = None,
) -> dict:
    """The negative-transfer check: scratch vs linear probe vs fine-tune on the same folds.

    Each method gets the same stratified folds (`stratified_folds(y, folds, seed)`), the same
    per-fold seeds and the same budget of `epochs` epochs:

    - scratch: `build_scratch()` (random initialisation), everything trains for `epochs`
      epochs (Adam at `scratch_learning_rate`, constant: a fresh network needs a higher rate
      than a fine-tune);
    - probe: `build_pretrained()`, `tfl.feature_extraction(epochs)` (the base never trains);
    - fine_tune: `build_pretrained()`, `tfl.two_phase(epochs // 2, epochs - epochs // 2)`
      (the head first, then the whole base at a lower rate).

    Both builders must return a fresh model on every call (see `cross_validate`). The verdict
    compares the better transfer method with scratch on every held-out example, pooled over
    the folds (`transfer_verdict`).

    Args:
        build_pretrained: returns a fresh task on freshly loaded pretrained weights.
        build_scratch: returns the same architecture with random weights (e.g.
            `tfl.ImageBackbone(..., weights=None, inference_mode=False)`: a fresh network's
            BatchNorm must run in training mode, or it normalises with its initial
            statistics and the scratch arm is handicapped).
        x, y: the data, as for `cross_validate`.
        folds: the number of folds (>= 2).
        epochs: the epoch budget of every method.
        seed: the seed of the folds and of each fold's training.
        batch_size: the batch size.
        metric: the per-fold score the table shows: "accuracy" or "macro_f1" (the verdict
            is on per-example correctness, i.e. accuracy).
        scratch_learning_rate: the learning rate of the scratch run.
        fit_kwargs: more `tfl.fit_phases` arguments for every run.

    Returns:
        A dict: `methods` (method → the `cross_validate` result), `metric`, `folds`,
        `epochs`, `seed`, and the `transfer_verdict` keys (`verdict`, `method`,
        `difference` with `low` / `high`, `p_value`, `n`, `tests`, `rule`).
        `format_comparison` turns it into Markdown.
    """
    from tfl.phases import Phase, feature_extraction, two_phase

    if metric not in ("accuracy", "macro_f1"):
        raise ValueError(f"Received metric={metric!r}; expected 'accuracy' or 'macro_f1'.")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"Received epochs={epochs!r}; expected an integer >= 1.")
    head_epochs = epochs // 2
    plans = {
        "scratch": (
            build_scratch,
            [
                Phase(
                    epochs,
                    trainable="all",
                    learning_rate=scratch_learning_rate,
                    train_batchnorm=True,  # a fresh network trains its BatchNorm too
                    name="scratch",
                )
            ],
        ),
        "probe": (build_pretrained, feature_extraction(epochs)),
        "fine_tune": (build_pretrained, two_phase(head_epochs, epochs - head_epochs)),
    }
    results = {}
    for method, (build, phases) in plans.items():
        results[method] = cross_validate(
            build,
            x,
            y,
            folds=folds,
            phases=phases,
            seed=seed,
            batch_size=batch_size,
            fit_kwargs=fit_kwargs,
        )
    y_held_out, preds = pooled_predictions(results, y)
    verdict = transfer_verdict(y_held_out, *(preds[m] for m in METHODS))
    return {
        "methods": results,
        "metric": metric,
        "folds": folds,
        "epochs": epochs,
        "seed": seed,
        **verdict,
    }


def format_comparison(result: Mapping) -> str:
    """A Markdown table of a `compare_transfer` result (mean ± std per method) and its verdict.

    Example:
    >>> from tfl.studies import format_comparison
    >>> def cv(acc):
    ...     return {"accuracy": {"mean": np.mean(acc), "std": np.std(acc, ddof=1), "values": acc},
    ...             "macro_f1": {"mean": np.mean(acc), "std": np.std(acc, ddof=1), "values": acc}}
    >>> methods = {"scratch": cv([0.5, 0.6]), "probe": cv([0.8, 0.9]), "fine_tune": cv([0.9, 0.9])}
    >>> print(format_comparison({"methods": methods, "metric": "accuracy", "folds": 2,
    ...                          "epochs": 4, "verdict": "transfer helps"}))
    | method | accuracy | macro F1 | accuracy per fold |
    |---|---|---|---|
    | scratch | 0.5500 ± 0.0707 | 0.5500 ± 0.0707 | 0.5000, 0.6000 |
    | probe | 0.8500 ± 0.0707 | 0.8500 ± 0.0707 | 0.8000, 0.9000 |
    | fine-tune | 0.9000 ± 0.0000 | 0.9000 ± 0.0000 | 0.9000, 0.9000 |
    <BLANKLINE>
    Verdict (accuracy, 2 folds, 4 epochs per method): **transfer helps**.
    """
    methods = result.get("methods")
    if not isinstance(methods, Mapping) or not set(METHODS) <= set(methods):
        raise ValueError(
            "Received a result without methods scratch, probe and fine_tune; expected the dict "
            "that compare_transfer returns."
        )
    metric = result.get("metric", "accuracy")
    label = "accuracy" if metric == "accuracy" else "macro F1"
    rows = []
    for method in METHODS:
        cv = methods[method]
        rows.append(
            (
                method.replace("_", "-"),
                f"{cv['accuracy']['mean']:.4f} ± {cv['accuracy']['std']:.4f}",
                f"{cv['macro_f1']['mean']:.4f} ± {cv['macro_f1']['std']:.4f}",
                ", ".join(f"{v:.4f}" for v in cv[metric]["values"]),
            )
        )
    lines = markdown_table(["method", "accuracy", "macro F1", f"{label} per fold"], rows)
    lines.append("")
    lines.append(
        f"Verdict ({label}, {result.get('folds')} folds, {result.get('epochs')} epochs per "
        f"method): **{result.get('verdict')}**."
    )
    if "difference" in result and "p_value" in result:
        lines.append(
            f"Effect: {result['method'].replace('_', '-')} − scratch = "
            f"{result['difference']:+.4f} accuracy ({result.get('confidence', 0.95):.0%} CI "
            f"{result['low']:+.4f} to {result['high']:+.4f}), McNemar p = "
            f"{result['p_value']:.2g} over {result['n']} held-out examples."
        )
    if result.get("rule"):
        lines.append(f"Rule: {result['rule']}.")
    return "\n".join(lines)
