"""CPU runtime settings: TensorFlow's defaults vs tfl's, XLA and bfloat16, same models and data.

Re-run (on a quiet machine; each arm is a fresh process, since TensorFlow reads the variables
once, at import):

    .venv/bin/python benchmarks/runtime.py            # ~7 min on 2 cores
    .venv/bin/python benchmarks/runtime.py --quick    # smaller inputs, fewer steps

Arms (the same models, inputs and steps in each):

- `tf_default`: TensorFlow as installed (TF_ENABLE_ONEDNN_OPTS / TF_CPU_ALLOCATOR_USE_BFC
  unset, `TFL_CPU_RUNTIME=off`);
- `tfl`: what `tfl._runtime_env.recommended_env()` sets on this CPU (oneDNN and the BFC
  allocator on x86 CPUs without AVX-512; nothing elsewhere, where `tfl` = `tf_default` and
  their ratio shows the noise); also times inference compiled with XLA (`jit_compile=True`)
  against the plain compiled call;
- `bfc`: `tfl` + `TF_CPU_ALLOCATOR_USE_BFC=true`;
- `onednn_off`: `tfl` + `TF_ENABLE_ONEDNN_OPTS=0` (what oneDNN is worth on this CPU);
- `tfl_bf16`: `tfl` + Keras' `mixed_bfloat16` policy (fast only with AVX-512 BF16 / AMX).

Models (weights: random for the image bases, timing only; MiniLM's offline pretrained ones):
MobileNetV2 and EfficientNetB0 at 224 px with a 10-class head, MiniLM (`tfl.text.
load_bert_backbone()`, 6 layers, 384 wide) at 128 tokens with a 2-class head. Inference: a
compiled call (`tf.function`, `training=False`) on a batch of 32, as tfl predicts; training:
one fine-tuning step (`train_on_batch`, every layer trainable, Adam) on a batch of 16. Each
figure is the best of `--repeats` timed loops after a warm-up (the machine may be shared:
`os.getloadavg()` is recorded before and after). Prints examples/s and ratios; writes
`benchmarks/results/runtime.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "runtime.json")
RUNTIME_VARS = ("TF_ENABLE_ONEDNN_OPTS", "TF_CPU_ALLOCATOR_USE_BFC", "TFL_CPU_RUNTIME")
MODELS = ("mobilenet_v2", "efficientnet_b0", "minilm")
ARMS = ("tf_default", "tfl", "bfc", "onednn_off", "tfl_bf16")
FULL = {"size": 224, "tokens": 128, "iterations": 3}
QUICK = {"size": 128, "tokens": 64, "iterations": 2}
INFER_BATCH, TRAIN_BATCH = 32, 16


def _load_runtime_env():
    """tfl/_runtime_env.py on its own: this parent process never imports TensorFlow."""
    import importlib.util

    path = os.path.join(HERE, os.pardir, "tfl", "_runtime_env.py")
    spec = importlib.util.spec_from_file_location("tfl_runtime_env", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arm_env(arm: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RUNTIME_VARS}
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    if arm == "tf_default":
        env["TFL_CPU_RUNTIME"] = "off"  # tfl sets nothing; TensorFlow's own defaults
        return env
    env.update(_load_runtime_env().recommended_env())
    if arm == "bfc":
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    if arm == "onednn_off":
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    return env


# === Worker: one arm, in its own process ===


def _best(fn, iterations: int, repeats: int) -> float:
    """Best seconds per call of `fn` over `repeats` loops of `iterations` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, (time.perf_counter() - start) / iterations)
    return best


