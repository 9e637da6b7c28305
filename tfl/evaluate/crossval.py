"""Cross-validation and the negative-transfer check.

- `cross_validate(build_model, x, y, phases=...)`: stratified k-fold with a fresh model per
  fold, trained by `tfl.fit_phases`.
- `compare_transfer(build_pretrained, build_scratch, x, y)`: training from scratch, a linear
  probe and a fine-tune on the same folds with the same epoch budget, and a plain verdict on
  whether the pretrained weights help (`transfer_verdict`, `format_comparison`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np

from tfl.evaluate.metrics import classification_metrics, predict_arrays, predict_probabilities
from tfl.evaluate.report import markdown_table


def stratified_folds(y, folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Stratified k-fold: the held-out indices of each fold, every class spread evenly.

    Each class's examples are shuffled (by `seed`) and dealt round-robin to the folds,
    continuing from one class to the next, so fold sizes differ by at most one and every
    fold holds each class in proportion. The folds depend only on `y` and `seed`.

    Args:
        y: integer class labels `(N,)`.
        folds: the number of folds, 2 <= folds <= N.
        seed: the shuffling seed.

    Returns:
        `folds` sorted index arrays that partition `range(N)`.

    Example:
    >>> from tfl.evaluate import stratified_folds
    >>> [f.tolist() for f in stratified_folds([0, 0, 1, 1, 1, 1], folds=2)]
    [[0, 3, 4], [1, 2, 5]]
    """
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(
            f"Received y with shape {y.shape} and dtype {y.dtype}; expected integer class labels "
            "(N,)."
        )
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= len(y):
        raise ValueError(
            f"Received folds={folds!r} for {len(y)} examples; expected an integer in [2, {len(y)}]."
        )
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)])
    fold_of = np.empty(len(y), dtype=np.int64)
    fold_of[order] = np.arange(len(y)) % folds
    return [np.flatnonzero(fold_of == i) for i in range(folds)]


def _take(x, index: np.ndarray):
    return keras.tree.map_structure(lambda a: np.asarray(a)[index], x)


def _num_rows(x) -> int:
    sizes = {len(a) for a in keras.tree.flatten(x)}
    if len(sizes) != 1:
        raise ValueError(
            f"Received x with arrays of different lengths {sorted(sizes)}; expected one row per "
            "example in every array."
        )
    return sizes.pop()


def _spread(values: Sequence[float]) -> dict:
    values = [float(v) for v in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def cross_validate(
    build_model: Callable[[], keras.Model],
    x,
    y,
    *,
    folds: int = 5,
    phases,
    seed: int = 0,
    batch_size: int = 32,
    fit_kwargs: Mapping | None = None,
) -> dict:
    """Stratified k-fold cross-validation of a fine-tuning plan, a fresh model per fold.

    For each fold, `build_model()` is called, the model is trained with
    `tfl.fit_phases(model, phases, ...)` on the other folds and evaluated on the held-out
    fold. Nothing may carry from one fold to the next, so `build_model` must return a NEW
    model with FRESHLY loaded pretrained weights every time (build the backbone inside it,
    e.g. `tfl.ImageBackbone(..., weights="imagenet")`); a model or backbone created once
    outside and reused would start fold 2 from fold 1's fine-tuned weights, and the scores
    would be optimistic. A model that shares a variable with the previous fold's raises a
    `ValueError`. Before each fold the Keras random seed is set to `seed + fold`, so a
    method compared on the same folds (see `compare_transfer`) gets the same head
    initialisation and shuffling.

    Args:
        build_model: a function of no arguments returning a fresh tfl task.
        x: inputs: an array, or a dict / list of arrays with one row per example.
        y: integer class labels `(N,)`.
        folds: the number of folds.
        phases: the plan, e.g. `tfl.two_phase(2, 2)`.
        seed: the seed of the folds and of each fold's training.
        batch_size: the batch size of training and prediction.
        fit_kwargs: more `tfl.fit_phases` arguments (e.g. `callbacks`, `cache`; `verbose`
            defaults to 0). No validation data is passed: the held-out fold is never seen
            in training (not even by early stopping).

    Returns:
        A dict: `folds` (the number), `seed`, `fold_sizes`, `fold_metrics` (one
        `classification_metrics` dict per fold), and `accuracy` and `macro_f1`, each with
        `mean`, `std` (sample standard deviation over folds, ddof=1) and `values`.
    """
    from tfl.schedules import fit_phases

    y = np.asarray(y)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(
            f"Received y with shape {y.shape} and dtype {y.dtype}; expected integer class labels "
            "(N,)."
        )
    n = _num_rows(x)
    if n != len(y):
        raise ValueError(f"Received {n} inputs and {len(y)} labels; expected one label each.")
    if not callable(build_model):
        raise ValueError(
            f"Received build_model={build_model!r}; expected a function that returns a fresh "
            "model (with freshly loaded pretrained weights) on each call."
        )
    fit_kwargs = dict(fit_kwargs or {})
    fit_kwargs.setdefault("verbose", 0)
    for key in ("validation_data", "batch_size", "x", "y"):
        if key in fit_kwargs:
            raise ValueError(
                f"Received fit_kwargs with {key!r}; cross_validate sets it for each fold."
            )
    held_out = stratified_folds(y, folds, seed)
    num_classes = int(y.max()) + 1 if y.size else 0
    fold_metrics, previous = [], None  # the previous fold's model
    for i, test_index in enumerate(held_out):
        train_index = np.setdiff1d(np.arange(n), test_index)
        keras.utils.set_random_seed(seed + i)
        model = build_model()
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"build_model() returned {type(model).__name__}; expected a keras.Model."
            )
        if previous is not None:
            shared = {id(v) for v in model.variables} & {id(v) for v in previous.variables}
            if shared:
                raise ValueError(
                    f"build_model() returned a model for fold {i} that shares {len(shared)} "
                    f"variables with fold {i - 1}'s model: weights would carry between folds. "
                    "Create the backbone and the model inside build_model (freshly loading the "
                    "pretrained weights) on every call."
                )
        fit_phases(
            model,
            phases,
            _take(x, train_index),
            y[train_index],
            batch_size=batch_size,
            **fit_kwargs,
        )
        x_test = _take(x, test_index)
        probs, _ = predict_probabilities(
            model, lambda m=model, xt=x_test: predict_arrays(m, xt, batch_size)
        )
        if probs.shape[1] < num_classes:
            raise ValueError(
                f"The model has {probs.shape[1]} outputs but y has class {num_classes - 1}; "
                "expected one output per class."
            )
        fold_metrics.append(classification_metrics(y[test_index], probs, top_k=()))
        previous = model
    return {
        "folds": folds,
        "seed": seed,
        "fold_sizes": [len(t) for t in held_out],
        "fold_metrics": fold_metrics,
        "accuracy": _spread([m["accuracy"] for m in fold_metrics]),
        "macro_f1": _spread([m["macro_avg"]["f1"] for m in fold_metrics]),
    }


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
    >>> from tfl.evaluate import transfer_verdict
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
    from tfl.schedules import Phase, feature_extraction, two_phase

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
    >>> from tfl.evaluate import format_comparison
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
