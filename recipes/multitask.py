# %% [markdown]
# # Multi-task learning: one pretrained base, two heads
#
# One network pretrained on ImageNet (MobileNetV2, offline) computes the features once; two
# heads read them: `digit` (which of 10 digits) and `parity` (even or odd). The parity label is
# not in the data: it is DERIVED from the digit (`label_column: "label:parity"`, see
# `tfl.config.DERIVED_LABELS`), so any labelled dataset can grow an auxiliary task.
#
# Why: tasks that share structure share a representation. While fine-tuning, both heads'
# gradients flow into the same base, so each task regularises the other (an auxiliary task
# is a classic way to help a main task with little data), and at inference one forward pass
# through the base answers both questions. The loss is the sum of the heads' losses
# (`tfl.MultiTaskModel`; `compile(loss_weights={...})` weighs them in Python), and every
# metric is reported per head: `digit_accuracy`, `parity_accuracy`, ... Training is the usual
# two phases: both heads on the frozen base (features cached), then the base fine-tunes at a
# 10x lower rate with BatchNorm frozen.
#
# Tasks are data in the config: `model.tasks: {name: {head: ..., label_column: ...}}`, e.g.
# `--model.tasks "{digit: {label_column: label}, parity: {label_column: 'label:parity'}}"`.
#
# Run it:
#
# ```bash
# python recipes/multitask.py           # the full run, a few minutes on a CPU
# python recipes/multitask.py --smoke   # seconds: tiny sizes, checks the plumbing
# tfl train --recipe multitask          # the same run, with the same flags
# ```
#
# Every setting is a flag (`--print-config` lists them all as YAML). It writes a run directory
# (`runs/<name>-<time>/`, or `--output DIR`): `config.yaml`, `history.csv` / `history.png`
# (per-head curves), `metrics.json`, `evaluation.json` with the metrics of each head,
# `model.keras` (one input, a dict of outputs), `best.keras` and `report.md`.

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
RECIPE = "multitask"
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
# ## The data: one label per task
#
# `Run.create(config)` builds the run once (run directory, data, model, phases); `run.data`
# is `config.data` read through `tfl.data` (here the offline TFDS builder `mnist5k`), with
# each batch's labels mapped to a dict, one entry per task (the run's `tfl.tasks.Task`),
# derived labels computed on the fly: `{"digit": 7, "parity": 1}`.


# %%
def show_data(data, config, examples: int = 8) -> None:
    print(f"Digits ({len(data.labels)}): {', '.join(data.labels.names)}")
    for split, count in data.info["num_examples"].items():
        print(f"  {split}: {count} images")
    for name, task in config.model.tasks.items():
        print(f"Task {name!r}: {task['head']} head on label column {task['label_column']!r}")
    _, targets = next(iter(data.train))
    for name, labels in targets.items():
        print(f"  {name:>8}: {labels.numpy()[:examples].tolist()}")


# %% [markdown]
# ## The model: one base, a dict of heads
#
# `Run.create` loads the pretrained base (`tfl.ImageBackbone`, raw 0-255 pixels in)
# and builds a `tfl.MultiTaskModel` with one head per task; its outputs are a dict keyed by
# task name. `run.phases` is `tfl.two_phase(...)`.


# %%
def show_model(model, phases) -> None:
    for name, head in model.heads.items():
        print(f"  head {name!r}: {type(head).__name__}, {head.units} outputs")

    def count(weights) -> int:
        return sum(int(np.prod(w.shape)) for w in weights)

    for phase in phases:  # applied here only to show it; fit_phases applies it again
        tfl.apply_trainable(model, phase)
        base = count(model.backbone.trainable_weights)
        heads = count(model.trainable_weights) - base
        print(
            f"Phase {phase.name!r}: {phase.epochs} epoch(s), trainable parameters: "
            f"base {base:,} (unfreeze={phase.trainable!r}), heads {heads:,}"
        )


# %% [markdown]
# ## Train, evaluate, save
#
# `run.fit()` runs `tfl.fit_phases` with the standard callbacks (best checkpoint, early
# stopping on the summed validation loss, logs, backup: re-running with the same `--output`
# resumes). `run.finish()` evaluates EACH head on the test split (accuracy, per-class F1,
# confusion matrix, calibration: `evaluation.json` has one section per task) and writes the
# run directory. Its `accuracy` is the mean over the heads; look at each head's own.


# %%
def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns `{"run_dir", "metrics", "model", "config"}`."""
    config, args = make_config(argv)
    if args.print_config:
        print(config_lib.to_yaml(config), end="")
        return {"config": config}
    run = Run.create(config)
    show_data(run.data, run.config)
    show_model(run.model, run.phases)
    run.fit()
    run.finish()
    print(f"\nRun directory: {run.run_dir}")
    for name in run.config.model.tasks:
        print(f"Test accuracy ({name}): {run.metrics[name]['accuracy']:.4f}")
    print(f"Test accuracy: {run.metrics['accuracy']:.4f} (mean over the heads)")
    return {
        "run_dir": run.run_dir,
        "metrics": run.metrics,
        "model": run.model,
        "config": run.config,
    }


# %%
if __name__ == "__main__":
    main()
