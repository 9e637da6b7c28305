"""`tfl cv` and `tfl compare`: the studies of a whole run configuration.

`tfl train` answers "how good is this model on the test split"; with a few hundred examples
that is one noisy number. These studies answer two other questions on the same
configuration, each with the spread over folds:

- `cross_validate_config(config, folds)` (`tfl cv`): how well does the configured recipe
  (its base, head and fine-tuning phases) do, as mean ± std over k folds?
- `compare_config(config, folds, epochs)` (`tfl compare`): does the pretrained base help at
  all? Training from scratch (the same architecture with `model.weights: none`), a linear
  probe and a fine-tune, on the same folds with the same epoch budget, then a verdict
  (`tfl.studies.transfer_verdict`).

Both pool the configured data's train and validation splits into arrays (images at the
configured size and resize policy, or text strings) and never touch its test split, which
stays an untouched final check. The pooled data is held in memory (1,000 images at 96 px
take about 110 MB as float32). Every fold trains a NEW model on freshly loaded pretrained
weights (`build_model`), so nothing learnt on one fold leaks into the next.

What the folds do not do: random augmentation, mixup and cutmix are off (the folds are fixed
arrays), there is no early stopping (no validation data inside a fold: the held-out fold is
never seen in training) and `train.lr_find` is not run. Multitask runs are not supported
(one classification output is scored per fold).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import keras
import numpy as np

from tfl import builders
from tfl import config as config_lib
from tfl import run as run_lib
from tfl.studies import folds as folds_lib
from tfl.studies import transfer

CV_FILE, CV_REPORT = "cv.json", "cv.md"
COMPARE_FILE, COMPARE_REPORT = "compare.json", "compare.md"
SINGLE_LABEL_HEADS = ("classification", "logistic", "mlp", "svm")

__all__ = [
    "build_model",
    "check_supported",
    "compare_config",
    "cross_validate_config",
    "format_cv",
    "pooled_data",
    "study_dir",
]


def check_supported(config: config_lib.RunConfig, command: str = "cv") -> None:
    """Raise a `ConfigError` (exit 2 in the CLI) if `tfl <command>` cannot study `config`.

    Supported: every single-label classification recipe (image_classification,
    feature_extraction, feature_fusion, text_classification) with a classification, logistic,
    MLP or SVM head. `tfl cv` takes `train.ema`, `train.peft` and a fixed `train.wise`, not
    `train.wise: auto` (a fold has no validation data); `tfl compare` takes none of the three
    (it compares the plain recipes).

    Example:
    >>> from tfl.config import ConfigError, defaults
    >>> from tfl.studies import check_supported
    >>> check_supported(defaults("image_classification"))
    >>> try:
    ...     check_supported(defaults("multitask"), "compare")
    ... except ConfigError as e:
    ...     print(str(e)[:66])
    recipe: tfl compare is not supported for recipe 'multitask' (it ha
    """
    if not config_lib.RECIPE_KINDS[config.recipe].studies:
        raise config_lib.ConfigError(
            "recipe",
            f"tfl {command} is not supported for recipe 'multitask' (it has several heads; "
            "the folds score one classification output)",
            f"Use tfl {command} --recipe image_classification to study the shared base on the "
            "main label, or tfl train for the multitask model.",
        )
    if command != "rank" and _ranks_first(config):
        raise config_lib.ConfigError(
            "model.base" if config.train.schedule != "auto" else "train.schedule",
            f"tfl {command} studies one configured model; this configuration asks to rank "
            "candidates first (model.base auto or a list, rank: lists, or train.schedule auto)",
            f"Run tfl rank first, then tfl {command} --config <rank dir>/winner.yaml.",
        )
    if config.model.head not in SINGLE_LABEL_HEADS:
        raise config_lib.ConfigError(
            "model.head",
            f"tfl {command} scores single-label classification, not a {config.model.head!r} head",
            f"Use model.head: one of {', '.join(SINGLE_LABEL_HEADS)}.",
        )
    _check_fine_tuning_options(config, command)


def _check_fine_tuning_options(config: config_lib.RunConfig, command: str) -> None:
    """What the folds cannot do: choose α without validation data (cv); change one arm's
    recipe (compare, which compares the plain recipes of scratch, probe and fine-tune)."""
    t = config.train
    if command == "cv" and t.wise == "auto":
        raise config_lib.ConfigError(
            "train.wise",
            "tfl cv cannot choose alpha (auto): a fold has no validation data (the held-out "
            "fold is never seen in training)",
            "Give a fixed blend, e.g. --train.wise 0.5, or --train.wise null.",
        )
    if command == "compare":
        for key in ("wise", "ema", "peft"):
            if getattr(t, key) is not None:
                raise config_lib.ConfigError(
                    f"train.{key}",
                    f"tfl compare trains scratch, probe and fine-tune with the same plain "
                    f"recipe; train.{key} would change only some of them",
                    f"Use --train.{key} null here, and tfl cv to measure train.{key}.",
                )


def _ranks_first(config: config_lib.RunConfig) -> bool:
    from tfl.studies.rank import needs_ranking

    kind = config_lib.RECIPE_KINDS[config.recipe]
    return kind.bases == 1 and needs_ranking(config_lib.validate(config))


def study_dir(config: config_lib.RunConfig, command: str = "cv") -> str:
    """Where a study writes: `config.output`, else `runs/<name>-<command>-<YYYYmmdd-HHMMSS>`.

    Example:
    >>> from tfl.config import defaults, validate
    >>> from tfl.studies import study_dir
    >>> name = os.path.basename(study_dir(validate(defaults())))
    >>> name.startswith("image_classification-mnist5k-cv-")
    True
    """
    if config.output:
        return config.output
    name = config.name or config_lib.default_name(config)
    return config_lib.run_dir(dataclasses.replace(config, name=f"{name}-{command}"))


def _unaugmented(config: config_lib.RunConfig) -> config_lib.RunConfig:
    """The config with random augmentation, mixup and cutmix off (fold arrays are fixed)."""
    data = dataclasses.replace(config.data, augment=(), mixup=0.0, cutmix=0.0)
    return dataclasses.replace(config, data=data)


def _to_numpy(value: Any) -> np.ndarray:
    array = keras.ops.convert_to_numpy(value)
    if array.dtype.kind in ("O", "S"):  # tf.string -> bytes: decode for keras-hub tokenizers
        array = np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in array])
    return array


def pooled_data(data) -> tuple[Any, np.ndarray]:
    """The train and validation splits of `data` (a `tfl.data.DataSplits`) as arrays.

    Args:
        data: what `tfl.builders.load_data` returns; its batches are read once. The test split
            is not read.

    Returns:
        `(x, y)`: the inputs (an image array `(N, h, w, 3)`, an array of strings, or a
        tuple/dict of such arrays as the dataset yields them) and integer labels `(N,)`.

    Example:
    >>> import tensorflow as tf
    >>> from tfl.data import BadInputReport, DataSplits
    >>> from tfl.studies import pooled_data
    >>> batches = lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    >>> data = DataSplits(batches(["a", "b", "c"], [0, 1, 0]), batches(["d"], [1]), None,
    ...                   labels=None, report=BadInputReport())
    >>> x, y = pooled_data(data)
    >>> x.tolist(), y.tolist()
    (['a', 'b', 'c', 'd'], [0, 1, 0, 1])
    """
    xs, ys = [], []
    for split in (data.train, data.validation):
        if split is None:
            continue
        for batch in split:
            x, y = batch[0], batch[1]
            xs.append(keras.tree.map_structure(_to_numpy, x))
            ys.append(np.asarray(y))
    if not ys:
        raise ValueError(
            "Received data without train or validation examples; cross-validation pools those "
            "two splits. Check data.max_per_class and data.splits."
        )
    y = np.concatenate(ys)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"Received labels of shape {y.shape[1:]} and dtype {y.dtype} per example; the folds "
            "need integer class labels (turn off data.mixup and data.cutmix)."
        )
    x = keras.tree.map_structure(lambda *parts: np.concatenate(parts), *xs)
    return x, y.astype(np.int64)


def build_model(config: config_lib.RunConfig, data) -> keras.Model:
    """`tfl.builders.build_model`: a new model on freshly loaded weights at every call.

    Every call builds a new model and loads the pretrained weights afresh (nothing is shared
    between two calls), as cross-validation needs. Image bases take `model.weights` as
    configured; a text base with `model.weights: none` gets the preset's architecture with
    random weights (the scratch arm of `compare_config`).

    Example:
    >>> from tfl.config import defaults, from_dict, validate
    >>> from tfl.data import BadInputReport, DataSplits, LabelMap
    >>> from tfl.studies import build_model
    >>> config = validate(from_dict({"data": {"image_size": 32}, "model": {
    ...     "base": "mobilenet_v3_small", "weights": "none"}}))
    >>> data = DataSplits(None, None, None, LabelMap(["a", "b"]), BadInputReport())
    >>> first, second = build_model(config, data), build_model(config, data)
    >>> first.output.shape, {id(v) for v in first.weights} & {id(v) for v in second.weights}
    ((None, 2), set())
    """
    return builders.build_model(config, data)


def _announced(
    build: Callable[[], keras.Model],
    total: int,
    line: str,
    progress: Callable[[str], None] | None,
    counter: Iterator[int] | None = None,
) -> Callable[[], keras.Model]:
    """`build`, reporting `line` (with `{i}` of `{n}`) through `progress` on each call."""
    counter = itertools.count(1) if counter is None else counter

    def announced() -> keras.Model:
        i = next(counter)
        if progress is not None:
            progress(line.format(i=i, n=total))
        return build()

    return announced


def _fit_kwargs(config: config_lib.RunConfig, verbose: Any) -> dict:
    # "auto" would keep each fold's features on disk, but a fold's training subset is never
    # trained on again (only a re-run of the same study would reuse it): keep them in memory.
    cache = "memory" if config.train.cache == "auto" else config.train.cache
    kwargs = {"cache": cache, "l2sp": config.train.l2sp, "verbose": verbose}
    if config.train.wise is not None:  # a fixed blend (check_supported refuses "auto")
        kwargs["wise"] = config.train.wise
    return kwargs


def _notes(config: config_lib.RunConfig) -> list[str]:
    notes = ["The test split was not used (it stays the final check of `tfl train`)."]
    data = config.data
    if data.augment or data.mixup or data.cutmix:
        notes.append(
            "Augmentation (data.augment / mixup / cutmix) is off: the folds are fixed arrays."
        )
    if config.train.lr_find:
        notes.append("train.lr_find is not run: every fold uses the configured rates.")
    if config.evaluate.calibrate:
        notes.append(
            "evaluate.calibrate is not applied: a fold has no validation data to fit the "
            "temperature on (accuracy and F1 would not change; ECE and log loss are "
            "uncalibrated)."
        )
    if config.evaluate.tta:
        notes.append("evaluate.tta is not applied: each fold is scored on one view per image.")
    if config.train.early_stopping_patience is not None:
        notes.append(
            "No early stopping: a fold has no validation data (the held-out fold is "
            "never seen in training)."
        )
    return notes


def _prepare(config: config_lib.RunConfig, command: str):
    """Validate, pick the study directory, write config.yaml, load and pool the data."""
    config = config_lib.validate(config)
    check_supported(config, command)
    config = dataclasses.replace(config, output=study_dir(config, command))
    config, run_dir, strategy = run_lib.prepare(config)
    data = builders.load_data(_unaugmented(config), strategy, run_dir)
    x, y = pooled_data(data)
    return config, run_dir, data, x, y


def _write_json(path: str, value: Mapping) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, default=float, ensure_ascii=False)


def cross_validate_config(
    config: config_lib.RunConfig,
    folds: int = 5,
    verbose: Any = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """K-fold cross-validation of a configured recipe (what `tfl cv` runs).

    The train and validation splits of `config.data` are pooled (`pooled_data`), split into
    `folds` stratified folds (`tfl.studies.stratified_folds`, seeded by `config.seed`), and
    for each fold a new model on freshly loaded pretrained weights (`build_model`) is
    trained with the configured phases (`tfl.builders.make_phases`) on the other folds and
    scored on the held-out one (`tfl.studies.cross_validate`, which also refuses a model
    that shares a variable with the previous fold's).

    Writes into the study directory (`study_dir(config, "cv")`): `config.yaml`,
    `labels.json`, `data.json`, `cv.json` (the result) and `cv.md` (a short report).

    Args:
        config: a run configuration (validated here).
        folds: the number of folds, 2 <= folds <= the pooled examples.
        verbose: Keras' `fit` verbosity inside each fold.
        progress: called with a line of text as each fold starts (e.g. `print`).

    Returns:
        The `tfl.studies.cross_validate` result plus `run_dir`, `recipe`, `labels`,
        `num_examples`, `phases`, `seconds` and `notes`.

    Example:
        None that runs in a docstring: every fold trains a model. See
        `tests/test_cli_commands.py` (`tfl cv` on MNIST-5k with 3 folds).
    """
    _check_folds(folds)
    started = time.time()
    config, run_dir, data, x, y = _prepare(config, "cv")
    phases = builders.make_phases(config)
    result = folds_lib.cross_validate(
        _announced(lambda: build_model(config, data), folds, "Fold {i}/{n}: training...", progress),
        x,
        y,
        folds=folds,
        phases=phases,
        seed=config.seed,
        batch_size=config.data.batch_size,
        fit_kwargs=_fit_kwargs(config, verbose),
    )
    result.update(
        run_dir=run_dir,
        recipe=config.recipe,
        labels=list(data.labels.names),
        num_examples=int(len(y)),
        phases=[p.name for p in phases],
        seconds=round(time.time() - started, 1),
        notes=_notes(config),
    )
    _write_json(os.path.join(run_dir, CV_FILE), result)
    with open(os.path.join(run_dir, CV_REPORT), "w", encoding="utf-8") as f:
        f.write(format_cv(result, title=f"Cross-validation: {config.name}") + "\n")
    return result


def format_cv(result: Mapping, title: str | None = None) -> str:
    """A short Markdown report of a cross-validation result: one row per fold, mean ± std.

    Example:
    >>> from tfl.studies import format_cv
    >>> result = {"folds": 2, "fold_sizes": [3, 3], "fold_metrics": [
    ...     {"accuracy": 0.5, "macro_avg": {"f1": 0.4}}, {"accuracy": 1.0, "macro_avg": {"f1": 1.0}}],
    ...     "accuracy": {"mean": 0.75, "std": 0.3536}, "macro_f1": {"mean": 0.7, "std": 0.4243}}
    >>> print(format_cv(result))
    | fold | examples | accuracy | macro F1 |
    |---|---|---|---|
    | 1 | 3 | 0.5000 | 0.4000 |
    | 2 | 3 | 1.0000 | 1.0000 |
    <BLANKLINE>
    Accuracy 0.7500 ± 0.3536, macro F1 0.7000 ± 0.4243 (mean ± std over 2 folds).
    """
    lines = [f"# {title}", ""] if title else []
    lines += ["| fold | examples | accuracy | macro F1 |", "|---|---|---|---|"]
    for i, (size, m) in enumerate(zip(result["fold_sizes"], result["fold_metrics"], strict=True)):
        lines.append(f"| {i + 1} | {size} | {m['accuracy']:.4f} | {m['macro_avg']['f1']:.4f} |")
    accuracy, f1 = result["accuracy"], result["macro_f1"]
    lines += [
        "",
        f"Accuracy {accuracy['mean']:.4f} ± {accuracy['std']:.4f}, macro F1 {f1['mean']:.4f} ± "
        f"{f1['std']:.4f} (mean ± std over {result['folds']} folds).",
    ]
    for note in result.get("notes", ()):
        lines.append(f"- {note}")
    return "\n".join(lines)


def _check_folds(folds: Any) -> None:
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(
            f"Received folds={folds!r}; expected an integer >= 2 (e.g. --folds 5): one fold is "
            "held out while the others train."
        )


def compare_config(
    config: config_lib.RunConfig,
    folds: int = 3,
    epochs: int | None = None,
    verbose: Any = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """The negative-transfer check of a configured recipe (what `tfl compare` runs).

    On the pooled train + validation data (`pooled_data`), with the same stratified folds
    and the same budget of `epochs` epochs, `tfl.studies.compare_transfer` trains:

    - scratch: the configured architecture with `model.weights: none` (random weights);
    - probe: the pretrained base frozen, only the head trains;
    - fine-tune: the head first, then the whole base at a lower rate.

    Writes `config.yaml`, `labels.json`, `compare.json` (the result) and `compare.md` (the
    table of `tfl.studies.format_comparison` and the verdict) into
    `study_dir(config, "compare")`.

    Args:
        config: a run configuration (validated here).
        folds: the number of folds (>= 2).
        epochs: the budget of every method; default the configured head + fine-tuning
            epochs.
        verbose: Keras' `fit` verbosity inside each fold.
        progress: called with a line of text as each model starts training (e.g. `print`).

    Returns:
        The `compare_transfer` result plus `run_dir`, `recipe`, `labels`, `num_examples`,
        `seconds` and `notes`.

    Example:
        None that runs in a docstring: it trains 3 x folds models. See
        `tests/test_cli_commands.py` (`tfl compare` on MNIST-5k with 2 folds).
    """
    _check_folds(folds)
    if epochs is None:
        epochs = int(config.train.head_epochs) + int(config.train.finetune_epochs or 0)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(
            f"Received epochs={epochs!r}; expected an integer >= 1 (e.g. --epochs 10), the "
            "budget every method trains for."
        )
    started = time.time()
    config, run_dir, data, x, y = _prepare(config, "compare")
    weights = config.model.weights
    scratch_weights = tuple("none" for _ in weights) if isinstance(weights, tuple) else "none"
    scratch = dataclasses.replace(
        config, model=dataclasses.replace(config.model, weights=scratch_weights)
    )
    counter = itertools.count(1)  # one count over both builders: 3 x folds models in all
    line = "Model {i}/{n}: training..."
    result = transfer.compare_transfer(
        _announced(lambda: build_model(config, data), 3 * folds, line, progress, counter),
        _announced(lambda: build_model(scratch, data), 3 * folds, line, progress, counter),
        x,
        y,
        folds=folds,
        epochs=epochs,
        seed=config.seed,
        batch_size=config.data.batch_size,
        fit_kwargs=_fit_kwargs(config, verbose),
    )
    result.update(
        run_dir=run_dir,
        recipe=config.recipe,
        labels=list(data.labels.names),
        num_examples=int(len(y)),
        seconds=round(time.time() - started, 1),
        notes=_notes(config),
    )
    _write_json(os.path.join(run_dir, COMPARE_FILE), result)
    lines = [f"# Transfer check: {config.name}", "", transfer.format_comparison(result), ""]
    lines += [f"- {note}" for note in result["notes"]]
    with open(os.path.join(run_dir, COMPARE_REPORT), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return result
