"""Fine-tuning under distribution shift: in-domain and shifted accuracy and ECE per method.

The question: which of tfl's fine-tuning options hold up when the test data come from
another source than the training data, and which are only noise? Each method trains with
`tfl.run.Run` (the code `tfl train` runs) on the recipe's offline data, then is scored on
the in-domain test split and on real shifted data of the same classes that installs offline:

- images: MobileNetV2 (torchvision ImageNet weights) fine-tuned on MNIST-5k; shifted:
  scikit-learn's `load_digits()` (UCI optdigits: 1,797 8x8 digits from other writers and
  another scanner), upscaled to the run's size;
- text: MiniLM (all-MiniLM-L6-v2) fine-tuned on movie-review sentences; shifted: tweets,
  Amazon product-review sentences and NYT editorial sentences from the same vaderSentiment
  archive (`tfl.data.bundled.load_sentiment_snippets`, |mean rating| >= 1, balanced).

Training arms (each in a fresh process per seed): `full_ft` (no probe: the whole model from
a random head for the same number of epochs), `lpft` (tfl's default: linear probe, then
fine-tune), `ema` (LP-FT with `train.ema`), `lora` (LP-FT with `train.peft: lora`). From
each trained model the post-hoc methods are scored without training again: `+ T`
(temperature scaling fitted on the validation split, `tfl.calibration`), `+ WiSE` (the blend
with the probe, `tfl.wise`: α = 0.5, or "auto" on the validation split) and, for images,
`+ TTA` (`tfl.tta`: "crops", 6 views; "flip", 2 views). Results are saved per run as they
finish (`benchmarks/results/robustness_<modality>.json`), then summarised as mean ± std
over seeds.

    python benchmarks/robustness.py --modality image --seeds 0 1 2
    python benchmarks/robustness.py --modality text --seeds 0 1 2
    python benchmarks/robustness.py --modality image --summary     # the table from saved runs

Arms already in the results file are skipped (an interrupted benchmark resumes; --rerun
runs them again).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "robustness_{}.json")
ARMS = ("full_ft", "lpft", "ema", "lora")
EMA = 0.9  # about 10 steps: the fine-tuning phases here have 20 (text) to 80 (images)
TEXT_SIZES = {"train": 150, "validation": 100, "test": 200}  # per class
SHIFT_PER_CLASS = 100  # text: per class and source


# === The runs ===


def make_config(modality: str, arm: str, seed: int, output: str):
    """The run of one arm: the recipe's defaults (smaller for text), scored by hand."""
    from tfl import config as config_lib

    recipe = "image_classification" if modality == "image" else "text_classification"
    config = config_lib.defaults(recipe)
    train = dataclasses.replace(config.train, wise=None)
    data = config.data
    if modality == "text":
        data = dataclasses.replace(data, max_per_class=dict(TEXT_SIZES))
        train = dataclasses.replace(train, head_epochs=1, finetune_epochs=2)
    if arm == "full_ft":
        total = train.head_epochs + train.finetune_epochs
        train = dataclasses.replace(train, head_epochs=0, finetune_epochs=total)
    elif arm == "ema":
        train = dataclasses.replace(train, ema=EMA)
    elif arm == "lora":
        train = dataclasses.replace(train, peft="lora")
    if os.environ.get("TFL_ROBUSTNESS_SMOKE"):  # plumbing only: tiny sizes
        small = {"train": 4, "validation": 4, "test": 4}
        data = dataclasses.replace(data, max_per_class=small, batch_size=8)
        if modality == "image":
            data = dataclasses.replace(data, image_size=32)
        else:
            data = dataclasses.replace(data, sequence_length=16)
        if train.head_epochs:
            train = dataclasses.replace(train, head_epochs=1)
        train = dataclasses.replace(train, finetune_epochs=1)
    evaluate = dataclasses.replace(config.evaluate, calibrate=False, tta=())
    config = dataclasses.replace(
        config, seed=seed, output=output, data=data, train=train, evaluate=evaluate
    )
    return config_lib.validate(config)


