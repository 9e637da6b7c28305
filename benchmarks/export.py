"""Throughput of an exported model: Keras `predict` vs the SavedModel vs each TFLite file.

Same model, same inputs, one process, one run: the images of a finished run's validation
split (the README's default run if `--run` is not given: MobileNetV2 with torchvision's
ImageNet weights fine-tuned on MNIST-5k at 96 px), exported with `tfl export` (all formats,
all TFLite variants), then timed:

- `keras predict`: the reloaded `model.keras`, `model.predict(images, batch_size=B)`;
- `keras eager call`: the same model called on each batch (`model(x, training=False)`):
  op by op, without predict's compiled function (shown because it is a common mistake);
- `saved_model prepared` / `saved_model bytes`: `tf.saved_model.load(...).signatures[...]`
  on the same batches, as float images or as PNG bytes (decoding and resizing included);
- `tflite <variant>`: the LiteRT interpreter (`ai_edge_litert`, all cores) on batches of B
  and on single images (batch 1, how TFLite usually runs on a device).

Each figure is the best of `--repeats` timed passes after one warm-up pass (a shared 2-core
machine is noisy). Prints images/s and the ratio to `keras predict`, and writes
`benchmarks/results/export.json`.

Run: `.venv/bin/python benchmarks/export.py [--run RUN_DIR] [--examples 256] [--batch 32]`.
Goals: SavedModel >= 1.0x predict; int8 TFLite faster than float32 on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfl  # noqa: E402, F401  (before Keras/TensorFlow: tfl sets TensorFlow's CPU variables)

# isort: split
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfl import export  # noqa: E402
from tfl.builders import load_data  # noqa: E402
from tfl.export.examples import collect_examples  # noqa: E402
from tfl.saved_run import SavedRun  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def _best(fn, repeats: int) -> float:
    fn()  # warm-up: tracing, interpreter allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _default_run() -> str:
    run_dir = os.path.join(tempfile.mkdtemp(prefix="tfl-bench-export-"), "run")
    print(f"No --run given: training the README's default into {run_dir} (about a minute)...")
    subprocess.run([sys.executable, "-m", "tfl.cli", "train", "--output", run_dir], check=True)
    return run_dir


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="a finished run (default: train one)")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "export.json"))
    args = parser.parse_args(argv)

    run_dir = args.run or _default_run()
    out = os.path.join(run_dir, "export")
    print(f"Exporting {run_dir} (all formats, parity checked)...")
    report = export.export_run(run_dir, out)
    config = SavedRun.open(run_dir).config
    data = load_data(config)
    images, _ = collect_examples(data.validation, args.examples)
    n, b = len(images), args.batch
    batches = [images[i : i + b] for i in range(0, n, b)]
    pngs = [
        tf.stack([tf.io.encode_png(np.round(x).astype(np.uint8)) for x in batch])
        for batch in batches
    ]
    tensors = [tf.constant(batch) for batch in batches]
    results = {}

    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    results["keras predict"] = _best(
        lambda: model.predict(images, batch_size=b, verbose=0), args.repeats
    )
    results["keras eager call"] = _best(
        lambda: [model(x, training=False).numpy() for x in tensors], args.repeats
    )
    signatures = tf.saved_model.load(os.path.join(out, "saved_model")).signatures
    prepared, raw = signatures["serving_preprocessed"], signatures["serving_default"]
    results["saved_model prepared"] = _best(
        lambda: [prepared(images=x)["probabilities"].numpy() for x in tensors], args.repeats
    )
    results["saved_model bytes"] = _best(
        lambda: [raw(images=x)["probabilities"].numpy() for x in pngs], args.repeats
    )

    from ai_edge_litert.interpreter import Interpreter

    threads = os.cpu_count()
    for q in export.QUANTIZATIONS:
        path = os.path.join(out, f"model_{q}.tflite")
        runner_b = Interpreter(model_path=path, num_threads=threads).get_signature_runner(
            "serving_preprocessed"
        )
        results[f"tflite {q} (batch {b})"] = _best(
            lambda r=runner_b: [r(images=x) for x in batches], args.repeats
        )
        runner_1 = Interpreter(model_path=path, num_threads=threads).get_signature_runner(
            "serving_preprocessed"
        )
        results[f"tflite {q} (batch 1)"] = _best(
            lambda r=runner_1: [r(images=images[i : i + 1]) for i in range(n)], args.repeats
        )

    base = results["keras predict"]
    rows = {
        name: {
            "seconds": round(t, 3),
            "images_per_second": round(n / t, 1),
            "vs_keras_predict": round(base / t, 2),
        }
        for name, t in results.items()
    }
    print(f"\n{n} images of {images.shape[1]} px, batch {b}, best of {args.repeats}:")
    print(f"{'':32} {'images/s':>10} {'vs predict':>11}")
    for name, row in rows.items():
        print(f"{name:32} {row['images_per_second']:10.1f} {row['vs_keras_predict']:10.2f}x")
    f32, i8 = rows[f"tflite float32 (batch {b})"], rows[f"tflite int8 (batch {b})"]
    goals = {
        "saved_model_vs_predict": rows["saved_model prepared"]["vs_keras_predict"],
        "int8_vs_float32_tflite": round(f32["seconds"] / i8["seconds"], 2),
        "int8_vs_float32_tflite_batch1": round(
            rows["tflite float32 (batch 1)"]["seconds"] / rows["tflite int8 (batch 1)"]["seconds"],
            2,
        ),
    }
    print(
        f"SavedModel {goals['saved_model_vs_predict']:.2f}x predict; int8 TFLite "
        f"{goals['int8_vs_float32_tflite']:.2f}x float32 (batch {b}), "
        f"{goals['int8_vs_float32_tflite_batch1']:.2f}x (batch 1)."
    )
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
        },
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "run": {"base": config.model.base, "image_size": int(images.shape[1])},
        "examples": n,
        "batch": b,
        "repeats": args.repeats,
        "throughput": rows,
        "goals": goals,
        "sizes_bytes": {k: v["bytes"] for k, v in report["files"].items()},
        "parity": {k: v["max_abs_diff"] for k, v in report["parity"].items()},
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"Wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
