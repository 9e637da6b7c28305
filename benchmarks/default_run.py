"""The default run (`tfl train`) over several seeds: test accuracy as mean ± std.

One run's test accuracy moves by about half a point with the order of the training data, so
a single number cannot tell a change of behaviour from a reshuffle. This script runs
`tfl train --seed S` for each seed in a fresh process (a fresh feature cache per seed, so
every run extracts its features as a first run does), reads each run's `metrics.json`, and
prints and saves the accuracies with their mean ± std (`benchmarks/results/default_run.json`).

    python benchmarks/default_run.py                 # seeds 0-4, about 4 minutes on 2 cores
    python benchmarks/default_run.py --seeds 0 1 2 --label mine --python /path/to/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "default_run.json")


def run(seed: int, python: str, work: str) -> dict:
    """One `tfl train --seed` in a fresh process and feature cache; its metrics."""
    output = os.path.join(work, f"seed-{seed}")
    env = dict(os.environ, TFL_CACHE_DIR=os.path.join(work, f"cache-{seed}"))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    started = time.time()
    subprocess.run(
        [python, "-m", "tfl.cli", "train", "--seed", str(seed), "--output", output],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    with open(os.path.join(output, "metrics.json")) as f:
        metrics = json.load(f)
    return {"seed": seed, "accuracy": metrics["test_accuracy"], "seconds": time.time() - started}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--python", default=sys.executable, help="the interpreter with tfl")
    parser.add_argument("--label", default="tfl", help="the key to save the results under")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tfl-default-run-") as work:
        runs = [run(seed, args.python, work) for seed in args.seeds]
    accuracies = [r["accuracy"] for r in runs]
    result = {
        "runs": runs,
        "mean": statistics.mean(accuracies),
        "std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
    }
    for r in runs:
        print(f"seed {r['seed']}: test accuracy {r['accuracy']:.4f} ({r['seconds']:.0f} s)")
    print(f"{args.label}: {result['mean']:.4f} ± {result['std']:.4f} over {len(runs)} seeds")
    saved = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            saved = json.load(f)
    saved[args.label] = result
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(saved, f, indent=1)
    return result


if __name__ == "__main__":
    main()
