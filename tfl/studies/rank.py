"""`tfl rank`: which pretrained base (cut, input size, pooling) for this data, before training.

The first decision of a transfer-learning job is the base, and the only sure way to answer
it is to fine-tune every candidate. This study answers it from frozen features instead:

1. The candidates are every combination of `model.base` (a name, a list, or `auto`: the
   bases whose pretrained weights install offline) with `rank.cuts`, `rank.image_sizes`,
   `rank.poolings` and `rank.weights` (`candidates`).
2. Each candidate's task model is built exactly as `tfl train` builds it
   (`tfl.builders.build_model`) and its frozen base runs once over the train and validation
   splits through the bottleneck cache (`tfl.cache.FeatureCache`): a later `tfl train` with
   the winner's settings trains its head on those same features, and a second `tfl rank`
   extracts nothing. The test split is never read.
3. The pooled features are scored with LogME, with LEEP where the base keeps its ImageNet
   classifier (`tfl.backbones.source_classifier`), and with a cross-validated linear probe,
   the direct evidence (`tfl.studies.transferability`). `rank.score` picks the winner.
4. `train.schedule: auto` then picks feature extraction or two-phase fine-tuning from the
   winner's probe accuracy and the data size (`choose_schedule`).

A candidate that fails to load (a download offline, a missing weights package) is reported
with its error and the others still rank. `tfl.studies.rank_report` writes `rank.json`,
`rank.md` and `rank.png`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from tfl import builders
from tfl import config as config_lib
from tfl.config.model_checks import WHOLE, candidate_bases
from tfl.studies import transferability as scores

# train.schedule: auto. Feature extraction when the frozen features already do (almost) all
# that fine-tuning would, or when there are too few examples per class to move millions of
# weights; two-phase fine-tuning otherwise. benchmarks/rank.py measured what fine-tuning
# added over the probe (README, "Choosing the base"): these are its thresholds.
SCHEDULE_PROBE_ACCURACY = 0.97
SCHEDULE_MIN_PER_CLASS = 5


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One thing to rank: a base with its weights, cut, input size and pooling.

    Example:
    >>> Candidate("mobilenet_v2_torchvision", "imagenet", "stage3", 64, "avg").name
    'mobilenet_v2_torchvision@stage3 64px'
    >>> Candidate("all-minilm-l6-v2", "none", None, None, "mean").name
    'all-minilm-l6-v2 mean (random weights)'
    """

    base: str
    weights: str
    cut: str | None
    image_size: int | None
    pooling: str

    @property
    def name(self) -> str:
        text = self.base + (f"@{self.cut}" if self.cut else "")
        if self.image_size:
            text += f" {self.image_size}px"
        elif self.image_size is None and self.pooling in ("mean", "pooled"):
            text += f" {self.pooling}"
        if self.weights == "none":
            text += " (random weights)"
        elif self.weights not in ("imagenet", "pretrained"):
            text += f" ({os.path.basename(self.weights)})"
        return text

    def config(self, config: config_lib.RunConfig) -> config_lib.RunConfig:
        """`config` training this candidate (one base, its cut, size, pooling, weights)."""
        model = dataclasses.replace(
            config.model, base=self.base, weights=self.weights, cut=self.cut, pooling=self.pooling
        )
        data = config.data
        if self.image_size is not None:
            data = dataclasses.replace(data, image_size=self.image_size)
        return dataclasses.replace(config, model=model, data=data)

    def flags(self, config: config_lib.RunConfig) -> list[str]:
        """The `tfl train` flags that differ from `config` to train this candidate."""
        flags = ["--model.base", self.base]
        if self.weights != config.model.weights:
            flags += ["--model.weights", self.weights]
        if self.cut != config.model.cut:
            flags += ["--model.cut", self.cut or WHOLE]
        if self.image_size is not None and self.image_size != config.data.image_size:
            flags += ["--data.image-size", str(self.image_size)]
        if self.pooling != config.model.pooling:
            flags += ["--model.pooling", self.pooling]
        return flags


def candidates(config: config_lib.RunConfig) -> list[Candidate]:
    """Every candidate a (validated) configuration names, in a stable order.

    Example:
    >>> from tfl.config import from_dict, validate
    >>> config = validate(from_dict({"model": {"base": "auto"}, "rank": {"cuts": ["stage3"],
    ...     "image_sizes": [64, 96]}}))
    >>> [c.name for c in candidates(config)]  # doctest: +NORMALIZE_WHITESPACE
    ['mobilenet_v2_torchvision@stage3 64px', 'mobilenet_v2_torchvision@stage3 96px',
     'efficientnet_lite0@stage3 64px', 'efficientnet_lite0@stage3 96px']
    """
    kind = config_lib.RECIPE_KINDS[config.recipe]
    rank, model = config.rank, config.model
    cuts = [None if c == WHOLE else c for c in rank.cuts] or [model.cut]
    sizes = list(rank.image_sizes) or [None if kind.is_text else config.data.image_size]
    poolings = list(rank.poolings) or [model.pooling]
    weights = list(rank.weights) or [model.weights]
    grid = itertools.product(candidate_bases(model, kind), weights, cuts, sizes, poolings)
    return [Candidate(*values) for values in grid]


