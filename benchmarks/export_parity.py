"""How far float32 exports are from Keras: the evidence behind `tfl.export.TOLERANCES`.

For each arm (a base family, an input size, a head kind; and two text models) a model is
built, its head trained for a few epochs on cached features (so its outputs are as peaked as
a real run's), and exported with `tfl.export.export_model` as a SavedModel and a float32
TFLite file; the parity check runs them in fresh processes without tfl (the SavedModel with
TensorFlow, the TFLite file with LiteRT) on held-out examples. For every artefact and output
the script records the max |difference| from Keras and the output's scale (max |Keras
value|), so the limit can be set as `atol + rtol * scale`.

Weights: `mobilenet_v2_torchvision` and `all-minilm-l6-v2` are the real pretrained models
that install offline; the other families are randomly initialised (their ImageNet weights
download, which this machine cannot), with each BatchNorm's statistics set from the training
digits (data-dependent init) so that activations have a trained network's scale instead of
vanishing. Random weights are fine for numerical parity: the kernels and the graph are the
same; only the activations' scale differs, which the rule measures. They are NOT pretrained
models and no accuracy here means anything.

"Wrong" arms export a deliberately broken copy of the real MobileNetV2 run and compare it
with the right Keras model: the limits must still fail them.

- `wrong_preprocessing`: the exported graph normalises with Keras' `x / 127.5 - 1` instead
  of torchvision's mean / std.
- `wrong_padding`: the stride-2 paddings of Keras' MobileNetV2 (`((0, 1), (0, 1))`: bottom
  and right only) instead of torchvision's one pixel on every side.
- `wrong_bn_epsilon`: BatchNorm epsilon 1e-3 (Keras) instead of 1e-5 (torch).

Each arm runs in a fresh Python process. One seed (0): the differences come from the
kernels, not from training noise; the spread over arms is the evidence.

Run (about an hour on a busy 2-core CPU; `--arms a,b --update` re-runs those arms and keeps
the others in the results file):

    nice -n 10 .venv/bin/python benchmarks/export_parity.py [--arms NAME,...] [--examples 64]

Writes `benchmarks/results/export_parity.json` and prints one row per arm and artefact.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
HERE = os.path.dirname(os.path.abspath(__file__))
REAL_IMAGE = "mobilenet_v2_torchvision"
REAL_TEXT = "all-minilm-l6-v2"


def _arm(name, base, size=96, head="classification", weights=None, wrong=None) -> dict:
    return dict(name=name, base=base, size=size, head=head, weights=weights, wrong=wrong)


ARMS = [
    # The real ImageNet MobileNetV2 (what `tfl train` fine-tunes) at three sizes, four heads.
    *[_arm(f"{REAL_IMAGE}_{s}", REAL_IMAGE, s, weights="imagenet") for s in (32, 96, 224)],
    *[
        _arm(f"{REAL_IMAGE}_96_{h}", REAL_IMAGE, 96, h, "imagenet")
        for h in ("svm", "regression", "multilabel")
    ],
    # Other families, random weights (numerical parity only).
    *[_arm(f"mobilenet_v3_small_{s}", "mobilenet_v3_small", s) for s in (32, 96, 224)],
    *[
        _arm(f"mobilenet_v3_small_96_{h}", "mobilenet_v3_small", 96, h)
        for h in ("svm", "regression", "multilabel")
    ],
    *[_arm(f"efficientnet_b0_{s}", "efficientnet_b0", s) for s in (96, 224)],
    *[_arm(f"resnet50_{s}", "resnet50", s) for s in (96, 224)],
    _arm("convnext_tiny_96", "convnext_tiny", 96),
    _arm("inception_v3_96", "inception_v3", 96),
    _arm("inception_v3_96_regression", "inception_v3", 96, "regression"),
    # Text: a tiny random BERT (as in the tests) and the real all-MiniLM-L6-v2.
    _arm("tiny_bert", "tiny_bert", 8),
    _arm(f"{REAL_TEXT}_32", REAL_TEXT, 32, weights="pretrained"),
    _arm(f"{REAL_TEXT}_32_regression", REAL_TEXT, 32, "regression", "pretrained"),
    # Deliberately wrong exports of the real MobileNetV2 run: must fail.
    *[
        _arm(f"wrong_{w}", REAL_IMAGE, 96, weights="imagenet", wrong=w)
        for w in ("preprocessing", "padding", "bn_epsilon")
    ],
    *[
        _arm(f"wrong_bn_epsilon_{h}", REAL_IMAGE, 96, h, "imagenet", "bn_epsilon")
        for h in ("svm", "regression")
    ],
]


# === One arm (in its own process) ===


def _digits(n: int, size: int, offset: int):
    import numpy as np
    import tensorflow as tf

    from tfl.data.bundled import load_mnist_5k

    images, labels = load_mnist_5k()
    order = np.random.default_rng(0).permutation(len(labels))[offset : offset + n]
    x = tf.image.resize(images[order][..., None].astype("float32"), (size, size))
    return np.repeat(x.numpy(), 3, axis=-1), labels[order]


def _photos(size: int):
    """scikit-image's bundled photos (natural images for the ImageNet model)."""
    import numpy as np
    import skimage.data
    import tensorflow as tf

    names = ("astronaut", "chelsea", "coffee", "rocket", "camera")
    photos = []
    for name in names:
        image = getattr(skimage.data, name)()
        image = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]
        photos.append(tf.image.resize(image.astype("float32"), (size, size)).numpy())
    return np.stack(photos)


