"""The bottleneck feature cache: features equal the base's, the head trains the same, keys
change with the base and the data, frozen phases of `fit_phases` use it."""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import TEXT_LABELS, TEXTS, images, tiny_bert, tiny_bert_preprocessor, tiny_image_base

import tfl
from tfl.cache import FeatureCache, is_randomly_augmented, split_at_bases
from tfl.data.splits import BadInputReport, DataSplits
from tfl.heads import ClassificationHead, RegressionHead

LABELS = np.arange(24) % 3


def _model():
    # The same seed gives the same weights, as reloading the same pretrained base does.
    keras.utils.set_random_seed(0)
    return tfl.ImageClassifier(tiny_image_base(), num_classes=3)


def test_features_are_the_bases_pooled_output_and_the_head_model_finishes_the_task():
    model = _model()
    x = images(10)
    features = FeatureCache(None).features(model, x, np.arange(10) % 3, batch_size=4)
    np.testing.assert_allclose(features.x, model.backbone.predict(x, verbose=0), atol=1e-5)
    _, head_model = split_at_bases(model)
    np.testing.assert_allclose(
        head_model.predict(features.x, verbose=0), model.predict(x, verbose=0), atol=1e-5
    )
    # The head model shares the task's head: training it trains the task.
    assert {id(v) for v in head_model.trainable_variables} == {
        id(v) for v in model.head.trainable_variables
    }


def test_every_task_is_cut_after_its_pooled_bases():
    text = tfl.TextClassifier(tiny_bert(), 2, preprocessor=tiny_bert_preprocessor())
    features = FeatureCache(None).features(text, TEXTS, TEXT_LABELS, batch_size=4)
    assert features.x.shape == (6, 4)  # mean-pooled hidden states, not the token sequence
    np.testing.assert_allclose(
        split_at_bases(text)[1].predict(features.x, verbose=0),
        text.predict(TEXTS, verbose=0),
        atol=1e-5,
    )
    fusion = tfl.FusionClassifier([tiny_image_base(), tiny_image_base("mobilenet_v2")], 3)
    assert split_at_bases(fusion)[0].output.shape == (None, 576 + 1280)  # after the concat
    projected = tfl.FusionClassifier(
        [tiny_image_base(), tiny_image_base("mobilenet_v2")], 3, fusion="projection"
    )
    assert [t.shape for t in split_at_bases(projected)[0].output] == [(None, 576), (None, 1280)]
    heads = {"digit": ClassificationHead(3), "size": RegressionHead(1)}
    multitask = tfl.MultiTaskModel(tiny_image_base(), heads)
    targets = {"digit": np.arange(6) % 3, "size": np.ones((6, 1))}
    features = FeatureCache(None).features(multitask, images(6), targets, batch_size=4)
    assert sorted(features.targets) == ["digit", "size"]
    np.testing.assert_array_equal(features.targets["digit"], targets["digit"])


