import hashlib
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfl.data.images import from_arrays, from_folder, image_pipeline, image_split, resize_image
from tfl.data.splits import LabelMap, cap_per_class

SPLITS = (0.5, 0.25, 0.25)


def solid(color, size=(8, 8)):
    return np.broadcast_to(np.asarray(color, np.uint8), (*size, len(color))).copy()


def write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(array))


def make_folder(root, classes=("cat", "dog"), n=6):
    for c, name in enumerate(classes):
        for i in range(n):
            write_png(os.path.join(root, name, f"{i}.png"), solid([c * 100, i * 10, 50]))


def collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_every_format_comes_out_rgb_0_255(tmp_path):
    root = tmp_path / "data"
    write_png(str(root / "grey" / "a.png"), solid([100]))
    write_png(str(root / "rgba" / "a.PNG"), solid([255, 0, 0, 128]))
    jpeg = tf.io.encode_jpeg(solid([0, 200, 0]), quality=100)
    os.makedirs(root / "jpeg")
    tf.io.write_file(str(root / "jpeg" / "a.JPG"), jpeg)
    os.makedirs(root / "gif")
    blue, red = Image.new("RGB", (8, 8), (0, 0, 255)), Image.new("RGB", (8, 8), (255, 0, 0))
    blue.save(root / "gif" / "a.gif", save_all=True, append_images=[red], duration=100)
    os.makedirs(root / "bmp")
    keras.utils.save_img(str(root / "bmp" / "a.bmp"), solid([10, 20, 30]), scale=False)
    os.makedirs(root / "webp")
    Image.fromarray(solid([40, 50, 60])).save(root / "webp" / "a.WebP", lossless=True)

    data = from_folder(str(root), 8, batch_size=8, splits=(0.0, 1.0))
    assert data.train is None and data.test is None
    x, y = collect(data.validation)
    assert x.shape == (6, 8, 8, 3) and x.dtype == np.float32
    by_class = {data.labels.names[label]: image for image, label in zip(x, y, strict=True)}
    np.testing.assert_array_equal(by_class["grey"], np.full((8, 8, 3), 100.0))
    np.testing.assert_array_equal(by_class["rgba"], solid([255, 0, 0]))
    np.testing.assert_array_equal(by_class["gif"], solid([0, 0, 255]))  # first frame
    np.testing.assert_array_equal(by_class["bmp"], solid([10, 20, 30]))
    np.testing.assert_array_equal(by_class["webp"], solid([40, 50, 60]))  # lossless
    np.testing.assert_allclose(by_class["jpeg"], solid([0, 200, 0]), atol=3)