def _targets(head: str, labels):
    import numpy as np

    if head == "regression":
        return labels.astype("float32")[:, None]
    if head == "multilabel":  # even, greater than 4
        return np.stack([labels % 2 == 0, labels > 4], axis=1).astype("float32")
    return labels


def _image_model(arm: dict):
    import tfl

    base = tfl.ImageBackbone(arm["base"], (arm["size"],) * 2 + (3,), weights=arm["weights"])
    units = {"regression": 1, "multilabel": 2}.get(arm["head"], 10)
    return tfl.ImageClassifier(base, units, head=arm["head"])


def _text_model(arm: dict):
    import numpy as np

    import tfl

    if arm["base"] == "tiny_bert":
        sys.path.insert(0, os.path.join(HERE, "..", "tests"))
        from helpers import TEXT_LABELS, TEXTS, tiny_bert, tiny_bert_preprocessor

        backbone, preprocessor = tiny_bert(), tiny_bert_preprocessor()
        texts, labels = np.tile(TEXTS, 8), np.tile(TEXT_LABELS, 8)
    else:
        from tfl.data.bundled import load_movie_sentences

        backbone = tfl.text.load_bert_backbone(arm["base"])
        preprocessor = tfl.text.bert_preprocessor(arm["base"], arm["size"])
        texts, labels = load_movie_sentences()
        order = np.random.default_rng(0).permutation(len(labels))[:192]
        texts, labels = texts[order], labels[order].astype("int64")
    units = 1 if arm["head"] == "regression" else 2
    model = tfl.TextClassifier(backbone, units, head=arm["head"], preprocessor=preprocessor)
    half = len(texts) * 2 // 3
    return model, (texts[:half], labels[:half]), (texts[half:], labels[half:])


def _broken_copy(model, wrong: str):
    """A copy of `model` (same weights) with one deliberate error in its graph."""
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    backbone = copy.backbone
    if wrong == "preprocessing":
        backbone.get_layer("preprocessing").mode = "tf"
    elif wrong == "padding":
        base = backbone.base
        for layer in base.layers:
            if layer.name == "Conv1_pad" or layer.name.endswith("_pad"):
                layer.padding = ((0, 1), (0, 1))
    elif wrong == "bn_epsilon":
        import keras

        for layer in backbone.base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.epsilon = 1e-3
    return copy


