"""Where training runs: `tf.distribute` strategies, mixed precision and XLA, chosen per device.

tfl uses TensorFlow's own distribution engine, no home-made parallelism: build and compile
the model inside `strategy.scope()` and Keras' `fit` distributes the batches.

- `get_strategy(name)`: "auto" (a TPU when one is attached, all local GPUs when there are
  several, else the default strategy), "default", "mirrored" (all local GPUs; several logical
  CPU devices when there is no GPU, as the tests use), "multi_worker" (reads `TF_CONFIG`) or
  "tpu".
- `choose_precision(name, strategy)`: "auto" is `mixed_float16` on GPUs with compute
  capability >= 7 (tensor cores), `mixed_bfloat16` on TPUs, `float32` on CPUs (without
  AVX-512 BF16 / AMX, bfloat16 ran at 0.5-0.8x here). `set_precision` applies it with
  `keras.mixed_precision.set_global_policy`; tfl heads compute their last layer in float32
  and Keras scales the loss of a `mixed_float16` optimizer, so outputs and losses stay
  float32.
- `choose_jit_compile(value, strategy)`: "auto" defers to Keras ("auto": XLA off on CPU-only
  machines, on with GPUs). On this 2-core CPU XLA made MobileNetV2/V3 and EfficientNetB0
  inference 4-8x slower (depthwise convolutions) and ResNet50 1.1x faster, so the CPU
  default must stay off; on GPUs XLA usually pays for convolution nets (not measured here:
  no GPU was lent). TPUs always compile.
- CPU runtime variables (oneDNN, the BFC allocator): `tfl._runtime_env`, applied when tfl
  is imported before TensorFlow; `runtime_settings()` reports what is in effect.
"""

from __future__ import annotations

import json
import os
from typing import Any

import keras
import tensorflow as tf

from tfl import _runtime_env

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
JIT_CHOICES = ("auto", True, False)
_TPU_HINTS = ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE")

__all__ = [
    "PRECISIONS",
    "STRATEGIES",
    "choose_jit_compile",
    "choose_precision",
    "describe",
    "get_strategy",
    "global_batch_size",
    "is_chief",
    "runtime_settings",
    "set_precision",
]


def _tpu_strategy(required: bool):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError, RuntimeError) as error:
        if required:
            raise ValueError(
                f"Received strategy='tpu' but no TPU was found ({error}). In Colab choose "
                "Runtime > Change runtime type > TPU; elsewhere set TPU_NAME, or use "
                "strategy 'auto'."
            ) from None
        return None
    return tf.distribute.TPUStrategy(resolver)


def _check_tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "Received strategy='multi_worker' without TF_CONFIG; set it on every worker, e.g. "
            'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": '
            '{"type": "worker", "index": 0}}\' (index 0 is the chief).'
        )
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"Received TF_CONFIG={raw!r}: {error!r}; expected JSON with cluster.worker (a list "
            "of host:port) and task.type / task.index."
        ) from None
    if not 0 <= index < len(workers):
        raise ValueError(
            f"Received TF_CONFIG task.index={index} with {len(workers)} workers; expected "
            f"0..{len(workers) - 1}."
        )
    return config


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The `tf.distribute` strategy for `name` (see the module docstring).

    Call it before creating any model; build and compile inside `strategy.scope()`.

    Example:
    >>> from tfl.distribute import get_strategy
    >>> get_strategy("default").num_replicas_in_sync
    1
    """
    if name not in STRATEGIES:
        raise ValueError(f"Received strategy={name!r}; expected one of {list(STRATEGIES)}.")
    if name == "tpu" or (name == "auto" and any(os.environ.get(k) for k in _TPU_HINTS)):
        strategy = _tpu_strategy(required=name == "tpu")
        if strategy is not None:
            return strategy
    if name == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    if name == "auto" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _devices(strategy: tf.distribute.Strategy) -> list[str]:
    try:
        return list(strategy.extended.worker_devices)
    except (RuntimeError, AttributeError):  # the default strategy has none to list
        return []


def _kind(strategy: tf.distribute.Strategy | None) -> str:
    strategy = strategy or tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    devices = _devices(strategy)
    if any("GPU" in d.upper() for d in devices) or (
        not devices and tf.config.list_logical_devices("GPU")
    ):
        return "gpu"
    return "cpu"


def describe(strategy: tf.distribute.Strategy) -> dict[str, Any]:
    """Name, replica count, device kind and devices of `strategy`, for logs and reports."""
    name = type(strategy).__name__
    return {
        "strategy": "default" if name == "_DefaultDistributionStrategy" else name,
        "replicas": int(strategy.num_replicas_in_sync),
        "device": _kind(strategy),
        "devices": _devices(strategy),
        "chief": is_chief(strategy),
    }


def global_batch_size(per_replica: int, strategy: tf.distribute.Strategy) -> int:
    """`per_replica` x replicas: the batch size `fit` must see under `strategy`.

    Example:
    >>> from tfl.distribute import get_strategy, global_batch_size
    >>> global_batch_size(32, get_strategy("default"))
    32
    """
    return int(per_replica) * int(strategy.num_replicas_in_sync)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run directory (worker 0 / the chief; always True on
    one machine). Other workers write to temporary directories, as TensorFlow requires."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0)


def _gpu_capability() -> tuple[int, int] | None:
    best = None
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and (best is None or capability < best):
            best = tuple(capability)
    return best


def choose_precision(name: str = "auto", strategy: tf.distribute.Strategy | None = None) -> str:
    """The Keras dtype policy name for `name` on this device (see the module docstring).

    Example:
    >>> from tfl.distribute import choose_precision
    >>> choose_precision("auto")  # on a CPU
    'float32'
    """
    if name not in PRECISIONS:
        raise ValueError(f"Received precision={name!r}; expected one of {list(PRECISIONS)}.")
    if name != "auto":
        return name
    kind = _kind(strategy)
    if kind == "tpu":
        return "mixed_bfloat16"
    if kind == "gpu":
        capability = _gpu_capability()
        return "mixed_float16" if capability and capability >= (7, 0) else "float32"
    return "float32"


def set_precision(name: str = "auto", strategy: tf.distribute.Strategy | None = None) -> str:
    """Chooses and sets Keras' global dtype policy; returns its name. Set it before building
    the model (layers take the policy when they are created)."""
    policy = choose_precision(name, strategy)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def choose_jit_compile(value: Any = "auto", strategy: tf.distribute.Strategy | None = None):
    """`model.compile(jit_compile=...)` for this device: "auto" stays Keras' "auto" (off on a
    CPU-only machine, on with GPUs; TPUs always compile); True/False are kept.

    Example:
    >>> from tfl.distribute import choose_jit_compile
    >>> choose_jit_compile("auto"), choose_jit_compile(False)
    ('auto', False)
    """
    if value not in JIT_CHOICES or isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"Received jit_compile={value!r}; expected 'auto', true or false.")
    return value


def runtime_settings() -> dict[str, Any]:
    """The CPU runtime variables in effect and the ones tfl recommends for this CPU."""
    recommended = _runtime_env.recommended_env()
    keys = sorted(set(recommended) | {"TF_ENABLE_ONEDNN_OPTS", "TF_CPU_ALLOCATOR_USE_BFC"})
    return {
        "in_effect": {k: os.environ.get(k) for k in keys},
        "recommended": recommended,
    }
