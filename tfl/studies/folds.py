"""Stratified k-fold cross-validation of a fine-tuning plan on arrays, a fresh model per fold.

- `stratified_folds(y, folds, seed)`: the held-out indices of each fold.
- `cross_validate(build_model, x, y, phases=...)`: each fold trains a NEW model (freshly
  loaded pretrained weights) with `tfl.fit_phases` on the other folds and is scored on its
  own; mean ± std over folds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np

from tfl.evaluate.metrics import classification_metrics, predict_arrays, predict_probabilities


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
    >>> from tfl.studies import stratified_folds
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


def take_rows(x, index: np.ndarray):
    return keras.tree.map_structure(lambda a: np.asarray(a)[index], x)


def num_rows(x) -> int:
    sizes = {len(a) for a in keras.tree.flatten(x)}
    if len(sizes) != 1:
        raise ValueError(
            f"Received x with arrays of different lengths {sorted(sizes)}; expected one row per "
            "example in every array."
        )
    return sizes.pop()


def spread(values: Sequence[float]) -> dict:
    values = [float(v) for v in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def _check_arguments(build_model, x, y) -> tuple[np.ndarray, int]:
    """`y` as an array and the number of examples, or a `ValueError` naming what is wrong."""
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(
            f"Received y with shape {y.shape} and dtype {y.dtype}; expected integer class labels "
            "(N,)."
        )
    n = num_rows(x)
    if n != len(y):
        raise ValueError(f"Received {n} inputs and {len(y)} labels; expected one label each.")
    if not callable(build_model):
        raise ValueError(
            f"Received build_model={build_model!r}; expected a function that returns a fresh "
            "model (with freshly loaded pretrained weights) on each call."
        )
    return y, n


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
        `mean`, `std` (sample standard deviation over folds, ddof=1) and `values`;
        `held_out` (each fold's example indices) and `predictions` (the predicted class of
        each of them), for paired tests between methods run on the same folds.
    """
    from tfl.fitting import fit_phases

    y, n = _check_arguments(build_model, x, y)
    fit_kwargs = dict(fit_kwargs or {})
    fit_kwargs.setdefault("verbose", 0)
    for key in ("validation_data", "batch_size", "x", "y"):
        if key in fit_kwargs:
            raise ValueError(
                f"Received fit_kwargs with {key!r}; cross_validate sets it for each fold."
            )
    held_out = stratified_folds(y, folds, seed)
    num_classes = int(y.max()) + 1 if y.size else 0
    fold_metrics, predictions, previous = [], [], None  # previous: the previous fold's model
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
            take_rows(x, train_index),
            y[train_index],
            batch_size=batch_size,
            **fit_kwargs,
        )
        x_test = take_rows(x, test_index)
        probs, _ = predict_probabilities(
            model, lambda m=model, xt=x_test: predict_arrays(m, xt, batch_size)
        )
        if probs.shape[1] < num_classes:
            raise ValueError(
                f"The model has {probs.shape[1]} outputs but y has class {num_classes - 1}; "
                "expected one output per class."
            )
        fold_metrics.append(classification_metrics(y[test_index], probs, top_k=()))
        predictions.append(probs.argmax(axis=1).tolist())
        previous = model
    return {
        "folds": folds,
        "seed": seed,
        "fold_sizes": [len(t) for t in held_out],
        "fold_metrics": fold_metrics,
        "accuracy": spread([m["accuracy"] for m in fold_metrics]),
        "macro_f1": spread([m["macro_avg"]["f1"] for m in fold_metrics]),
        "held_out": [t.tolist() for t in held_out],
        "predictions": predictions,
    }
