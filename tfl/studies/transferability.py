"""Transferability scores: how well will a frozen base's features serve these labels?

Computed from features (and, for LEEP, the source classifier's outputs) on the user's own
examples, before any fine-tuning. Numpy linear algebra, written from the papers' equations:

- `logme(features, labels)`: LogME (You, Liu, Wang, Long, "LogME: Practical Assessment of
  Pre-trained Models for Transfer Learning", ICML 2021): the log marginal likelihood
  (evidence) per example of a Bayesian linear model from the features to each one-hot label
  column, with the prior and noise precisions set by evidence maximisation, averaged over
  classes. Higher is better; comparable between bases on the same data.
- `leep(source_probabilities, labels)`: LEEP (Nguyen, Hassner, Seeger, Archambeau, "LEEP: A
  New Measure to Evaluate Transferability of Learned Representations", ICML 2020): the
  average log-likelihood of the expected empirical predictor built from the source
  classifier's probabilities. Needs a base that keeps its source (e.g. ImageNet) classifier.
- `linear_probe(features, labels)`: the direct evidence: a k-fold cross-validated
  multinomial logistic regression on the (standardised) features, trained with `model.fit`
  (all folds at once, one Keras model), scored on each held-out fold.

Example:
>>> rng = np.random.default_rng(0)
>>> labels = np.repeat([0, 1], 20)
>>> informative = rng.normal(size=(40, 3)) + labels[:, None] * 3.0
>>> noise = rng.normal(size=(40, 3))
>>> bool(logme(informative, labels) > logme(noise, labels))
True
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfl.studies.folds import stratified_folds

__all__ = ["leep", "linear_probe", "logme", "logme_evidence"]

_MAX_ITERATIONS = 100
_TOLERANCE = 1e-5


def _check(features, labels) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or y.ndim != 1 or len(f) != len(y) or len(y) < 2:
        raise ValueError(
            f"Received features of shape {f.shape} and labels of shape {y.shape}; expected "
            "(N, D) features and (N,) integer labels with the same N >= 2."
        )
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"Received labels of dtype {y.dtype}; expected integer class labels.")
    if not np.all(np.isfinite(f)):
        raise ValueError("Received features with NaN or infinite values.")
    return f, y.astype(np.int64)


def logme_evidence(features, target, alpha: float, beta: float) -> float:
    """log p(target | features, alpha, beta) of LogME's Bayesian linear model, per example.

    The model (You et al. 2021, section 4.2): `target = features @ w + noise`, `w ~ N(0,
    alpha^-1 I)`, `noise ~ N(0, beta^-1)`. Its evidence, with `A = alpha I + beta F^T F` and
    `m = beta A^-1 F^T y` (eq. 2):

        L = D/2 log alpha + N/2 log beta - N/2 log 2 pi - beta/2 ||F m - y||^2
            - alpha/2 m^T m - 1/2 log |A|

    returned divided by N. Equal to the log density of `y ~ N(0, F F^T / alpha + I / beta)`.

    Example:
    >>> f = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> y = np.array([1.0, 0.0, 1.0])
    >>> cov = f @ f.T / 2.0 + np.eye(3) / 4.0
    >>> direct = -0.5 * (y @ np.linalg.solve(cov, y) + np.linalg.slogdet(cov)[1]
    ...                  + 3 * np.log(2 * np.pi)) / 3
    >>> bool(abs(logme_evidence(f, y, alpha=2.0, beta=4.0) - direct) < 1e-12)
    True
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    return _evidence(u, s**2, f.shape[1], u.T @ y, float(y @ y), alpha, beta)


def _evidence(u, sigma, dim, z, yy, alpha, beta) -> float:
    """Per-example evidence from the SVD: `sigma` = squared singular values, `z = U^T y`."""
    n = u.shape[0]
    denominator = alpha + beta * sigma
    m_norm = float(np.sum((beta * np.sqrt(sigma) * z / denominator) ** 2))  # m^T m
    # ||F m - y||^2: the part of y in F's column space, shrunk, plus the part outside it.
    residual = float(np.sum((alpha * z / denominator) ** 2)) + max(yy - float(z @ z), 0.0)
    log_det = float(np.sum(np.log(denominator))) + (dim - len(sigma)) * math.log(alpha)
    evidence = (
        dim / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual
        - alpha / 2 * m_norm
        - log_det / 2
    )
    return evidence / n


def _maximise(u, sigma, dim, z, yy) -> tuple[float, float]:
    """MacKay's fixed-point updates of alpha and beta (You et al. 2021, Algorithm 1)."""
    n = u.shape[0]
    alpha, beta = 1.0, 1.0
    for _ in range(_MAX_ITERATIONS):
        denominator = alpha + beta * sigma
        gamma = float(np.sum(beta * sigma / denominator))
        m_norm = float(np.sum((beta * np.sqrt(sigma) * z / denominator) ** 2))
        residual = float(np.sum((alpha * z / denominator) ** 2)) + max(yy - float(z @ z), 0.0)
        new_alpha = gamma / max(m_norm, 1e-12)
        new_beta = (n - gamma) / max(residual, 1e-12)
        converged = abs(new_alpha / alpha - 1) < _TOLERANCE and abs(new_beta / beta - 1) < (
            _TOLERANCE
        )
        alpha, beta = max(new_alpha, 1e-12), max(new_beta, 1e-12)
        if converged:
            break
    return alpha, beta


