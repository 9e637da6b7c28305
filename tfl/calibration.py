"""Temperature scaling: calibrated class probabilities, stored in the model itself.

Fine-tuned networks are overconfident: their top probability is higher than their accuracy.
Temperature scaling (Guo et al., ICML 2017) divides the logits by one number T fitted on
held-out data (the validation split) to minimise the negative log-likelihood; T > 1 softens
the probabilities, and since dividing by T never reorders the logits, the predicted class and
the accuracy stay exactly the same.

tfl keeps T in the model: it is the `temperature` setting of the head (`tfl.heads.Head`),
part of the head's config, so `model.keras`, the exported SavedModel and the TFLite files all
output the calibrated probabilities, and export's parity check covers it. A `.keras` file of
an earlier tfl has no temperature and loads with 1.0 (unchanged outputs).

- `fit_temperature(probs, y)`: T for predicted probabilities and labels (numpy).
- `calibrate(model, data)`: predict `data` (validation batches), fit T for every softmax
  head, set it (`set_temperature`) and return the negative log-likelihood and expected
  calibration error before and after.
- `rescale(probs, factor)`: probabilities at another temperature (`softmax(log p / factor)`),
  e.g. `rescale(calibrated, 1 / T)` gives the uncalibrated ones back.

Example:
>>> from tfl.calibration import fit_temperature, rescale
>>> rng = np.random.default_rng(0)
>>> logits = rng.normal(size=(4000, 3)) * 3
>>> y = np.array([rng.choice(3, p=p) for p in rescale(np.exp(logits), 3.0)])
>>> round(fit_temperature(rescale(np.exp(logits), 1.0), y), 1)  # the labels follow T = 3
3.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from tfl.heads import PROBABILITIES, Head

# Temperatures outside this range mean the data say little (a handful of examples, or a
# model that is always right): fit_temperature stays inside it.
BOUNDS = (0.05, 20.0)
_TINY = np.finfo(np.float32).tiny  # probabilities that underflowed to 0 in float32


def _log_probs(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or not np.isfinite(p).all() or (p < 0).any():
        raise ValueError(
            f"Received probs with shape {p.shape}; expected (N, K) finite class probabilities."
        )
    return np.log(np.maximum(p, _TINY))


def _labels(y, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot / soft labels
        y = y.argmax(axis=1)
    y = y.reshape(-1).astype(np.int64)
    if len(y) != n:
        raise ValueError(f"Received {len(y)} labels for {n} rows of probs; expected one each.")
    return y


def rescale(probs, factor: float) -> np.ndarray:
    """`softmax(log(probs) / factor)`: the probabilities at `factor` times the temperature.

    Example:
    >>> from tfl.calibration import rescale
    >>> rescale(np.array([[0.8, 0.2]]), 2.0).round(3)
    array([[0.667, 0.333]])
    """
    z = _log_probs(probs) / float(factor)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def negative_log_likelihood(probs, y) -> float:
    """Mean negative log-likelihood of integer labels `y` under `probs` (natural log).

    Example:
    >>> from tfl.calibration import negative_log_likelihood
    >>> round(negative_log_likelihood(np.array([[0.5, 0.5], [0.9, 0.1]]), [0, 0]), 4)
    0.3993
    """
    log_p = _log_probs(probs)
    y = _labels(y, len(log_p))
    return float(-log_p[np.arange(len(y)), y].mean())


def fit_temperature(probs, y, bounds: tuple[float, float] = BOUNDS) -> float:
    """The temperature T that minimises the negative log-likelihood of `y` (Guo et al. 2017).

    The logits are taken as `log(probs)` (the same up to a constant per row, which a softmax
    ignores). The likelihood is convex in 1/T, so Newton's method on 1/T finds the optimum;
    it is kept inside `bounds`.

    Args:
        probs: `(N, K)` predicted probabilities (at the model's current temperature: the
            result multiplies it).
        y: `(N,)` integer labels (or one-hot rows).
        bounds: the smallest and largest temperature returned.

    Returns:
        T as a Python float (1.0 when the probabilities are already calibrated).
    """
    z = _log_probs(probs)
    y = _labels(y, len(z))
    low, high = 1.0 / bounds[1], 1.0 / bounds[0]
    z_true = z[np.arange(len(y)), y]
    beta = 1.0
    for _ in range(100):
        s = beta * z
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        mean = (p * z).sum(axis=1)
        gradient = float((mean - z_true).mean())
        curvature = float((p * (z - mean[:, None]) ** 2).sum(axis=1).mean())
        if curvature <= 1e-12:
            break
        new = float(np.clip(beta - gradient / curvature, low, high))
        if abs(new - beta) < 1e-9 * max(1.0, beta):
            beta = new
            break
        beta = new
    return float(1.0 / beta)


def heads_of(model: keras.Model) -> dict[str | None, Any]:
    """Output name (None for a one-head task) -> its head, for a tfl task; `{}` otherwise."""
    heads = getattr(model, "heads", None)
    if isinstance(heads, Mapping):
        return dict(heads)
    head = getattr(model, "head", None)
    return {None: head} if head is not None else {}


def calibratable(model: keras.Model) -> list[str | None]:
    """The outputs of `model` whose head gives softmax probabilities (what `calibrate` fits):
    `[None]` for a one-head classifier, `[]` for an SVM or regression head."""
    return [
        name
        for name, head in heads_of(model).items()
        if isinstance(head, Head) and head.output_kind == PROBABILITIES
    ]


def set_temperature(model: keras.Model, temperature: float | Mapping) -> keras.Model:
    """Set the temperature of `model`'s head(s); its predict/evaluate steps are traced anew.

    Args:
        model: a tfl task.
        temperature: one number for a one-head task, or `{output name: T}`.

    Returns:
        `model`.
    """
    heads = heads_of(model)
    values = temperature if isinstance(temperature, Mapping) else {None: temperature}
    for name, value in values.items():
        if name not in heads:
            raise ValueError(
                f"Received a temperature for output {name!r}; the model has {sorted(heads, key=str)}."
            )
        heads[name].temperature = float(value)
    # Keras traces a model's steps once: the next predict/evaluate must see the new value.
    model.predict_function = model.test_function = model.train_function = None
    return model


def predict_with_labels(model: keras.Model, dataset) -> tuple[Any, Any]:
    """Outputs and labels of `model` over `dataset` (`(x, y[, w])` batches), read once.

    Returns `(outputs, labels)`: arrays, or dicts of arrays for a multi-output model.
    """
    from tfl.evaluate.metrics import predict_batch

    outputs, labels = [], []
    for batch in dataset:
        outputs.append(predict_batch(model, batch[0]))
        labels.append(keras.tree.map_structure(np.asarray, batch[1]))
    if not outputs:
        raise ValueError("Received an empty dataset; calibration needs labelled examples.")

    def join(*parts):
        return np.concatenate([np.asarray(p) for p in parts], axis=0)

    return keras.tree.map_structure(join, *outputs), keras.tree.map_structure(join, *labels)


def _metrics(probs: np.ndarray, y: np.ndarray) -> dict:
    from tfl.evaluate import classification_metrics

    m = classification_metrics(y, probs, top_k=())
    return {"nll": m["log_loss"], "ece": m["ece"], "accuracy": m["accuracy"]}


def calibrate(model: keras.Model, data, bounds: tuple[float, float] = BOUNDS) -> dict:
    """Fit and set the temperature of every softmax head of `model` on `data`.

    One pass over `data` (the validation split: never the test split, and not the training
    split, on which the model is overconfident). A head that already has a temperature T₀
    gets T₀ times the fitted factor.

    Args:
        model: a tfl task (heads other than softmax ones are left alone).
        data: a finite `tf.data.Dataset` of `(x, y)` batches (integer labels).
        bounds: the range of temperatures allowed (see `fit_temperature`).

    Returns:
        Output name (None for a one-head task) -> `temperature` and the validation `nll`,
        `ece` and `accuracy` `before` and `after` (accuracy never changes). Empty when the
        model has no softmax head.

    Example:
    >>> import tensorflow as tf
    >>> from tfl.calibration import calibrate
    >>> model = ImageClassifier(ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None), 3)
    >>> x = np.random.default_rng(0).uniform(0, 255, (12, 32, 32, 3)).astype("float32")
    >>> data = tf.data.Dataset.from_tensor_slices((x, np.arange(12) % 3)).batch(4)
    >>> result = calibrate(model, data)[None]
    >>> result["after"]["nll"] <= result["before"]["nll"], model.head.temperature > 0
    (True, True)
    """
    names = calibratable(model)
    if not names:
        return {}
    outputs, labels = predict_with_labels(model, data)
    if not isinstance(outputs, Mapping):
        outputs, labels = {None: outputs}, {None: labels}
    heads = heads_of(model)
    results, temperatures = {}, {}
    for name in names:
        probs, y = np.asarray(outputs[name], np.float64), _labels(labels[name], len(outputs[name]))
        factor = fit_temperature(probs, y, bounds)
        before, after = _metrics(probs, y), _metrics(rescale(probs, factor), y)
        if after["nll"] > before["nll"]:  # never worse on the data it was fitted on
            factor, after = 1.0, before
        temperatures[name] = heads[name].temperature * factor
        results[name] = {"temperature": temperatures[name], "before": before, "after": after}
    set_temperature(model, temperatures)
    return results


__all__ = [
    "BOUNDS",
    "calibratable",
    "calibrate",
    "fit_temperature",
    "heads_of",
    "negative_log_likelihood",
    "predict_with_labels",
    "rescale",
    "set_temperature",
]
