"""Does transfer help? Scratch vs linear probe vs fine-tune on the same folds, and a verdict.

- `compare_transfer(build_pretrained, build_scratch, x, y)`: the three methods on the same
  stratified folds with the same epoch budget (`tfl.studies.cross_validate` for each).
- `transfer_verdict(scratch, probe, fine_tune)`: the verdict from the per-fold scores.
- `format_comparison(result)`: the Markdown table and the verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np

from tfl.evaluate.report import markdown_table
from tfl.studies.folds import cross_validate

METHODS = ("scratch", "probe", "fine_tune")
VERDICT_RULE = (
    "paired over folds: d = (better of probe and fine-tune, by mean) − scratch per fold; "
    "'transfer helps' if mean(d) > 2·std(d), 'transfer hurts' if mean(d) < −2·std(d) "
    "(std with ddof=1), else 'no difference within the fold spread'"
)


def transfer_verdict(
    scratch: Sequence[float], probe: Sequence[float], fine_tune: Sequence[float]
) -> dict:
    """The negative-transfer verdict from per-fold scores of the three methods.

    The better transfer method (probe or fine-tune, by mean score) is compared with training
    from scratch fold by fold: with d_i = transfer_i − scratch_i, "transfer helps" if
    mean(d) > 2·std(d), "transfer hurts" if mean(d) < −2·std(d) (sample std, ddof=1), and
    "no difference within the fold spread" otherwise. Pairing by fold removes what the folds
    share (a hard fold is hard for every method), so a consistent small gain counts while a
    gain that flips sign between folds does not. With identical differences on every fold
    (std 0), any non-zero mean decides. Picking the better of two methods first makes
    "helps" slightly optimistic; read the per-method table too.

    Args:
        scratch, probe, fine_tune: one score per fold (higher is better), same fold order.

    Returns:
        A dict: `verdict`, `method` (the transfer method compared), `mean_difference`,
        `std_difference`, `differences`, `rule`.

    Example:
    >>> from tfl.studies import transfer_verdict
    >>> transfer_verdict([0.5, 0.6, 0.55], [0.7, 0.8, 0.72], [0.8, 0.85, 0.8])["verdict"]
    'transfer helps'
    >>> transfer_verdict([0.5, 0.6, 0.55], [0.6, 0.5, 0.55], [0.52, 0.58, 0.56])["verdict"]
    'no difference within the fold spread'
    """
    scores = {"scratch": scratch, "probe": probe, "fine_tune": fine_tune}
    arrays = {k: np.asarray(v, dtype=float) for k, v in scores.items()}
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1 or lengths == {0} or any(a.ndim != 1 for a in arrays.values()):
        raise ValueError(
            f"Received fold scores of lengths {[len(a) for a in arrays.values()]}; expected the "
            "same number (>= 1) of per-fold scores for scratch, probe and fine_tune."
        )
    method = "fine_tune" if arrays["fine_tune"].mean() >= arrays["probe"].mean() else "probe"
    d = arrays[method] - arrays["scratch"]
    mean = float(d.mean())
    std = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
    if mean > 2 * std and mean > 0:
        verdict = "transfer helps"
    elif mean < -2 * std and mean < 0:
        verdict = "transfer hurts"
    else:
        verdict = "no difference within the fold spread"
    return {
        "verdict": verdict,
        "method": method,
        "mean_difference": mean,
        "std_difference": std,
        "differences": [float(v) for v in d],
        "rule": VERDICT_RULE,
    }


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
    compares the better transfer method with scratch fold by fold (`transfer_verdict`).

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
        metric: the score the verdict uses: "accuracy" or "macro_f1".
        scratch_learning_rate: the learning rate of the scratch run.
        fit_kwargs: more `tfl.fit_phases` arguments for every run.

    Returns:
        A dict: `methods` (method → the `cross_validate` result), `metric`, `folds`,
        `epochs`, `seed`, and the `transfer_verdict` keys (`verdict`, `method`,
        `mean_difference`, `std_difference`, `differences`, `rule`). `format_comparison`
        turns it into Markdown.
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
    verdict = transfer_verdict(*(results[m][metric]["values"] for m in METHODS))
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
    if result.get("rule"):
        lines.append(f"Rule: {result['rule']}.")
    return "\n".join(lines)