def test_cached_head_training_matches_training_through_the_frozen_base():
    x, y = images(24), LABELS
    validation = (images(12, seed=1), np.arange(12) % 3)
    results = {}
    for cache in (False, "memory"):
        keras.utils.set_random_seed(0)
        model = _model()
        history = tfl.fit_phases(
            model,
            tfl.feature_extraction(3),
            x,
            y,
            batch_size=8,
            validation_data=validation,
            cache=cache,
            shuffle=False,
            verbose=0,
        )
        results[cache] = (history.history, [w.numpy() for w in model.head.weights])
    plain, cached = results[False], results["memory"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(cached[0][key], plain[0][key], rtol=1e-4, atol=1e-6)
    for a, b in zip(cached[1], plain[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_disk_cache_is_reused_and_invalidated_by_new_weights_or_data(tmp_path):
    x, y = images(8), np.arange(8) % 3
    model = _model()
    first = FeatureCache(str(tmp_path)).features(model, x, y, batch_size=4)
    assert not first.from_cache and len(os.listdir(tmp_path)) == 1
    # A new process (a new FeatureCache) with the same base and data loads from disk.
    again = FeatureCache(str(tmp_path)).features(_model(), x, y, batch_size=4)
    assert again.from_cache and again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(again.x, first.x)
    # Other data, other labels or changed base weights: computed again.
    cache = FeatureCache(str(tmp_path))
    assert not cache.features(model, images(8, seed=3), y, batch_size=4).from_cache
    assert not cache.features(model, x, (y + 1) % 3, batch_size=4).from_cache
    kernel = model.backbone.weights[0]
    kernel.assign(kernel * 1.01)
    changed = cache.features(model, x, y, batch_size=4)
    assert not changed.from_cache
    assert changed.fingerprint != first.fingerprint
    assert not np.array_equal(changed.x, first.x)
    assert len(os.listdir(tmp_path)) == 4


def test_a_killed_extraction_leaves_no_entry_that_could_be_mistaken_for_complete(tmp_path):
    model = _model()

    def broken():
        yield images(4), np.arange(4) % 3
        raise RuntimeError("disk unplugged")

    spec = (tf.TensorSpec((None, 32, 32, 3)), tf.TensorSpec((None,), tf.int64))
    data = tf.data.Dataset.from_generator(broken, output_signature=spec)
    with pytest.raises(Exception, match="disk unplugged"):
        FeatureCache(str(tmp_path)).features(model, data)
    assert os.listdir(tmp_path) == []


def test_large_features_stream_from_disk_and_train_the_same(tmp_path):
    x, y = images(12), np.arange(12) % 3
    model = _model()
    in_memory = FeatureCache(str(tmp_path)).features(model, x, y, batch_size=4)
    streamed = FeatureCache(str(tmp_path), memory_limit=0).features(model, x, y, batch_size=4)
    assert isinstance(streamed.arrays[0], np.memmap) and streamed.from_cache
    batches = list(streamed.dataset(4))
    assert [tuple(b[0].shape) for b in batches] == [(4, 576)] * 3
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), in_memory.x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)


def test_fit_phases_caches_frozen_phases_on_disk_and_a_rerun_skips_extraction(tmp_path, capsys):
    data = tf.data.Dataset.from_tensor_slices((images(16), np.arange(16) % 3)).batch(8)
    kwargs = dict(cache=str(tmp_path), verbose=1)
    tfl.fit_phases(_model(), tfl.two_phase(1, 1, finetune_learning_rate=1e-4), data, **kwargs)
    first = capsys.readouterr().out
    assert "Computed 16 feature vectors" in first
    tfl.fit_phases(_model(), tfl.two_phase(1, 1, finetune_learning_rate=1e-4), data, **kwargs)
    assert "Loaded 16 cached feature vectors" in capsys.readouterr().out


def test_augmented_or_shuffled_data_trains_through_the_base():
    x = images(8)
    plain = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 3)).batch(4)
    assert is_randomly_augmented(plain) is False
    assert is_randomly_augmented(x) is False
    shuffled = plain.unbatch().shuffle(8, reshuffle_each_iteration=True).batch(4)
    assert is_randomly_augmented(shuffled) is True
    augmented = DataSplits(plain, None, None, None, BadInputReport(), augmented=True)
    assert is_randomly_augmented(augmented.train, augmented.augmented) is True
    model = _model()
    # "auto" quietly trains through the base; True refuses to freeze one random draw.
    history = tfl.fit_phases(model, tfl.feature_extraction(1), augmented, verbose=0)
    assert len(history.epoch) == 1
    with pytest.raises(ValueError, match="randomly augmented"):
        tfl.fit_phases(model, tfl.feature_extraction(1), augmented, cache=True, verbose=0)
    with pytest.raises(ValueError, match="cache="):
        tfl.fit_phases(model, tfl.feature_extraction(1), x, LABELS[:8], cache=3, verbose=0)


def test_data_splits_tell_the_cache_what_their_shuffled_splits_are(tmp_path, capsys):
    data = tfl.data.from_arrays(images(16), np.arange(16) % 3, 32, splits=(0.5, 0.5), batch_size=4)
    assert data.augmented is False and sorted(data.fingerprints) == ["train", "validation"]
    # Read on its own, the shuffled training split looks random (it differs between reads)...
    assert is_randomly_augmented(data.train) is True
    # ... but its DataSplits says what it is: the frozen phase trains on cached features, keyed
    # by the splits' fingerprints, and a second run loads them.
    kwargs = dict(cache=str(tmp_path), verbose=1)
    tfl.fit_phases(_model(), tfl.feature_extraction(1), data, **kwargs)
    sizes = data.info["num_examples"]
    computed = [f"Computed {sizes[s]} feature vectors" for s in ("train", "validation")]
    loaded = [f"Loaded {sizes[s]} cached feature vectors" for s in ("train", "validation")]
    out = capsys.readouterr().out
    assert all(line in out for line in computed)  # train and validation
    tfl.fit_phases(_model(), tfl.feature_extraction(1), data, **kwargs)
    out = capsys.readouterr().out
    assert all(line in out for line in loaded) and "Computed" not in out
    # A transformation of a split keeps nothing hidden: the fields travel with the DataSplits.
    mapped = dataclasses.replace(data, train=data.train.map(lambda x, y: (x, y)))
    tfl.fit_phases(_model(), tfl.feature_extraction(1), mapped, **kwargs)
    out = capsys.readouterr().out
    assert all(line in out for line in loaded) and "Computed" not in out