def logme(features, labels) -> float:
    """LogME of `features` for classification `labels` (You et al., ICML 2021).

    For each class c, the one-hot column `y_c = (labels == c)` is fitted by the Bayesian
    linear model of `logme_evidence`; alpha and beta maximise its evidence (the paper's
    fixed-point iteration: gamma = sum beta s_i / (alpha + beta s_i), alpha = gamma / m^T m,
    beta = (N - gamma) / ||F m - y||^2, with s_i the eigenvalues of F^T F). LogME is the
    maximum evidence per example averaged over the classes. One SVD serves every class.

    Args:
        features: `(N, D)` features of the N examples (e.g. a frozen base's pooled output).
        labels: `(N,)` integer class labels.

    Returns:
        The score (higher is better; typically between -2 and 2). Comparable between
        feature extractors on the same examples and labels.

    Example:
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> separable = np.eye(3)[labels] * 5.0
    >>> shuffled = separable[[1, 2, 3, 4, 5, 0]]
    >>> bool(logme(separable, labels) > logme(shuffled, labels))
    True
    """
    f, y = _check(features, labels)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    scores = []
    for c in np.unique(y):
        target = (y == c).astype(np.float64)
        z = u.T @ target
        yy = float(target @ target)
        alpha, beta = _maximise(u, sigma, f.shape[1], z, yy)
        scores.append(_evidence(u, sigma, f.shape[1], z, yy, alpha, beta))
    return float(np.mean(scores))


def leep(source_probabilities, labels) -> float:
    """LEEP of a source classifier for the target `labels` (Nguyen et al., ICML 2020).

    With theta(x) the source model's probabilities over its Z classes (eq. 1-3):
    the empirical joint P(y, z) = 1/N sum_i theta(x_i)_z [y_i = y], the conditional
    P(y | z) = P(y, z) / P(z), and the expected empirical predictor
    p(y | x) = sum_z P(y | z) theta(x)_z. LEEP is its average log-likelihood
    1/N sum_i log p(y_i | x_i): at most 0, higher is better.

    Args:
        source_probabilities: `(N, Z)` probabilities of the source classes (e.g. the 1000
            ImageNet classes; rows sum to 1).
        labels: `(N,)` integer target labels.

    Example:
    >>> theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    >>> by_hand = np.mean(np.log([0.9 * 0.85 + 0.1 * 0.15, 0.8 * 0.85 + 0.2 * 0.15] * 2))
    >>> round(leep(theta, [0, 0, 1, 1]), 4), round(float(by_hand), 4)
    (-0.2955, -0.2955)
    """
    theta, y = _check(source_probabilities, labels)
    if np.any(theta < 0) or not np.allclose(theta.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(
            "Received source_probabilities whose rows are not probabilities; apply a softmax "
            "to the source classifier's logits first."
        )
    classes = int(y.max()) + 1
    joint = np.zeros((classes, theta.shape[1]))
    np.add.at(joint, y, theta)
    joint /= len(y)  # P(y, z)
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), 1e-300)  # P(y | z)
    eep = theta @ conditional.T  # (N, classes): p(y | x)
    return float(np.mean(np.log(np.maximum(eep[np.arange(len(y)), y], 1e-300))))


def linear_probe(
    features,
    labels,
    folds: int = 5,
    seed: int = 0,
    steps: int = 300,
    learning_rate: float = 0.01,
    l2: float = 1e-3,
) -> dict:
    """K-fold cross-validated multinomial logistic regression on frozen features.

    The features are standardised (mean and standard deviation over all N examples: no
    labels are used), the folds are `tfl.studies.stratified_folds(labels, folds, seed)`,
    and one Keras model holds one softmax layer per fold: fold j's layer trains on every
    example outside fold j (the loss ignores the held-out ones) with Adam for `steps`
    full passes' worth of batches, in one `model.fit`. Each example is then predicted by
    the layer that never saw it.

    Args:
        features: `(N, D)` features.
        labels: `(N,)` integer labels.
        folds: the number of folds (each class needs at least one example per fold to be
            learnt in every fold).
        seed: the seed of the folds and of the initialisation.
        steps: optimizer steps (batches of 128).
        learning_rate: Adam's rate.
        l2: L2 penalty on the weights.

    Returns:
        A dict: `accuracy` (held-out accuracy pooled over all N examples), `fold_accuracy`
        (one per fold), `predictions` (the held-out prediction of each example) and `folds`.

    Example:
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat([0, 1, 2], 10)
    >>> features = rng.normal(size=(30, 4)) + np.eye(3, 4)[labels] * 4.0
    >>> linear_probe(features, labels, folds=3, steps=60)["accuracy"] > 0.9
    True
    """
    f, y = _check(features, labels)
    held_out = stratified_folds(y, folds, seed)
    f = (f - f.mean(axis=0)) / np.maximum(f.std(axis=0), 1e-6)
    classes = int(y.max()) + 1
    targets = np.repeat(y[:, None], folds, axis=1)  # (N, folds): -1 where held out
    for j, index in enumerate(held_out):
        targets[index, j] = -1
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((f.shape[1],))
    logits = keras.layers.Dense(
        folds * classes, kernel_regularizer=keras.regularizers.L2(l2), name="probes"
    )(inputs)
    model = keras.Model(inputs, keras.layers.Reshape((folds, classes))(logits))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1),
    )
    x = f.astype(np.float32)
    # One epoch of `steps` batches from a repeated, reshuffled stream: no per-epoch overhead
    # (hundreds of tiny epochs cost more than the steps themselves).
    batches = (
        tf.data.Dataset.from_tensor_slices((x, targets))
        .shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(min(128, len(y)))
    )
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
    scores = np.asarray(model.predict(x, batch_size=1024, verbose=0))
    predictions = np.empty(len(y), dtype=np.int64)
    for j, index in enumerate(held_out):
        predictions[index] = scores[index, j].argmax(axis=1)
    correct = predictions == y
    return {
        "accuracy": float(correct.mean()),
        "fold_accuracy": [float(correct[index].mean()) for index in held_out],
        "predictions": predictions,
        "folds": folds,
    }
