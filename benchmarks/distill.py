"""Does distillation pay? Teacher vs students vs the same students without a teacher, in int8.

For each modality (the default image run, and the text recipe), one teacher is trained with
`tfl train` and exported (`tfl export --format tflite --quantize float32 int8`). Then, for
each student size and seed, two arms run in fresh processes with the same student, data,
schedule and epochs:

- `distilled`: `tfl distill TEACHER --student S --seed K` (the teacher's softened outputs and
  the labels, `--alpha` / `--temperature`);
- `no teacher`: the same command with `--alpha 1`: the labels alone (Keras' Distiller then
  never calls the teacher).

Every arm is evaluated on the test split (Keras accuracy and ECE, `evaluation.json`); the
arms of the `--compare-seeds` (default: seed 0) are also exported to int8 TFLite and compared
with the teacher by `tfl distill` itself (`comparison.json`: int8 size, LiteRT batch-1
latency and batch-32 throughput on this CPU, int8 accuracy and ECE): size and speed depend
only on the architecture, and an int8 export takes minutes on a shared 2-core machine. The
script prints a table (accuracy: mean ± std over seeds, sample std; int8 columns: the compare
seeds), the paired difference distilled - no teacher per student, and writes
`benchmarks/results/distill.json`. A finished arm is not run again, so an interrupted
benchmark resumes (an arm killed mid-training resumes from its backup).

Run (2-core CPU; the numbers in the README came from these commands):

    python benchmarks/distill.py --modality image --seeds 0 1 2
    python benchmarks/distill.py --modality text --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = sys.executable

# What each modality trains: its teacher (`tfl train` flags) and its two student sizes.
SETUPS = {
    "image": {
        "teacher": [],  # `tfl train`: MobileNetV2 (torchvision ImageNet weights), MNIST-5k
        # The teacher's base cut after stage3, from its weights; and MobileNetV3-Small from
        # random weights (the offline "smaller family": no ImageNet weights here).
        "students": {
            "shallow:stage3": [],
            "mobilenet_v3_small": ["--student-weights", "none"],
        },
        "epochs": 10,
    },
    "text": {
        # The text recipe (all-MiniLM-L6-v2 on movie-review sentences), on a shorter budget:
        # 250 / 100 / 250 sentences per class and 1 + 2 epochs (the recipe: 500 / 250 / 500,
        # 1 + 3), so that 12 distillations fit in an hour on 2 cores.
        "teacher": [
            "--recipe",
            "text_classification",
            "--data.max-per-class",
            "{train: 250, validation: 100, test: 250}",
            "--epochs-finetune",
            "2",
        ],
        "students": {"shallow:3": [], "shallow:1": []},
        "epochs": 3,
    },
}
ARMS = {"distilled": None, "no teacher": 1.0}


def _tfl(*args: str, log: str) -> float:
    """`python -m tfl.cli ARGS` in a fresh process (output to `log`); its wall seconds."""
    start = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(
            [PYTHON, "-m", "tfl.cli", *args], stdout=f, stderr=subprocess.STDOUT, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"tfl {' '.join(args)} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - start


def _teacher(work: str, setup: dict) -> dict:
    run_dir = os.path.join(work, "teacher")
    if not os.path.exists(os.path.join(run_dir, "evaluation.json")):
        print(f"Training the teacher into {run_dir}...", flush=True)
        _tfl("train", *setup["teacher"], "--output", run_dir, log=run_dir + ".train.log")
    if not os.path.exists(os.path.join(run_dir, "export", "model_int8.tflite")):
        print("Exporting the teacher (TFLite float32 and int8)...", flush=True)
        flags = ["--format", "tflite", "--quantize", "float32", "int8"]
        _tfl("export", run_dir, *flags, log=run_dir + ".export.log")
    return {"run_dir": run_dir}


def _finished(out: str, compare: bool) -> dict | None:
    """The arm's `distill.json` once it has results (and `comparison.json` if asked)."""
    path = os.path.join(out, "distill.json")
    if not os.path.exists(path) or (compare and not os.path.exists(out + "/comparison.json")):
        return None
    with open(path) as f:
        record = json.load(f)
    return record if "results" in record else None


