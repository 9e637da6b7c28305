# %% [markdown]
# # Feature extraction: a frozen pretrained CNN + a linear SVM
#
# The classic recipe from before fine-tuning was cheap (Razavian et al. 2014, "CNN features
# off-the-shelf"; Donahue et al. 2014, DeCAF): a network pretrained on ImageNet turns every
# image into one feature vector (here MobileNetV2's 1,280 pooled activations), and a linear
# classifier trained on those vectors does the rest. **The base never trains.**
#
# Why it works: the upper layers of an ImageNet network respond to shapes and parts that are
# useful far beyond ImageNet, so a linear boundary in that space often separates new classes
# well. Why choose it over fine-tuning: very little data (nothing to overfit but a linear
# layer), a quick baseline to beat, one base shared by many tasks, or no budget for training
# the base. It is also the fastest recipe: the features are computed ONCE (the bottleneck
# feature cache, `tfl.cache`) and every epoch trains only the classifier on stored vectors; a
# second run with the same base and data loads them from disk.
#
# The classifier: `model.head: svm` (the default) is a linear SVM, a Dense layer trained with
# the squared hinge loss (one-vs-rest, as scikit-learn's `LinearSVC`); `--model.head logistic`
# is multinomial logistic regression (a softmax layer with cross-entropy), which also gives
# calibrated-ish probabilities.
#
# Run it:
#
# ```bash
# python recipes/feature_extraction.py                          # the full run, about a minute
# python recipes/feature_extraction.py --model.head logistic    # logistic regression instead
# python recipes/feature_extraction.py --smoke                  # seconds: checks the plumbing
# tfl train --recipe feature_extraction                         # the same run, same flags
# ```
#
# Every setting is a flag (`--print-config` lists them all as YAML). It writes a run directory
# (`runs/<name>-<time>/`, or `--output DIR`): `config.yaml`, `history.csv` / `history.png`,
# `metrics.json`, `evaluation.json` with a confusion matrix, `model.keras` (base + classifier,
# raw pixels in), `best.keras` and `report.md`.

# %%
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfl  # noqa: E402
from tfl import config as config_lib  # noqa: E402
from tfl.run import Run  # noqa: E402

# %%
# The recipe this script runs: the defaults of `tfl.config.defaults(RECIPE)`.
RECIPE = "feature_extraction"
# What `--smoke` adds (your own flags come after, so they win): 32 px images, 4 / 2 / 2
# digits per class, one epoch. Enough to run every step; the accuracy means nothing.
SMOKE = [
    "--image-size", "32",
    "--data.max-per-class", "{train: 4, validation: 2, test: 2}",
    "--epochs-head", "1",
    "--batch-size", "8",
]  # fmt: skip


# %% [markdown]
# ## The configuration
#
# The flags are exactly those of `tfl train` (`tfl.config.add_arguments`), read on top of
# this recipe's defaults; every value is validated before any work starts, and a bad one
# names the key and the fix.


# %%
def make_config(argv: list[str] | None = None):
    """The validated configuration and the parsed flags: `tfl train`'s flags plus --smoke.

    `tfl.config.parse_recipe_args` reads them on top of this recipe's defaults (with
    `--smoke`, SMOKE comes first and your own flags win); a bad value, or a flag naming
    another recipe, stops here with a message that names the key and the fix.
    """
    return config_lib.parse_recipe_args(RECIPE, argv, smoke=SMOKE)


# %% [markdown]
# ## The data
#
# `Run.create(config)` builds the run once (run directory, data, model, phases); `run.data`
# is `config.data` read through `tfl.data` (here the offline TFDS builder
# `mnist5k`), resized to the base's input and batched; the label map, the per-class counts
# and anything skipped are written to the run directory.


# %%
def show_data(data) -> None:
    print(f"Classes ({len(data.labels)}): {', '.join(data.labels.names)}")
    for split, count in data.info["num_examples"].items():
        print(f"  {split}: {count} images")


# %% [markdown]
# ## The model: a frozen feature extractor and a linear classifier
#
# `Run.create` loads the pretrained base (`tfl.ImageBackbone`: ImageNet preprocessing
# inside, raw 0-255 pixels in, global average pooling out) under the head the config names.
# `run.phases` is `tfl.feature_extraction(epochs)`: ONE phase whose trainable set
# is `None`: the head only, for every epoch.


# %%
def show_model(model, phases) -> None:
    base = model.backbone
    pooled = f"{base.architecture}, {base.pooling} pooling"
    print(f"\nEach image -> {base.feature_dim:,} features ({pooled})")
    print(f"Classifier: {type(model.head).__name__} ({model.num_classes} classes)")
    for phase in phases:
        what = "the head only" if phase.trainable is None else f"{phase.trainable!r}"
        print(f"Phase {phase.name!r}: {phase.epochs} epoch(s), trains {what}")


def snapshot(model) -> dict[int, np.ndarray]:
    """A copy of every weight of the base(s), to check later that training left them alone."""
    return {id(w): w.numpy() for base in tfl.bases_of(model) for w in base.weights}


def show_change(model, before: dict[int, np.ndarray]) -> bool:
    """How far training moved each block group (|w - w0| / |w0|); True if nothing moved."""
    print(f"\n{'group':<14} trainable / total params, change since pretrained")
    unchanged = True
    for base in tfl.bases_of(model):
        for name, layers in tfl.block_groups(base).items():
            weights = [w for layer in layers for w in layer.weights]
            moved = sum(float(np.sum((w.numpy() - before[id(w)]) ** 2)) for w in weights)
            size = sum(float(np.sum(before[id(w)] ** 2)) for w in weights)
            trainable = sum(
                int(np.prod(w.shape)) for layer in layers for w in layer.trainable_weights
            )
            total = sum(int(np.prod(w.shape)) for w in weights)
            change = (moved / size) ** 0.5 if size else 0.0
            print(f"{name:<14} {trainable if base.trainable else 0:>9,} / {total:,}, {change:.3%}")
            unchanged = unchanged and moved == 0.0
    return unchanged


# %% [markdown]
# ## Train, evaluate, save
#
# `run.fit()` runs `tfl.fit_phases`: it freezes the base, compiles, extracts the features
# once ("Computed ... feature vectors", or "Loaded ..." on a re-run) and fits the classifier
# on them, with the standard callbacks (best checkpoint, early stopping, logs). Afterwards the
# base's weights are compared with the copy taken before training: bit for bit the same.
# `run.finish()` evaluates the whole model (base + classifier, raw images in) on the test
# split and writes the run directory.


# %%
def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns `{"run_dir", "metrics", "model", "config"}`."""
    config, args = make_config(argv)
    if args.print_config:
        print(config_lib.to_yaml(config), end="")
        return {"config": config}
    run = Run.create(config)
    show_data(run.data)
    show_model(run.model, run.phases)
    print(f"Feature cache: {tfl.cache.cache_dir()}")
    pretrained = snapshot(run.model)
    run.fit()
    if show_change(run.model, pretrained):
        print("The base never trained: its weights are exactly the pretrained ones.")
    run.finish()
    print(f"\nRun directory: {run.run_dir}")
    print(f"Test accuracy: {run.metrics['accuracy']:.4f}")
    return {
        "run_dir": run.run_dir,
        "metrics": run.metrics,
        "model": run.model,
        "config": run.config,
    }


# %%
if __name__ == "__main__":
    main()
