"""Write the `.keras` files that tests/test_legacy_files.py reloads.

They were written ONCE with tfl at commit 1c1e278 (before the modules were reorganised) and
are committed as they are: the test proves that models saved by that version still load and
predict the same. Running this script again writes files with the current code (which is not
what the test is for); keep the committed files.

    python tests/legacy/make_legacy_models.py

The image models' kernels are set to +-sqrt(2/fan-in) (random signs) and each file is re-zipped with
compression (same members) so the files stay small; the predictions recorded beside them still depend on every weight.
"""

import json
import os
import zipfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import tfl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "fun", "dull"]
TEXTS = ["good movie", "bad movie", "fun fun", "dull movie", "good fun", "bad dull"]


def signs(model, seed):
    """Kernels +-sqrt(2/fan-in) (random signs), BatchNorm as new, biases +-0.05."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.path or "gamma" in w.path:
            w.assign(np.ones(shape, "float32"))
        elif "moving_mean" in w.path or "beta" in w.path:
            w.assign(np.zeros(shape, "float32"))
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 400
            if "depthwise" in w.path and len(shape) == 4:
                fan_in = shape[0] * shape[1]
            scale = np.sqrt(2.0 / fan_in)
            w.assign((rng.integers(0, 2, shape) * 2 - 1).astype("float32") * scale)


def images(n=4, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 32, 32, 3)).astype("float32")


def text_model():
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB),
        num_layers=2,
        num_heads=2,
        hidden_dim=4,
        intermediate_dim=8,
        max_sequence_length=8,
    )
    tokenizer = keras_hub.tokenizers.BertTokenizer(vocabulary=VOCAB)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    model = tfl.TextClassifier(backbone, 2, head="mlp", preprocessor=preprocessor)
    tfl.unfreeze(model, top_n="all")
    schedule = tfl.WarmupDecay(1e-3, total_steps=10, warmup_steps=2)
    optimizer = tfl.with_lr_multipliers(tfl.adamw(schedule, 0.01), model, layer_decay=0.8)
    tfl.apply_l2sp(model, alpha=0.01)
    model.compile(optimizer=optimizer)
    model.fit(np.array(TEXTS), np.array([1, 0, 1, 0, 1, 0]), batch_size=3, epochs=1, verbose=0)
    return model, np.array(TEXTS)


def base(seed):
    return tfl.ImageBackbone("mobilenet_v3_small", (32, 32, 3), weights=None)


def multitask_model():
    heads = {
        "digit": tfl.ClassificationHead(3),
        "margin": tfl.SVMHead(3),
        "size": tfl.RegressionHead(1),
    }
    model = tfl.MultiTaskModel(base(1), heads)
    signs(model, 1)
    schedule = tfl.OneCycle(1e-2, total_steps=10)
    model.compile(optimizer=tfl.with_lr_multipliers(keras.optimizers.SGD(schedule), model))
    return model, images()


def fusion_model():
    model = tfl.FusionClassifier([base(2), base(3)], 4, fusion="projection")
    signs(model, 2)
    model.compile()
    return model, images(seed=1)  # two image bases of one size share the image input


def deflate(path):
    """Re-zip a .keras file with compression (Keras stores it uncompressed); same members."""
    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for info, data in members:
            dst.writestr(info.filename, data)
    os.replace(path + ".tmp", path)


def main():
    keras.utils.set_random_seed(0)
    record = {"tfl_commit": "1c1e278", "keras": keras.__version__, "models": {}}
    for name, make in (
        ("text_classifier", text_model),
        ("multitask", multitask_model),
        ("fusion", fusion_model),
    ):
        model, x = make()
        path = os.path.join(HERE, f"{name}.keras")
        model.save(path)
        deflate(path)
        out = model.predict(x, verbose=0)
        out = {k: v.tolist() for k, v in out.items()} if isinstance(out, dict) else out.tolist()
        record["models"][name] = {
            "class": type(model).__name__,
            "optimizer": type(model.optimizer).__name__,
            "predictions": out,
            "bytes": os.path.getsize(path),
        }
    with open(os.path.join(HERE, "legacy_models.json"), "w") as f:
        json.dump(record, f, indent=1)
    print({k: v["bytes"] for k, v in record["models"].items()})


if __name__ == "__main__":
    main()