def shifted_data(modality: str, run) -> dict:
    """The shifted test sets, batched like the run's data: name -> tf.data.Dataset."""
    import numpy as np
    import tensorflow as tf

    from tfl.data.bundled import load_sentiment_snippets, stratified_split

    batch = run.config.data.batch_size
    if modality == "image":
        from sklearn.datasets import load_digits

        from tfl.data import resize_image

        digits = load_digits()
        size = run.config.data.image_size
        images = (digits.images[..., None] * (255.0 / 16.0)).astype("float32")

        def prepare(image, label):
            image = resize_image(tf.image.grayscale_to_rgb(image), (size, size), "crop")
            return image, label

        labels = digits.target.astype("int64")
        if os.environ.get("TFL_ROBUSTNESS_SMOKE"):
            images, labels = images[:40], labels[:40]
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
        return {"optdigits": ds.map(prepare).batch(batch)}
    sets = {}
    for domain in ("tweets", "amazon", "nyt"):
        texts, labels = load_sentiment_snippets(domain, min_abs_score=1.0)
        per_class = 4 if os.environ.get("TFL_ROBUSTNESS_SMOKE") else SHIFT_PER_CLASS
        (keep,) = stratified_split(labels, (2 * per_class,), seed=0)
        x, y = np.array([str(t) for t in texts[keep]]), labels[keep]
        sets[domain] = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    return sets


def _scores(probs, y) -> dict:
    from tfl.evaluate import classification_metrics

    m = classification_metrics(y, probs, top_k=())
    return {"accuracy": m["accuracy"], "ece": m["ece"], "nll": m["log_loss"]}


def predict_splits(model, splits: dict) -> dict:
    """name -> (probabilities, labels) for each split."""
    import numpy as np

    from tfl.calibration import predict_with_labels

    out = {}
    for name, ds in splits.items():
        probs, y = predict_with_labels(model, ds)
        out[name] = (np.asarray(probs, np.float64), np.asarray(y))
    return out


def score_variants(predictions: dict, name: str, record: dict) -> float:
    """`record[name]` and `record[name + " + T"]`: every split's scores without and with a
    temperature fitted on the validation predictions; returns that temperature."""
    from tfl.calibration import fit_temperature, rescale

    temperature = fit_temperature(*predictions["validation"])
    record[name] = {split: _scores(p, y) for split, (p, y) in predictions.items()}
    record[f"{name} + T"] = {
        split: _scores(rescale(p, temperature), y) for split, (p, y) in predictions.items()
    }
    record[f"{name} + T"]["temperature"] = temperature
    return temperature


def _tta_variants(run, splits: dict, temperature: float, name: str, record: dict) -> None:
    """The calibrated model scored with test-time augmentation (images)."""
    from tfl.calibration import set_temperature
    from tfl.tta import with_tta

    set_temperature(run.model, temperature)
    scored = {k: v for k, v in splits.items() if k != "validation"}
    for transforms in (["crops"], ["flip"]):
        preds = predict_splits(with_tta(run.model, transforms), scored)
        label = f"{name} + TTA {'+'.join(transforms)}"
        record[label] = {split: _scores(p, y) for split, (p, y) in preds.items()}
    set_temperature(run.model, 1.0)


def _wise_variants(run, splits: dict, modality: str, prefix: str, record: dict) -> None:
    """θ(0.5) and θ(auto) with the probe (LP-FT arms), each with and without T."""
    import keras

    from tfl.wise import choose_alpha, interpolate, snapshot

    model = run.model
    end = snapshot(model)
    keras.saving.load_weights(
        model,
        os.path.join(run.run_dir, "backup", "phase-0.weights.h5"),
        objects_to_skip=[model.optimizer],
    )
    start = snapshot(model)
    interpolate(model, start, end, 0.5)
    score_variants(predict_splits(model, splits), f"{prefix} + WiSE 0.5", record)
    chosen = choose_alpha(model, start, end, run.data.validation)
    name = f"{prefix} + WiSE auto"
    temperature = score_variants(predict_splits(model, splits), name, record)
    record[name]["alpha"] = chosen["alpha"]
    record[name]["grid"] = chosen["grid"]
    if modality == "image" and prefix == "LP-FT":
        _tta_variants(run, splits, temperature, f"{name} + T", record)


NAMES = {"full_ft": "full FT", "lpft": "LP-FT", "ema": "LP-FT + EMA", "lora": "LP-FT + LoRA"}