def needs_ranking(config: config_lib.RunConfig) -> bool:
    """Whether `tfl train` ranks before training: several candidates, or schedule auto.

    A fusion recipe's two bases are both used, not candidates: it never ranks them.
    """
    if config.train.schedule == "auto":
        return True
    return config_lib.RECIPE_KINDS[config.recipe].bases == 1 and len(candidates(config)) > 1


def choose_schedule(probe_accuracy: float, examples_per_class: float) -> tuple[str, str]:
    """`train.schedule: auto`: `(schedule, why)` from the probe accuracy and the data size.

    Example:
    >>> choose_schedule(0.88, 50)[0], choose_schedule(0.99, 50)[0], choose_schedule(0.7, 3)[0]
    ('two_phase', 'feature_extraction', 'feature_extraction')
    """
    if probe_accuracy >= SCHEDULE_PROBE_ACCURACY:
        return "feature_extraction", (
            f"the frozen features already reach {probe_accuracy:.3f} with a linear probe (>= "
            f"{SCHEDULE_PROBE_ACCURACY}): fine-tuning has little left to add"
        )
    if examples_per_class < SCHEDULE_MIN_PER_CLASS:
        return "feature_extraction", (
            f"{examples_per_class:.1f} training examples per class (< {SCHEDULE_MIN_PER_CLASS}) "
            "are too few to fine-tune a whole base"
        )
    return "two_phase", (
        f"the linear probe reaches {probe_accuracy:.3f} (< {SCHEDULE_PROBE_ACCURACY}) with "
        f"{examples_per_class:.0f} training examples per class: fine-tuning can add more"
    )


# === Features, scores ===


