"""Does transfer help? `tfl.two_phase` vs a linear probe vs training from scratch.

Same data, same epoch budget, one run each with a fixed seed, on the offline assets:
- image: the ImageNet MobileNetV2 (torchvision weights) on MNIST-5k at 96 px;
- text: all-MiniLM-L6-v2 on Pang & Lee's movie-review sentences (positive vs negative).

Three ways to spend the budget:
- linear probe: `tfl.feature_extraction` — the base never trains;
- two-phase: `tfl.two_phase` — head on the frozen base, then fine-tune at a lower rate;
- from scratch: the same architecture with random weights, everything trains (BatchNorm in
  training mode with momentum 0.9: Keras's default 0.999 never settles in a few hundred steps).

Run: `.venv/bin/python benchmarks/two_phase.py [--task image|text|both] [--quick]`.
Prints a table and writes `benchmarks/results/two_phase.json`. CPU times depend on the machine
(and on anything else running); the accuracies are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfl  # noqa: E402  (before Keras/TensorFlow: tfl sets TensorFlow's CPU variables)

# isort: split
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfl.data.bundled import (  # noqa: E402
    grey_digits_dataset,
    load_mnist_5k,
    load_movie_sentences,
    stratified_split,
)

SEED = 0
IMAGE = {"size": 96, "train": 500, "val": 500, "test": 1000, "head": 10, "finetune": 5}
TEXT = {"length": 48, "train": 1000, "val": 500, "test": 1000, "head": 1, "finetune": 3}
QUICK_IMAGE = {"size": 64, "train": 100, "val": 100, "test": 200, "head": 2, "finetune": 1}
QUICK_TEXT = {"length": 24, "train": 64, "val": 64, "test": 128, "head": 1, "finetune": 1}
BATCH = 32


def _timed(fn):
    start = time.time()
    value = fn()
    return value, round(time.time() - start, 1)


def _scratch_batchnorm(model: keras.Model):
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9


def _probe_and_two_phase(pretrained, cfg, train, val, test) -> dict:
    """A linear probe and `two_phase`, each on a fresh pretrained model, same epoch budget."""
    plans = {
        "linear_probe": tfl.feature_extraction(cfg["head"] + cfg["finetune"]),
        "two_phase": tfl.two_phase(cfg["head"], cfg["finetune"]),
    }
    results = {}
    for method, phases in plans.items():
        model = pretrained()
        _, seconds = _timed(
            lambda m=model, p=phases: tfl.fit_phases(m, p, train, validation_data=val, verbose=0)
        )
        results[method] = _score(model, test, seconds)
    return results


def image_benchmark(cfg: dict) -> dict:
    images, labels = load_mnist_5k()
    train_idx, val_idx, test_idx = stratified_split(
        labels, (cfg["train"], cfg["val"], cfg["test"]), seed=SEED
    )

    def data(idx, seed=None):
        return grey_digits_dataset(images[idx], labels[idx], cfg["size"], BATCH, seed)

    train, val, test = data(train_idx, SEED), data(val_idx), data(test_idx)
    shape = (cfg["size"], cfg["size"], 3)
    epochs = cfg["head"] + cfg["finetune"]

    def pretrained():
        keras.utils.set_random_seed(SEED)
        backbone = tfl.ImageBackbone("mobilenet_v2_torchvision", shape, weights="imagenet")
        return tfl.ImageClassifier(backbone, num_classes=10)

    results = _probe_and_two_phase(pretrained, cfg, train, val, test)

    # From scratch: a plain Keras MobileNetV2 (the same architecture), BatchNorm in training mode.
    keras.utils.set_random_seed(SEED)
    base = keras.applications.MobileNetV2(
        input_shape=shape, weights=None, include_top=False, pooling="avg"
    )
    _scratch_batchnorm(base)
    inputs = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(base(x))
    scratch = keras.Model(inputs, outputs)
    scratch.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    _, seconds = _timed(lambda: scratch.fit(train, validation_data=val, epochs=epochs, verbose=0))
    results["from_scratch"] = _score(scratch, test, seconds)
    return results


def text_benchmark(cfg: dict) -> dict:
    texts, labels = load_movie_sentences()
    train_idx, val_idx, test_idx = stratified_split(
        labels, (cfg["train"], cfg["val"], cfg["test"]), seed=SEED
    )

    def data(idx, shuffle=False):
        ds = tf.data.Dataset.from_tensor_slices((list(texts[idx]), labels[idx]))
        if shuffle:
            ds = ds.shuffle(len(idx), seed=SEED)
        return ds.batch(BATCH)

    train, val, test = data(train_idx, True), data(val_idx), data(test_idx)
    epochs = cfg["head"] + cfg["finetune"]

    def model_from(load_weights: bool):
        keras.utils.set_random_seed(SEED)
        backbone = tfl.text.load_bert_backbone(tfl.text.MINILM, load_weights=load_weights)
        preprocessor = tfl.text.bert_preprocessor(tfl.text.MINILM, sequence_length=cfg["length"])
        return tfl.TextClassifier(backbone, num_classes=2, preprocessor=preprocessor)

    results = _probe_and_two_phase(lambda: model_from(True), cfg, train, val, test)

    model = model_from(False)  # same architecture, random weights, everything trains
    _, seconds = _timed(
        lambda: tfl.fit_phases(
            model,
            [tfl.Phase(epochs, trainable="all", learning_rate=1e-4, name="scratch")],
            train,
            validation_data=val,
            verbose=0,
            lint=False,
        )
    )
    results["from_scratch"] = _score(model, test, seconds)
    return results


def _score(model, test, seconds) -> dict:
    values = model.evaluate(test, verbose=0, return_dict=True)
    result = {"test_accuracy": round(float(values["accuracy"]), 4), "seconds": seconds}
    print(f"{model.name}: {result}", flush=True)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("image", "text", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it runs")
    parser.add_argument("--output", default=os.path.join("benchmarks", "results"))
    args = parser.parse_args(argv)

    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "seed": SEED,
    }
    if args.task in ("image", "both"):
        cfg = QUICK_IMAGE if args.quick else IMAGE
        report["image"] = {"config": cfg, "results": image_benchmark(cfg)}
    if args.task in ("text", "both"):
        cfg = QUICK_TEXT if args.quick else TEXT
        report["text"] = {"config": cfg, "results": text_benchmark(cfg)}

    print(f"\n{'task':<6} {'method':<14} {'test acc':>8} {'seconds':>8}")
    for task in ("image", "text"):
        for method, r in report.get(task, {}).get("results", {}).items():
            print(f"{task:<6} {method:<14} {r['test_accuracy']:>8.3f} {r['seconds']:>8.1f}")
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "two_phase_quick.json" if args.quick else "two_phase.json")
    if os.path.exists(path):  # keep the other task's results from an earlier run
        with open(path) as f:
            earlier = json.load(f)
        report = {**{k: v for k, v in earlier.items() if k in ("image", "text")}, **report}
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
