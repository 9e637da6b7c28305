"""Predict with a finished run: files in, labels and probabilities out (`tfl predict`).

A run directory written by `tfl train` holds everything prediction needs: the model
(`model.keras`, or the best checkpoint `best.keras`), the label map (`labels.json`) and the
configuration (`config.yaml`) that says how inputs were prepared in training. Images are
read exactly as the run's training data was: decoded with `tfl.data.decode_image` and
resized with `tfl.data.resize_image` at the run's image size and resize policy; text files
give one input per non-empty line (tab-separated pairs for runs trained on text pairs).

SVM heads (and any head without a softmax) output scores, not probabilities; prediction
shows a softmax of the scores and says so (`Prediction.outputs == "softmax of scores"`):
the ranking is exact, the numbers are not calibrated probabilities.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

import numpy as np

from tfl.builders import image_size
from tfl.heads import SCORES as SCORES_KIND
from tfl.saved_run import CHECKPOINTS, SavedRun

SCORES = "softmax of scores"
PROBABILITIES = "probabilities"
STDIN = "-"

__all__ = [
    "CHECKPOINTS",
    "LoadedRun",
    "Prediction",
    "format_prediction",
    "load_run",
    "predict_files",
    "predict_inputs",
    "read_image",
    "read_texts",
]

# A finished run opened for prediction is a `tfl.saved_run.SavedRun`.
LoadedRun = SavedRun


@dataclasses.dataclass
class Prediction:
    """The top classes for one input.

    Attributes:
        input: where the input came from: a file name, or `file:line` for a line of text.
        top: output name (`None` for a one-head model) -> `[(label, probability), ...]`,
            best first.
        outputs: output name -> `"probabilities"` or `"softmax of scores"`.
    """

    input: str
    top: dict[str | None, list[tuple[str, float]]]
    outputs: dict[str | None, str]


def shown_outputs(run: SavedRun) -> dict[str | None, str]:
    """Output name -> what prediction shows: `"probabilities"`, or `"softmax of scores"`
    for heads without a softmax (SVM).

    Raises:
        ValueError: a head that does not give one class per input (multi-label, regression).
    """
    return {
        name: SCORES if kind == SCORES_KIND else PROBABILITIES
        for name, kind in run.output_kinds().items()
    }


def load_run(run_dir: str, checkpoint: str = "final") -> SavedRun:
    """Open a finished run: its class names, configuration and model (loaded on first use).

    Args:
        run_dir: a run directory written by `tfl train` (`config.yaml`, `labels.json` and
            `model.keras` / `best.keras`).
        checkpoint: `"final"` (`model.keras`, the model at the end of training) or `"best"`
            (`best.keras`, the best epoch by the monitored metric).

    Raises:
        FileNotFoundError: the directory or one of its files is missing.
        ValueError: an unknown checkpoint.

    Example:
        None that runs in a docstring (it needs a trained run); see
        `tests/test_cli_commands.py`.
    """
    return SavedRun.open(run_dir, checkpoint)


def _short_error(error: BaseException) -> str:
    message = (getattr(error, "message", None) or str(error)).strip()
    message = message.splitlines()[0] if message else type(error).__name__
    # Drop TensorFlow's op decorations: "{{function_node ...}} <reason> [Op:DecodeImage]".
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", message)[:200]


def read_image(path: str, image_size: int | Sequence[int], resize: str = "crop") -> np.ndarray:
    """One image file as a tfl image model's input, prepared as the training data was.

    `tfl.data.decode_image` (JPEG, PNG, GIF, BMP, WebP to RGB float32 in 0-255), then
    `tfl.data.resize_image` to `image_size` with the run's resize policy.

    Args:
        path: the image file.
        image_size: the side (an int) or `(height, width)`.
        resize: "crop", "resize" or "pad" (see `tfl.data.resize_image`).

    Returns:
        float32 `(height, width, 3)`.

    Raises:
        ValueError: the file is empty, a folder or not a decodable image; the message names
            the file.

    Example:
    >>> import os, tempfile
    >>> import tensorflow as tf
    >>> from tfl.predict import read_image
    >>> path = os.path.join(tempfile.mkdtemp(), "grey.png")
    >>> tf.io.write_file(path, tf.io.encode_png(tf.fill([28, 40, 1], tf.constant(9, tf.uint8))))
    >>> image = read_image(path, 32)
    >>> image.shape, image.dtype.name, float(image.max())
    ((32, 32, 3), 'float32', 9.0)
    """
    import tensorflow as tf

    from tfl.data import decode_image, resize_image

    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)[:2]
    if os.path.isdir(path):
        raise ValueError(f"{path}: a folder, not an image file (pass e.g. {path}/*.png)")
    try:
        with open(path, "rb") as f:
            contents = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot be read: {e.strerror or e}") from None
    if not contents:
        raise ValueError(f"{path}: empty file (0 bytes)")
    try:
        image = resize_image(decode_image(contents), size, resize)
    except tf.errors.OpError as e:
        raise ValueError(
            f"{path}: not a readable image (JPEG, PNG, GIF, BMP or WebP): {_short_error(e)}"
        ) from None
    return image.numpy()


def read_texts(
    path: str,
    stream: IO[str] | None = None,
    encoding: str = "auto",
    encoding_errors: str = "stop",
    problems: list[str] | None = None,
) -> list[tuple[str, str]]:
    """The non-empty lines of a text file (or of `stream`, e.g. stdin, for `path == "-"`).

    Args:
        path: a text file, or "-" for `stream` (default `sys.stdin`).
        stream: where "-" reads from.
        encoding: the file's codec, or "auto" (UTF-8, with or without a byte-order mark):
            a run's `data.encoding`.
        encoding_errors: "stop": a line the codec cannot read raises; "skip": it is left
            out and named in `problems` (a run's `data.encoding_errors`).
        problems: where skipped lines are reported (`"file:line: why"`).

    Returns:
        `[(where, line), ...]` with `where` = `"file:line number"` (1-based; `<stdin>` for
        "-"), the line without its line break and surrounding white space.

    Raises:
        ValueError: the file cannot be read, or a line is not `encoding` text (unless
            skipped); the message names it.

    Example:
    >>> import io
    >>> from tfl.predict import read_texts
    >>> read_texts("-", io.StringIO("good fun\\n\\n  dull movie \\n"))
    [('<stdin>:1', 'good fun'), ('<stdin>:3', 'dull movie')]
    """
    from tfl.data.encodings import has_undecodable, read_text

    try:
        if path == STDIN:
            name, lines, codec = "<stdin>", (stream or sys.stdin).read().splitlines(), None
        else:
            if os.path.isdir(path):
                raise ValueError(f"{path}: a folder, not a text file")
            decoded = read_text(path, encoding)
            name, lines, codec = path, decoded.text.splitlines(), decoded.encoding
    except OSError as e:
        raise ValueError(f"{path}: cannot be read: {e.strerror or e}") from None
    found = []
    for i, line in enumerate(lines):
        if codec and has_undecodable(line):
            what = f"{name}:{i + 1}: not {codec} text"
            if encoding_errors != "skip":
                raise ValueError(
                    f"{what}; save the file as UTF-8, or set the run's data.encoding (or "
                    "data.encoding_errors: skip) in its config.yaml"
                )
            if problems is not None:
                problems.append(f"{what}, skipped")
            continue
        if line.strip():
            found.append((f"{name}:{i + 1}", line.strip()))
    return found


def _top(probs: np.ndarray, names: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probs, kind="stable")[: max(1, min(k, len(names)))]
    return [(names[i], float(probs[i])) for i in order]


def predict_inputs(
    run: SavedRun, inputs: Any, names: Sequence[str], top_k: int = 1, tta: Sequence[str] = ()
) -> list[Prediction]:
    """Predict prepared inputs (images from `read_image`, or strings) with a loaded run.

    Args:
        run: from `load_run`.
        inputs: an image array `(N, h, w, 3)`, an array/list of strings, or a tuple of two
            string arrays for a run trained on text pairs.
        names: where each input came from (file names), in order.
        top_k: how many classes to keep per input and head (at most the number of classes).
        tta: test-time augmentation (`tfl.tta.TRANSFORMS`, e.g. `["flip", "crops"]`): each
            image is predicted in several views and the probabilities averaged. Image runs
            only.

    Returns:
        One `Prediction` per input, in order.

    Example:
        None that runs in a docstring (it needs a trained run); see
        `tests/test_cli_commands.py`.
    """
    from tfl.evaluate import predict_arrays, softmax

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"Received top_k={top_k!r}; expected an integer >= 1 (e.g. --top-k 3).")
    shown = shown_outputs(run)
    batch_size = run.config.data.batch_size
    model = run.model
    if tta:
        from tfl.tta import with_tta

        model = with_tta(model, tta)
    outputs = predict_arrays(model, inputs, batch_size)
    if not isinstance(outputs, dict):
        outputs = {None: outputs}
    probabilities = {}
    for task, kind in shown.items():
        values = np.asarray(outputs[task], dtype=np.float64)
        probabilities[task] = softmax(values) if kind == SCORES else values
    classes = run.class_names
    return [
        Prediction(
            input=name,
            top={t: _top(p[i], classes[t], top_k) for t, p in probabilities.items()},
            outputs=dict(shown),
        )
        for i, name in enumerate(names)
    ]


def _text_inputs(run: SavedRun, lines: list[tuple[str, str]]) -> tuple[Any, list[str]]:
    column = run.config.data.text_column
    names = [where for where, _ in lines]
    if not isinstance(column, tuple | list) or len(column) < 2:
        return np.array([text for _, text in lines]), names
    pairs = []
    for where, text in lines:
        parts = text.split("\t")
        if len(parts) != len(column):
            raise ValueError(
                f"{where}: this run reads text pairs ({', '.join(column)}); expected "
                f"{len(column)} tab-separated texts on each line, got {len(parts)}"
            )
        pairs.append(parts)
    return tuple(np.array([p[i] for p in pairs]) for i in range(len(column))), names


def predict_files(
    run: SavedRun | str,
    files: Iterable[str],
    top_k: int = 1,
    stdin: IO[str] | None = None,
    tta: Sequence[str] = (),
) -> tuple[list[Prediction], list[str]]:
    """Predict image files (image runs) or the lines of text files (text runs).

    A file that cannot be read is skipped and reported; the others are still predicted.

    Args:
        run: a `SavedRun`, or a run directory (opened with `load_run`).
        files: image files, or text files (one input per non-empty line; "-" reads `stdin`).
        top_k: classes per input and head.
        stdin: where "-" reads from (default `sys.stdin`).
        tta: test-time augmentation of image runs (see `predict_inputs`); a text run
            refuses it (`ValueError`) before reading any file.

    Returns:
        `(predictions, problems)`: one `Prediction` per input read, and one message per file
        skipped (`"<file>: <why>"`).

    Example:
        None that runs in a docstring (it needs a trained run); see
        `tests/test_cli_commands.py`.
    """
    run = load_run(run) if isinstance(run, str) else run
    if tta and run.is_text:
        raise ValueError(
            "--tta: test-time augmentation (flips, crops) is for image runs; this run reads "
            "text. Predict without --tta."
        )
    problems: list[str] = []
    if run.is_text:
        lines: list[tuple[str, str]] = []
        for path in files:
            try:
                found = read_texts(
                    path,
                    stdin,
                    run.config.data.encoding,
                    run.config.data.encoding_errors,
                    problems,
                )
            except ValueError as e:
                problems.append(str(e))
                continue
            if not found:
                problems.append(f"{path}: no non-empty lines")
            lines += found
        if not lines:
            return [], problems
        inputs, names = _text_inputs(run, lines)
    else:
        size = image_size(run.config)
        images, names = [], []
        for path in files:
            try:
                images.append(read_image(path, size, run.config.data.resize))
                names.append(path)
            except ValueError as e:
                problems.append(str(e))
        if not images:
            return [], problems
        inputs = np.stack(images)
    return predict_inputs(run, inputs, names, top_k=top_k, tta=tta), problems


def _pairs(top: list[tuple[str, float]]) -> list[dict]:
    return [{"label": label, "probability": round(p, 6)} for label, p in top]


def format_prediction(prediction: Prediction, as_json: bool = False) -> str:
    """One output line: `input  label  probability` (more pairs for top-k), or JSON.

    A multitask prediction shows `task: label probability` per head; numbers that are a
    softmax of scores (SVM heads) are followed by `(softmax of scores)`. JSON lines hold
    `input`, `label`, `probability`, `top_k` (all kept classes, best first) and `outputs`,
    or per head under `tasks`.

    Example:
    >>> from tfl.predict import Prediction, format_prediction
    >>> p = Prediction("7.png", {None: [("7", 0.91), ("1", 0.05)]}, {None: "probabilities"})
    >>> print(format_prediction(p))
    7.png  7 0.9100  1 0.0500
    >>> p = Prediction("7.png", {None: [("7", 0.91)]}, {None: "probabilities"})
    >>> print(format_prediction(p))
    7.png  7  0.9100
    >>> print(format_prediction(p, as_json=True))
    {"input": "7.png", "label": "7", "probability": 0.91, "top_k": [{"label": "7", "probability": 0.91}], "outputs": "probabilities"}
    """  # noqa: E501
    if as_json:
        entries = {
            task: {
                "label": top[0][0],
                "probability": round(top[0][1], 6),
                "top_k": _pairs(top),
                "outputs": prediction.outputs[task],
            }
            for task, top in prediction.top.items()
        }
        if list(entries) == [None]:
            return json.dumps({"input": prediction.input, **entries[None]}, ensure_ascii=False)
        return json.dumps({"input": prediction.input, "tasks": entries}, ensure_ascii=False)
    parts = [prediction.input]
    for task, top in prediction.top.items():
        shown = (
            f"{top[0][0]}  {top[0][1]:.4f}"
            if len(top) == 1 and task is None
            else "  ".join(f"{label} {p:.4f}" for label, p in top)
        )
        if task is not None:
            shown = f"{task}: {shown}"
        if prediction.outputs[task] == SCORES:
            shown += f" ({SCORES})"
        parts.append(shown)
    return "  ".join(parts)
