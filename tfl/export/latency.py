"""How fast an exported TFLite file runs here, and what it predicts: the LiteRT interpreter.

`run_tflite` runs a `.tflite` file's `serving_preprocessed` signature (what `tfl.export`
writes) over prepared inputs and returns its outputs; `measure_tflite` times it the way a
device runs it: the latency of one example at a time (batch 1: median and 90th percentile of
`single` calls after a warm-up call) and the throughput at `batch_size` (the best of `repeats`
passes over all the inputs; a shared machine is noisy). Both use `ai_edge_litert` (LiteRT),
falling back to `tf.lite.Interpreter` when it is not installed; LiteRT loads on first use.

Example:
    None that runs in a docstring (it needs an exported file); see `tfl.distill.compare`:

        outputs = run_tflite("export/model_int8.tflite", {"images": images})
        timing = measure_tflite("export/model_int8.tflite", {"images": images})
        print(timing["batch1_ms_median"], timing["throughput_per_s"])
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

SIGNATURE = "serving_preprocessed"


def interpreter(path: str, threads: int | None = None):
    """A LiteRT `Interpreter` for `path` (`tf.lite.Interpreter` without LiteRT), on
    `threads` threads (default: every core)."""
    threads = threads or os.cpu_count()
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - LiteRT is a dependency of tfl's export
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=path, num_threads=threads)
    return Interpreter(model_path=path, num_threads=threads)


def _runner(path: str, threads: int | None):
    return interpreter(path, threads).get_signature_runner(SIGNATURE)


def _rows(inputs: dict, s: slice) -> dict:
    return {k: v[s] for k, v in inputs.items()}


def run_tflite(
    path: str, inputs: dict, batch_size: int = 32, threads: int | None = None
) -> dict[str, np.ndarray]:
    """The outputs of `path`'s `serving_preprocessed` signature on `inputs`, by batches.

    Args:
        path: a `.tflite` file written by `tfl.export`.
        inputs: `{input name: array}` as the signature takes them (`images`, or `token_ids`,
            `segment_ids`, `padding_mask`).
        batch_size: examples per interpreter call.
        threads: interpreter threads (default: every core).

    Returns:
        `{output name: array}` over all the inputs.
    """
    runner = _runner(path, threads)
    n = len(next(iter(inputs.values())))
    parts: dict[str, list] = {}
    for start in range(0, n, batch_size):
        out = runner(**_rows(inputs, slice(start, start + batch_size)))
        for key, value in out.items():
            parts.setdefault(key, []).append(np.asarray(value))
    return {k: np.concatenate(v) for k, v in parts.items()}


def measure_tflite(
    path: str,
    inputs: dict,
    batch_size: int = 32,
    single: int = 64,
    repeats: int = 3,
    threads: int | None = None,
) -> dict:
    """Batch-1 latency and batch throughput of `path` on this machine.

    Args:
        path, inputs, threads: see `run_tflite`.
        batch_size: the batch of the throughput measurement.
        single: how many examples are timed one at a time (batch 1), after one warm-up call.
        repeats: passes over all `inputs` at `batch_size`; the fastest counts.

    Returns:
        `batch1_ms_median`, `batch1_ms_p90`, `batch_size`, `throughput_per_s` (examples per
        second), `examples`, `threads`.
    """
    n = len(next(iter(inputs.values())))
    one = _runner(path, threads)
    one(**_rows(inputs, slice(0, 1)))  # warm-up: allocation at this shape
    times = []
    for i in range(min(single, n)):
        x = _rows(inputs, slice(i, i + 1))
        start = time.perf_counter()
        one(**x)
        times.append(time.perf_counter() - start)
    batched = _runner(path, threads)
    batched(**_rows(inputs, slice(0, batch_size)))  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for s in range(0, n, batch_size):
            batched(**_rows(inputs, slice(s, s + batch_size)))
        best = min(best, time.perf_counter() - start)
    return {
        "batch1_ms_median": round(1e3 * float(np.median(times)), 3),
        "batch1_ms_p90": round(1e3 * float(np.percentile(times, 90)), 3),
        "batch_size": batch_size,
        "throughput_per_s": round(n / best, 1),
        "examples": n,
        "threads": threads or os.cpu_count(),
    }


__all__ = ["SIGNATURE", "interpreter", "measure_tflite", "run_tflite"]