def test_a_warm_cache_leaves_the_training_order_as_a_cold_one_does(tmp_path):
    # Each new iterator of a shuffled split draws the next shuffle seed: an extraction that
    # read the split would change the fine-tuning order, and a run's result would depend on
    # whether the cache was warm. A DataSplits' split is read in order instead; a bare dataset
    # gets the same iterators started (not read) when its features are loaded.
    def next_order(cache, in_order: bool):
        keras.utils.set_random_seed(0)  # the pipeline's shuffle seeds, as in a new run
        data = tfl.data.from_arrays(images(16), np.arange(16) % 4, 32, splits=(1.0,), batch_size=16)
        kwargs = {"in_order": data.train_in_order, "fingerprint": "f"} if in_order else {}
        if cache is not None:
            cache.features(_model(), data.train, **kwargs)
        return next(iter(data.train))[1].numpy().tolist()

    untouched = next_order(None, in_order=True)
    cache = FeatureCache(str(tmp_path / "a"))
    assert next_order(cache, in_order=True) == untouched  # cold: computed from the in-order view
    assert next_order(cache, in_order=True) == untouched  # warm: loaded
    bare = FeatureCache(str(tmp_path / "b"))
    cold = next_order(bare, in_order=False)
    assert cold != untouched  # reading the shuffled split itself moves its order on...
    assert next_order(bare, in_order=False) == cold  # ...and loading moves it on alike


def test_callbacks_see_the_full_task_and_can_stop_a_cached_phase(tmp_path):
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(type(self.model).__name__)

    model = _model()
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="loss")
    history = tfl.fit_phases(
        model,
        tfl.feature_extraction(5),
        images(16),
        np.arange(16) % 3,
        batch_size=8,
        callbacks=[Spy(), stop, checkpoint],
        cache="memory",
        verbose=0,
    )
    assert len(history.epoch) == 2  # stopped by EarlyStopping after patience 0
    assert set(seen) == {"ImageClassifier"}
    restored = keras.saving.load_model(str(tmp_path / "best.keras"))
    assert isinstance(restored, tfl.ImageClassifier)


DISTRIBUTED_SCRIPT = """
import json, os, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
sys.path.insert(0, sys.argv[1])
import tfl
from helpers import images, tiny_image_base
from tfl.cache import FeatureCache

x, y = images(9), np.arange(9) % 3
keras.utils.set_random_seed(0)
plain = FeatureCache(None).features(tfl.ImageClassifier(tiny_image_base(), 3), x, y, batch_size=4)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    keras.utils.set_random_seed(0)
    model = tfl.ImageClassifier(tiny_image_base(), 3)
    mirrored = FeatureCache(None).features(model, x, y, batch_size=4)
    history = tfl.fit_phases(model, tfl.feature_extraction(2), x, y, batch_size=4,
                             cache="memory", verbose=0)
print("RESULT" + json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "max_diff": float(np.abs(plain.x - mirrored.x).max()),
    "scale": float(np.abs(plain.x).max()),
    "targets": mirrored.targets.tolist(),
    "epochs": history.epoch,
}))
"""


def test_extraction_under_mirrored_strategy_keeps_examples_and_labels_together():
    import json
    import subprocess
    import sys

    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED_SCRIPT, tests],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(tests),
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["replicas"] == 2
    # The batch is split over the two replicas and put back together: same rows, same order.
    assert result["max_diff"] <= 1e-5 * max(result["scale"], 1e-30) + 1e-12
    assert result["targets"] == (np.arange(9) % 3).tolist()
    assert result["epochs"] == [0, 1]
