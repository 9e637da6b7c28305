"""Images in folders: `root/<class>/*` or `root/<split>/<class>/*` as train / validation / test.

- `folder_layout`: which of the two layouts a folder has (and its split folders).
- `from_folder`: list the images per class, find the files that cannot be decoded (skipped and
  reported up front, so an epoch never crashes half way), carve the splits (a hash of each
  path, so adding images never moves old ones between splits), cap them, and build one
  dataset per split.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfl.data.images.augment import describe_augment
from tfl.data.images.decode import IMAGE_EXTENSIONS, decode_image, parse_image_size, resize_image
from tfl.data.images.pipeline import finish_pipeline
from tfl.data.splits import (
    SPLIT_NAMES,
    BadInputReport,
    DataSplits,
    LabelMap,
    MaxPerClass,
    Split,
    as_fractions,
    cap_splits,
    check_split_classes,
    hash_split,
    make_fingerprint,
    resolve_max_per_class,
    warn_missing_classes,
)

# Folder names accepted for each split in the `root/<split>/<class>/*` layout.
SPLIT_DIRS = {
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
}
# Undecodable files whose reason is worked out one by one (the rest: "could not be decoded").
_MAX_REASONS = 50


# --------------------------------------------------------------------------------------------
# Layout and listing
# --------------------------------------------------------------------------------------------


def _visible(name: str) -> bool:
    return not name.startswith(".") and not name.startswith("__")


def _subdirs(path: str) -> list[str]:
    return sorted(
        e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=True) and _visible(e.name)
    )


def folder_layout(root: str) -> tuple[str, dict[str, str]]:
    """("split", {split: dir}) or ("class", {})."""
    subdirs = _subdirs(root)
    if subdirs and all(d.lower() in SPLIT_DIRS for d in subdirs):
        found: dict[str, str] = {}
        for d in subdirs:
            split = SPLIT_DIRS[d.lower()]
            if split in found:
                raise ValueError(
                    f"{root} has two folders for the {split} split: {found[split]!r} and {d!r}; "
                    "keep one (merge or rename the other)."
                )
            found[split] = d
        return "split", found
    return "class", {}


def _list_class_files(class_dir: str) -> tuple[list[str], list[str]]:
    """(image files, other files) under `class_dir`, recursively, sorted."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(path)
            elif _visible(name):
                others.append(path)
    return images, others


# --------------------------------------------------------------------------------------------
# Verifying
# --------------------------------------------------------------------------------------------


