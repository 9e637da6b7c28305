"""tfl.distribute and the `runtime:` section: strategies, precision, XLA, CPU runtime variables.

The strategy tests run in fresh processes: TensorFlow's logical devices and a multi-worker
cluster must be set up before TensorFlow initialises, which the test process did long ago.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import IMAGE_SHAPE, images

import tfl
from tfl import _runtime_env, cli
from tfl import config as config_lib
from tfl.distribute import (
    choose_jit_compile,
    choose_precision,
    describe,
    get_strategy,
    global_batch_size,
    is_chief,
    is_multi_worker,
    shard,
    split_cpu,
    write_dir,
)

# `tfl train` twice in one process: MirroredStrategy over two logical CPU devices
# (`--runtime.cpu-devices 2` splits the CPU first) with 10 per replica, then the default
# strategy with batch 20 (the same global batch).
# 20 training images make one step per epoch: the two runs then train on the same batches.
# (With several steps they would not: Keras' `fit` of a model built under a strategy first
# reads one batch to build it, which starts an extra pass of a reshuffling dataset, so the
# epochs see other orders than without a strategy; equally valid, not comparable.)
MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import keras
    import numpy as np
    from tfl import cli

    results, weights = {}, {}
    for name, batch, devices in (("mirrored", "10", "2"), ("default", "20", "1")):
        run_dir = f"{sys.argv[1]}/{name}"
        code = cli.main([
            "train", "--image-size", "32", "--batch-size", batch,
            "--data.max-per-class", "{train: 2, validation: 1, test: 1}",
            "--epochs-head", "2", "--epochs-finetune", "2",
            "--runtime.strategy", name, "--runtime.cpu-devices", devices, "--output", run_dir,
            # The weights' moving average, the WiSE-FT blend and the temperature alike too.
            "--train.ema", "0.5", "--train.wise", "0.5", "--evaluate.calibrate", "true",
        ])
        with open(f"{run_dir}/metrics.json") as f:
            metrics = json.load(f)
        with open(f"{run_dir}/evaluation.json") as f:
            evaluation = json.load(f)
        model = keras.saving.load_model(f"{run_dir}/model.keras")
        weights[name] = model.get_weights()
        results[name] = {
            "code": code,
            "val_loss": metrics["history"]["val_loss"],
            "test_examples": evaluation["num_examples"],
        }
    pairs = list(zip(weights["default"], weights["mirrored"]))
    results["max_weight_diff"] = max(float(np.abs(a - b).max()) for a, b in pairs)
    results["max_weight"] = max(float(np.abs(a).max()) for a, _ in pairs)
    print("RESULT " + json.dumps(results))
    """
)


