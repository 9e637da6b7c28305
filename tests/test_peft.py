"""LoRA (`tfl.peft`): only the adapters train, the pretrained kernels stay, saving merges."""

import os
import warnings
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import TEXT_LABELS, TEXTS, tiny_bert, tiny_bert_preprocessor, tiny_image_base

import tfl
from tfl import post_training
from tfl.fitting import fit_phases
from tfl.peft import (
    ADAPTER_NAMES,
    adapter_counts,
    enable_lora,
    has_lora,
    revive_adapters,
)
from tfl.phases import two_phase


def _leaf(weight) -> str:
    return weight.path.rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A tiny BERT classifier with rank-2 adapters, through a probe and a fine-tuning phase."""
    keras.utils.set_random_seed(0)
    model = tfl.TextClassifier(tiny_bert(), 2, preprocessor=tiny_bert_preprocessor())
    enable_lora(model, rank=2)
    before = {w.path: np.array(w) for w in model.weights}
    history = fit_phases(
        model, two_phase(1, 2, finetune_learning_rate=1e-2), TEXTS, TEXT_LABELS,
        batch_size=3, lint=False, verbose=0,
    )  # fmt: skip
    return model, before, history, tmp_path_factory.mktemp("peft")


def test_lora_trains_only_the_adapters_and_the_head(tuned):
    model, before, history, _ = tuned
    changed = {w.path for w in model.weights if not np.array_equal(np.array(w), before[w.path])}
    base = {w.path for w in model.backbone.weights}
    adapters = {p for p in base if p.rsplit("/", 1)[-1] in ADAPTER_NAMES}
    # keras-hub's default targets: the query and value projections of both layers.
    assert len(adapters) == 2 * 2 * 2 and {p.split("/")[-2] for p in adapters} == {"query", "value"}
    assert changed & base  # the adapters moved ...
    assert not (changed & base) - adapters  # ... and nothing else of the base did
    assert changed - base  # the head trained
    counts = adapter_counts(model)
    head = sum(int(np.prod(w.shape)) for w in model.head.weights)
    probe, finetune = history.phases
    assert probe["trainable_params"] == head  # the probe: the head only
    assert finetune["trainable_params"] == head + counts["adapters"]


def test_image_bases_get_adapters_on_their_convolutions_and_unfreeze_opens_only_those():
    model = enable_lora(tfl.ImageClassifier(tiny_image_base(), 2), rank=2)
    tfl.unfreeze(model, top_n=1)
    trainable = model.backbone.trainable_weights
    assert trainable and {_leaf(w) for w in trainable} <= set(ADAPTER_NAMES)
    groups = tfl.trainable_groups(model)
    assert groups["stage1"] == 0 and groups["top"] > 0
    tfl.freeze(model)
    assert model.trainable_weights == model.head.trainable_weights
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        enable_lora(model, 2)
    with pytest.raises(ValueError, match="rank=0; expected an integer >= 1"):
        enable_lora(tfl.ImageClassifier(tiny_image_base(), 2), 0)


@pytest.mark.graph  # a whole run, as `tfl train` traces it
def test_a_lora_run_saves_a_merged_model_that_reloads_without_optimizer_warnings(tuned):
    """`Run.finish`'s LoRA steps (`tfl.post_training`): the saved model is merged (plain
    layers, W + A·B), its base frozen, and it reloads with an optimizer that fits it."""
    model, _, _, tmp = tuned
    data = tf.data.Dataset.from_tensor_slices((TEXTS, TEXT_LABELS)).batch(3)
    run = SimpleNamespace(
        model=model,
        strategy=tf.distribute.get_strategy(),
        data=SimpleNamespace(validation=data, test=None),
        run_dir=str(tmp),
        notes=[],
    )
    expected = model.predict(TEXTS, verbose=0)
    examples = post_training.prepare_to_save(run)
    model.save(os.path.join(tmp, "model.keras"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Skipping variable loading for optimizer"
        difference = post_training.merge_check(run, examples)
    assert difference < 1e-5 and "LoRA merged into model.keras" in run.notes[0]
    assert has_lora(model) and not has_lora(
        keras.saving.load_model(os.path.join(tmp, "model.keras"))
    )
    np.testing.assert_allclose(model.predict(TEXTS, verbose=0), expected, atol=1e-6)


def test_adapters_loaded_as_zeros_are_revived_without_changing_the_outputs(tuned):
    model, _, _, tmp = tuned
    path = str(tmp / "w.weights.h5")
    model.save_weights(path)
    model.load_weights(path)  # Keras: merged kernel, adapters A = B = 0
    a = [w for w in model.backbone.weights if _leaf(w) == "lora_kernel_a"]
    assert not any(np.any(np.array(w)) for w in a)
    expected = model.predict(TEXTS, verbose=0)
    assert revive_adapters(model, seed=0) == len(a)
    assert all(np.any(np.array(w)) for w in a)
    np.testing.assert_allclose(model.predict(TEXTS, verbose=0), expected, atol=1e-6)
