"""Is one model more accurate than another on the same examples? Paired tests, numpy only.

Two models predicted the same N examples (e.g. the held-out folds of a cross-validation,
pooled). Pairing by example removes what the examples share (a hard digit is hard for both),
so the test has power even when the folds are few:

- `mcnemar_exact(correct_a, correct_b)`: McNemar's exact test (McNemar 1947; the exact
  binomial form, Edwards 1948 / Dietterich 1998): of the examples exactly one model gets
  right, does each model win half? Two-sided p-value from Binomial(b + c, 1/2).
- `paired_bootstrap(correct_a, correct_b)`: the accuracy difference with a percentile
  bootstrap confidence interval over examples (Efron & Tibshirani 1993).
- `compare_paired(y_true, pred_a, pred_b)`: both, as one dict.

Example:
>>> a = np.array([1] * 60 + [0] * 40, bool)      # model A right on 60 of 100
>>> b = np.array([1] * 30 + [0] * 70, bool)      # model B right on 30 (a subset of A's)
>>> result = mcnemar_exact(a, b)
>>> result["a_only"], result["b_only"], result["p_value"] < 1e-6
(30, 0, True)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["compare_paired", "mcnemar_exact", "paired_bootstrap"]


def _correct(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"Received {name} of shape {array.shape}; expected one flag per example.")
    return array.astype(bool)


def _pair(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _correct(correct_a, "correct_a"), _correct(correct_b, "correct_b")
    if len(a) != len(b) or not len(a):
        raise ValueError(
            f"Received {len(a)} and {len(b)} paired results; expected the same examples (>= 1) "
            "for both models."
        )
    return a, b


def _binomial_tail(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer arithmetic, then one division)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def mcnemar_exact(correct_a, correct_b) -> dict:
    """McNemar's exact test of two models' paired per-example correctness.

    With b = examples only A gets right and c = examples only B gets right, under "equally
    accurate" each of the b + c discordant examples is A's with probability 1/2; the
    two-sided p-value is min(1, 2 P(X <= min(b, c))), X ~ Binomial(b + c, 1/2). Examples both
    get right (or both wrong) say nothing about which is better and do not count.

    Args:
        correct_a, correct_b: one boolean per example: whether each model was right.

    Returns:
        A dict: `a_only` (b), `b_only` (c), `both`, `neither`, `p_value`.

    Example:
    >>> mcnemar_exact([1, 1, 1, 0], [0, 0, 0, 0])["p_value"]
    0.25
    >>> mcnemar_exact([1, 0, 1, 0], [0, 1, 0, 1])["p_value"]
    1.0
    """
    a, b = _pair(correct_a, correct_b)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = min(1.0, 2 * _binomial_tail(min(a_only, b_only), a_only + b_only))
    return {
        "a_only": a_only,
        "b_only": b_only,
        "both": int(np.sum(a & b)),
        "neither": int(np.sum(~a & ~b)),
        "p_value": float(p),
    }


def paired_bootstrap(
    correct_a, correct_b, confidence: float = 0.95, draws: int = 2000, seed: int = 0
) -> dict:
    """accuracy(A) - accuracy(B) with a percentile bootstrap interval over examples.

    Each draw resamples the N examples with replacement, keeping each example's pair of
    results together, and recomputes the difference; the interval is the central
    `confidence` share of the draws.

    Returns:
        A dict: `difference`, `low`, `high`, `confidence`, `draws`.

    Example:
    >>> r = paired_bootstrap([1] * 80 + [0] * 20, [1] * 50 + [0] * 50)
    >>> round(r["difference"], 2), r["low"] > 0.2, r["high"] < 0.4
    (0.3, True, True)
    """
    a, b = _pair(correct_a, correct_b)
    if not 0 < confidence < 1:
        raise ValueError(f"Received confidence={confidence!r}; expected a number in (0, 1).")
    d = a.astype(np.float64) - b.astype(np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(draws)
    for start in range(0, draws, 500):  # chunks bound the memory: 500 x N indices at a time
        count = min(500, draws - start)
        means[start : start + count] = d[rng.integers(0, len(d), (count, len(d)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {
        "difference": float(d.mean()),
        "low": float(low),
        "high": float(high),
        "confidence": confidence,
        "draws": draws,
    }


def compare_paired(y_true, pred_a, pred_b, alpha: float = 0.05, seed: int = 0) -> dict:
    """McNemar's exact test and the bootstrap interval of the accuracy difference A - B.

    Args:
        y_true: the true labels of the N examples.
        pred_a, pred_b: each model's predicted labels for the same examples, same order.
        alpha: the significance level of `significant` (and 1 - alpha the interval's level).
        seed: the bootstrap's seed.

    Returns:
        The `mcnemar_exact` and `paired_bootstrap` keys, plus `accuracy_a`, `accuracy_b`,
        `n` and `significant` (p < alpha).

    Example:
    >>> y = np.zeros(50, int)
    >>> r = compare_paired(y, np.zeros(50, int), np.r_[np.zeros(30, int), np.ones(20, int)])
    >>> r["accuracy_a"], r["accuracy_b"], r["significant"]
    (1.0, 0.6, True)
    """
    y = np.asarray(y_true).reshape(-1)
    a = np.asarray(pred_a).reshape(-1) == y
    b = np.asarray(pred_b).reshape(-1) == y
    if not (len(y) == len(np.asarray(pred_a).reshape(-1)) == len(np.asarray(pred_b).reshape(-1))):
        raise ValueError("Received labels and predictions of different lengths; expected one each.")
    test = mcnemar_exact(a, b)
    interval = paired_bootstrap(a, b, confidence=1 - alpha, seed=seed)
    return {
        **test,
        **interval,
        "accuracy_a": float(a.mean()),
        "accuracy_b": float(b.mean()),
        "n": int(len(y)),
        "significant": bool(test["p_value"] < alpha),
    }