def _subsample(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most `limit` example indices: a random subset (classes in about their
    proportions), or all of them in order if there are no more."""
    if limit is None or len(labels) <= limit:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = rng.permutation(len(labels))[:limit]
    return np.sort(keep)


def _features(model, data, store) -> tuple[np.ndarray, np.ndarray, bool, float]:
    """Pooled train + validation features and labels of `model`'s frozen base, via `store`."""
    parts, labels, cached, seconds = [], [], True, 0.0
    for split in ("train", "validation"):
        ds = getattr(data, split)
        if ds is None:
            continue
        found = store.features(
            model,
            ds,
            fingerprint=data.fingerprints.get(split),
            in_order=data.train_in_order if split == "train" else None,
        )
        if len(found.arrays) != 1:
            raise ValueError("tfl rank scores one feature vector per example (one base).")
        parts.append(np.asarray(found.arrays[0]))
        labels.append(np.asarray(found.targets).reshape(-1))
        cached, seconds = cached and found.from_cache, seconds + found.seconds
    return np.concatenate(parts), np.concatenate(labels).astype(np.int64), cached, seconds


def _source_probabilities(candidate: Candidate, data, store, features, memo) -> np.ndarray | None:
    """The source (ImageNet) classifier's probabilities on train + validation (None if the
    base keeps no classifier offline).

    One forward pass at most per base, weights and size: the cuts of a base share it
    (`memo`), and for the whole base with average pooling the classifier's last layer is
    applied to the cached pooled features (the same numbers, no second pass). Otherwise the
    classifier runs once and its probabilities are kept on disk beside the features.
    """
    from tfl.backbones import get_spec, source_classifier
    from tfl.evaluate.metrics import softmax
    from tfl.fingerprints import model_fingerprint

    _, variant = get_spec(candidate.base)
    if variant.classifier_builder is None:
        return None  # keras.applications tops download their weights: not offline
    size = candidate.image_size or variant.default_size
    memo_key = (candidate.base, candidate.weights, size)
    if memo_key in memo:
        return memo[memo_key]
    weights = {"none": None, "pretrained": "imagenet"}.get(candidate.weights, candidate.weights)
    classifier = source_classifier(candidate.base, (size, size, 3), weights=weights)
    if candidate.cut is None and candidate.pooling == "avg":
        top = classifier.layers[-1].get_layer("predictions")  # pooled features -> logits
        kernel, bias = (np.asarray(w, dtype=np.float64) for w in top.get_weights())
        memo[memo_key] = softmax(np.asarray(features, dtype=np.float64) @ kernel + bias)
        return memo[memo_key]
    parts = [data.fingerprints.get(s) for s in ("train", "validation")]
    key = hashlib.blake2b(
        "|".join(["leep-1", model_fingerprint(classifier), *map(str, parts)]).encode(),
        digest_size=20,
    ).hexdigest()
    path = None if store.directory is None else os.path.join(store.directory, f"leep-{key}.npy")
    if path and None not in parts and os.path.exists(path):
        memo[memo_key] = np.load(path)
        return memo[memo_key]
    logits = []
    for ds in (data.train_in_order, data.validation):
        if ds is not None:
            logits.append(classifier.predict(ds.map(lambda x, y: x), verbose=0))
    memo[memo_key] = softmax(np.concatenate(logits).astype(np.float64))
    if path and None not in parts:
        os.makedirs(store.directory, exist_ok=True)
        np.save(path, memo[memo_key])
    return memo[memo_key]


def score_candidate(
    candidate: Candidate, config, data, store, strategy=None, memo: dict | None = None
) -> dict:
    """Build `candidate`'s task, take its frozen features through `store`, score them.

    Returns:
        A dict: `name`, `settings`, `examples`, `feature_dim`, `parameters` (of the
        frozen base), `cached` (features loaded, not extracted), `extract_seconds`,
        `logme`, `leep` (None without a source classifier), `probe_accuracy`,
        `probe_fold_accuracy`, `score_seconds`. Errors propagate (`rank_candidates`
        records them).
    """
    from tfl.cache import split_at_bases
    from tfl.freezing import freeze

    keras.utils.set_random_seed(config.seed)
    cand_config = candidate.config(config)
    # Frozen, as a head phase freezes it: the cache keys include the layers' settings, so the
    # features taken here are the ones `tfl train`'s first phase looks up.
    model = freeze(builders.build_model(cand_config, data, strategy))
    features, labels, cached, seconds = _features(model, data, store)
    keep = _subsample(labels, config.rank.max_examples, config.seed)
    started = time.perf_counter()
    f, y = features[keep], labels[keep]
    probe = scores.linear_probe(f, y, folds=config.rank.folds, seed=config.seed)
    leep = None
    if not builders.is_text(config):
        memo = {} if memo is None else memo
        probabilities = _source_probabilities(candidate, data, store, features, memo)
        if probabilities is not None:
            leep = scores.leep(probabilities[keep], y)
    feature_model, _ = split_at_bases(model)
    return {
        "name": candidate.name,
        "settings": dataclasses.asdict(candidate),
        "examples": int(len(y)),
        "feature_dim": int(f.shape[1]),
        "parameters": int(feature_model.count_params()),
        "cached": bool(cached),
        "extract_seconds": round(float(seconds), 2),
        "logme": scores.logme(f, y),
        "leep": leep,
        "probe_accuracy": probe["accuracy"],
        "probe_fold_accuracy": probe["fold_accuracy"],
        "score_seconds": round(time.perf_counter() - started, 2),
    }


# === The study ===


def _load_data(config, size: int | None, strategy):
    """The configured data (no augmentation: features are read once) at image side `size`."""
    data = dataclasses.replace(config.data, augment=(), mixup=0.0, cutmix=0.0)
    if size is not None:
        data = dataclasses.replace(data, image_size=size)
    return builders.load_data(dataclasses.replace(config, data=data), strategy)


def _order(rows: list[dict], score: str) -> list[dict]:
    """Rows best first by `score` (None last), then by probe accuracy; candidates with random
    weights (`weights: none`) after every pretrained one.

    Frozen-feature scores see a base before fine-tuning: on small, simple data a random
    base's features can score as well as pretrained ones (benchmarks/rank.py: the probe and
    LogME did, on the 8x8 digits), yet fine-tuning the pretrained base won in every case
    measured. A random base is a check, never the recommendation over a pretrained one.
    """
    key = "probe_accuracy" if score == "probe" else score

    def sort_key(row):
        value = row.get(key)
        random = row["settings"]["weights"] == "none"
        return (random, value is None, -(value or 0.0), -(row.get("probe_accuracy") or 0.0))

    return sorted(rows, key=sort_key)


def rank_candidates(
    config: config_lib.RunConfig, progress: Callable[[str], None] | None = None
) -> dict:
    """Rank every candidate of a configuration (what `tfl rank` runs; writes nothing).

    Args:
        config: a run configuration (validated here); `model.base` and the `rank:` section
            name the candidates, the `data:` section the examples.
        progress: called with one line per candidate as it is scored (e.g. `print`).

    Returns:
        A dict: `candidates` (one `score_candidate` dict per candidate, best first; a failed
        one has `error` instead of scores), `failed`, `winner` (its row), `score`, `schedule`
        and `schedule_reason` (what `train.schedule: auto` would pick), `seconds`,
        `examples_per_class` and `labels`.

    Example:
        None that runs in a docstring (it runs the bases); see `tests/test_rank.py`.
    """
    from tfl.cache import FeatureCache

    config = config_lib.validate(config)
    if config_lib.RECIPE_KINDS[config.recipe].bases != 1:
        raise config_lib.ConfigError(
            "recipe",
            f"tfl rank compares one base at a time, but {config.recipe} fuses two",
            "Rank with --recipe image_classification, then fuse the two best bases.",
        )
    started = time.time()
    strategy = builders.get_strategy(config)
    cache = config.train.cache
    store = FeatureCache(None if cache in ("memory", False) else "auto")
    found = candidates(config)
    loaded: dict[Any, Any] = {}
    rows, memo = [], {}  # memo: source-classifier probabilities, shared by a base's cuts
    for i, candidate in enumerate(found, 1):
        if candidate.image_size not in loaded:
            loaded[candidate.image_size] = _load_data(config, candidate.image_size, strategy)
        data = loaded[candidate.image_size]
        try:
            row = score_candidate(candidate, config, data, store, strategy, memo)
        except Exception as error:  # noqa: BLE001 - reported; the other candidates still rank
            row = {"name": candidate.name, "settings": dataclasses.asdict(candidate)}
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        rows.append(row)
        if progress is not None:
            progress(_progress_line(i, len(found), row))
    return _summarise(config, rows, loaded, started)


def _progress_line(i: int, n: int, row: dict) -> str:
    if "error" in row:
        return f"[{i}/{n}] {row['name']}: FAILED to load: {row['error']}"
    how = "cached" if row["cached"] else f"extracted in {row['extract_seconds']:.1f} s"
    leep = "" if row["leep"] is None else f", LEEP {row['leep']:.3f}"
    return (
        f"[{i}/{n}] {row['name']}: {row['examples']} x {row['feature_dim']} features ({how}); "
        f"probe {row['probe_accuracy']:.3f}, LogME {row['logme']:.3f}{leep}"
    )


def _summarise(config, rows, loaded, started) -> dict:
    ranked = _order([r for r in rows if "error" not in r], config.rank.score)
    failed = [r for r in rows if "error" in r]
    data = next(iter(loaded.values()))
    labels = list(data.labels.names)
    result = {
        "score": config.rank.score,
        "candidates": ranked + failed,
        "failed": [r["name"] for r in failed],
        "winner": ranked[0] if ranked else None,
        "labels": labels,
        "seconds": round(time.time() - started, 1),
    }
    if not ranked:
        return result
    train_count = (data.info.get("num_examples") or {}).get("train")
    if train_count is None:  # the loader did not count: read the labels
        train_count = sum(int(np.asarray(y).shape[0]) for _, y in data.train_in_order)
    per_class = train_count / max(len(labels), 1)
    schedule, reason = choose_schedule(ranked[0]["probe_accuracy"], per_class)
    result.update(examples_per_class=round(per_class, 1), schedule=schedule)
    result["schedule_reason"] = reason
    return result


def winner_config(config: config_lib.RunConfig, result: dict) -> config_lib.RunConfig:
    """`config` with the ranking's winner (and, for `train.schedule: auto`, its schedule).

    Raises:
        RuntimeError: no candidate could be scored (each one's error is listed).
    """
    if result.get("winner") is None:
        errors = "; ".join(f"{r['name']}: {r['error']}" for r in result["candidates"])
        raise RuntimeError(f"No candidate could be loaded and scored ({errors}).")
    chosen = Candidate(**result["winner"]["settings"]).config(config)
    if config.train.schedule == "auto":
        schedule = result["schedule"]
        finetune = 0 if schedule == "feature_extraction" else chosen.train.finetune_epochs
        train = dataclasses.replace(chosen.train, schedule=schedule, finetune_epochs=finetune)
        chosen = dataclasses.replace(chosen, train=train)
    # The grid is spent: the chosen config trains one candidate (and ranks nothing again).
    rank = dataclasses.replace(chosen.rank, cuts=(), image_sizes=(), poolings=(), weights=())
    return config_lib.validate(dataclasses.replace(chosen, rank=rank))


__all__ = [
    "SCHEDULE_MIN_PER_CLASS",
    "SCHEDULE_PROBE_ACCURACY",
    "Candidate",
    "candidates",
    "choose_schedule",
    "needs_ranking",
    "rank_candidates",
    "score_candidate",
    "winner_config",
]
