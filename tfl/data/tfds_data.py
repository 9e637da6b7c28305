"""TensorFlow Datasets as tfl data: `from_tfds` for any classification dataset, `load`.

- `from_tfds(name, image_size)`: any TFDS classification dataset (image or text) as
  `tfl.data.splits.DataSplits`, with stable validation / test splits carved out of "train" when
  the dataset has none. Offline by default: it never downloads unless `download=True`.
- `load(name)`: `tfds.load(...)` of tfl's offline datasets ("mnist5k", "movie_sentences"),
  prepared once if needed, with `download=False`.

The offline builders, `prepare` and `default_data_dir` live in `tfl.data.tfds_builders`
(importing this module registers them too).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfl.data.images import describe_augment, image_split
from tfl.data.splits import (
    SPLIT_NAMES,
    BadInputReport,
    DataSplits,
    LabelMap,
    MaxPerClass,
    Split,
    check_split_classes,
    make_fingerprint,
    resolve_max_per_class,
)
from tfl.data.tfds_builders import (
    OFFLINE_BUILDERS,
    Mnist5k,
    MovieSentences,
    default_data_dir,
    prepare,
    prepared_builder,
)
from tfl.data.tfds_reading import KEY_FEATURES, SplitReading, open_split, plan_reading, plan_splits

# With the names that moved to `tfl.data.tfds_builders` and `tfl.data.tfds_reading`, which
# keep working from here.
__all__ = [
    "KEY_FEATURES",
    "OFFLINE_BUILDERS",
    "Mnist5k",
    "MovieSentences",
    "default_data_dir",
    "from_tfds",
    "load",
    "prepare",
]


def load(name: str, split: Any = None, data_dir: str | None = None, **tfds_load_kwargs) -> Any:
    """`tfds.load` for tfl's offline datasets: prepares them once, never downloads.

    Args:
        name: "mnist5k" or "movie_sentences".
        split: any TFDS split (`"train"`, `"train[:80%]"`, a list); None gives a dict of all.
        data_dir: the TFDS data directory; default `default_data_dir()`.
        **tfds_load_kwargs: passed to `tfds.load` (`as_supervised=True`, `batch_size`, ...).

    Returns:
        What `tfds.load` returns (a `tf.data.Dataset`, a list or dict of them, and with
        `with_info=True` also the `DatasetInfo`).

    Example:
    >>> import tempfile
    >>> from tfl.data.tfds_data import load
    >>> ds = load("mnist5k", split="train[:2]", data_dir=tempfile.mkdtemp(), as_supervised=True)
    >>> [(tuple(x.shape), int(y)) for x, y in ds]
    [((28, 28, 1), 0), ((28, 28, 1), 0)]
    """
    builder = prepare(name, data_dir)
    return tfds.load(
        name,
        split=split,
        data_dir=builder.data_dir_root,
        download=False,
        **tfds_load_kwargs,
    )


# --------------------------------------------------------------------------------------------
# from_tfds
# --------------------------------------------------------------------------------------------

_TEXT_PIPELINE_VERSION = "tfl.data.tfds_data.text/1"


def _consecutive(lengths: list[int]) -> list[np.ndarray]:
    """Index ranges of consecutive blocks of these lengths."""
    offsets = np.cumsum([0, *lengths])
    return [np.arange(offsets[i], offsets[i + 1]) for i in range(len(lengths))]


def _text_pipeline(
    ds: tf.data.Dataset, *, batch_size: int, training: bool, seed: int, fingerprint: str
) -> Split:
    if int(batch_size) < 1:
        raise ValueError(f"Received batch_size={batch_size}; expected a positive integer.")
    if training:
        n = int(ds.cardinality())
        buffer = min(n, 16384) if n > 0 else 4096
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)
    config = {
        "version": _TEXT_PIPELINE_VERSION,
        "batch_size": int(batch_size),
        "training": bool(training),
        "seed": int(seed) if training else None,
    }
    return Split(ds, make_fingerprint(fingerprint, config))


def _input_feature(info: Any, image_key: str, text_key: str, label_key: str) -> tuple[str, str]:
    """("image" or "text", the input feature's name); raises naming the features there are."""
    features = info.features
    if label_key not in features or not isinstance(features[label_key], tfds.features.ClassLabel):
        kinds = {k: type(f).__name__ for k, f in features.items()}
        raise ValueError(
            f"Received label_key={label_key!r}; {info.full_name} has no ClassLabel feature of "
            f"that name. Its features: {kinds}. Pass label_key= (a ClassLabel feature)."
        )
    if image_key in features and isinstance(features[image_key], tfds.features.Image):
        return "image", image_key
    if text_key in features and isinstance(features[text_key], tfds.features.Text):
        return "text", text_key
    kinds = {k: type(f).__name__ for k, f in features.items()}
    raise ValueError(
        f"Received image_key={image_key!r}, text_key={text_key!r}; {info.full_name} has no "
        f"Image or Text feature of those names. Its features: {kinds}. Pass image_key= or "
        "text_key=."
    )


def _check_text_options(
    info: Any, kind: str, image_size: Any, augment: Any, mixup: float, cutmix: float
) -> None:
    """Raises when options that apply to images are given for a text dataset."""
    if kind == "text" and (image_size is not None or augment or mixup or cutmix):
        raise ValueError(
            f"Received image_size={image_size!r}, augment={augment!r}, mixup={mixup}, "
            f"cutmix={cutmix} for the text dataset {info.full_name}; these apply to images. "
            "Leave them at their defaults."
        )


def _check_classes(
    reading: SplitReading, labels: LabelMap
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Counts per split and class of the split members; one warning for missing classes."""
    present = [s for s in SPLIT_NAMES if s in reading.members]
    counts, problems = check_split_classes(
        np.concatenate([reading.labels_of[s][reading.members[s]] for s in present])
        if present
        else [],
        _consecutive([len(reading.members[s]) for s in present]),
        present,
        labels,
    )
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        warnings.warn(
            f"{'; '.join(problems[:3])}{more}. Pass split= with TFDS split strings or "
            "another seed.",
            stacklevel=3,  # the caller of from_tfds
        )
    return counts, problems


def _batched(
    kind: str,
    ds: tf.data.Dataset,
    image_size: Any,
    *,
    batch_size: int,
    training: bool,
    seed: int,
    fingerprint: str,
    **augmentation: Any,
) -> Split:
    """Images through `image_split` (resize, augmentation), texts batched as strings."""
    if kind == "image":
        return image_split(
            ds,
            image_size,
            batch_size=batch_size,
            training=training,
            seed=seed,
            fingerprint=fingerprint,
            **augmentation,
        )
    return _text_pipeline(
        ds, batch_size=batch_size, training=training, seed=seed, fingerprint=fingerprint
    )


def _split_datasets(
    builder: tfds.core.DatasetBuilder,
    reading: SplitReading,
    kind: str,
    input_key: str,
    label_key: str,
    image_size: Any,
    *,
    seed: int,
    **options: Any,
) -> tuple[dict[str, Split], dict[str, int], Split | None]:
    """One batched split per planned split, their sizes, and the training split in order
    (not shuffled or augmented: what the feature cache reads)."""
    datasets: dict[str, Split] = {}
    num_examples = {}
    in_order = None
    for s in SPLIT_NAMES:
        if reading.plan[s] is None:
            continue
        ds, num_examples[s], source = open_split(builder, s, reading, input_key, label_key, seed)
        datasets[s] = _batched(
            kind, ds, image_size, training=s == "train", seed=seed, fingerprint=source, **options
        )
        if s == "train":
            in_order = _batched(
                kind, ds, image_size, training=False, seed=seed, fingerprint=source, **options
            )
    return datasets, num_examples, in_order


def _tfds_info(
    name: str,
    builder: tfds.core.DatasetBuilder,
    reading: SplitReading,
    *,
    kind: str,
    features: dict[str, str],
    classes: list[str],
    num_examples: dict[str, int],
    counts: dict[str, dict[str, int]],
    problems: list[str],
    cap_info: dict[str, Any],
    fingerprints: dict[str, str],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """`DataSplits.info` of a TFDS dataset: where each split came from, counts, settings."""
    return {
        "source": "tfds",
        "name": name,
        "full_name": builder.info.full_name,
        "data_dir": os.fspath(builder.data_dir_root),
        "kind": kind,
        "features": features,
        "classes": classes,
        "splits": {
            s: (f"hash split of train by {reading.key_source}" if s in reading.carved else plan)
            for s, plan in reading.plan.items()
        },
        "num_examples": num_examples,
        "counts": counts,
        "skipped": 0,  # TFDS decodes its own records; nothing is skipped here
        "class_warnings": problems,
        "max_per_class": cap_info,
        "fingerprint": fingerprints,
        "settings": settings,
    }


def from_tfds(
    name: str,
    image_size: Any = None,
    *,
    data_dir: str | None = None,
    download: bool = False,
    split: dict[str, str] | None = None,
    image_key: str = "image",
    text_key: str = "text",
    label_key: str = "label",
    batch_size: int = 32,
    seed: int = 0,
    resize: str = "crop",
    augment: Any = None,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    max_per_class: MaxPerClass = None,
    carve_fractions: Any = None,
    run_dir: str | None = None,
) -> DataSplits:
    """A TFDS classification dataset (images or text) as train / validation / test splits.

    Splits: with `split=None` the dataset's own "train", "validation" and "test"; when it has
    no validation (or test) split, one is carved out of "train" by `hash_split` over a stable
    key per example (a "file_name" / "id" feature when there is one, else a fingerprint of the
    example's stored bytes): 80/10/10 of train when both are missing, 90/10 when one is, or
    `carve_fractions`. With `max_per_class` capping train and every carved split (and no
    `carve_fractions`), the carve follows the caps instead: `{"train": 50, "validation": 50,
    "test": 100}` carves 25/25/50, so each split can fill its cap (MNIST-5k's 500 digits per
    class give 50/50/100 of each; an 80/10/10 carve holds only about 50 test digits per
    class). A key keeps its split whatever else is in the data (for the same fractions). `split` may instead map "train" /
    "validation" / "test" to TFDS split strings used as given (`"train[:80%]"`); a split left
    out is None.

    Image features give RGB float32 images in 0–255 resized to `image_size` (see
    `tfl.data.images.image_pipeline`; augmentation, mixup and cutmix on the training split
    only, mixup/cutmix making its labels float32 soft vectors). Text features give batches of
    raw strings (the `TextClassifier`'s preprocessor tokenises them). Labels are int64 class
    indices of the `ClassLabel` feature, whose names make the `LabelMap`.

    Offline by default: "mnist5k" and "movie_sentences" prepare themselves from local files
    (`prepare`); any other dataset must already be prepared under `data_dir`, or
    `download=True` downloads and prepares it through TFDS.

    Args:
        name: a TFDS name ("mnist5k", "cifar10", "imdb_reviews:1.0.0", "x/config").
        image_size: int, `(h, w)`, a tfl model or `ImageBackbone`; None keeps the stored size.
            Image datasets only.
        data_dir: the TFDS data directory; default `default_data_dir()` for tfl's offline
            datasets and TFDS's own default (`~/tensorflow_datasets`, `$TFDS_DATA_DIR`) for
            the others.
        download: allow TFDS to download and prepare a dataset that is not prepared yet.
        split: None, or a dict of TFDS split strings (see above).
        image_key, text_key, label_key: the feature names of the input and the class label.
        batch_size: examples per batch.
        seed: seed of the carved splits, the shuffle and the augmentation.
        resize: "crop", "resize" or "pad" (see `tfl.data.images.resize_image`).
        augment: augmentation layers / names for the training split (images).
        mixup, cutmix: Beta alphas for the training split (images; 0 = off).
        max_per_class: at most this many examples of each class per split: an int for every
            split, or e.g. `{"train": 50, "validation": 50, "test": 100}` (a split left out or
            None is not capped); None keeps all. Applied after the split is decided (carved or
            the dataset's own; a cap never moves an example between splits) and before
            shuffling, so every epoch sees the same subset. Within a class the examples whose
            key (the same key as the carve) hashes smallest are kept
            (`tfl.data.splits.cap_per_class`), so the choice does not depend on the file's
            order: each class keeps min(cap, available), and added data only swaps in
            examples that hash smaller. `info["max_per_class"]` has the counts per class
            before and after. Capping one of the dataset's own splits reads its keys once.
        carve_fractions: (train, validation[, test]) fractions of "train" for carved splits
            (those of splits the dataset has itself are left out and the rest renormalised);
            None: 80/10/10, or proportional to `max_per_class` (see above).
        run_dir: if given, `labels.json` and `data.json` are written there.

    Returns:
        `DataSplits` with batched `(x, y)` datasets, the `LabelMap` and an `info` dict
        (dataset, split plan, example counts, per-class counts of carved and capped splits,
        settings).

    Raises:
        ValueError: unknown dataset, feature or split.
        FileNotFoundError: the dataset is not prepared and `download=False` (raised at once,
            with how to prepare it offline).
        RuntimeError: `download=True` and downloading or preparing failed.

    Example:
    >>> import tempfile
    >>> from tfl.data.tfds_data import from_tfds
    >>> data = from_tfds("mnist5k", 32, data_dir=tempfile.mkdtemp(), batch_size=8)
    >>> data.info["num_examples"], data.labels.names[:3]
    ({'train': 4029, 'validation': 484, 'test': 487}, ['0', '1', '2'])
    >>> x, y = next(iter(data.validation))
    >>> tuple(x.shape), x.dtype.name, y.dtype.name
    ((8, 32, 32, 3), 'float32', 'int64')
    >>> small = from_tfds("mnist5k", 32, data_dir=data.info["data_dir"], max_per_class=20)
    >>> small.info["num_examples"], small.info["counts"]["test"]["7"]
    ({'train': 200, 'validation': 200, 'test': 200}, 20)
    """
    caps = resolve_max_per_class(max_per_class)
    builder = prepared_builder(name, data_dir, download)
    kind, input_key = _input_feature(builder.info, image_key, text_key, label_key)
    _check_text_options(builder.info, kind, image_size, augment, mixup, cutmix)
    labels = LabelMap(builder.info.features[label_key].names)
    plan = plan_splits(builder, split)
    reading = plan_reading(builder, plan, label_key, carve_fractions, caps, seed)
    cap_info = reading.cap(max_per_class, seed, labels)
    counts, problems = _check_classes(reading, labels)

    datasets, num_examples, in_order = _split_datasets(
        builder,
        reading,
        kind,
        input_key,
        label_key,
        image_size,
        batch_size=batch_size,
        seed=seed,
        resize=resize,
        augment=augment,
        mixup=mixup,
        cutmix=cutmix,
        num_classes=len(labels),
    )
    data_info = _tfds_info(
        name,
        builder,
        reading,
        kind=kind,
        features={"input": input_key, "label": label_key},
        classes=labels.names,
        num_examples=num_examples,
        counts=counts,
        problems=problems,
        cap_info=cap_info,
        fingerprints={s: split.fingerprint for s, split in datasets.items()},
        settings={
            "image_size": None if kind == "text" else image_size,
            "batch_size": batch_size,
            "seed": seed,
            "resize": resize if kind == "image" else None,
            "augment": describe_augment(augment),
            "mixup": mixup,
            "cutmix": cutmix,
            "split": split,
            "carve_fractions": None if reading.fractions is None else list(reading.fractions),
        },
    )
    report = BadInputReport(kind="examples")
    data = DataSplits.from_splits(datasets, labels, report, data_info, train_in_order=in_order)
    if run_dir is not None:
        data.save(run_dir)
    return data