def _build(name: str, size: int, tokens: int):
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    if name == "minilm":
        import tfl.backbones.text

        backbone = tfl.backbones.text.load_bert_backbone()
        inputs = {k: keras.Input((tokens,), dtype="int32", name=k) for k in backbone.input}
        pooled = backbone(inputs)["pooled_output"]
        model = keras.Model(inputs, keras.layers.Dense(2, dtype="float32")(pooled))

        def batch(n):
            return {
                "token_ids": rng.integers(1000, 20000, (n, tokens)).astype("int32"),
                "segment_ids": np.zeros((n, tokens), "int32"),
                "padding_mask": np.ones((n, tokens), "int32"),
            }, rng.integers(0, 2, n)

        return model, batch
    application = {
        "mobilenet_v2": keras.applications.MobileNetV2,
        "efficientnet_b0": keras.applications.EfficientNetB0,
    }[name]
    base = application(include_top=False, weights=None, input_shape=(size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base.output)
    model = keras.Model(base.input, keras.layers.Dense(10, dtype="float32")(pooled))

    def batch(n):
        return rng.uniform(0, 255, (n, size, size, 3)).astype("float32"), rng.integers(0, 10, n)

    return model, batch


def _measure(name: str, arm: str, size: int, tokens: int, iterations: int, repeats: int):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model, batch = _build(name, size, tokens)
    x, _ = batch(INFER_BATCH)
    x = tf.nest.map_structure(tf.constant, x)
    result = {}
    calls = {"inference": False, "xla_inference": True} if arm == "tfl" else {"inference": False}
    for key, jit in calls.items():
        call = tf.function(lambda x: model(x, training=False), jit_compile=jit)
        start = time.perf_counter()
        call(x)  # trace (and compile)
        result[f"{key}_warmup_s"] = round(time.perf_counter() - start, 2)
        seconds = _best(lambda call=call: call(x).numpy(), iterations, repeats)
        result[f"{key}_per_s"] = round(INFER_BATCH / seconds, 2)
    xt, yt = batch(TRAIN_BATCH)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    start = time.perf_counter()
    model.train_on_batch(xt, yt)
    result["train_warmup_s"] = round(time.perf_counter() - start, 2)
    seconds = _best(lambda: model.train_on_batch(xt, yt), iterations, repeats)
    result["train_per_s"] = round(TRAIN_BATCH / seconds, 2)
    return result


def _worker(arm: str, settings: dict, repeats: int) -> dict:
    import keras
    import tensorflow as tf

    if arm == "tfl_bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    out = {
        "env": {k: os.environ.get(k) for k in RUNTIME_VARS},
        "policy": keras.mixed_precision.global_policy().name,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "models": {},
    }
    for name in settings["models"]:
        out["models"][name] = _measure(
            name, arm, settings["size"], settings["tokens"], settings["iterations"], repeats
        )
        print(f"  {arm} {name}: {out['models'][name]}", file=sys.stderr, flush=True)
    return out


# === Parent: one process per arm, then the table ===


def _ratio(a, b):
    return round(a / b, 2) if a and b else None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer steps")
    parser.add_argument("--repeats", type=int, default=2, help="timed loops; the best counts")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--out", default=RESULTS, help="the JSON file to write")
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # a child: measure one arm, print its JSON
        result = _worker(args.worker, json.loads(args.settings), args.repeats)
        print("RESULT " + json.dumps(result), flush=True)
        return result

    settings = dict(QUICK if args.quick else FULL, models=args.models)
    runtime_env = _load_runtime_env()
    flags = runtime_env.cpu_flags()
    report = {
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "avx512f": "avx512f" in flags,
            "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "recommended_env": runtime_env.recommended_env(),
        "settings": {**settings, "repeats": args.repeats, "infer_batch": INFER_BATCH},
        "train_batch": TRAIN_BATCH,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "arms": {},
    }
    started = time.time()
    for arm in args.arms:
        print(f"{arm} ...", flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--worker", arm, "--settings", json.dumps(settings)]
            + ["--repeats", str(args.repeats)],
            env=_arm_env(arm),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            raise SystemExit(f"arm {arm} failed:\n{done.stderr[-4000:]}")
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
        report["arms"][arm] = json.loads(line[len("RESULT ") :])
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report["seconds"] = round(time.time() - started, 1)
    report["ratios"] = _ratios(report["arms"])
    _print(report)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"\nWrote {args.out}")
    return report


def _ratios(arms: dict) -> dict:
    """Each arm's throughput over tf_default's (and XLA over the plain call, in `tfl`)."""
    base = arms.get("tf_default", {}).get("models", {})
    ratios = {}
    for arm, result in arms.items():
        for name, m in result["models"].items():
            row = ratios.setdefault(name, {})
            if arm != "tf_default" and name in base:
                for key in ("inference", "train"):
                    row[f"{arm}_{key}"] = _ratio(m[f"{key}_per_s"], base[name][f"{key}_per_s"])
            if "xla_inference_per_s" in m:
                row["xla_vs_plain_inference"] = _ratio(
                    m["xla_inference_per_s"], m["inference_per_s"]
                )
    return ratios


def _print(report: dict):
    print(
        f"\n{report['machine']['cpu']}, {report['machine']['cores']} cores; load "
        f"{report['loadavg_before']} -> {report['loadavg_after']}"
    )
    print(f"tfl sets here: {report['recommended_env']}")
    header = f"{'arm':<12}{'model':<17}{'infer/s':>9}{'train/s':>9}{'xla infer/s':>13}"
    print(header)
    for arm, result in report["arms"].items():
        for name, m in result["models"].items():
            xla = m.get("xla_inference_per_s")
            print(
                f"{arm:<12}{name:<17}{m['inference_per_s']:>9}{m['train_per_s']:>9}"
                f"{xla if xla is not None else '':>13}"
            )
    print("\nratios to tf_default (and XLA / plain compiled call):")
    for name, row in report["ratios"].items():
        print(f"  {name}: " + ", ".join(f"{k} {v}x" for k, v in row.items()))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