def _decode_error(path: str) -> str:
    """Why `path` cannot be decoded (eagerly, for the report)."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        decode_image(tf.io.read_file(path))
    except (tf.errors.OpError, OSError) as e:
        message = (getattr(e, "message", None) or str(e)).strip().splitlines()[0]
        # Drop TensorFlow's op decorations: "{{function_node ...}} <reason> [Op:DecodeImage]".
        message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)
        message = re.sub(r"\s*\[Op:[^\]]*\].*$", "", message)
        return f"cannot be decoded: {message[:200]}"
    return "could not be decoded"


def _find_bad_files(paths: list[str]) -> list[int]:
    """Indices of files that fail to decode, found in parallel inside tf.data."""
    if not paths:
        return []

    def check(index, path):
        image = decode_image(tf.io.read_file(path))
        # Using the decoded pixels makes sure the whole image is really decoded.
        return index, tf.reduce_min(tf.shape(image))

    ds = tf.data.Dataset.from_tensor_slices(paths).enumerate()
    ds = ds.map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors().map(lambda i, _: i).batch(4096)
    good = np.zeros(len(paths), dtype=bool)
    for indices in ds.as_numpy_iterator():
        good[indices] = True
    return np.flatnonzero(~good).tolist()


def _file_identity(path: str) -> list[Any]:
    """Size and modification time: a file changed in place changes the fingerprint."""
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


# --------------------------------------------------------------------------------------------
# The steps of from_folder
# --------------------------------------------------------------------------------------------


def _check_root(root: str, image_size: Any) -> tuple[int, int]:
    """The target `(h, w)`; raises when `root` is not a folder or no size is given."""
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Received root={root!r}, which is not a folder; expected a folder with one "
            "subfolder of images per class."
        )
    size = parse_image_size(image_size)
    if size is None:
        raise ValueError(
            "Received image_size=None; images from files differ in size, so expected an int, "
            "(height, width), or the tfl model / ImageBackbone to feed."
        )
    return size


def _split_roots(
    root: str, layout: str, split_dirs: dict[str, str], splits: Sequence[float]
) -> tuple[dict[str, str], list[float] | None]:
    """{split (or "all"): its folder} and the fractions to carve (None: the splits are given)."""
    if layout == "split":
        split_roots = {s: os.path.join(root, d) for s, d in split_dirs.items()}
        if as_fractions(splits) != (0.8, 0.1, 0.1):
            warnings.warn(
                f"{root} has split folders {sorted(split_dirs.values())}, which are used as "
                f"given; splits={tuple(splits)} is ignored.",
                stacklevel=3,  # the caller of from_folder
            )
        return split_roots, None
    return {"all": root}, list(as_fractions(splits))


def _class_names(
    root: str, split_roots: dict[str, str], class_names: Sequence[str] | None
) -> list[str]:
    """The classes in index order: `class_names`, or every class folder (sorted)."""
    found_classes = sorted({c for d in split_roots.values() for c in _subdirs(d)})
    if class_names is None:
        names = found_classes
    else:
        names = [str(c) for c in class_names]
        missing = [c for c in names if c not in found_classes]
        unknown = [c for c in found_classes if c not in names]
        if unknown:
            warnings.warn(
                f"The class folders {unknown} under {root} are not in class_names and are left "
                "out.",
                stacklevel=3,  # the caller of from_folder
            )
        if len(missing) == len(names):
            raise ValueError(
                f"Received class_names with {missing}, which have no folder under {root}; the "
                f"class folders are {found_classes}."
            )
    if not names:
        raise ValueError(
            f"No class folders in {root}; expected {root}/<class>/<images> or "
            f"{root}/<train|validation|test>/<class>/<images>."
        )
    return names


def _list_images(
    root: str, split_roots: dict[str, str], names: list[str]
) -> tuple[list[str], list[int], list[str], list[str]]:
    """(image paths, their class indices, their split folders, ignored files) per class folder."""
    paths: list[str] = []
    path_labels: list[int] = []
    path_split: list[str] = []
    ignored: list[str] = []
    for split, split_root in split_roots.items():
        for index, name in enumerate(names):
            class_dir = os.path.join(split_root, name)
            if not os.path.isdir(class_dir):
                continue
            images, others = _list_class_files(class_dir)
            ignored += others
            if not images:
                raise ValueError(
                    f"The class folder {class_dir} has no images ({', '.join(IMAGE_EXTENSIONS)}"
                    "); delete it or add images."
                )
            paths += images
            path_labels += [index] * len(images)
            path_split += [split] * len(images)
    if not paths:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}.")
    return paths, path_labels, path_split, ignored


def _warn_ignored(root: str, ignored: list[str]) -> None:
    """One warning for the files that are not images (the console shows their count)."""
    if not ignored:
        return
    shown = ", ".join(os.path.relpath(p, root) for p in ignored[:3])
    more = f" and {len(ignored) - 3} more" if len(ignored) > 3 else ""
    warnings.warn(
        f"{len(ignored)} file(s) under {root} are not images ({', '.join(IMAGE_EXTENSIONS)}) "
        f"and were ignored: {shown}{more} (data.json lists the first 10).",
        stacklevel=3,  # the caller of from_folder
    )


def _verify(paths: list[str], verify: bool, run_dir: str | None) -> tuple[BadInputReport, Any]:
    """The report of the files that cannot be decoded (warned once) and a mask of the others."""
    report = BadInputReport(total=len(paths))
    bad = _find_bad_files(paths) if verify else []
    for n, i in enumerate(bad):
        reason = _decode_error(paths[i]) if n < _MAX_REASONS else "could not be decoded"
        report.add(paths[i], reason)
    keep = np.ones(len(paths), dtype=bool)
    keep[bad] = False
    if report.count:
        warnings.warn(
            f"{report.summary()} They are left out"
            + (f"; see {os.path.join(run_dir, 'bad_inputs.txt')}." if run_dir else "."),
            stacklevel=3,  # the caller of from_folder
        )
    return report, keep


def _carve_splits(
    split_roots: dict[str, str],
    split_of: np.ndarray,
    rel: list[str],
    fractions: list[float] | None,
    splits: Sequence[float],
    seed: int,
) -> dict[str, np.ndarray]:
    """{split: file indices}: the split folders as given, or a hash split of the paths."""
    members: dict[str, np.ndarray] = {}
    if fractions is None:  # the "split" layout
        for split in split_roots:
            members[split] = np.flatnonzero(split_of == split)
            if not len(members[split]):
                raise ValueError(
                    f"The {split} split ({split_roots[split]}) has no usable images; add "
                    f"images to its class folders or remove the folder."
                )
        return members
    parts = hash_split(rel, fractions, seed=seed)
    for split, fraction, idx in zip(SPLIT_NAMES, fractions, parts, strict=True):
        if fraction == 0:
            continue
        if not len(idx):
            raise ValueError(
                f"The {split} split is empty: {len(rel)} images with splits="
                f"{tuple(splits)}. Add images, give the {split} split a larger fraction, "
                f"or set its fraction to 0 to go without it."
            )
        members[split] = idx
    return members


def _split_dataset(
    paths: np.ndarray,
    y: np.ndarray,
    rel: list[str],
    idx: np.ndarray,
    names: list[str],
    size: tuple[int, int],
    *,
    training: bool,
    resize: str,
    seed: int,
    **pipeline: Any,
) -> Split:
    """One split: its files read, decoded and resized (shuffled when training)."""
    source = make_fingerprint(
        "folder",
        names,
        [[rel[i], int(y[i]), *_file_identity(paths[i])] for i in idx],
    )
    ds = tf.data.Dataset.from_tensor_slices((np.array([paths[i] for i in idx], dtype=str), y[idx]))
    if training:
        ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)

    def load(path, label):
        image = resize_image(decode_image(tf.io.read_file(path)), size, resize)
        return image, label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    # Safety net: a file that breaks after the check is skipped (and logged), not an epoch
    # crash; the epoch is topped up from the next pass so it keeps its known length (Keras
    # warns "ran out of data" on datasets of unknown length).
    ds = ds.ignore_errors(log_warning=True).repeat().take(len(idx))
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(idx)))
    return finish_pipeline(
        ds,
        size,
        resize=resize,
        training=training,
        num_classes=len(names),
        seed=seed,
        fingerprint=source,
        prepared=True,
        **pipeline,
    )


def _folder_info(
    root: str,
    layout: str,
    names: list[str],
    *,
    members: dict[str, np.ndarray],
    counts: dict[str, dict[str, int]],
    report: BadInputReport,
    ignored: list[str],
    problems: list[str],
    cap_info: dict[str, Any],
    datasets: dict[str, tf.data.Dataset | None],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """`DataSplits.info` of a folder: counts per split and class, what was left out, settings."""
    return {
        "source": "folder",
        "root": root,
        "layout": layout,
        "classes": names,
        "num_examples": {s: len(idx) for s, idx in members.items()},
        "counts": counts,
        "skipped": report.count,
        "ignored_files": len(ignored),
        "ignored_examples": [os.path.relpath(p, root) for p in ignored[:10]],
        "class_warnings": problems,
        "max_per_class": cap_info,
        "fingerprint": {s: datasets[s].fingerprint for s in members},
        "settings": settings,
    }


# --------------------------------------------------------------------------------------------
# from_folder
# --------------------------------------------------------------------------------------------


def from_folder(
    root: str,
    image_size: Any,
    *,
    batch_size: int = 32,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    resize: str = "crop",
    augment: Any = None,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    class_names: Sequence[str] | None = None,
    verify: bool = True,
    max_per_class: MaxPerClass = None,
    run_dir: str | None = None,
) -> DataSplits:
    """Image classification data from a folder with one subfolder per class.

    Two layouts are detected automatically:

    - `root/<class>/...`: the files are split into train / validation / test by
      `tfl.data.splits.hash_split` of each path relative to `root`, so a file stays in its split
      when images are added or removed (a test image never leaks into training).
    - `root/<split>/<class>/...` with split folders among `train`, `validation` (or `val`,
      `valid`) and `test`: the splits are used as given (`splits` is ignored; a missing split
      folder gives None). The classes are the union over the splits.

    Files ending in .jpg, .jpeg, .png, .gif (first frame), .bmp or .webp (any case) are read,
    in subfolders too; other files (hidden ones aside) are ignored, counted in
    `info["ignored_files"]` and warned about once with a few of their names. With
    `verify=True` every image is decoded once up front (in parallel); files that fail (empty,
    truncated, not an image) are skipped, listed in `report`, warned about once and saved to
    `run_dir/bad_inputs.txt`.

    Images come out as RGB float32 in 0–255 (grey and RGBA become RGB) of `image_size`. The
    default `resize="crop"` resizes the short side and centre-crops, as ImageNet evaluation
    does, so objects keep their shape; "resize" stretches (Keras' default), "pad" letterboxes.

    Args:
        root: the data folder.
        image_size: int, `(h, w)`, `(h, w, 3)`, or the tfl model / `ImageBackbone` to feed.
        batch_size: examples per batch.
        splits: fractions (train, validation[, test]) for the class layout; 0 skips a split.
        seed: seed of the split, the shuffle and the augmentation.
        resize: "crop", "resize" or "pad"; see `resize_image`.
        augment: None, names from `AUGMENTATIONS`, or keras layers; training split only.
        mixup: MixUp alpha (0 = off); training labels become float32 soft vectors.
        cutmix: CutMix alpha in [0, 1] (0 = off); likewise.
        class_names: the classes to use, in index order (default: all subfolders, sorted):
            e.g. a run's `labels.json` names. Classes without a folder are allowed (data
            for some of the classes, as when evaluating on new images) and are listed in
            `info["class_warnings"]`; folders not in `class_names` are left out (a warning).
        verify: find undecodable files up front (costs one decode of every image).
        max_per_class: at most this many examples of each class per split: an int for every
            split, or e.g. `{"train": 50, "validation": 50, "test": 100}` (a split left out or
            None is not capped); None keeps all. Applied after the split is decided (a cap
            never moves an example between splits) and before shuffling, so every epoch sees
            the same subset. Within a class the examples whose path relative to `root` hashes smallest are kept
            (`tfl.data.splits.cap_per_class`): each class keeps min(cap, available), and added
            data only swaps in examples that hash smaller. `info["max_per_class"]` has the
            counts per class before and after.
        run_dir: if given, `labels.json`, `data.json` and `bad_inputs.txt` are written there.

    Returns:
        `DataSplits`; `info` holds the counts per split and class, the fingerprints and the
        settings.

    Example:
    >>> import os, tempfile
    >>> import tensorflow as tf
    >>> from tfl.data.images import from_folder
    >>> root = tempfile.mkdtemp()
    >>> for name in ["cat", "dog"]:
    ...     os.makedirs(os.path.join(root, name))
    ...     for i in range(10):
    ...         png = tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8))
    ...         tf.io.write_file(os.path.join(root, name, f"{i}.png"), png)
    >>> data = from_folder(root, 16, batch_size=4, splits=(0.6, 0.4))
    >>> train, val, test = data
    >>> data.labels.names, test is None, tuple(next(iter(train))[0].shape)
    (['cat', 'dog'], True, (4, 16, 16, 3))
    """
    root = os.fspath(root)
    resolve_max_per_class(max_per_class)  # bad caps fail before any file is read
    size = _check_root(root, image_size)
    layout, split_dirs = folder_layout(root)
    split_roots, fractions = _split_roots(root, layout, split_dirs, splits)
    names = _class_names(root, split_roots, class_names)
    labels = LabelMap(names)
    paths, path_labels, path_split, ignored = _list_images(root, split_roots, names)
    _warn_ignored(root, ignored)
    report, keep = _verify(paths, verify, run_dir)
    paths_arr = np.array(paths, dtype=object)[keep]
    y = np.array(path_labels, dtype=np.int64)[keep]
    rel = [os.path.relpath(p, root).replace(os.sep, "/") for p in paths_arr]
    split_of = np.array(path_split, dtype=object)[keep]
    members = _carve_splits(split_roots, split_of, rel, fractions, splits, seed)

    # Capping comes after the split (so it never moves a file between splits) and before the
    # shuffle (so every epoch sees the same files); the fingerprints hash the capped lists.
    members, cap_info = cap_splits(members, y, rel, max_per_class, seed, labels)
    present = [s for s in SPLIT_NAMES if s in members]
    counts, problems = check_split_classes(y, [members[s] for s in present], present, labels)
    warn_missing_classes(problems, "images")

    # The pipeline's settings, the same for every split (augmentation acts on train only).
    options = {"batch_size": batch_size, "resize": resize, "seed": seed}
    options.update(augment=augment, mixup=mixup, cutmix=cutmix)
    datasets: dict[str, Split] = {}
    for split in present:
        datasets[split] = _split_dataset(
            paths_arr, y, rel, members[split], names, size, training=split == "train", **options
        )
    in_order = None
    if "train" in present:  # the training files read once, in order (for the feature cache)
        in_order = _split_dataset(
            paths_arr, y, rel, members["train"], names, size, training=False, **options
        )
    info = _folder_info(
        root,
        layout,
        names,
        members={s: members[s] for s in present},
        counts=counts,
        report=report,
        ignored=ignored,
        problems=problems,
        cap_info=cap_info,
        datasets=datasets,
        settings={
            "image_size": size,
            "batch_size": batch_size,
            "splits": None if layout == "split" else fractions,
            "split_dirs": split_dirs or None,
            "seed": seed,
            "resize": resize,
            "augment": describe_augment(augment),
            "mixup": mixup,
            "cutmix": cutmix,
            "verify": verify,
        },
    )
    data = DataSplits.from_splits(datasets, labels, report, info, train_in_order=in_order)
    if run_dir is not None:
        data.save(run_dir)
    return data