def worker(modality: str, arm: str, seed: int, output: str) -> dict:
    """Train one arm and score every variant that follows from it."""
    from tfl.run import Run

    started = time.time()
    run = Run.create(make_config(modality, arm, seed, output))
    run.fit(verbose=0)
    trained = time.time() - started
    splits = {"validation": run.data.validation, "test": run.data.test}
    splits.update(shifted_data(modality, run))
    record: dict = {}
    score_variants(predict_splits(run.model, splits), NAMES[arm], record)
    if arm in ("lpft", "ema"):
        _wise_variants(run, splits, modality, NAMES[arm], record)
    phases = [p for p in run.history.phases if "trainable_params" in p]
    return {
        "modality": modality,
        "arm": arm,
        "seed": seed,
        "train_seconds": round(trained, 1),
        "seconds": round(time.time() - started, 1),
        "phases": phases,
        "variants": record,
    }


# === Orchestration and the summary ===


def _load(modality: str) -> dict:
    path = RESULTS.format(modality)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"runs": []}


def _save(modality: str, saved: dict) -> None:
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS.format(modality), "w") as f:
        json.dump(saved, f, indent=1)


def summarise(saved: dict) -> dict:
    """variant -> split -> metric -> {mean, std, n} over the seeds."""
    table: dict = {}
    for run in saved["runs"]:
        for variant, splits in run["variants"].items():
            for split, scores in splits.items():
                if not isinstance(scores, dict) or "accuracy" not in scores:
                    continue
                for metric, value in scores.items():
                    cell = table.setdefault(variant, {}).setdefault(split, {})
                    cell.setdefault(metric, []).append(value)
    for variant in table.values():
        for split in variant.values():
            for metric, values in split.items():
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                split[metric] = {"mean": statistics.mean(values), "std": std, "n": len(values)}
    return table


def format_table(table: dict, shifted: list[str]) -> str:
    """Markdown: accuracy and ECE, in-domain and on each shifted set, mean ± std."""
    head = ["method", "test acc", "test ECE"]
    for name in shifted:
        head += [f"{name} acc", f"{name} ECE"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, splits in table.items():
        cells = [variant]
        for split in ["test", *shifted]:
            for metric in ("accuracy", "ece"):
                m = splits.get(split, {}).get(metric)
                cells.append("" if m is None else f"{m['mean']:.3f} ± {m['std']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    n = max((m["accuracy"]["n"] for s in table.values() for m in s.values()), default=0)
    return "\n".join(lines) + f"\n\n(mean ± std over {n} seeds)"


def orchestrate(
    modality: str, seeds: list[int], arms: list[str], python: str, rerun: bool = False
) -> None:
    saved = _load(modality)
    with tempfile.TemporaryDirectory(prefix="tfl-robustness-") as work:
        env = dict(os.environ, TFL_CACHE_DIR=os.path.join(work, "cache"))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        done = {(r["arm"], r["seed"]) for r in saved["runs"]}
        for seed in seeds:
            for arm in arms:
                if (arm, seed) in done and not rerun:  # an interrupted benchmark resumes
                    continue
                out = os.path.join(work, f"{arm}-{seed}.json")
                command = [python, os.path.abspath(__file__), "--worker", modality, arm]
                command += [str(seed), out]
                subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
                with open(out) as f:
                    record = json.load(f)
                saved["runs"] = [
                    r for r in saved["runs"] if (r["arm"], r["seed"]) != (arm, seed)
                ] + [record]
                _save(modality, saved)
                print(f"{modality} {arm} seed {seed}: {record['seconds']:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", choices=("image", "text"), default="image")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--python", default=sys.executable, help="the interpreter with tfl")
    parser.add_argument("--summary", action="store_true", help="only print the saved table")
    parser.add_argument("--rerun", action="store_true", help="run arms already saved again")
    parser.add_argument("--worker", nargs=4, metavar=("MODALITY", "ARM", "SEED", "OUT"))
    args = parser.parse_args(argv)
    if args.worker:
        modality, arm, seed, out = args.worker
        record = worker(
            modality, arm, int(seed), os.path.join(os.path.dirname(out), f"{arm}-{seed}")
        )
        with open(out, "w") as f:
            json.dump(record, f)
        return record
    if not args.summary:
        orchestrate(args.modality, args.seeds, args.arms, args.python, args.rerun)
    saved = _load(args.modality)
    saved["summary"] = summarise(saved)
    _save(args.modality, saved)
    shifted = ["optdigits"] if args.modality == "image" else ["tweets", "amazon", "nyt"]
    print(format_table(saved["summary"], shifted))
    return saved


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
