"""What an export can write, how close each float format must stay to Keras, and its error."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

FORMATS = ("keras", "saved_model", "tflite")
QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8")


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far a float32 artefact's output may be from the Keras model's: `atol + rtol * scale`.

    `scale` is the largest |value| of that output over the checked examples (1 for
    probabilities that reach 1; the largest |score| or |value| for SVM scores and regression
    values). Float32 rounding in another runtime's kernels (oneDNN in TensorFlow, XNNPACK in
    LiteRT) sums the same products in another order: its error grows with the magnitude of
    the numbers summed, which is the scale of the whole output, not of each element (an
    element near 0 computed from large activations carries the same absolute error). So the
    limit is absolute, scaled by the output's largest magnitude.

    Example:
    >>> from tfl.export.formats import Tolerance
    >>> Tolerance(atol=1e-4, rtol=1e-4).limit(np.array([[0.0, 1.0]]))
    0.0002
    >>> Tolerance(atol=1e-4, rtol=1e-4).limit(np.array([[-250.0, 3.0]]))
    0.0251
    """

    atol: float
    rtol: float

    def limit(self, reference: np.ndarray) -> float:
        """`atol + rtol * max |reference|` (just `atol` for an empty output)."""
        return self.atol + self.rtol * _scale(reference)

    def compare(self, got: Mapping, reference: Mapping) -> dict[str, dict]:
        """Each output of `reference` against the same output of `got`.

        Returns:
            Per output name: `max_abs_diff` (inf for a missing or misshapen output, NaN
            stays NaN), `scale` (max |reference|), `limit` and `passed`.

        Example:
        >>> from tfl.export.formats import TOLERANCES
        >>> keras_out = {"probabilities": np.array([[0.1, 0.9], [0.7, 0.3]], np.float32)}
        >>> tflite_out = {"probabilities": keras_out["probabilities"] + 1.04e-5}
        >>> TOLERANCES["float32"].compare(tflite_out, keras_out)["probabilities"]["passed"]
        True
        """
        result = {}
        for key, ref in reference.items():
            ref = np.asarray(ref, dtype=np.float64)
            value = got.get(key)
            if value is None or np.shape(value) != ref.shape:
                diff = float("inf")
            else:
                delta = np.abs(np.asarray(value, dtype=np.float64) - ref)
                diff = float(np.max(delta)) if ref.size else 0.0
            limit = self.limit(ref)
            result[key] = {
                "max_abs_diff": diff,
                "scale": _scale(ref),
                "limit": limit,
                "passed": bool(diff <= limit),  # NaN fails
            }
        return result


def _scale(reference) -> float:
    reference = np.asarray(reference, dtype=np.float64)
    return float(np.max(np.abs(reference))) if reference.size else 0.0


# How far each float artefact may be from Keras (the parity check); set from
# benchmarks/export_parity.py (see tfl.export's docstring and the README).
TOLERANCES = {
    "keras": Tolerance(atol=1e-6, rtol=1e-6),
    "saved_model": Tolerance(atol=1e-4, rtol=1e-4),
    "float32": Tolerance(atol=1e-4, rtol=1e-4),
}


class ExportError(RuntimeError):
    """An export failed its parity check (or could not be converted); see `export.json`."""


def check_choice(name: str, values: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """`values` (one string or several) without duplicates, each one of `allowed`.

    Example:
    >>> from tfl.export.formats import FORMATS, check_choice
    >>> check_choice("formats", ["tflite", "keras", "tflite"], FORMATS)
    ['tflite', 'keras']
    >>> check_choice("formats", "onnx", FORMATS)
    Traceback (most recent call last):
    ...
    ValueError: Received formats=['onnx']; expected one or more of ['keras', 'saved_model', 'tflite'].
    """
    values = [values] if isinstance(values, str) else list(values)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f"Received {name}={values!r}; expected one or more of {list(allowed)}.")
    return list(dict.fromkeys(values))