def _arm(work: str, teacher: str, student: str, arm: str, seed: int, args, setup) -> dict:
    name = f"{student.replace(':', '-')}_{arm.replace(' ', '-')}_seed{seed}"
    out = os.path.join(work, name)
    compare = seed in args.compare_seeds
    if _finished(out, compare) is None:
        print(f"  {student} {arm} seed {seed}...", flush=True)
        flags = ["--student", student, *setup["students"][student], "--seed", str(seed)]
        flags += ["--epochs", str(setup["epochs"]), "--temperature", str(args.temperature)]
        flags += ["--alpha", str(ARMS[arm] if ARMS[arm] is not None else args.alpha)]
        flags += [] if compare else ["--no-compare"]
        seconds = _tfl("distill", teacher, *flags, "--output", out, log=out + ".log")
        with open(os.path.join(out, "seconds.json"), "w") as f:
            json.dump({"seconds": seconds}, f)
    record = _finished(out, compare)
    with open(os.path.join(out, "evaluation.json")) as f:
        evaluation = json.load(f)
    row = {
        "run_dir": out,
        "seed": seed,
        "keras_accuracy": evaluation["accuracy"],
        "keras_ece": evaluation["ece"],
        "parameters": record["results"]["student"]["parameters"],
    }
    if os.path.exists(os.path.join(out, "seconds.json")):
        with open(os.path.join(out, "seconds.json")) as f:
            row["seconds"] = round(json.load(f)["seconds"], 1)
    if compare:
        with open(os.path.join(out, "comparison.json")) as f:
            row["comparison"] = json.load(f)
    return row


def _stats(values: list[float]) -> dict:
    values = [float(v) for v in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "values": values}


INT8_KEYS = ("int8_accuracy", "int8_ece", "int8_bytes", "batch1_ms_median", "throughput_per_s")


def _row(rows: list[dict], role: str = "student") -> dict:
    """Accuracy over all seeds; the int8 columns over the compare seeds."""
    compared = [r["comparison"][role] for r in rows if "comparison" in r]
    row = {k: _stats([c[k] for c in compared]) for k in INT8_KEYS} if compared else {}
    if role == "student":
        row.update({k: _stats([r[k] for r in rows]) for k in ("keras_accuracy", "keras_ece")})
        row["parameters"] = rows[0]["parameters"]
    else:
        row.update({k: _stats([c[k] for c in compared]) for k in ("keras_accuracy", "keras_ece")})
        row["parameters"] = compared[0]["parameters"]
    return row


def _summary(runs: dict[str, dict[str, list[dict]]]) -> dict:
    every = [r for arms in runs.values() for rows in arms.values() for r in rows]
    table = {"teacher": _row(every, "teacher")}
    differences = {}
    for student, arms in runs.items():
        for arm, rows in arms.items():
            table[f"{student} {arm}"] = _row(rows)
        paired = [
            d["keras_accuracy"] - n["keras_accuracy"]
            for d, n in zip(arms["distilled"], arms["no teacher"], strict=True)
        ]
        differences[student] = _stats(paired)
    return {"table": table, "distilled_minus_no_teacher_accuracy": differences}


def _print(summary: dict, modality: str) -> None:
    print(
        f"\n{modality}: test split; accuracy mean ± std over seeds; int8 TFLite, LiteRT, this CPU"
    )
    print("| model | parameters | accuracy | ECE | int8 accuracy | int8 size | batch-1 ms | /s |")
    print("|---|---|---|---|---|---|---|---|")

    def ms(row, key):
        return f"{row[key]['mean']:.4f} ± {row[key]['std']:.4f}"

    for name, row in summary["table"].items():
        int8 = (
            f"{row['int8_accuracy']['mean']:.4f} | {row['int8_bytes']['mean'] / 1e6:.2f} MB | "
            f"{row['batch1_ms_median']['mean']:.2f} | {row['throughput_per_s']['mean']:.0f}"
            if "int8_accuracy" in row
            else "n/a | n/a | n/a | n/a"
        )
        print(
            f"| {name} | {row['parameters']:,} | {ms(row, 'keras_accuracy')} | "
            f"{ms(row, 'keras_ece')} | {int8} |"
        )
    for student, d in summary["distilled_minus_no_teacher_accuracy"].items():
        print(f"{student}: distilled - no teacher = {d['mean']:+.4f} ± {d['std']:.4f} (paired)")


def run_modality(modality: str, args) -> dict:
    setup = SETUPS[modality]
    work = os.path.join(args.work, modality)
    os.makedirs(work, exist_ok=True)
    teacher = _teacher(work, setup)["run_dir"]
    runs: dict[str, dict[str, list[dict]]] = {}
    for student in setup["students"]:
        runs[student] = {
            arm: [_arm(work, teacher, student, arm, seed, args, setup) for seed in args.seeds]
            for arm in ARMS
        }
    summary = _summary(runs)
    _print(summary, modality)
    return {
        "setup": {
            **setup,
            "seeds": args.seeds,
            "compare_seeds": args.compare_seeds,
            "alpha": args.alpha,
            "T": args.temperature,
        },
        "teacher_run": teacher,
        **summary,
        "runs": runs,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", choices=("image", "text", "both"), default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--compare-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--work", default=os.path.join("runs", "bench-distill"))
    parser.add_argument("--output", default=os.path.join(HERE, "results", "distill.json"))
    args = parser.parse_args(argv)
    result = {}
    if os.path.exists(args.output):
        with open(args.output) as f:
            result = json.load(f)
    modalities = ("image", "text") if args.modality == "both" else (args.modality,)
    for modality in modalities:
        result[modality] = run_modality(modality, args)
        result["machine"] = {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
        }
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)
        print(f"Wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
