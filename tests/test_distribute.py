"""tfl.distribute and the `runtime:` section: strategies, precision, XLA, CPU runtime variables."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from helpers import images, tiny_image_base

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
)

# Two runs of the TINY image recipe in one fresh process with two logical CPU devices (they
# must be configured before TensorFlow initialises): the default strategy with batch 10, then
# MirroredStrategy over both devices with 5 per replica (the same global batch of 10).
MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from tfl import config as config_lib, runner

    results = {}
    for name, batch in (("default", 10), ("mirrored", 5)):
        config = config_lib.from_dict({
            "output": f"{sys.argv[1]}/{name}",
            "data": {"image_size": 32, "batch_size": batch,
                     "max_per_class": {"train": 4, "validation": 2, "test": 2}},
            "train": {"schedule": "feature_extraction", "head_epochs": 2, "finetune_epochs": 0},
            "runtime": {"strategy": name},
        })
        out = runner.train(config, verbose=0)
        head = out["model"].head.output_dense.kernel.numpy()
        results[name] = {
            "val_loss": [float(v) for v in out["history"].history["val_loss"]],
            "head_kernel": head.tolist(),
            "replicas": runner.strategy(config_lib.validate(config)).num_replicas_in_sync,
            "test_examples": out["metrics"]["num_examples"],
        }
    print("RESULT " + json.dumps(results))
    """
)


@pytest.mark.assets
@pytest.mark.slow
def test_mirrored_over_two_cpu_devices_trains_like_the_default_strategy(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    results = json.loads(line[len("RESULT ") :])
    default, mirrored = results["default"], results["mirrored"]
    assert mirrored["replicas"] == 2 and default["replicas"] == 1
    assert "MirroredStrategy (2 replica(s), cpu), batch 5 per replica = 10 global" in done.stdout
    # The head phase (two epochs on cached features): same examples per step, gradients
    # all-reduced over the two halves of each batch: the same training up to float summation
    # order. (A fine-tuning epoch still differs, val_loss 2.66 vs 2.34 measured: an open item
    # of issue 8, so this test trains the head only.)
    np.testing.assert_allclose(mirrored["val_loss"], default["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(mirrored["head_kernel"], default["head_kernel"], atol=1e-5)
    # Evaluation under two replicas sees each test example once (not once per replica).
    assert mirrored["test_examples"] == default["test_examples"] == 20
    # Both wrote a complete run directory.
    for name in ("default", "mirrored"):
        assert os.path.exists(tmp_path / name / "model.keras")


@pytest.fixture
def policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_without_nan_and_outputs_float32(name, policy):
    keras.mixed_precision.set_global_policy(name)
    model = tfl.ImageClassifier(tiny_image_base("mobilenet"), 3)
    tfl.unfreeze(model, top_n="all")
    model.compile()
    x, y = images(8), np.arange(8) % 3
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    out = model.predict(x, verbose=0)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-3)
    # The base computes in half precision; the head's output layer in float32.
    assert model.backbone.base.layers[1].compute_dtype == name.split("_")[1]
    assert model.head.output_dense.compute_dtype == "float32"
    if name == "mixed_float16":  # Keras scales the loss of a float16 optimizer
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_auto_choices_on_a_cpu():
    strategy = get_strategy("auto")
    assert strategy.num_replicas_in_sync == 1
    assert describe(strategy)["device"] == "cpu" and describe(strategy)["strategy"] == "default"
    assert choose_precision("auto", strategy) == "float32"
    assert choose_precision("mixed_bfloat16", strategy) == "mixed_bfloat16"
    assert choose_jit_compile("auto") == "auto"  # Keras: XLA off on CPU-only machines
    assert global_batch_size(16, strategy) == 16 and is_chief(strategy)


def test_bad_runtime_choices_name_the_value_and_the_fix(monkeypatch):
    with pytest.raises(ValueError, match=r"strategy='gpu'; expected one of"):
        get_strategy("gpu")
    with pytest.raises(ValueError, match=r"precision='fp16'"):
        choose_precision("fp16")
    with pytest.raises(ValueError, match=r"jit_compile='yes'"):
        choose_jit_compile("yes")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="without TF_CONFIG; set it on every worker"):
        get_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}, "task": {}}))
    with pytest.raises(ValueError, match="task.type / task.index"):
        get_strategy("multi_worker")
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}),
    )
    with pytest.raises(ValueError, match="task.index=3 with 1 workers"):
        get_strategy("multi_worker")


@pytest.mark.parametrize(
    "flag, message",
    [
        (["--runtime.strategy", "gpus"], "runtime.strategy: received 'gpus'"),
        (["--runtime.precision", "half"], "runtime.precision: received 'half'"),
        (["--runtime.jit-compile", "sometimes"], "runtime.jit_compile: received 'sometimes'"),
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
    # With AVX-512 TensorFlow turns oneDNN on itself; on ARM tfl leaves it alone.
    assert "TF_ENABLE_ONEDNN_OPTS" not in _runtime_env.recommended_env({"avx512f"}, "x86_64")
    assert "TF_ENABLE_ONEDNN_OPTS" not in _runtime_env.recommended_env(set(), "aarch64")
    # TensorFlow is imported in this process: nothing can be applied any more.
    assert _runtime_env.apply({}) == {}
    # Before TensorFlow is imported: only what the user left unset, unless switched off.
    monkeypatch.delitem(sys.modules, "tensorflow")
    monkeypatch.setattr(_runtime_env, "cpu_flags", lambda path=None: {"avx2"})
    monkeypatch.setattr(_runtime_env.platform, "machine", lambda: "x86_64")
    environ = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert _runtime_env.apply(environ) == {"TF_CPU_ALLOCATOR_USE_BFC": "true"}
    assert environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert _runtime_env.apply({"TFL_CPU_RUNTIME": "off"}) == {}