def _calibrate_batchnorm(backbone, x) -> None:
    """Data-dependent init of a random base: each BatchNorm's moving statistics become its
    batch statistics on `x` (one forward pass in training mode with momentum 0). Without it
    a random MobileNetV3 or EfficientNet returns features of ~1e-10 (inference-mode
    BatchNorm with mean 0 / variance 1 shrinks every block), and parity would compare
    zeros."""
    import keras

    norms = [
        layer
        for layer in backbone.base.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in norms:
        layer.momentum = 0.0
    backbone.base(backbone.get_layer("preprocessing")(x), training=True)
    for layer in norms:
        layer.momentum = 0.99


def _train_head(model, x, y, epochs: int) -> None:
    import tfl

    tfl.fit_phases(
        model,
        tfl.feature_extraction(epochs, learning_rate=3e-3),
        x,
        y,
        batch_size=32,
        cache="memory",
        lint=False,
        verbose=0,
    )


def run_arm(arm: dict, examples: int) -> dict:
    """Build, train the head, export (SavedModel + TFLite float32) and check one arm."""
    import numpy as np

    import tfl  # noqa: F401  (before Keras: tfl sets TensorFlow's CPU variables)
    from tfl.export import ExportError, export_model, exporting

    started = time.perf_counter()
    text = arm["base"] in ("tiny_bert", REAL_TEXT)
    if text:
        model, (x, y), (x_check, y_check) = _text_model(arm)
    else:
        model = _image_model(arm)
        x, y = _digits(128, arm["size"], 0)
        if arm["weights"] is None:
            # All 128 digits, but 32 for ResNet50 at 224 px: one training-mode pass over 128
            # of those needs over 12 GB.
            big = arm["base"] == "resnet50" and arm["size"] >= 224
            _calibrate_batchnorm(model.backbone, x[:32] if big else x)
        x_check, y_check = _digits(examples, arm["size"], 128)
        if arm["weights"] == "imagenet":
            x_check = np.concatenate([x_check, _photos(arm["size"])])
            y_check = np.concatenate([y_check, np.arange(5)])
    y, y_check = _targets(arm["head"], y), _targets(arm["head"], y_check)
    _train_head(model, x, y, epochs=30 if not text else 10)
    if arm["wrong"]:
        broken = _broken_copy(model, arm["wrong"])
        original = exporting.export_saved_model
        exporting.export_saved_model = lambda _model, *a, **k: original(broken, *a, **k)
    out = tempfile.mkdtemp(prefix=f"tfl-parity-{arm['name']}-")
    # The numbers are in export.json; failing is what the wrong arms should do.
    with contextlib.suppress(ExportError):
        export_model(
            model,
            out,
            formats=["keras", "saved_model", "tflite"],
            quantizations=["float32"],
            examples=x_check,
            targets=y_check,
            batch_size=32,
        )
    with open(os.path.join(out, "export.json")) as f:
        report = json.load(f)
    result = {"arm": arm, "examples": report.get("examples"), "artefacts": {}}
    for name, entry in report.get("parity", {}).items():
        result["artefacts"][name] = {
            "outputs": entry.get("outputs", {}),
            "passed": entry["passed"],
            "agreement": next(iter(entry["quality"].values()), {}).get("agreement"),
        }
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


# === All arms, each in a fresh process ===


def _ratio_rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        for artefact, entry in r["artefacts"].items():
            for output, d in entry["outputs"].items():
                rows.append(
                    dict(
                        arm=r["arm"]["name"],
                        wrong=r["arm"]["wrong"],
                        artefact=artefact,
                        output=output,
                        max_abs_diff=d["max_abs_diff"],
                        scale=d["scale"],
                        relative=d["max_abs_diff"] / max(d["scale"], 1e-12),
                        passed=entry["passed"],
                    )
                )
    return rows


def _summary(rows: list[dict]) -> dict:
    """The largest difference of the right arms and the smallest of the wrong ones (with the
    arm), per artefact kind (keras, saved_model, tflite_float32) and output kind."""
    summary: dict = {}
    for row in rows:
        if row["artefact"] == "keras":
            kind = "keras"
        else:
            kind = "tflite_float32" if row["artefact"].startswith("tflite") else "saved_model"
        out = "probabilities" if row["output"].endswith("probabilities") else row["output"]
        side = "wrong_min" if row["wrong"] else "right_max"
        entry = summary.setdefault(f"{kind}/{out}", {})
        for key in ("max_abs_diff", "relative"):
            name = f"{side}_{key}"
            if name not in entry or (
                row[key] < entry[name] if row["wrong"] else row[key] > entry[name]
            ):
                entry[name], entry[f"{name}_arm"] = row[key], row["arm"]
    return summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default=None, help="comma-separated arm names (default all)")
    parser.add_argument("--examples", type=int, default=64, help="digits checked per arm")
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "export_parity.json"))
    parser.add_argument(
        "--update", action="store_true", help="replace or add these arms in --output's file"
    )
    args = parser.parse_args(argv)
    by_name = {arm["name"]: arm for arm in ARMS}
    if args.arm:  # one arm, in this (fresh) process
        with open(args.result, "w") as f:
            json.dump(run_arm(by_name[args.arm], args.examples), f)
        return {}
    names = args.arms.split(",") if args.arms else list(by_name)
    results = []
    for name in names:
        path = tempfile.mktemp(suffix=".json")
        cmd = [sys.executable, __file__, "--arm", name, "--result", path]
        done = subprocess.run(cmd + ["--examples", str(args.examples)], capture_output=True)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr.decode()[-2000:]}", file=sys.stderr)
            continue
        with open(path) as f:
            results.append(json.load(f))
        for artefact, entry in results[-1]["artefacts"].items():
            worst = max(entry["outputs"].items(), key=lambda kv: kv[1]["max_abs_diff"])
            print(
                f"{name:40s} {artefact:32s} {worst[0]:22s} diff {worst[1]['max_abs_diff']:.3g} "
                f"scale {worst[1]['scale']:.3g} passed {entry['passed']}",
                flush=True,
            )
    if args.update and os.path.exists(args.output):
        with open(args.output) as f:
            kept = [r for r in json.load(f)["arms"] if r["arm"]["name"] not in names]
        results = kept + results
    rows = _ratio_rows(results)
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "examples": args.examples,
        "summary": _summary(rows),
        "rows": rows,
        "arms": results,
    }
    print(json.dumps(report["summary"], indent=1))
    if args.output:
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=1)
        print(f"Wrote {args.output}")
    return report


if __name__ == "__main__":
    main()
