"""Phase 1 with and without the bottleneck cache: the keras.io guide's way vs `tfl.cache`.

Phase 1 of transfer learning trains a new head on a frozen base for E epochs. The keras.io
guide runs the frozen base inside `fit`, so every epoch pays a full forward pass. tfl computes
the base's features once (`tfl.cache.FeatureCache`) and trains the head on them. Same model,
same data, same optimizer and epochs, one process:

- guide: `fit_phases(..., cache=False)` — the frozen base runs in every step;
- cached, first run: an empty disk cache — one extraction pass, then the head;
- cached, second run: a fresh model (weights reloaded) on the same data — features come from
  the disk cache, as in re-runs, `lr_find`, cross-validation folds or `tfl compare`.

Also times the extraction itself against `predict` on the same images (feature model, same
batches). Data: 2,000 MNIST-5k digits at 96 px (tfl.data.images.from_arrays), 1,000 held out
for accuracy; base: the offline ImageNet MobileNetV2 (torchvision weights).

Times are the best of `--repeats` runs (default 2): a shared 2-core machine is noisy.
Run: `.venv/bin/python benchmarks/bottleneck_cache.py [--epochs 5 10] [--repeats 2] [--quick]`.
Prints a table and writes `benchmarks/results/bottleneck_cache.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfl  # noqa: E402  (before Keras/TensorFlow: tfl sets TensorFlow's CPU variables)

# isort: split
import keras  # noqa: E402

from tfl.cache import FeatureCache, split_at_bases  # noqa: E402
from tfl.data.bundled import load_mnist_5k, stratified_split  # noqa: E402
from tfl.data.images import from_arrays  # noqa: E402

SEED = 0
SIZE, TRAIN, TEST, BATCH = 96, 2000, 1000, 32
QUICK = {"size": 64, "train": 256, "test": 128}


def _model(size: int) -> tfl.ImageClassifier:
    keras.utils.set_random_seed(SEED)
    base = tfl.ImageBackbone("mobilenet_v2_torchvision", (size, size, 3))  # ImageNet, offline
    return tfl.ImageClassifier(base, num_classes=10)


def _phase1(model, data, epochs: int, cache) -> tuple[float, float]:
    phases = [tfl.Phase(epochs, trainable=None, learning_rate=1e-3, optimizer="adam")]
    start = time.perf_counter()
    tfl.fit_phases(model, phases, data.train, cache=cache, lint=False, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(data.validation, verbose=0, return_dict=True)["accuracy"]
    return round(seconds, 2), round(float(accuracy), 4)


def _extraction_vs_predict(data, size: int, repeats: int) -> dict:
    model = _model(size)
    feature_model, _ = split_at_bases(model)
    feature_model.predict(data.validation.take(1), verbose=0)  # build + trace once
    FeatureCache(None).features(model, data.validation.take(1), feature_model=feature_model)
    predict, extract = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        feature_model.predict(data.train, verbose=0)
        predict.append(round(time.perf_counter() - start, 2))
        extracted = FeatureCache(None).features(model, data.train, feature_model=feature_model)
        extract.append(round(extracted.seconds, 2))
    return {
        "predict_s": min(predict),
        "extract_s": min(extract),
        "extract_vs_predict": round(min(predict) / min(extract), 2),
        "all_predict_s": predict,
        "all_extract_s": extract,
    }


def _compare(data, size: int, epochs: int) -> tuple:
    folder = tempfile.mkdtemp(prefix="tfl-bench-cache-")
    try:
        guide = _phase1(_model(size), data, epochs, cache=False)
        first = _phase1(_model(size), data, epochs, cache=FeatureCache(folder))
        second = _phase1(_model(size), data, epochs, cache=FeatureCache(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return guide, first, second


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it runs")
    parser.add_argument("--repeats", type=int, default=2, help="runs per timing; best is kept")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    size, train, test = (
        (QUICK["size"], QUICK["train"], QUICK["test"])
        if args.quick
        else (
            SIZE,
            TRAIN,
            TEST,
        )
    )

    images, labels = load_mnist_5k()
    train_idx, test_idx = stratified_split(labels, (train, test), seed=SEED)
    data = from_arrays(
        images[train_idx],
        labels[train_idx],
        image_size=size,
        batch_size=BATCH,
        validation_data=(images[test_idx], labels[test_idx]),
        seed=SEED,
    )
    rows = []
    extraction = _extraction_vs_predict(data, size, args.repeats)
    print(
        f"extraction of {train:,} images: {extraction['extract_s']} s; predict: "
        f"{extraction['predict_s']} s ({extraction['extract_vs_predict']}x)"
    )
    for epochs in args.epochs:
        # Each comparison runs `repeats` times; times are the best of them (as timeit: the
        # least disturbed by whatever else the machine does), accuracies from the first.
        runs = [_compare(data, size, epochs) for _ in range(args.repeats)]
        guide, first, second = ((min(r[i][0] for r in runs), runs[0][i][1]) for i in range(3))
        row = {
            "epochs": epochs,
            "guide_s": guide[0],
            "cached_first_s": first[0],
            "cached_second_s": second[0],
            "speedup_first": round(guide[0] / first[0], 1),
            "speedup_second": round(guide[0] / second[0], 1),
            "goal_first": round(0.8 * epochs, 1),
            "goal_second": 20.0,
            "accuracy_guide": guide[1],
            "accuracy_cached_first": first[1],
            "accuracy_cached_second": second[1],
            "all_times_s": [[r[i][0] for i in range(3)] for r in runs],
        }
        rows.append(row)
        print(json.dumps(row))

    print()
    print(
        f"Phase 1 on {train:,} MNIST-5k digits at {size} px, MobileNetV2 (ImageNet), batch {BATCH}"
    )
    print(
        "| epochs | guide (s) | cached 1st (s) | speed-up | cached 2nd (s) | speed-up | accuracy guide / 1st / 2nd |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['epochs']} | {r['guide_s']} | {r['cached_first_s']} | {r['speedup_first']}x "
            f"(goal {r['goal_first']}x) | {r['cached_second_s']} | {r['speedup_second']}x "
            f"(goal 20x) | {r['accuracy_guide']} / {r['accuracy_cached_first']} / "
            f"{r['accuracy_cached_second']} |"
        )
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": sys.version.split()[0],
        "quick": args.quick,
        "images": {"train": train, "test": test, "size": size, "batch": BATCH},
        "repeats": args.repeats,
        "extraction": extraction,
        "runs": rows,
    }
    if not args.quick:
        os.makedirs(args.output, exist_ok=True)
        path = os.path.join(args.output, "bottleneck_cache.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"\nWrote {path}")
    return result


if __name__ == "__main__":
    main()
