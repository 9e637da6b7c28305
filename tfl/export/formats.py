"""What an export can write, how close each float format must stay to Keras, and its error."""

from __future__ import annotations

from collections.abc import Sequence

FORMATS = ("keras", "saved_model", "tflite")
QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8")
# Max |difference| from the Keras model that a float artefact may show (parity check).
TOLERANCES = {"keras": 1e-5, "saved_model": 1e-5, "float32": 1e-5}


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
