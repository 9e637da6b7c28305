"""The export's report: `export.json`, `export.md` and `signatures.txt`.

`export.md` lists the artefacts and their sizes, the parity of each with the Keras model, the
bad inputs `serving_default` refused, any failures and how to serve the files.
`signatures.txt` is `saved_model_cli show --all` of the SavedModel, started beside the check
(`show_signatures`) and collected after it (`save_signatures`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def show_signatures(saved_model: str) -> subprocess.Popen:
    """Starts `saved_model_cli show --all` on the SavedModel (runs beside the check)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorflow.python.tools.saved_model_cli",
            "show",
            "--dir",
            saved_model,
            "--all",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )


def save_signatures(process: subprocess.Popen, out_dir: str) -> str:
    """Waits for `show_signatures` and writes its output to `signatures.txt` (its name)."""
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = "", "timed out after 300 s"
    text = stdout if process.returncode == 0 else f"saved_model_cli failed: {stderr}"
    with open(os.path.join(out_dir, "signatures.txt"), "w") as f:
        f.write(text)
    return "signatures.txt"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def write_report(out_dir: str, report: dict) -> None:
    """Writes `report` to `export.json` and its Markdown summary to `export.md`.

    Example:
    >>> import os, tempfile
    >>> from tfl.export.report import write_report
    >>> report = {"model": "ImageClassifier", "files": {"keras": {"path": "model.keras",
    ...           "bytes": 2_500_000}}, "inputs": {"serving_default": ["images"],
    ...           "serving_preprocessed": ["images"]}}
    >>> out = tempfile.mkdtemp()
    >>> write_report(out, report)
    >>> print("".join(open(os.path.join(out, "export.md")).readlines()[:5]), end="")
    # Export of ImageClassifier
    <BLANKLINE>
    | artefact | file | size |
    |---|---|---|
    | keras | `model.keras` | 2.50 MB |
    """
    with open(os.path.join(out_dir, "export.json"), "w") as f:
        json.dump(report, f, indent=2, default=float)
    lines = [f"# Export of {report['model']}", ""]
    lines += ["| artefact | file | size |", "|---|---|---|"]
    for name, info in report["files"].items():
        lines.append(f"| {name} | `{info['path']}` | {_megabytes(info['bytes'])} |")
    if report.get("parity"):
        lines += _parity_lines(report)
    if report.get("probes"):
        lines += ["", "## Bad inputs to `serving_default`", ""]
        for p in report["probes"]:
            answer = f"refused: {p['message']}" if p["error"] else "**accepted**"
            lines.append(f"- {p['name']}: {answer}")
    if report.get("failures"):
        lines += ["", "## Failures", ""] + [f"- {f}" for f in report["failures"]]
    lines += _serving_lines(report)
    with open(os.path.join(out_dir, "export.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _parity_lines(report: dict) -> list[str]:
    """The parity table: one row per artefact, its difference, limit, accuracy, verdict."""
    lines = [
        "",
        f"## Parity with the Keras model ({report['examples']} validation examples, "
        "run in a fresh process without tfl)",
        "",
        "| artefact | max abs diff | limit | accuracy (Keras) | top-1 agreement | passed |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in report["parity"].items():
        q = next(iter(entry["quality"].values()))
        limit = (
            f"≤ {entry['limit']:.2g}"
            if "limit" in entry
            else f"accuracy drop ≤ {entry['max_accuracy_drop']:g}"
        )
        accuracy = (
            f"{_fmt(q['accuracy'])} ({_fmt(q['keras_accuracy'])})" if "accuracy" in q else "–"
        )
        lines.append(
            f"| {name} | {_fmt(entry['max_abs_diff'])} | {limit} | {accuracy} | "
            f"{_fmt(q.get('agreement'))} | {'yes' if entry['passed'] else '**no**'} |"
        )
    rules = [e["tolerance"] for n, e in report["parity"].items() if n != "keras" and "limit" in e]
    if rules:
        t = rules[0]
        lines += [
            "",
            f"Float artefacts pass when every output is within {t['probabilities']:g} of Keras "
            f"(probabilities) or {t['atol']:g} + {t['rtol']:g} x its largest |Keras value| "
            "(scores, values): float32 rounding in another runtime stays far below that, a "
            "wrong preprocessing or padding far above (`benchmarks/export_parity.py`).",
        ]
    return lines


def _serving_lines(report: dict) -> list[str]:
    """How to call the SavedModel and the TFLite files."""
    lines = ["", "## Serving", ""]
    raw = ", ".join(report["inputs"]["serving_default"])
    lines += [
        f"`serving_default` takes `{raw}` ("
        + ("encoded image files" if raw == "images" else "raw text")
        + " as strings, any batch size); `serving_preprocessed` takes "
        f"`{', '.join(report['inputs']['serving_preprocessed'])}`. Signatures: "
        "`signatures.txt` (`saved_model_cli show --all`).",
        "",
        "```python",
        "import tensorflow as tf",
    ]
    if "requires" in report:
        lines.append("import tensorflow_text  # registers the tokeniser ops")
    example = (
        "images=tf.constant([open('cat.jpg', 'rb').read()])"
        if raw == "images"
        else ", ".join(
            f"{n}=tf.constant(['some text'])" for n in report["inputs"]["serving_default"]
        )
    )
    lines += [
        "serve = tf.saved_model.load('saved_model').signatures['serving_default']",
        f"out = serve({example})",
        "```",
        "",
        "TFLite files take the `serving_preprocessed` inputs (LiteRT: "
        "`ai_edge_litert.interpreter.Interpreter(model_path).get_signature_runner("
        "'serving_preprocessed')`); class names are in labels*.txt.",
    ]
    return lines
