"""A run's saved evaluation: `<name>.json` with its confusion PNG, and a deterministic `report.md`.

`write_report` builds the report from sections (run settings, data, phases, metrics, timing,
plots, notes), each only when there is something to say.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tfl.evaluate.history import accuracy_key, load_history, load_phases, resolve_phases
from tfl.evaluate.metrics import ECE_BINS
from tfl.evaluate.plots import plot_confusion

REPORT_FILE = "report.md"


def save_metrics(
    run_dir: str | os.PathLike, metrics: Mapping, name: str = "evaluation"
) -> tuple[str, str]:
    """Writes `<name>.json` and the confusion-matrix PNG `<name>_confusion.png` into `run_dir`.

    Args:
        run_dir: the run's directory (created).
        metrics: a `classification_metrics` / `evaluate_model` dict.
        name: the file stem, e.g. "evaluation" or "test".

    Returns:
        The paths of the JSON file and of the PNG.

    Example:
    >>> import json, tempfile
    >>> from tfl.evaluate import classification_metrics, save_metrics
    >>> m = classification_metrics([0, 1], np.array([[0.8, 0.2], [0.3, 0.7]]))
    >>> json_path, png_path = save_metrics(tempfile.mkdtemp(), m)
    >>> json.load(open(json_path))["accuracy"], png_path.endswith("evaluation_confusion.png")
    (1.0, True)
    """
    if not isinstance(name, str) or not name or os.sep in name:
        raise ValueError(f"Received name={name!r}; expected a file stem such as 'evaluation'.")
    for key in ("confusion_matrix", "names"):
        if key not in metrics:
            raise ValueError(
                f"Received metrics without {key!r}; expected the dict of classification_metrics "
                "or evaluate_model."
            )
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    json_path = os.path.join(run_dir, f"{name}.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1, ensure_ascii=False, default=_plain)
    png_path = plot_confusion(
        metrics["confusion_matrix"],
        metrics["names"],
        os.path.join(run_dir, f"{name}_confusion.png"),
    )
    return json_path, png_path


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        if math.isnan(value):
            return "n/a"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.4f}"
    text = value if isinstance(value, str) else json.dumps(value, default=_plain)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def _flatten(config: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows += _flatten(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    """The lines of a Markdown table; cells that are not strings are formatted for the report.

    Example:
    >>> from tfl.evaluate.report import markdown_table
    >>> print("\\n".join(markdown_table(["metric", "value"], [("accuracy", 0.5), ("n", 8)])))
    | metric | value |
    |---|---|
    | accuracy | 0.5000 |
    | n | 8 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += [
        "| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |"
        for row in rows
    ]
    return lines


def _split_counts(info: Mapping) -> dict[str, int]:
    """Examples per split from a `DataSplits.info` (`num_examples`; `counts` per class)."""
    for key in ("num_examples", "counts"):
        value = info.get(key)
        if isinstance(value, Mapping) and all(
            isinstance(v, int | np.integer) for v in value.values()
        ):
            return {str(k): int(v) for k, v in value.items()}
        if isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values()):
            return {str(k): int(sum(v.values())) for k, v in value.items()}
    return {}


def _skipped(info: Mapping) -> int | None:
    for key in ("skipped", "bad_files"):
        value = info.get(key)
        if isinstance(value, int | np.integer):
            return int(value)
    return None


def _epoch_range(phase: Mapping) -> str:
    """1-based, inclusive epochs of a phase: "3–4", or "3" for one epoch."""
    first, last = phase["start_epoch"] + 1, phase["end_epoch"]
    return f"{first}–{last}" if last > first else f"{first}"


def _phase_rows(phases: list[dict], epochs: list[int], columns: Mapping[str, np.ndarray]):
    metric = accuracy_key(columns)
    keys = [k for k in (f"val_{metric}" if metric else None, "val_loss") if k and k in columns]
    if not keys:  # no validation: report the training numbers
        keys = [k for k in (metric, "loss") if k and k in columns]
    header = ["phase", "epochs"] + [f"best {k}" for k in keys]
    epoch_array = np.array(epochs)
    rows = []
    for phase in phases:
        start, end = phase["start_epoch"], phase["end_epoch"]
        inside = (epoch_array >= start) & (epoch_array < end)
        row = [phase["name"], _epoch_range(phase)]
        for key in keys:
            values = columns[key][inside] if len(epoch_array) else np.array([])
            values = values[~np.isnan(values)]
            if not len(values):
                row.append("n/a")
            else:
                best = values.min() if key.endswith("loss") else values.max()
                row.append(_fmt(float(best)))
        rows.append(row)
    return header, rows


