"""Tiny fixtures shared by the tests: small bases, tiny BERT, round-trip checks."""

import os

import keras
import keras_hub
import numpy as np

import tfl

IMAGE_SHAPE = (32, 32, 3)


def tiny_image_base(architecture="mobilenet_v3_small", pooling="avg"):
    return tfl.ImageBackbone(architecture, input_shape=IMAGE_SHAPE, weights=None, pooling=pooling)


def images(n=8, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *IMAGE_SHAPE)).astype("float32")


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "fun", "dull"]


def tiny_bert():
    """A 2-layer BERT with hidden size 4 and a 10-word vocabulary (keras-hub test style)."""
    return keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB),
        num_layers=2,
        num_heads=2,
        hidden_dim=4,
        intermediate_dim=8,
        max_sequence_length=8,
    )


def tiny_bert_preprocessor():
    tokenizer = keras_hub.tokenizers.BertTokenizer(vocabulary=VOCAB)
    return keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)


TEXTS = np.array(["good movie", "bad movie", "fun fun", "dull movie", "good fun", "bad dull"])
TEXT_LABELS = np.array([1, 0, 1, 0, 1, 0])


def assert_keras_round_trip(model, x, tmp_path, rtol=1e-6, atol=1e-6):
    """Save as .keras, reload with safe_mode=True, and compare predictions."""
    expected = model.predict(x, verbose=0)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored) is type(model)
    if isinstance(x, np.ndarray) and getattr(restored, "preprocessor", None) is None:
        # The same computation as predict() without tracing a second predict function (about
        # a second per model): the reloaded model called directly, in inference mode.
        got = keras.tree.map_structure(np.asarray, restored(x, training=False))
    else:
        got = restored.predict(x, verbose=0)
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol), expected, got
    )
    return restored