@pytest.mark.assets
@pytest.mark.slow
def test_mirrored_over_two_cpu_devices_fine_tunes_like_the_default_strategy(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    results = json.loads(line[len("RESULT ") :])
    default, mirrored = results["default"], results["mirrored"]
    assert default["code"] == mirrored["code"] == cli.EXIT_OK
    # Both sizes are printed; XLA stays off on a CPU.
    assert "Runtime: default (1 replica(s), cpu), batch 20 per replica = 20 global" in done.stdout
    assert (
        "Runtime: MirroredStrategy (2 replica(s), cpu), batch 10 per replica = 20 global, "
        "float32, XLA off" in done.stdout
    )
    # Both phases (head on cached features, then fine-tuning through the base): each replica
    # takes half of every batch, Keras divides its mean loss by the replica count and sums
    # the gradients: the same step as one device on the whole batch, up to the order of
    # float32 sums (seen: 1e-7 relative). 1e-4 is far below what an epoch changes (1e-2).
    assert len(mirrored["val_loss"]) == 4
    assert np.ptp(default["val_loss"]) > 1e-2  # it trained
    np.testing.assert_allclose(mirrored["val_loss"], default["val_loss"], rtol=1e-4)
    assert results["max_weight_diff"] < 1e-4 * max(1.0, results["max_weight"])
    # Evaluation under two replicas sees each test example once (not once per replica).
    assert mirrored["test_examples"] == default["test_examples"] == 10


# One worker of a two-worker `tfl` run (TF_CONFIG from the test): two head epochs (cached
# features), one fine-tuning epoch. Worker 1 kills itself at the start of epoch KILL_AT
# (after the backup of the epoch before); each worker saves its final weights.
WORKER_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    import keras
    import numpy as np
    import tfl
    from tfl import config as config_lib, runner

    out, kill_at = sys.argv[1], int(sys.argv[2])
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]


    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            print(f"EPOCH {epoch}", flush=True)
            if index == 1 and epoch == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)


    standard = tfl.standard_callbacks
    tfl.standard_callbacks = lambda *args, **kwargs: [*standard(*args, **kwargs), Epochs()]
    config = config_lib.from_dict({
        "output": os.path.join(out, "run"),
        "data": {"image_size": 32, "batch_size": 5,
                 "max_per_class": {"train": 2, "validation": 1, "test": 1}},
        "train": {"head_epochs": 2, "finetune_epochs": 1},
        "runtime": {"strategy": "multi_worker"},
    })
    result = runner.train(config, verbose=0)
    np.savez(os.path.join(out, f"weights{index}.npz"), *result["model"].get_weights())
    print("RUN_DIR", result["run_dir"], flush=True)
    """
)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(tmp_path, kill_at: int, attempt: int) -> list[subprocess.Popen]:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps(tf_config),
            TF_CPP_MIN_LOG_LEVEL="3",
            TMPDIR=str(tmp_path / "tmp"),  # where the non-chief's temporary run dir goes
        )
        with open(tmp_path / f"worker{index}-{attempt}.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(tmp_path / "worker.py"), str(tmp_path), str(kill_at)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
    return procs


def _wait(procs, seconds: float, until=lambda: False):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if until() or all(p.poll() is not None for p in procs):
            return
        time.sleep(0.2)
    raise AssertionError(f"the workers did not finish within {seconds} s")


@pytest.mark.assets
@pytest.mark.slow
def test_two_workers_train_alike_only_the_chief_writes_and_a_killed_job_resumes(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER_SCRIPT)
    (tmp_path / "tmp").mkdir()
    log = lambda index, attempt: (tmp_path / f"worker{index}-{attempt}.log").read_text()  # noqa: E731
    procs = []
    try:
        # 1. Worker 1 dies at the start of epoch 1, in the middle of the head phase. The
        # chief cannot go on without it (every step all-reduces); the job is killed, as a
        # cluster manager would, once the chief has backed up epoch 0 and waits in epoch 1.
        procs = _start_workers(tmp_path, kill_at=1, attempt=1)
        _wait(procs, 240, until=lambda: procs[1].poll() is not None and "EPOCH 1" in log(0, 1))
        assert procs[1].poll() == -signal.SIGKILL, log(1, 1)[-3000:]
        procs[0].kill()
        procs[0].wait()
        backup = tmp_path / "run" / "backup"
        assert json.loads((backup / "phase-0" / "training_metadata.json").read_text())["epoch"] == 1
        # 2. The same job again: both workers resume from the chief's backup and finish.
        procs = _start_workers(tmp_path, kill_at=-1, attempt=2)
        _wait(procs, 240)
        assert [p.returncode for p in procs] == [0, 0], log(0, 2)[-3000:] + log(1, 2)[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    chief, worker = log(0, 2), log(1, 2)
    assert (
        "Runtime: MultiWorkerMirroredStrategy (2 replica(s), cpu, chief of 2 workers), "
        "batch 5 per replica = 10 global" in chief
    )
    # Resumed: the second job started at epoch 1 (epoch 0 came from the chief's backup).
    for text in (chief, worker):
        assert [x for x in text.splitlines() if x.startswith("EPOCH")] == ["EPOCH 1", "EPOCH 2"]
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["0", "1", "2"]
    # Every step all-reduced the gradients: both workers end with the same weights, bit for bit.
    chief_weights, worker_weights = (np.load(tmp_path / f"weights{i}.npz") for i in (0, 1))
    assert len(chief_weights.files) == len(worker_weights.files) > 100
    for key in chief_weights.files:
        np.testing.assert_array_equal(chief_weights[key], worker_weights[key])
    # Only the chief wrote the run directory; the other worker's temporary one is gone.
    run_dir = next(x.split()[1] for x in chief.splitlines() if x.startswith("RUN_DIR"))
    other = next(x.split()[1] for x in worker.splitlines() if x.startswith("RUN_DIR"))
    assert run_dir == str(tmp_path / "run") and other.startswith(str(tmp_path / "tmp"))
    assert not os.path.exists(other)
    for name in ("model.keras", "metrics.json", "evaluation.json", "config.yaml"):
        assert os.path.getsize(tmp_path / "run" / name) > 0
    assert keras.saving.load_model(tmp_path / "run" / "model.keras").count_params() > 0


@pytest.fixture
def policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", ["mixed_float16"])  # bfloat16: the same code path
def test_mixed_precision_trains_without_nan_and_outputs_float32(name, policy, tmp_path):
    keras.mixed_precision.set_global_policy(name)
    # BatchNorm on batch statistics: a random base in inference mode outputs ~1e-21 (its
    # initial moving statistics), which float16 flushes to zero, and nothing would train.
    base = tfl.ImageBackbone("mobilenet", IMAGE_SHAPE, weights=None, inference_mode=False)
    model = tfl.ImageClassifier(base, 3)
    tfl.unfreeze(model, top_n="all", train_batchnorm=True)
    model.compile()
    x, y = images(8), np.arange(8) % 3
    before = model.head.output_dense.kernel.numpy()
    history = model.fit(x, y, epochs=3, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    kernel = model.head.output_dense.kernel.numpy()
    assert np.all(np.isfinite(kernel)) and not np.allclose(kernel, before)
    out = model.predict(x, verbose=0)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-3)
    # The base computes in half precision; the head's output layer and the loss in float32.
    assert model.backbone.base.layers[1].compute_dtype == name.split("_")[1]
    assert model.head.output_dense.compute_dtype == "float32"
    assert model.head.output_dense.kernel.dtype == "float32"
    if name == "mixed_float16":
        # Keras scales the float16 loss: steps whose gradients overflow are skipped (never
        # applied as inf/NaN) and the scale halves from 2**15 until steps go through.
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert float(model.optimizer.dynamic_scale.numpy()) < 2**15
    # model.keras reloads in a float32 process and hands users float32 probabilities. The
    # base is rebuilt under the loading process's policy (float32 here), so they agree with
    # the half-precision ones to bfloat16's precision (8 bits: 4e-3 relative), not exactly.
    model.save(tmp_path / "model.keras")
    keras.mixed_precision.set_global_policy("float32")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.backbone.base.layers[1].compute_dtype == "float32"
    again = np.asarray(restored(x, training=False))
    assert again.dtype == np.float32
    np.testing.assert_allclose(again, out, atol=1e-2)


def test_auto_choices_on_a_cpu():
    strategy = get_strategy("auto")
    info = describe(strategy)
    assert info["strategy"] == "default" and info["device"] == "cpu"
    assert info["replicas"] == info["workers"] == 1 and info["chief"]
    assert choose_precision("auto", strategy) == "float32"
    assert choose_precision("mixed_bfloat16", strategy) == "mixed_bfloat16"
    assert choose_jit_compile("auto", strategy) is False  # XLA slowed convnet inference 4-14x
    assert choose_jit_compile(True, strategy) is True
    assert global_batch_size(16, strategy) == 16
    assert is_chief(strategy) and not is_multi_worker(strategy)
    assert write_dir("runs/x", strategy) == "runs/x"


def test_shard_turns_auto_sharding_off_on_one_worker():
    import tensorflow as tf

    ds = tf.data.Dataset.range(6).batch(2)
    sharded = shard(ds, get_strategy("default"))
    policy = sharded.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.OFF
    assert [b.tolist() for b in sharded.as_numpy_iterator()] == [[0, 1], [2, 3], [4, 5]]
    assert shard(None) is None


def test_bad_runtime_choices_name_the_value_and_the_fix(monkeypatch):
    with pytest.raises(ValueError, match=r"strategy='gpu'; expected one of"):
        get_strategy("gpu")
    with pytest.raises(ValueError, match=r"precision='fp16'"):
        choose_precision("fp16")
    with pytest.raises(ValueError, match=r"jit_compile='yes'"):
        choose_jit_compile("yes")
    with pytest.raises(ValueError, match=r"per_replica=0; expected an integer >= 1"):
        global_batch_size(0, get_strategy("default"))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="without TF_CONFIG; set it on every worker"):
        get_strategy("multi_worker")
    bad = {
        '{"cluster": {"worker": ["a:1"]}, "task": {}}': "task.type / task.index",
        '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}': (
            "task.index=3 with 1 workers; expected 0..0"
        ),
        '{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}': (
            "task.type='ps'; expected 'worker'"
        ),
        "not json": "TF_CONFIG='not json'",
    }
    for tf_config, message in bad.items():
        monkeypatch.setenv("TF_CONFIG", tf_config)
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
            get_strategy("multi_worker")


def test_cpu_devices_cannot_change_once_tensorflow_started():
    # This process has run TensorFlow ops already: its CPU devices are fixed. Asking for the
    # same count is fine; another count says why not and what to do.
    have = len(tf.config.list_logical_devices("CPU"))
    assert len(split_cpu(have)) == have
    with pytest.raises(RuntimeError, match=rf"cpu_devices={have + 1}, but TensorFlow already"):
        split_cpu(have + 1)
    with pytest.raises(ValueError, match=r"devices=0; expected a positive integer"):
        split_cpu(0)
    with pytest.raises(ValueError, match=r"cpu_devices=2 with strategy='default'"):
        get_strategy("default", cpu_devices=2)


def test_multi_worker_needs_an_explicit_output():
    config = config_lib.from_dict({"runtime": {"strategy": "multi_worker"}})
    with pytest.raises(config_lib.ConfigError, match="output: runtime.strategy multi_worker"):
        config_lib.validate(config)
    config = config_lib.from_dict({"output": "shared/run", "runtime": {"strategy": "multi_worker"}})
    assert config_lib.validate(config).runtime.strategy == "multi_worker"


@pytest.mark.parametrize(
    "flag, message",
    [
        (["--runtime.strategy", "gpus"], "runtime.strategy: received 'gpus'"),
        (["--runtime.precision", "half"], "runtime.precision: received 'half'"),
        (["--runtime.jit-compile", "sometimes"], "runtime.jit_compile: received 'sometimes'"),
        (["--runtime.cpu-devices", "2"], "runtime.cpu_devices: received 2 with runtime.strategy"),
        (
            ["--runtime.strategy", "mirrored", "--runtime.cpu-devices", "0"],
            "runtime.cpu_devices: received 0; expected a positive integer",
        ),
    ],
)
def test_tfl_train_rejects_bad_runtime_flags(flag, message, tmp_path, capsys):
    assert cli.main(["train", *flag, "--output", str(tmp_path / "run")]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "run")


def test_runtime_section_round_trips_through_yaml():
    config = config_lib.validate(
        config_lib.from_dict({"runtime": {"strategy": "mirrored", "jit_compile": "false"}})
    )
    assert config.runtime.jit_compile is False
    again = config_lib.validate(config_lib.from_dict(config_lib.to_dict(config)))
    assert again.runtime == config.runtime


def test_cpu_runtime_variables_follow_the_cpu_and_never_override_the_user(monkeypatch):
    avx2 = _runtime_env.recommended_env({"avx2", "fma"}, "x86_64")
    assert avx2 == {"TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_ENABLE_ONEDNN_OPTS": "1"}
    # With AVX-512 TensorFlow turns oneDNN on itself (and BFC measured +-10% there); ARM:
    # not measured. tfl then leaves TensorFlow's defaults.
    assert _runtime_env.recommended_env({"avx2", "avx512f"}, "x86_64") == {}
    assert _runtime_env.recommended_env(set(), "aarch64") == {}
    monkeypatch.setattr(_runtime_env, "cpu_flags", lambda path=None: {"avx2"})
    monkeypatch.setattr(_runtime_env.platform, "machine", lambda: "x86_64")
    # TensorFlow is imported in this process: nothing can take effect any more; say what.
    with pytest.warns(RuntimeWarning, match="TF_CPU_ALLOCATOR_USE_BFC=true TF_ENABLE_ONEDNN"):
        assert _runtime_env.apply({}) == {}
    assert _runtime_env.apply({}, warn=False) == {}
    # Before TensorFlow is imported: only what the user left unset, unless switched off.
    monkeypatch.delitem(sys.modules, "tensorflow")
    environ = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert _runtime_env.apply(environ) == {"TF_CPU_ALLOCATOR_USE_BFC": "true"}
    assert environ == {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPU_ALLOCATOR_USE_BFC": "true"}
    assert _runtime_env.apply({"TFL_CPU_RUNTIME": "off"}) == {}


def test_cpu_runtime_module_loads_without_tensorflow_and_sets_the_variables(tmp_path):
    # What an entry point does first: the file alone, nothing of tfl or TensorFlow imported.
    # (On a CPU without AVX-512, as on most laptops and CI machines.)
    code = textwrap.dedent(
        f"""
        import importlib.util, json, os, sys
        spec = importlib.util.spec_from_file_location("env", {_runtime_env.__file__!r})
        env = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(env)
        env.cpu_flags = lambda path=None: {{"avx2", "fma"}}
        env.platform.machine = lambda: "x86_64"
        applied = env.apply()
        seen = {{k: os.environ.get(k) for k in env.recommended_env()}}
        modules = sorted(m for m in sys.modules if "tensorflow" in m or m.startswith("tfl"))
        print(json.dumps([applied, seen, modules]))
        """
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "TFL_"))}
    clean["TF_CPU_ALLOCATOR_USE_BFC"] = "false"  # the user's own setting stays
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=clean
    )
    assert done.returncode == 0, done.stderr
    applied, seen, imported = json.loads(done.stdout)
    assert applied == {"TF_ENABLE_ONEDNN_OPTS": "1"}
    assert seen == {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPU_ALLOCATOR_USE_BFC": "false"}
    assert imported == []


def test_importing_tfl_sets_the_cpu_variables_before_tensorflow_loads():
    # `import tfl` is what the `tfl` command, the recipes and a notebook's first cell do. On a
    # CPU without AVX-512 the variables must be in the environment before TensorFlow is
    # imported (apply() refuses once it is, so a set variable proves the order).
    code = textwrap.dedent(
        f"""
        import importlib.util, json, os, sys
        spec = importlib.util.spec_from_file_location("tfl._runtime_env", {_runtime_env.__file__!r})
        env = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(env)
        env.cpu_flags = lambda path=None: {{"avx2", "fma"}}
        env.platform.machine = lambda: "x86_64"
        sys.modules["tfl._runtime_env"] = env
        import tfl
        assert "tensorflow" in sys.modules
        print(json.dumps({{k: os.environ.get(k) for k in env.recommended_env()}}))
        """
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "TFL_"))}
    clean["TF_CPP_MIN_LOG_LEVEL"] = "2"
    for extra, expected in [
        ({}, {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPU_ALLOCATOR_USE_BFC": "true"}),
        (
            {"TF_ENABLE_ONEDNN_OPTS": "0"},
            {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPU_ALLOCATOR_USE_BFC": "true"},
        ),
        (
            {"TFL_CPU_RUNTIME": "off"},
            {"TF_ENABLE_ONEDNN_OPTS": None, "TF_CPU_ALLOCATOR_USE_BFC": None},
        ),
    ]:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env={**clean, **extra},
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == expected, extra