def test_bad_files_are_skipped_reported_and_saved(tmp_path):
    root, run_dir = tmp_path / "data", tmp_path / "run"
    make_folder(str(root))
    good = tf.io.encode_jpeg(solid([1, 2, 3], (16, 16))).numpy()
    (root / "cat" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "dog" / "notes.txt").write_text("not an image")

    with pytest.warns(UserWarning) as warned:
        data = from_folder(str(root), 8, batch_size=4, splits=(0.5, 0.5), run_dir=str(run_dir))
    messages = [str(w.message) for w in warned]
    assert any(re.match(r"2 of 14 files were skipped: .*empty.png \(empty", m) for m in messages)
    # Files that are not images are counted on the console too (one warning), not only in
    # data.json.
    ignored = [m for m in messages if "not images" in m]
    assert len(ignored) == 1 and ignored[0].startswith("1 file(s) under ")
    assert "were ignored: dog/notes.txt (data.json" in ignored[0]
    bad = sorted(os.path.basename(path) for path, _ in data.report.items)
    assert bad == ["empty.png", "truncated.jpg"]
    assert data.info["ignored_files"] == 1 and data.info["skipped"] == 2
    lines = (run_dir / "bad_inputs.txt").read_text().splitlines()
    assert sorted(os.path.basename(line.split("\t")[0]) for line in lines) == bad
    assert LabelMap.load(str(run_dir)) == data.labels == LabelMap(["cat", "dog"])
    total = sum(len(collect(ds)[1]) for ds in data if ds is not None)
    assert total == sum(data.info["num_examples"].values()) == 12

    # A file that breaks after the check is skipped by the safety net, not an epoch crash; the
    # epoch keeps its length (one image from the next pass fills in).
    n_train = data.info["num_examples"]["train"]
    assert data.train.cardinality() == -(-n_train // 4)  # known to Keras
    open(os.path.join(str(root), *first_file(data.train, data.labels)), "wb").close()
    x, _ = collect(data.train)
    assert len(x) == n_train and len({image.tobytes() for image in x}) == n_train - 1


def first_file(ds, labels):
    """The (class, file name) of a split's first image, found by its colour (see make_folder)."""
    x, _ = collect(ds)
    c, i = int(x[0, 0, 0, 0] // 100), int(x[0, 0, 0, 1] // 10)
    return [labels.names[c], f"{i}.png"]


def test_split_folders_are_used_as_given(tmp_path):
    root = tmp_path / "data"
    make_folder(str(root / "train"), ("a", "b"), n=3)
    make_folder(str(root / "val"), ("a", "b"), n=2)
    make_folder(str(root / "test"), ("a", "c"), n=1)
    with pytest.warns(UserWarning, match="class 'c' has no examples in the train split"):
        data = from_folder(str(root), 8, batch_size=2)
    assert data.info["layout"] == "split" and data.labels.names == ["a", "b", "c"]
    assert data.info["num_examples"] == {"train": 3 * 2, "validation": 2 * 2, "test": 2}
    assert data.info["counts"]["test"] == {"a": 1, "b": 0, "c": 1}
    _, y_test = collect(data.test)
    assert sorted(y_test.tolist()) == [0, 2]
    with pytest.warns(UserWarning, match=r"used as given; splits=\(0.5, 0.5\) is ignored"):
        from_folder(str(root), 8, splits=(0.5, 0.5))


def test_folder_errors_name_the_problem(tmp_path):
    root = tmp_path / "data"
    make_folder(str(root))
    os.makedirs(root / "empty_class")
    with pytest.raises(ValueError, match=r"empty_class has no images.*delete it or add images"):
        from_folder(str(root), 8, splits=SPLITS)
    with pytest.raises(FileNotFoundError, match="missing"):
        from_folder(str(tmp_path / "missing"), 8)
    with pytest.raises(ValueError, match="No class folders"):
        from_folder(str(tmp_path / "data" / "cat"), 8)

    few = tmp_path / "few"
    make_folder(str(few), n=2)
    with pytest.raises(ValueError, match=r"split is empty: 4 images.*set its fraction to 0"):
        from_folder(str(few), 8)

    split_root = tmp_path / "splits"
    make_folder(str(split_root / "train"))
    os.makedirs(split_root / "test")
    with pytest.raises(ValueError, match=r"The test split .* has no usable images"):
        from_folder(str(split_root), 8)


def test_class_names_choose_and_order_the_classes(tmp_path):
    root = tmp_path / "data"
    make_folder(str(root), ("cat", "dog", "eel"), n=10)
    data = from_folder(str(root), 8, class_names=["dog", "cat"], splits=(0.5, 0.5))
    assert data.labels.names == ["dog", "cat"]
    x, y = collect(data.validation)
    np.testing.assert_array_equal(x[:, 0, 0, 0] // 100, 1 - y)  # dog pixels start at 100
    with pytest.raises(ValueError, match=r"\['cow'\].*no folder"):
        from_folder(str(root), 8, class_names=["cow"])


def wide_image():
    """20 x 40: a blue left quarter, a green middle half, a red right quarter."""
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :10, 2] = image[:, 10:30, 1] = image[:, 30:, 0] = 255
    return image


@pytest.mark.parametrize("policy", ["crop", "resize", "pad"])
def test_resize_policies(policy):
    data = from_arrays(wide_image()[None], [0], 10, resize=policy, splits="none", batch_size=1)
    x = next(iter(data.train))[0].numpy()[0]
    assert x.shape == (10, 10, 3)
    if policy == "crop":  # the centre 20 x 20 is all green
        np.testing.assert_allclose(x, solid([0, 255, 0], (10, 10)), atol=1e-3)
    elif policy == "resize":  # stretched: all three bands survive
        np.testing.assert_allclose(x[:, 0], solid([0, 0, 255], (10,)), atol=1e-3)
        np.testing.assert_allclose(x[:, 5], solid([0, 255, 0], (10,)), atol=1e-3)
        np.testing.assert_allclose(x[:, 9], solid([255, 0, 0], (10,)), atol=1e-3)
    else:  # letterboxed to 5 x 10 with black bands above and below
        assert np.all(x[:2] == 0) and np.all(x[-3:] == 0)
        np.testing.assert_allclose(x[2:7, 5], solid([0, 255, 0], (5,)), atol=1e-3)
    with pytest.raises(ValueError, match=r"resize='squash'.*\['crop', 'resize', 'pad'\]"):
        resize_image(tf.zeros([4, 4, 3]), (2, 2), "squash")


def test_augmentation_changes_only_training_batches():
    x = np.random.default_rng(0).integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    y = np.arange(40) % 2
    plain = from_arrays(x, y, splits=(0.5, 0.5), batch_size=40)
    data = from_arrays(x, y, splits=(0.5, 0.5), batch_size=40, augment=["brightness", "flip"])
    assert data.augmented and not plain.augmented  # (only the training split is augmented)
    originals = {xi.astype(np.float32).tobytes() for xi in x}
    train_x = collect(data.train)[0]
    assert sum(xi.tobytes() in originals for xi in train_x) < len(train_x) / 2
    assert all(xi.tobytes() in originals for xi in collect(plain.train)[0])
    # Validation: unaugmented, identical in every iteration, and equal to plain's.
    val_a, val_b = collect(data.validation), collect(data.validation)
    np.testing.assert_array_equal(val_a[0], val_b[0])
    np.testing.assert_array_equal(val_a[0], collect(plain.validation)[0])
    # Each epoch draws new augmentations.
    one = from_arrays(x[:1], [0], splits="none", batch_size=1, augment=["brightness"])
    assert not np.array_equal(collect(one.train)[0], collect(one.train)[0])
    with pytest.raises(ValueError, match=r"'blur'.*'flip', 'rotation'"):
        from_arrays(x, y, augment=["flip", "blur"])


@pytest.mark.parametrize("mix", [{"mixup": 0.4}, {"cutmix": 1.0}])
def test_mixup_and_cutmix_give_soft_labels_summing_to_one(mix):
    x = np.random.default_rng(1).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    y = np.arange(40) % 4
    data = from_arrays(x, y, splits=(0.7, 0.3), batch_size=40, **mix)
    _, soft = collect(data.train)
    assert soft.dtype == np.float32 and soft.shape[1] == 4
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    assert np.any((soft > 0.01) & (soft < 0.99))  # some labels are really mixed
    assert data.augmented
    assert collect(data.validation)[1].dtype == np.int64


def test_from_arrays_grey_images_and_string_labels(tmp_path):
    from helpers import tiny_image_base

    x = np.random.default_rng(2).integers(0, 256, (30, 28, 28), dtype=np.uint8)
    y = ["seven", "one", "zero"] * 10
    data = from_arrays(x, y, tiny_image_base(), splits="none", batch_size=30)
    images, labels = next(iter(data.train))
    assert images.shape == (30, 32, 32, 3) and images.dtype == tf.float32
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
    assert data.labels.names == ["one", "seven", "zero"]
    assert sorted(labels.numpy().tolist()) == sorted(data.labels.encode(y).tolist())
    with pytest.raises(ValueError, match=r"Unknown label 'two' at y\[1\]"):
        from_arrays(x[:2], ["one", "two"], labels=["one", "seven"], splits="none")
    with pytest.raises(ValueError, match=r"image_size=\(32, 32, 1\)"):
        from_arrays(x, y, (32, 32, 1))


def test_from_arrays_split_is_stable_when_rows_are_inserted():
    x = np.random.default_rng(3).normal(size=(200, 4)).astype(np.float32)
    y = np.arange(200) % 2
    before = from_arrays(x, y)
    x2 = np.concatenate([x[:100], np.ones((20, 4), np.float32), x[100:]])
    y2 = np.concatenate([y[:100], np.zeros(20, int), y[100:]])
    after = from_arrays(x2, y2)
    for split in ("validation", "test"):
        old = {row.tobytes() for row in collect(getattr(before, split))[0]}
        new = {row.tobytes() for row in collect(getattr(after, split))[0]}
        assert old <= new
    features, _ = next(iter(before.test))
    assert features.shape[1:] == (4,) and features.dtype == tf.float32  # passed through
    assert before.info["fingerprint"]["test"] != after.info["fingerprint"]["test"]


def test_fingerprints_follow_files_and_settings(tmp_path):
    root = tmp_path / "data"
    make_folder(str(root), n=10)
    first = from_folder(str(root), 8, splits=SPLITS).info["fingerprint"]
    assert from_folder(str(root), 8, splits=SPLITS).info["fingerprint"] == first
    assert all(len(f) == 64 for f in first.values())
    bigger = from_folder(str(root), 12, splits=SPLITS).info["fingerprint"]
    assert all(bigger[s] != first[s] for s in first)

    data = from_folder(str(root), 8, splits=SPLITS)
    write_png(os.path.join(str(root), *first_file(data.validation, data.labels)), solid([7, 7, 7]))
    changed = from_folder(str(root), 8, splits=SPLITS).info["fingerprint"]
    assert changed["validation"] != first["validation"]
    assert changed["train"] == first["train"] and changed["test"] == first["test"]


def test_image_pipeline_for_tfds_style_input():
    rgba = np.zeros((6, 10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    ds = tf.data.Dataset.from_tensor_slices((rgba, np.arange(6)))
    split = image_split(ds, (6, 6), batch_size=6, training=True, fingerprint="abc")
    out = split.dataset
    x, y = next(iter(out))
    np.testing.assert_allclose(x, np.broadcast_to([200.0, 0, 0], (6, 6, 6, 3)), atol=1e-3)
    assert y.dtype == tf.int64 and sorted(y.numpy().tolist()) == list(range(6))
    assert not split.augmented and len(split.fingerprint) == 64
    assert image_split(ds, 6).fingerprint == ""  # unknown source: not cacheable
    # image_pipeline is the same pipeline, the dataset alone.
    again = next(iter(image_pipeline(ds, (6, 6), batch_size=6)))[0]
    np.testing.assert_array_equal(
        again, next(iter(image_split(ds, (6, 6), batch_size=6).dataset))[0]
    )
    epochs = [next(iter(out))[1].numpy().tolist() for _ in range(3)]
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled each epoch
    with pytest.raises(ValueError, match="num_classes"):
        image_pipeline(ds, 6, training=True, mixup=0.2)


# --- max_per_class ---


def kept_files(ds):
    """The (class, file number) pairs in a from_folder split (make_folder's green = 10 * i)."""
    x, y = collect(ds)
    return sorted(
        (int(label), int(round(image[0, 0, 1] / 10))) for image, label in zip(x, y, strict=True)
    )


def test_cap_per_class_keeps_smallest_hashes_whatever_the_order():
    labels = np.array([0] * 30 + [1] * 4)
    keys = [f"k{i}" for i in range(34)]
    kept = cap_per_class(np.arange(34), labels, keys, cap=5, seed=3)
    assert np.bincount(labels[kept]).tolist() == [5, 4]  # min(cap, available)
    # Hand computation: the 5 keys of class 0 with the smallest sha256("3:max_per_class:k").
    rank = {k: hashlib.sha256(f"3:max_per_class:{k}".encode()).digest()[:8] for k in keys}
    assert [keys[i] for i in kept[:5]] == sorted(
        sorted(keys[:30], key=rank.get)[:5], key=keys.index
    )
    # Sorted by label or shuffled: the same examples (the choice depends on the keys only).
    order = np.random.default_rng(0).permutation(34)
    again = cap_per_class(np.arange(34), labels[order], [keys[i] for i in order], 5, seed=3)
    assert sorted(keys[order[i]] for i in again) == sorted(keys[i] for i in kept)
    assert cap_per_class([2, 0, 1], labels, keys, None).tolist() == [0, 1, 2]


def test_max_per_class_folder_caps_stably_and_changes_fingerprints(tmp_path):
    root = tmp_path / "data"
    for i in range(12):
        write_png(str(root / "cat" / f"{i}.png"), solid([0, i * 10, 50]))
    for i in range(3):
        write_png(str(root / "dog" / f"{i}.png"), solid([100, i * 10, 50]))
    full = from_folder(str(root), 8, splits=(1.0, 0.0), batch_size=4)
    capped = from_folder(str(root), 8, splits=(1.0, 0.0), batch_size=4, max_per_class=5)
    kept = kept_files(capped.train)
    assert [c for c, _ in kept].count(0) == 5 and [c for c, _ in kept].count(1) == 3
    assert kept_files(capped.train) == kept  # the same subset every epoch, only reshuffled
    assert capped.info["num_examples"] == {"train": 8}
    assert capped.info["max_per_class"]["before"]["train"] == {"cat": 12, "dog": 3}
    assert capped.info["max_per_class"]["after"]["train"] == {"cat": 5, "dog": 3}
    assert capped.info["counts"]["train"] == {"cat": 5, "dog": 3}
    assert capped.info["fingerprint"] != full.info["fingerprint"]
    roomy = from_folder(str(root), 8, splits=(1.0, 0.0), batch_size=4, max_per_class=12)
    assert roomy.info["fingerprint"] == full.info["fingerprint"]  # nothing left out

    # Images added to dog leave cat's choice alone; images added to cat only swap in new ones.
    def cats(data):
        return {i for c, i in kept_files(data.train) if c == 0}

    for i in range(3, 6):
        write_png(str(root / "dog" / f"{i}.png"), solid([100, i * 10, 50]))
    more_dogs = from_folder(str(root), 8, splits=(1.0, 0.0), max_per_class=5)
    assert cats(more_dogs) == {i for c, i in kept if c == 0}
    assert more_dogs.info["counts"]["train"] == {"cat": 5, "dog": 5}
    for i in range(12, 16):
        write_png(str(root / "cat" / f"{i}.png"), solid([0, i * 10, 50]))
    new_cats = cats(from_folder(str(root), 8, splits=(1.0, 0.0), max_per_class=5))
    assert len(new_cats) == 5 and new_cats - cats(more_dogs) <= set(range(12, 16))


def test_max_per_class_arrays_per_split_caps_and_bad_values():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (120, 4, 4, 3), dtype=np.uint8)
    y = np.arange(120) % 3
    caps = {"train": 6, "test": 2}
    data = from_arrays(x, y, splits=(0.5, 0.25, 0.25), max_per_class=caps, batch_size=64)
    info = data.info["max_per_class"]
    assert info["cap"] == {"train": 6, "validation": None, "test": 2}
    for split, cap in [("train", 6), ("validation", None), ("test", 2)]:
        before = info["before"][split]
        want = {c: n if cap is None else min(cap, n) for c, n in before.items()}
        assert info["after"][split] == data.info["counts"][split] == want
        got = np.bincount(collect(getattr(data, split))[1], minlength=3).tolist()
        assert got == list(want.values())
    # Splits stay disjoint: the cap chooses within each split, it never moves examples.
    rows = {s: {r.tobytes() for r in collect(getattr(data, s))[0]} for s in ("train", "test")}
    full = from_arrays(x, y, splits=(0.5, 0.25, 0.25), batch_size=64)
    assert rows["test"] <= {r.tobytes() for r in collect(full.test)[0]}
    assert not rows["train"] & rows["test"]
    # Given validation data is capped too.
    given = from_arrays(x, y, splits="none", validation_data=(x[:30], y[:30]), max_per_class=4)
    assert given.info["counts"]["validation"] == {"0": 4, "1": 4, "2": 4}

    for bad, message in [
        (0, r"max_per_class=0; expected a positive int"),
        (-3, r"max_per_class=-3; expected a positive int"),
        (2.5, r"max_per_class=2.5; expected a positive int"),
        ({"train": 0}, r"max_per_class\['train'\]=0; expected a positive int"),
        ({"val": 5}, r"split name 'val'; expected keys from \['train', 'validation', 'test'\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            from_arrays(x, y, max_per_class=bad)
    with pytest.raises(ValueError, match=r"max_per_class=True"):
        from_folder(str(os.devnull), 8, max_per_class=True)  # checked before the folder
