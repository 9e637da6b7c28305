"""What an export can write, how close each float format must stay to Keras, and its error."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

FORMATS = ("keras", "saved_model", "tflite")
QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8")


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far a float artefact's outputs may be from the Keras model's, per output.

    - Probabilities (`probabilities`, `<head>_probabilities`: softmax, sigmoid, an SVM's
      softmax) lie in [0, 1]: their max |difference| must be at most `probabilities`.
    - Unbounded outputs (SVM `scores`, regression `values`): at most `atol + rtol * scale`,
      where `scale` is the output's largest |Keras value| over the checked examples.

    Why a scale and why the whole output's: float32 rounding in another runtime's kernels
    (oneDNN in TensorFlow, XNNPACK in LiteRT, a graph rewritten by Grappler) sums the same
    products in another order, so its error grows with the magnitude of the numbers summed;
    an element near 0 computed from large activations carries the same absolute error as
    its large neighbours, so the scale is the output's largest value, not each element's.
    Probabilities hide the scale of the logits behind them, so they get an absolute limit,
    set with a margin over what `benchmarks/export_parity.py` measured.

    Example:
    >>> from tfl.export.formats import Tolerance
    >>> tolerance = Tolerance(probabilities=1e-3, rtol=1e-4, atol=1e-6)
    >>> tolerance.limit("probabilities", np.array([[0.2, 0.8]]))
    0.001
    >>> round(tolerance.limit("scores", np.array([[-250.0, 3.0]])), 6)
    0.025001
    """

    probabilities: float
    rtol: float
    atol: float = 1e-6

    def limit(self, name: str, reference: np.ndarray) -> float:
        """The largest |difference| output `name` may show, given its Keras values."""
        if name.endswith("probabilities"):
            return self.probabilities
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
            limit = self.limit(key, ref)
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


# How far each float artefact may be from Keras (the parity check): 1e-3 of the output's
# range (1 for probabilities, the largest |value| for scores and values). Set from
# benchmarks/export_parity.py: 22 right exports (6 image families, 32-224 px, 4 head kinds,
# 2 BERTs) differed by at most 1.7e-4 on probabilities and 8.1e-5 x scale on scores and
# values (both a random InceptionV3; the real MobileNetV2: 7.7e-6 and 1.9e-6), while 5 wrong
# ones (preprocessing, padding or BatchNorm epsilon in the exported graph) moved
# probabilities by 0.87 or more and scores and values by 0.94 x scale or more. A reloaded
# .keras runs the same kernels (0 in every arm): its limits stay as strict as before.
TOLERANCES = {
    "keras": Tolerance(probabilities=1e-5, rtol=1e-6),
    "saved_model": Tolerance(probabilities=1e-3, rtol=1e-3),
    "float32": Tolerance(probabilities=1e-3, rtol=1e-3),
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