def write_report(
    run_dir: str | os.PathLike,
    *,
    title: str,
    config: Mapping | None = None,
    metrics: Mapping | None = None,
    history=None,
    phases=None,
    data_info: Mapping | None = None,
    notes: Sequence[str] = (),
    timing: Mapping[str, float] | None = None,
    worst: int = 5,
    defaults: Mapping | None = None,
    config_file: str | None = None,
) -> str:
    """Writes `report.md`: what ran, on which data, the phases, the metrics, the plots.

    Sections (each only when there is something to say): the run's settings (`config`,
    nested keys flattened as `a.b`; with `defaults`, only those that differ from them, and a
    link to `config_file` for the rest), the data (examples per split, class names, skipped
    inputs), the phases (epochs and the best validation accuracy / loss of each), the metrics
    (accuracy, macro and weighted F1, top-k, ECE, log loss), the `worst` classes by F1,
    timing, links to the PNG files in `run_dir` (only files that exist), and `notes`. The
    output depends only on the arguments and the PNG files present (no timestamps), so the
    same run gives the same report.

    Args:
        run_dir: the run's directory; `report.md` is written there.
        title: the report's heading.
        config: the run's settings (e.g. the CLI arguments), a flat or nested dict.
        metrics: a `classification_metrics` / `evaluate_model` dict.
        history: `history.csv` path, dict of lists or `keras.callbacks.History`; default:
            `run_dir/history.csv` if it exists.
        phases: as for `plot_history`; default: the history's phases, else
            `run_dir/backup/phases.json` (written by `fit_phases`), else the `phase` column.
        data_info: a `DataSplits.info` dict (or the `data.json` of the run).
        notes: lines to add at the end.
        timing: seconds per step, e.g. `{"train": 31.2, "evaluate": 1.4}`.
        worst: how many of the lowest-F1 classes to list.
        defaults: the settings `config` started from (e.g. the recipe's defaults,
            `tfl.config.to_dict(tfl.config.defaults(recipe))`): only the settings that
            differ are listed.
        config_file: the file with all the settings, relative to `run_dir` (e.g.
            `"config.yaml"`), linked from the settings section.

    Returns:
        The path of `report.md`.

    Example:
    >>> import tempfile
    >>> from tfl.evaluate import classification_metrics, write_report
    >>> m = classification_metrics([0, 1, 1], np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    >>> path = write_report(tempfile.mkdtemp(), title="demo", metrics=m)
    >>> "| accuracy | 0.6667 |" in open(path).read()
    True
    """
    run_dir = os.fspath(run_dir)
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"Received title={title!r}; expected a non-empty heading.")
    if isinstance(notes, str):
        notes = [notes]
    os.makedirs(run_dir, exist_ok=True)
    lines = [f"# {title.strip()}", ""]
    if config:
        lines += _run_section(config, defaults, config_file)
    if data_info:
        lines += _data_section(data_info, metrics)
    lines += _phases_section(run_dir, history, phases)
    if metrics:
        lines += _metrics_section(metrics, worst)
    if timing:
        lines += ["## Timing", ""]
        lines += markdown_table(
            ["step", "seconds"], [(k, f"{float(v):.1f}") for k, v in timing.items()]
        )
        lines.append("")
    lines += _plots_section(run_dir)
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]

    path = os.path.join(run_dir, REPORT_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n")
    return path


# Sections of report.md: each returns its lines, ending with a blank one.


def _run_section(
    config: Mapping, defaults: Mapping | None = None, config_file: str | None = None
) -> list[str]:
    """The run's settings, nested keys flattened as `a.b`: all of them, or (with `defaults`)
    those that differ, with a link to `config_file` for the rest."""
    rows = _flatten(config)
    lines = ["## Run", ""]
    if defaults is not None:
        default = dict(_flatten(defaults))
        changed = [(k, v) for k, v in rows if k not in default or default[k] != v]
        where = f"[`{config_file}`]({config_file})" if config_file else "the run's config"
        if not changed:
            return lines + [f"All settings are the recipe's defaults: {where}.", ""]
        lines += [
            f"Settings that differ from the recipe's defaults ({len(rows) - len(changed)} "
            f"more at their defaults: {where}):",
            "",
        ]
        rows = changed
    elif config_file:
        lines += [f"All settings: [`{config_file}`]({config_file}).", ""]
    lines += markdown_table(["setting", "value"], [(f"`{k}`", _fmt(v)) for k, v in rows])
    lines.append("")
    return lines


def _data_section(data_info: Mapping, metrics: Mapping | None) -> list[str]:
    """Examples per split, class names, skipped inputs."""
    lines = ["## Data", ""]
    counts = _split_counts(data_info)
    if counts:
        lines += markdown_table(["split", "examples"], [(k, _fmt(v)) for k, v in counts.items()])
        lines.append("")
    names = data_info.get("classes") or (metrics or {}).get("names")
    if names:
        shown = ", ".join(str(n) for n in names[:50])
        more = f", ... ({len(names)} in all)" if len(names) > 50 else ""
        lines += [f"Classes ({len(names)}): {shown}{more}", ""]
    skipped = _skipped(data_info)
    if skipped is not None:
        lines += [f"Skipped inputs: {skipped}", ""]
    return lines


def _phases_section(run_dir: str, history, phases) -> list[str]:
    """Each phase's epochs and best validation numbers (from the history, if there is one)."""
    if history is None and os.path.isfile(os.path.join(run_dir, "history.csv")):
        history = os.path.join(run_dir, "history.csv")
    state = os.path.join(run_dir, "backup", "phases.json")
    if history is not None:
        epochs, columns, own = load_history(history)
        if phases is None and not own and os.path.isfile(state):
            phases = state
        resolved = resolve_phases(phases, epochs, columns, own)
        if not resolved and epochs:
            resolved = [{"name": "all", "start_epoch": min(epochs), "end_epoch": max(epochs) + 1}]
        if not resolved:
            return []
        header, rows = _phase_rows(resolved, epochs, columns)
        return ["## Phases", ""] + markdown_table(header, rows) + [""]
    if phases is not None:
        rows = [(p["name"], _epoch_range(p)) for p in load_phases(phases)]
        return ["## Phases", ""] + markdown_table(["phase", "epochs"], rows) + [""]
    return []


def _metrics_section(metrics: Mapping, worst: int) -> list[str]:
    """Accuracy, top-k, macro / weighted F1, ECE, log loss; then the worst classes."""
    lines = ["## Metrics", ""]
    rows = [("examples", _fmt(metrics.get("num_examples")))]
    rows.append(("accuracy", _fmt(metrics["accuracy"])))
    for key in sorted(
        (k for k in metrics if k.startswith("top_") and k.endswith("_accuracy")),
        key=lambda k: int(k.split("_")[1]),
    ):
        rows.append((f"top-{key.split('_')[1]} accuracy", _fmt(metrics[key])))
    for avg in ("macro_avg", "weighted_avg"):
        if avg in metrics:
            rows.append((f"{avg.split('_')[0]} F1", _fmt(metrics[avg]["f1"])))
    if "ece" in metrics:
        rows.append((f"ECE ({ECE_BINS} bins)", _fmt(metrics["ece"])))
    if "log_loss" in metrics:
        rows.append(("log loss", _fmt(metrics["log_loss"])))
    lines += markdown_table(["metric", "value"], rows) + [""]
    if metrics.get("outputs") == "scores":
        lines += [
            "The model outputs scores (e.g. an SVM head): ECE and log loss use a softmax "
            "of the scores.",
            "",
        ]
    return lines + _worst_classes(metrics, worst)


def _worst_classes(metrics: Mapping, worst: int) -> list[str]:
    """The `worst` classes by F1, with their precision, recall and support."""
    per_class = metrics.get("per_class") or {}
    if not (per_class and worst):
        return []
    order = sorted(per_class.items(), key=lambda item: item[1]["f1"])[:worst]
    lines = [f"### Worst {len(order)} classes by F1", ""]
    lines += markdown_table(
        ["class", "precision", "recall", "F1", "support"],
        [
            (name, _fmt(c["precision"]), _fmt(c["recall"]), _fmt(c["f1"]), _fmt(c["support"]))
            for name, c in order
        ],
    )
    lines.append("")
    return lines


def _plots_section(run_dir: str) -> list[str]:
    """Links to the PNG files in `run_dir`, sorted by name."""
    pngs = sorted(
        f
        for f in os.listdir(run_dir)
        if f.endswith(".png") and os.path.isfile(os.path.join(run_dir, f))
    )
    if not pngs:
        return []
    return ["## Plots", ""] + [f"![{os.path.splitext(f)[0]}]({f})" for f in pngs] + [""]
