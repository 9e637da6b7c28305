"""Weight-space ensembling of the probe and the fine-tuned model (WiSE-FT).

WiSE-FT (Wortsman et al., CVPR 2022) blends the weights of the model before and after
fine-tuning, θ(α) = (1 − α)·θ₀ + α·θ₁, and reports better accuracy under distribution shift
than either end, at no cost at inference (it is one model). In tfl, θ₀ is the model at the
end of the linear-probe phase (the pretrained base with its trained head; WiSE-FT's zero-shot
model) and θ₁ the model at the end of fine-tuning; `tfl.fit_phases(..., wise=...)` takes
both snapshots and blends. α = 0 is the probe, α = 1 the fine-tuned model; `"auto"` picks α
from `GRID` on validation data (highest accuracy, then lowest loss).

Every floating-point weight is blended (integer ones, such as random-seed states, come from
θ₁). LoRA adapters (`tfl.peft`) blend exactly: the A matrices come from θ₁ and only the B
matrices are blended, so the update A·B is scaled by α (B is zero in the probe).

Example:
>>> import keras
>>> from tfl.wise import interpolate, snapshot
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> start = snapshot(model)
>>> model.set_weights([np.ones((2, 1)), np.ones(1)])
>>> end = snapshot(model)
>>> interpolate(model, start, end, 0.5).get_weights()[1]
array([0.5], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

# The α that "auto" tries: the probe, three blends, the fine-tuned model.
GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def check_alpha(wise) -> float | str | None:
    """`wise` as `fit_phases` takes it: None, "auto" or an α in [0, 1].

    Example:
    >>> from tfl.wise import check_alpha
    >>> check_alpha("auto"), check_alpha(0.5), check_alpha(None)
    ('auto', 0.5, None)
    """
    if wise is None or wise == "auto":
        return wise
    if isinstance(wise, bool) or not isinstance(wise, int | float) or not 0.0 <= wise <= 1.0:
        raise ValueError(
            f"Received wise={wise!r}; expected None, 'auto' or a blend α in [0, 1] "
            "(0: the probe, 1: the fine-tuned model)."
        )
    return float(wise)


def snapshot(model: keras.Model) -> list[np.ndarray]:
    """A copy of every weight of `model` (`model.weights` order), as numpy arrays."""
    return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in model.weights]


def _is_lora_a(variable) -> bool:
    return variable.path.rsplit("/", 1)[-1] == "lora_kernel_a"


def interpolate(
    model: keras.Model, start: Sequence[np.ndarray], end: Sequence[np.ndarray], alpha: float
) -> keras.Model:
    """Set `model`'s weights to (1 − α)·`start` + α·`end` (see the module docstring).

    Args:
        model: the model both snapshots were taken of.
        start, end: `snapshot(model)` at θ₀ and θ₁.
        alpha: the blend, in [0, 1].

    Returns:
        `model`.
    """
    weights = model.weights
    if not len(weights) == len(start) == len(end):
        raise ValueError(
            f"Received snapshots of {len(start)} and {len(end)} weights for a model with "
            f"{len(weights)}; take both with snapshot(model) of this model."
        )
    alpha = float(alpha)
    for variable, a, b in zip(weights, start, end, strict=True):
        if not np.issubdtype(b.dtype, np.floating) or _is_lora_a(variable):
            value = b
        else:
            value = ((1.0 - alpha) * a.astype(np.float64) + alpha * b).astype(b.dtype)
        variable.assign(value)
    return model


def _score(logs: dict) -> tuple[float, float]:
    """(mean accuracy over the outputs, loss) of `evaluate` logs; accuracy NaN if none."""
    accuracies = [v for k, v in logs.items() if k == "accuracy" or k.endswith("_accuracy")]
    accuracy = float(np.mean(accuracies)) if accuracies else float("nan")
    return accuracy, float(logs["loss"])


def choose_alpha(
    model: keras.Model,
    start: Sequence[np.ndarray],
    end: Sequence[np.ndarray],
    validation_data,
    grid: Sequence[float] = GRID,
) -> dict:
    """Evaluate each α of `grid` on `validation_data`; leave `model` at the best one.

    Best: the highest validation accuracy (mean over the outputs of a multi-task model),
    then the lowest validation loss, then the larger α. A model without an accuracy metric
    is judged by its loss. The model must be compiled (as `fit_phases` leaves it).

    Returns:
        `{"alpha": best α, "grid": [{"alpha", "loss", "accuracy"}, ...]}`.
    """
    if validation_data is None:
        raise ValueError(
            "Received wise='auto' without validation data: α is chosen on it. Pass "
            "validation_data (or a DataSplits with a validation split), or a fixed α."
        )
    if isinstance(validation_data, tuple | list):
        x, y, w = keras.utils.unpack_x_y_sample_weight(tuple(validation_data))
        kwargs = dict(x=x, y=y, sample_weight=w)
    else:
        kwargs = dict(x=validation_data)
    rows = []
    for alpha in grid:
        interpolate(model, start, end, alpha)
        accuracy, loss = _score(model.evaluate(**kwargs, return_dict=True, verbose=0))
        rows.append({"alpha": float(alpha), "loss": loss, "accuracy": accuracy})

    def key(row):
        accuracy = row["accuracy"] if not np.isnan(row["accuracy"]) else 0.0
        return (round(accuracy, 9), -row["loss"], row["alpha"])

    best = max(rows, key=key)
    interpolate(model, start, end, best["alpha"])
    return {"alpha": best["alpha"], "grid": rows}


def blend(
    model: keras.Model,
    start: Sequence[np.ndarray],
    end: Sequence[np.ndarray],
    wise: float | str,
    validation_data=None,
    grid: Sequence[float] = GRID,
) -> dict:
    """WiSE-FT: set `model` to the blend `wise` (an α, or "auto": `choose_alpha`).

    Returns:
        `{"alpha": α, "grid": [...]}` (the grid is empty for a fixed α).
    """
    wise = check_alpha(wise)
    if wise == "auto":
        return choose_alpha(model, start, end, validation_data, grid)
    interpolate(model, start, end, wise)
    return {"alpha": wise, "grid": []}


def describe(result: dict | None) -> list[str]:
    """Report lines for a `blend` result: the α and, for "auto", the table per α.

    Example:
    >>> from tfl.wise import describe
    >>> print("\\n".join(describe({"alpha": 0.5, "grid": [
    ...     {"alpha": 0.0, "loss": 0.61, "accuracy": 0.8}, {"alpha": 0.5, "loss": 0.4,
    ...     "accuracy": 0.9}]})))
    | WiSE-FT α | validation loss | validation accuracy |
    |---|---|---|
    | 0.00 (probe) | 0.6100 | 0.8000 |
    | **0.50** | 0.4000 | 0.9000 |
    <BLANKLINE>
    The saved model is the blend θ(0.50) = 0.50·fine-tuned + 0.50·probe (WiSE-FT).
    """
    if not result:
        return []
    lines = []
    if result.get("grid"):
        lines += ["| WiSE-FT α | validation loss | validation accuracy |", "|---|---|---|"]
        for row in result["grid"]:
            alpha = f"{row['alpha']:.2f}"
            alpha += {0.0: " (probe)", 1.0: " (fine-tuned)"}.get(row["alpha"], "")
            if row["alpha"] == result["alpha"]:
                alpha = f"**{alpha}**"
            accuracy = "" if np.isnan(row["accuracy"]) else f"{row['accuracy']:.4f}"
            lines.append(f"| {alpha} | {row['loss']:.4f} | {accuracy} |")
        lines.append("")
    a = result["alpha"]
    lines.append(
        f"The saved model is the blend θ({a:.2f}) = {a:.2f}·fine-tuned + {1 - a:.2f}·probe "
        "(WiSE-FT)."
    )
    return lines


__all__ = ["GRID", "blend", "check_alpha", "choose_alpha", "describe", "interpolate", "snapshot"]
