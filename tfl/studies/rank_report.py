"""What `tfl rank` writes and prints: the table, the recommendation, the plot, the command.

- `rank_config(config)`: `tfl rank`: rank the candidates (`tfl.studies.rank`), then write
  `rank.json`, `rank.md`, `rank.png` (score vs cost), `config.yaml` and `winner.yaml` (the
  configuration that trains the winner: `tfl train --config winner.yaml`) into the study
  directory.
- `format_ranking(result)`: the Markdown table, best first, and the recommendation.
- `write_ranking(result, folder)`: the three files, also into a `tfl train` run directory
  when `model.base: auto` ranked first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping

from tfl import config as config_lib
from tfl.evaluate.report import markdown_table
from tfl.studies import rank as rank_lib

RANK_FILE, RANK_REPORT, RANK_PLOT, WINNER_FILE = "rank.json", "rank.md", "rank.png", "winner.yaml"
SCORE_NAMES = {"probe": "probe accuracy", "logme": "LogME", "leep": "LEEP"}


def _number(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_ranking(result: Mapping) -> str:
    """The ranking as Markdown: one row per candidate, best first, then the recommendation.

    Example:
    >>> row = {"name": "a 96px", "probe_accuracy": 0.9, "logme": -0.5, "leep": None,
    ...        "parameters": 2_000_000, "extract_seconds": 3.0, "cached": False}
    >>> print(format_ranking({"score": "probe", "candidates": [row], "winner": row}))
    | rank | candidate | probe accuracy | LogME | LEEP | base parameters | features |
    |---|---|---|---|---|---|---|
    | 1 | a 96px | 0.900 | -0.500 | – | 2.0M | extracted, 3.0 s |
    <BLANKLINE>
    Recommendation: **a 96px** (best probe accuracy, 0.900).
    """
    rows = []
    for i, row in enumerate(result["candidates"], 1):
        if "error" in row:
            rows.append(("–", row["name"], "failed", "", "", "", row["error"]))
            continue
        how = "cached" if row["cached"] else f"extracted, {row['extract_seconds']:.1f} s"
        rows.append(
            (
                str(i),
                row["name"],
                _number(row["probe_accuracy"]),
                _number(row["logme"]),
                _number(row["leep"]),
                f"{row['parameters'] / 1e6:.1f}M",
                how,
            )
        )
    header = ["rank", "candidate", "probe accuracy", "LogME", "LEEP", "base parameters"]
    lines = markdown_table([*header, "features"], rows)
    lines += ["", recommendation(result)]
    return "\n".join(lines)


def recommendation(result: Mapping) -> str:
    """One sentence: the winner, by what, and where the other scores disagree."""
    winner = result.get("winner")
    if winner is None:
        return "No candidate could be scored: see the errors above."
    score = result["score"]
    key = "probe_accuracy" if score == "probe" else score
    text = f"Recommendation: **{winner['name']}** (best {SCORE_NAMES[score]}, "
    text += f"{winner[key]:.3f})."
    scored = [r for r in result["candidates"] if "error" not in r]
    for other, label in (("probe_accuracy", "the probe"), ("logme", "LogME"), ("leep", "LEEP")):
        if other == key or any(r.get(other) is None for r in scored) or len(scored) < 2:
            continue
        best = max(scored, key=lambda r: r[other])
        if best["name"] != winner["name"]:
            text += f" {label} would pick {best['name']}."
    if result.get("schedule"):
        text += f" Schedule for train.schedule auto: {result['schedule']} ({result['schedule_reason']})."
    return text


def train_command(config: config_lib.RunConfig, result: Mapping, winner_path: str) -> str:
    """The `tfl train` command line that trains the winner."""
    candidate = rank_lib.Candidate(**result["winner"]["settings"])
    flags = " ".join(candidate.flags(config))
    return f"tfl train --config {winner_path}   # i.e. your settings with {flags}"


def plot_ranking(result: Mapping, path: str) -> None:
    """`rank.png`: each candidate's probe accuracy and LogME against its base's parameters."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in result["candidates"] if "error" not in r]
    figure = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(figure)
    for ax, key, label in zip(
        figure.subplots(1, 2), ("probe_accuracy", "logme"), ("probe accuracy", "LogME"), strict=True
    ):
        for row in rows:
            x = row["parameters"] / 1e6
            winner = result.get("winner") and row["name"] == result["winner"]["name"]
            ax.scatter([x], [row[key]], s=60 if winner else 30, c="C3" if winner else "C0")
            ax.annotate(
                row["name"], (x, row[key]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        ax.set_xlabel("frozen base parameters (millions): the cost of a forward pass")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    figure.suptitle("tfl rank: score vs cost (winner in red)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write_ranking(result: Mapping, folder: str, title: str = "Ranking") -> None:
    """`rank.json`, `rank.md` and `rank.png` into `folder`."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, RANK_FILE), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, default=float, ensure_ascii=False)
    with open(os.path.join(folder, RANK_REPORT), "w", encoding="utf-8") as f:
        f.write(f"# {title}\n\n{format_ranking(result)}\n\n{NOTE}\n")
    if any("error" not in r for r in result["candidates"]):
        plot_ranking(result, os.path.join(folder, RANK_PLOT))


NOTE = (
    "Scores on the pooled train and validation examples (the test split is not read): the "
    "linear probe is k-fold cross-validated logistic regression on the frozen features, "
    "LogME (You et al. 2021) the evidence of a linear model on them, LEEP (Nguyen et al. "
    "2020) how well the base's own ImageNet classifier's outputs predict the labels. "
    "Higher is better for all three. What they predicted on real data: README, 'Choosing "
    "the base'."
)


def rank_config(
    config: config_lib.RunConfig, progress: Callable[[str], None] | None = None
) -> dict:
    """`tfl rank`: rank the candidates of `config` and write the study directory.

    Writes `rank.json`, `rank.md`, `rank.png`, `config.yaml` and `winner.yaml` (train it with
    `tfl train --config winner.yaml`) into `config.output`, else `runs/<name>-rank-<time>`.

    Returns:
        The `tfl.studies.rank.rank_candidates` result plus `run_dir`, `winner_config` (the
        path of winner.yaml, None if nothing could be scored) and `command`.

    Example:
        None that runs in a docstring; see `tests/test_rank.py`.
    """
    from tfl.studies.configured import study_dir

    config = config_lib.validate(config)
    folder = study_dir(config, "rank")
    result = rank_lib.rank_candidates(config, progress=progress)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(config_lib.to_yaml(config))
    result.update(run_dir=folder, winner_config=None, command=None)
    if result["winner"] is not None:
        path = os.path.join(folder, WINNER_FILE)
        with open(path, "w") as f:
            f.write(config_lib.to_yaml(rank_lib.winner_config(config, result)))
        result.update(winner_config=path, command=train_command(config, result, path))
    write_ranking(result, folder, title=f"Ranking: {config.name}")
    return result


def rank(config=None, progress: Callable[[str], None] | None = print, **sections) -> dict:
    """`tfl.rank(...)`: `tfl rank` from Python. Which base for my data, before training?

    Args:
        config: a `tfl.config.RunConfig`, a dict of settings (as the YAML file), or None
            (the image_classification defaults).
        progress: called with a line per candidate (default `print`; None: quiet).
        **sections: settings merged over `config`, by section, e.g.
            `model={"base": "auto"}, rank={"image_sizes": [64, 96]}`.

    Returns:
        What `rank_config` returns: `candidates` best first (scores, costs), `winner`,
        `schedule`, `command`, `run_dir`.

    Example:
        None that runs in a docstring (it runs the bases):

            result = tfl.rank(model={"base": "auto"}, rank={"cuts": ["stage3", "whole"]})
            print(result["winner"]["name"], result["command"])
    """
    if isinstance(config, config_lib.RunConfig):
        config = config_lib.from_dict(sections, config) if sections else config
    else:
        config = config_lib.from_dict({**(config or {}), **sections})
    return rank_config(config, progress=progress)


__all__ = [
    "RANK_FILE",
    "RANK_PLOT",
    "RANK_REPORT",
    "WINNER_FILE",
    "format_ranking",
    "plot_ranking",
    "rank",
    "rank_config",
    "recommendation",
    "train_command",
    "write_ranking",
]
