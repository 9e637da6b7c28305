import warnings

import keras
import numpy as np
import pytest
from helpers import images, tiny_bert, tiny_image_base

import tfl


def _snapshot(layers):
    return [w.numpy().copy() for layer in layers for w in layer.weights]


def _changed(before, layers):
    after = _snapshot(layers)
    return any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def _fit(model, lr=0.1, epochs=2):
    model.compile(optimizer=keras.optimizers.SGD(lr))
    x = images(10)
    y = np.arange(10) % 3
    model.fit(x, y, batch_size=5, epochs=epochs, verbose=0)


def _bn_stats(base):
    return [
        w.numpy().copy()
        for layer in base._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
        for w in (layer.moving_mean, layer.moving_variance)
    ]


def test_frozen_base_does_not_move_head_does():
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    tfl.freeze(model)
    base_before = _snapshot([model.backbone])
    head_before = _snapshot([model.head])
    _fit(model)
    assert not _changed(base_before, [model.backbone])
    assert _changed(head_before, [model.head])


def test_unfrozen_base_moves_but_batchnorm_statistics_never_do():
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    tfl.unfreeze(model, top_n="all")
    convs = [
        layer for layer in model.backbone.base.layers if isinstance(layer, keras.layers.Conv2D)
    ]
    bns = [
        layer
        for layer in model.backbone.base.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    conv_before, bn_weights_before = _snapshot(convs), _snapshot(bns)
    stats_before = _bn_stats(model.backbone)
    _fit(model)
    assert _changed(conv_before, convs)
    # BatchNorm frozen by default: gamma/beta and moving statistics all unchanged.
    assert not _changed(bn_weights_before, bns)
    for a, b in zip(stats_before, _bn_stats(model.backbone), strict=True):
        np.testing.assert_array_equal(a, b)


def test_train_batchnorm_trains_scale_but_statistics_stay():
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    tfl.unfreeze(model, top_n="all", train_batchnorm=True)
    bns = [
        layer
        for layer in model.backbone.base.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    gammas = [layer.gamma.numpy().copy() for layer in bns]
    stats_before = _bn_stats(model.backbone)
    _fit(model)
    assert any(
        not np.array_equal(g, layer.gamma.numpy()) for g, layer in zip(gammas, bns, strict=True)
    )
    for a, b in zip(stats_before, _bn_stats(model.backbone), strict=True):
        np.testing.assert_array_equal(a, b)


def test_base_runs_in_inference_mode_even_when_training():
    # Head without dropout: any train/inference difference would come from the base
    # (BatchNorm batch statistics, dropout inside the base).
    model = tfl.ImageClassifier(tiny_image_base("efficientnet_b0"), num_classes=3)
    tfl.unfreeze(model, top_n="all", train_batchnorm=True)
    x = images(4)
    np.testing.assert_allclose(
        model(x, training=True).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-6
    )


def test_unfreeze_top_n_trains_only_the_top_block():
    model = tfl.ImageClassifier(tiny_image_base("resnet50"), num_classes=3)
    groups = tfl.block_groups(model.backbone)
    tfl.unfreeze(model, top_n=1)
    counts = tfl.trainable_groups(model)
    names = list(groups)
    assert counts[names[-1]] > 0
    assert all(counts[n] == 0 for n in names[:-1])
    before = {n: _snapshot(layers) for n, layers in groups.items()}
    _fit(model, epochs=1)
    assert _changed(before[names[-1]], groups[names[-1]])
    for n in names[:-1]:
        assert not _changed(before[n], groups[n]), n


def test_unfreeze_by_group_names_and_bad_names():
    model = tfl.ImageClassifier(tiny_image_base("resnet50"), num_classes=3)
    tfl.unfreeze(model, groups=["stage3", "stage4"])
    counts = tfl.trainable_groups(model)
    assert counts["stage3"] > 0 and counts["stage4"] > 0 and counts["stage2"] == 0
    with pytest.raises(ValueError, match="'stage9' matches no block group"):
        tfl.unfreeze(model, groups=["stage9"])
    with pytest.raises(ValueError, match="top_n=99"):
        tfl.unfreeze(model, top_n=99)
    with pytest.raises(ValueError, match="exactly one of"):
        tfl.unfreeze(model)


@pytest.mark.graph  # the compiled train step is a traced graph: what Keras really ignores
def test_fit_after_unfreeze_without_compile_warns_and_keras_really_ignores_it():
    model = tfl.ImageClassifier(tiny_image_base(), num_classes=3)
    tfl.freeze(model)
    _fit(model, epochs=1)
    tfl.unfreeze(model, top_n="all")
    before = _snapshot([model.backbone])
    with pytest.warns(tfl.RecompileWarning, match="compile"):
        model.fit(images(10), np.arange(10) % 3, epochs=1, verbose=0)
    # The warning is true: the stale training step did not touch the base.
    assert not _changed(before, [model.backbone])
    # After compile() no warning, and the base trains.
    with warnings.catch_warnings():
        warnings.simplefilter("error", tfl.RecompileWarning)
        _fit(model, epochs=1)
    assert _changed(before, [model.backbone])


def test_trainable_summary_lists_groups_and_head():
    model = tfl.ImageClassifier(tiny_image_base("resnet50"), num_classes=3)
    tfl.freeze(model)
    summary = tfl.trainable_summary(model)
    lines = summary.splitlines()
    assert lines[1].startswith("stem") and "0 /" in lines[1]
    head_line = next(line for line in lines if line.startswith("head"))
    assert head_line.split()[1] == f"{2048 * 3 + 3:,}"


def test_text_base_groups_and_unfreeze():
    bert = tiny_bert()
    groups = tfl.block_groups(bert)
    assert list(groups) == ["embeddings", "layer_0", "layer_1", "pooler"]
    tfl.freeze(bert)
    assert not bert.trainable_weights
    tfl.unfreeze(bert, top_n=1)
    counts = tfl.trainable_groups(bert)
    assert counts["layer_1"] > 0 and counts["pooler"] > 0
    assert counts["layer_0"] == 0 and counts["embeddings"] == 0


def test_unfreezing_more_blocks_after_fewer_opens_them():
    model = tfl.ImageClassifier(tiny_image_base(), 3)
    one = tfl.trainable_groups(tfl.unfreeze(model, top_n=1))
    two = tfl.trainable_groups(tfl.unfreeze(model, top_n=2))
    fresh = tfl.trainable_groups(tfl.unfreeze(tfl.ImageClassifier(tiny_image_base(), 3), top_n=2))
    assert two == fresh
    assert [g for g, n in one.items() if n] == ["stage3", "top"]
    assert [g for g, n in two.items() if n] == ["stage2", "stage3", "top"]
