"""Where training runs: `tf.distribute` strategies, mixed precision and XLA, chosen per device.

tfl uses TensorFlow's own distribution engine, no home-made parallelism: build and compile
the model inside `strategy.scope()` and Keras' `fit` distributes the batches.

- `get_strategy(name)`: "auto" (a TPU when one is attached, all local GPUs when there are
  several, else the default strategy), "default", "mirrored" (all local GPUs; without GPUs
  the CPU's logical devices, `cpu_devices=N` / `split_cpu(N)` to rehearse it on one CPU),
  "multi_worker" (reads `TF_CONFIG`) or "tpu".
- `choose_precision(name, strategy)`: "auto" is `mixed_float16` on GPUs with compute
  capability >= 7 (tensor cores), `mixed_bfloat16` on TPUs, `float32` on CPUs. On a CPU
  without AVX-512 BF16 / AMX bfloat16 ran at 0.5-0.8x (a 2-core AMD Zen 3, measured with
  `benchmarks/runtime.py`); on a 2-core AVX-512-BF16
  EPYC (`benchmarks/results/runtime.json`) it made MiniLM 1.42x faster to run and 1.30x
  to fine-tune but MobileNetV2 / EfficientNetB0 0.72-0.91x, so the CPU default stays
  float32 (text runs on such CPUs may opt in). `set_precision` applies it with
  `keras.mixed_precision.set_global_policy`; tfl heads compute their last layer in float32
  and Keras scales the loss of a `mixed_float16` optimizer, so outputs and losses stay
  float32.
- `choose_jit_compile(value, strategy)`: "auto" is off on CPUs: XLA made MobileNetV2 and
  EfficientNetB0 inference 12-14x slower on that EPYC (0.07-0.08x; 4-8x slower on the Zen 3
  above: depthwise convolutions) and MiniLM 1.16x faster. On GPUs and TPUs "auto" is
  Keras' own rule: XLA on for a model on one GPU, off under a multi-device `tf.distribute`
  strategy (Keras turns it off there), and TPUs compile every step anyway. The GPU choice
  was not measured here (no GPU was lent); measure it with `--runtime.jit-compile
  true/false`.
- Data: `shard(dataset, strategy)` sets the input pipeline's auto-sharding: off on one
  machine (there is nothing to split between workers; TensorFlow's "AUTO" rewrite would
  only re-seed a shuffled pipeline), by data on several workers (every worker reads the
  same seeded pipeline and keeps its part of each global batch, so all workers run the
  same number of steps; sharding TFDS's files instead could give them different counts).
- Several workers: only the chief (worker 0) writes the run directory; `write_dir` gives
  the other workers a temporary directory (TensorFlow's pattern: every worker saves, the
  non-chief copies are thrown away, `remove_write_dir`), and they resume from the chief's
  backup (`tfl.callbacks.BackupAndRestore(restore_dir=...)`).
- CPU runtime variables (oneDNN, the BFC allocator): `tfl._runtime_env` (re-exported here
  as `apply_cpu_runtime` / `recommended_cpu_env`), which must run before TensorFlow is
  imported; `runtime_settings()` reports what is in effect.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import types
import warnings
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
    "apply_cpu_runtime",
    "choose_jit_compile",
    "choose_precision",
    "describe",
    "get_strategy",
    "global_batch_size",
    "is_chief",
    "is_multi_worker",
    "num_replicas",
    "patch_multi_worker_build",
    "recommended_cpu_env",
    "remove_write_dir",
    "runtime_settings",
    "set_precision",
    "shard",
    "split_cpu",
    "write_dir",
]

# The CPU runtime variables live in a module without TensorFlow (see its docstring).
apply_cpu_runtime = _runtime_env.apply
recommended_cpu_env = _runtime_env.recommended_env


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
        task_type = config["task"]["type"]
        index = int(config["task"]["index"])
        tasks = config["cluster"][task_type]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"Received TF_CONFIG={raw!r}: {error!r}; expected JSON with cluster.worker (a list "
            "of host:port) and task.type / task.index."
        ) from None
    if task_type not in ("chief", "worker"):
        raise ValueError(
            f"Received TF_CONFIG task.type={task_type!r}; expected 'worker' (or 'chief')."
        )
    if not 0 <= index < len(tasks):
        raise ValueError(
            f"Received TF_CONFIG task.index={index} with {len(tasks)} {task_type}s; expected "
            f"0..{len(tasks) - 1}."
        )
    return config


def split_cpu(devices: int) -> list[str]:
    """Splits the CPU into `devices` logical devices; returns their names.

    For rehearsing `mirrored` on a machine without GPUs (the replicas share the same cores:
    no speed-up). TensorFlow allows it only before its runtime starts (before the first
    tensor or op), so call it first thing; calling it again with the same count is fine.

    Example:
    >>> from tfl.distribute import split_cpu
    >>> len(split_cpu(len(tf.config.list_logical_devices("CPU"))))  # as they are: no change
    1
    """
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"Received devices={devices!r}; expected a positive integer (e.g. 2).")
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = len(tf.config.get_logical_device_configuration(cpu) or []) or 1
    if configured != devices:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
            )
        except RuntimeError:
            have = len(tf.config.list_logical_devices("CPU"))
            raise RuntimeError(
                f"Received cpu_devices={devices}, but TensorFlow already started with {have} "
                "CPU device(s) in this process, and they cannot change afterwards. Split the "
                "CPU before creating any tensor or model (the `tfl` command does it first), "
                "or restart the Python process / notebook kernel."
            ) from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def get_strategy(name: str = "auto", cpu_devices: int = 1) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy for `name` (see the module docstring).

    Call it before creating any model; build and compile inside `strategy.scope()`.

    Args:
        name: one of `STRATEGIES`.
        cpu_devices: with "mirrored" on a machine without GPUs, split the CPU into this many
            logical devices first (`split_cpu`); 1 keeps TensorFlow's CPU devices as they
            are. Ignored, with a warning, where there are GPUs.

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
    if cpu_devices != 1 and name != "mirrored":
        raise ValueError(
            f"Received cpu_devices={cpu_devices!r} with strategy={name!r}; only 'mirrored' "
            "uses several CPU devices. Use strategy='mirrored' or cpu_devices=1."
        )
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            if cpu_devices != 1:
                warnings.warn(
                    f"cpu_devices={cpu_devices} is ignored: this machine has GPUs, and "
                    "'mirrored' uses all of them.",
                    stacklevel=2,
                )
            return tf.distribute.MirroredStrategy()
        if cpu_devices != 1:
            return tf.distribute.MirroredStrategy(devices=split_cpu(cpu_devices))
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    gpus = tf.config.list_logical_devices("GPU")
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
    """Name, replica count, device kind and devices of `strategy`, for logs and reports.

    Example:
    >>> from tfl.distribute import describe, get_strategy
    >>> info = describe(get_strategy("default"))
    >>> info["strategy"], info["replicas"], info["workers"], info["chief"]
    ('default', 1, 1, True)
    """
    name = type(strategy).__name__
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "MultiWorkerMirroredStrategy"  # its class is CollectiveAllReduceStrategy
    return {
        "strategy": "default" if name == "_DefaultDistributionStrategy" else name,
        "replicas": num_replicas(strategy),
        "workers": _worker_count(strategy),
        "device": _kind(strategy),
        "devices": _devices(strategy),
        "chief": is_chief(strategy),
    }


def num_replicas(strategy: tf.distribute.Strategy | None = None) -> int:
    """Replicas that train in sync (devices over all workers) under `strategy`.

    Example:
    >>> from tfl.distribute import get_strategy, num_replicas
    >>> num_replicas(get_strategy("default"))
    1
    """
    strategy = strategy or tf.distribute.get_strategy()
    return int(strategy.num_replicas_in_sync)


def global_batch_size(per_replica: int, strategy: tf.distribute.Strategy) -> int:
    """`per_replica` x replicas: the batch size `fit` must see under `strategy`.

    Keras splits each global batch over the replicas and sums their gradients of the
    per-replica mean loss divided by the replica count: one step on a global batch of 32 on
    two replicas is the step of one device on those 32 examples.

    Example:
    >>> from tfl.distribute import get_strategy, global_batch_size
    >>> global_batch_size(32, get_strategy("default"))
    32
    """
    if isinstance(per_replica, bool) or not isinstance(per_replica, int) or per_replica < 1:
        raise ValueError(f"Received per_replica={per_replica!r}; expected an integer >= 1.")
    return per_replica * num_replicas(strategy)


def _task(strategy: tf.distribute.Strategy) -> tuple[str | None, int | None]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return None, None
    return resolver.task_type, resolver.task_id


def _worker_count(strategy: tf.distribute.Strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return max(1, sum(len(cluster.get(kind, ())) for kind in ("chief", "worker")))


def is_multi_worker(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether `strategy` trains over several worker processes (a `TF_CONFIG` cluster).

    Example:
    >>> from tfl.distribute import get_strategy, is_multi_worker
    >>> is_multi_worker(get_strategy("default"))
    False
    """
    return _worker_count(strategy or tf.distribute.get_strategy()) > 1


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run directory: the chief (worker 0 when the cluster
    has no "chief" task); always True on one machine.

    Example:
    >>> from tfl.distribute import get_strategy, is_chief
    >>> is_chief(get_strategy("default"))
    True
    """
    task_type, task_id = _task(strategy or tf.distribute.get_strategy())
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0)


def write_dir(run_dir: str, strategy: tf.distribute.Strategy | None = None) -> str:
    """Where this process writes: `run_dir` on the chief, a new temporary directory on the
    other workers of a cluster (TensorFlow's pattern: every worker runs the same saves, only
    the chief's are kept). Remove it with `remove_write_dir` when the run is over.

    Example:
    >>> from tfl.distribute import get_strategy, write_dir
    >>> write_dir("runs/demo", get_strategy("default"))
    'runs/demo'
    """
    if is_chief(strategy):
        return run_dir
    _, task_id = _task(strategy or tf.distribute.get_strategy())
    return tempfile.mkdtemp(prefix=f"tfl-worker{task_id}-")


def remove_write_dir(path: str, run_dir: str) -> None:
    """Deletes `path` if it is a non-chief worker's temporary directory (not `run_dir`).

    Example:
    >>> from tfl.distribute import remove_write_dir
    >>> remove_write_dir("runs/demo", "runs/demo")  # the chief's: kept
    """
    if os.path.abspath(path) != os.path.abspath(run_dir):
        shutil.rmtree(path, ignore_errors=True)


def shard(dataset: tf.data.Dataset | None, strategy: tf.distribute.Strategy | None = None):
    """`dataset` with the auto-shard policy for `strategy` (see the module docstring).

    One worker: `OFF` (TensorFlow's default "AUTO" rewrite of a single-worker pipeline
    shuffles differently from the same pipeline without a strategy, so a run under
    MirroredStrategy would not see the examples in the same order). Several workers:
    `DATA`: every worker reads the whole seeded pipeline and keeps its share of every
    global batch (file sharding would give workers different numbers of batches).

    Example:
    >>> import tensorflow as tf
    >>> from tfl.distribute import get_strategy, shard
    >>> ds = shard(tf.data.Dataset.range(4).batch(2), get_strategy("default"))
    >>> ds.options().experimental_distribute.auto_shard_policy.name
    'OFF'
    """
    if dataset is None:
        return None
    policy = tf.data.experimental.AutoShardPolicy
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        policy.DATA if is_multi_worker(strategy) else policy.OFF
    )
    return dataset.with_options(options)


def patch_multi_worker_build(model: keras.Model) -> keras.Model:
    """Lets Keras 3 `fit`/`evaluate` a model built under a multi-worker strategy.

    Keras 3.15's TensorFlow trainer fails twice under `MultiWorkerMirroredStrategy` with
    several workers (keras-team/keras#20585 and tensorflow/tensorflow#72388, both open):

    1. every `fit` and `evaluate` of a model built in a strategy's scope starts by taking one
       batch and `strategy.reduce("MEAN", batch)`-ing it, only to learn the shapes for
       building the model; that reduce fails ("Attempt to convert a value (PerReplica...) to
       a Tensor"). Here, on `model` only, that step takes this worker's own slice of the
       batch, which has the same shapes.
    2. each step's logs (loss and metrics, scalars) are averaged over the replicas with
       `strategy.reduce("MEAN", value, axis=0)`, which fails for a scalar ("Invalid reduction
       dimension 0 for input with 0 dimensions"). Here that mean is taken with `axis=None`
       (the mean over replicas Keras means, as it computes on one machine), so every worker
       logs the same numbers and its callbacks (early stopping, checkpoints) decide alike.
       This one patches Keras' `reduce_per_replica` for the process, and changes it only
       for multi-worker strategies.

    Nothing changes on one worker (nothing is patched unless `model` was built under a
    multi-worker strategy). `tfl.fit_phases` calls it for every model it fits.

    Example:
    >>> import keras
    >>> from tfl.distribute import patch_multi_worker_build
    >>> model = keras.Sequential([keras.layers.Dense(1)])
    >>> patch_multi_worker_build(model) is model  # one worker: unchanged
    True
    """
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is None or not is_multi_worker(strategy):
        return model

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:  # as Keras does, without the cross-worker reduce
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(local, next(batches))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(maybe_symbolic_build, model)
    _patch_reduce_per_replica()
    return model


def _patch_reduce_per_replica() -> None:
    from keras.src.backend.tensorflow import trainer

    keras_reduce = trainer.reduce_per_replica
    if getattr(keras_reduce, "_tfl_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and is_multi_worker(strategy):
            return keras.tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    reduce_per_replica._tfl_patched = True
    trainer.reduce_per_replica = reduce_per_replica


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
    """`model.compile(jit_compile=...)` for this device (see the module docstring).

    "auto" is False on CPUs (XLA made depthwise-convolution nets 4-14x slower there) and stays
    Keras' "auto" on GPUs and TPUs (on for one GPU, off under a multi-device strategy; TPUs
    always compile); True and False are kept.

    Example:
    >>> from tfl.distribute import choose_jit_compile
    >>> choose_jit_compile("auto"), choose_jit_compile(True)  # on a CPU
    (False, True)
    """
    if value not in JIT_CHOICES or isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"Received jit_compile={value!r}; expected 'auto', True or False.")
    if value == "auto" and _kind(strategy) == "cpu":
        return False
    return value


def runtime_settings() -> dict[str, Any]:
    """The CPU runtime variables in effect and the ones tfl recommends for this CPU.

    Example:
    >>> from tfl.distribute import runtime_settings
    >>> sorted(runtime_settings()["in_effect"])
    ['TF_CPU_ALLOCATOR_USE_BFC', 'TF_ENABLE_ONEDNN_OPTS']
    """
    recommended = _runtime_env.recommended_env()
    keys = sorted(set(recommended) | {"TF_ENABLE_ONEDNN_OPTS", "TF_CPU_ALLOCATOR_USE_BFC"})
    return {
        "in_effect": {k: os.environ.get(k) for k in keys},
        "recommended": recommended,
    }
