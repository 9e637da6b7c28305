"""The phase runner with the presets: what trains when, epochs, histories, resuming."""

import keras
import numpy as np
import pytest
from helpers import images, tiny_image_base

import tfl
from tfl.fitting import fit_phases
from tfl.phases import Phase, gradual_unfreezing, two_phase

LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0])


def _model():
    return tfl.ImageClassifier(tiny_image_base(), num_classes=3)


class _Snapshots(keras.callbacks.Callback):
    """Records every variable at the start and end of each fit (one per phase)."""

    def __init__(self):
        super().__init__()
        self.begin, self.end, self.trainable = [], [], []

    def _values(self):
        return {id(v): np.array(v) for v in self.model.variables}

    def on_train_begin(self, logs=None):
        self.begin.append(self._values())
        self.trainable.append(tfl.trainable_groups(self.model))

    def on_train_end(self, logs=None):
        self.end.append(self._values())


def _changed(model, before, after, variables):
    return [v.path for v in variables if not np.array_equal(before[id(v)], after[id(v)])]


def _is_batchnorm(v, model):
    layers = {
        id(w)
        for layer in model.backbone._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
        for w in layer.weights
    }
    return id(v) in layers


def test_two_phase_moves_head_then_base_and_never_batchnorm():
    model = _model()
    snaps = _Snapshots()
    history = fit_phases(
        model,
        two_phase(head_epochs=2, finetune_epochs=2, finetune_learning_rate=1e-3),
        images(16),
        LABELS,
        batch_size=8,
        callbacks=[snaps],
        verbose=0,
    )
    base_vars = model.backbone.weights
    head_vars = model.head.weights
    # Phase 1: only the head moved; every base weight (BatchNorm statistics included) is intact.
    assert _changed(model, snaps.begin[0], snaps.end[0], base_vars) == []
    assert len(_changed(model, snaps.begin[0], snaps.end[0], head_vars)) == len(head_vars)
    # Phase 2: the base's convolutions moved; BatchNorm scale/offset and statistics did not.
    bn = [v for v in base_vars if _is_batchnorm(v, model)]
    convs = [v for v in base_vars if not _is_batchnorm(v, model)]
    assert bn and _changed(model, snaps.begin[1], snaps.end[1], bn) == []
    # (A randomly initialised MobileNetV3 has vanishing gradients in places: not every weight
    # moves visibly in float32, but most do.)
    assert len(_changed(model, snaps.begin[1], snaps.end[1], convs)) > 0.6 * len(convs)
    # One merged history: epochs continue, a phase column, the learning rate per epoch.
    assert history.epoch == [0, 1, 2, 3]
    assert history.history["phase"] == [0, 0, 1, 1]
    assert [p["name"] for p in history.phases] == ["head", "finetune"]
    finetune = history.phases[1]
    assert {k: finetune[k] for k in ("name", "start_epoch", "end_epoch")} == {
        "name": "finetune",
        "start_epoch": 2,
        "end_epoch": 4,
    }
    # Each phase says how many weights it trained and how long a step took.
    assert history.phases[0]["trainable_params"] < finetune["trainable_params"]
    assert finetune["seconds_per_step"] > 0
    assert history.history["learning_rate"][:2] == pytest.approx([1e-3, 1e-3])
    assert len(history.history["loss"]) == 4


def test_gradual_unfreezing_opens_one_group_per_phase():
    model = _model()
    snaps = _Snapshots()
    groups = list(tfl.block_groups(model.backbone))
    blocks = [g for g in groups if g != "top"]
    fit_phases(
        model,
        gradual_unfreezing(num_blocks=3, epochs_per_phase=1, learning_rate=1e-3),
        images(16),
        LABELS,
        batch_size=8,
        callbacks=[snaps],
        verbose=0,
    )
    opened = [{g for g, n in counts.items() if n} for counts in snaps.trainable]
    assert opened[0] == set()
    assert opened[1] == {blocks[-1], "top"}
    assert opened[2] == {blocks[-1], blocks[-2], "top"}
    assert opened[3] == {blocks[-1], blocks[-2], blocks[-3], "top"}
    # What trained in each phase is exactly what was open: frozen groups kept their weights.
    named = tfl.block_groups(model.backbone)
    for k in range(4):
        for group, layers in named.items():
            weights = [w for layer in layers for w in layer.weights if not _is_batchnorm(w, model)]
            moved = _changed(model, snaps.begin[k], snaps.end[k], weights)
            if group in opened[k]:
                assert moved, (k, group)
            else:
                assert moved == [], (k, group)


def test_schedule_with_warmup_sets_the_learning_rate_each_epoch():
    model = _model()
    phases = [Phase(4, trainable=None, learning_rate=1e-2, schedule="linear", warmup=0.5)]
    history = fit_phases(model, phases, images(16), LABELS, batch_size=8, verbose=0)
    # 2 steps per epoch, 8 steps in all: warm up to 1e-2 over 4 steps, then decay to 0.
    # The logged rate is the schedule's value at the optimizer's step count after each epoch.
    expected = [0.5e-2, 1e-2, 0.5e-2, 0.0]
    np.testing.assert_allclose(history.history["learning_rate"], expected, atol=1e-9)


def test_feature_extraction_never_trains_the_base():
    model = _model()
    before = [np.array(w) for w in model.backbone.weights]
    fit_phases(model, tfl.feature_extraction(2), images(16), LABELS, batch_size=8, verbose=0)
    assert all(
        np.array_equal(a, np.array(b)) for a, b in zip(before, model.backbone.weights, strict=True)
    )


def test_partial_trains_only_the_top_blocks():
    model = _model()
    snaps = _Snapshots()
    fit_phases(
        model,
        tfl.partial_unfreezing(top_n=1, head_epochs=1, finetune_epochs=1),
        images(16),
        LABELS,
        batch_size=8,
        callbacks=[snaps],
        verbose=0,
    )
    assert {g for g, n in snaps.trainable[1].items() if n} == {
        list(tfl.block_groups(model.backbone))[-2],
        "top",
    }


def test_fit_phases_rejects_a_model_without_a_base():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(loss="mse")
    with pytest.raises(ValueError, match="pretrained base"):
        fit_phases(model, tfl.feature_extraction(1), np.zeros((4, 3)), np.zeros((4, 2)))


def test_schedule_without_known_steps_asks_for_steps_per_epoch():
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((images(16), LABELS)).batch(8)
    data = data.filter(lambda x, y: True)  # unknown cardinality
    model = _model()
    with pytest.raises(ValueError, match="steps_per_epoch"):
        fit_phases(model, [Phase(1, schedule="cosine")], data, verbose=0)


def test_fit_phases_lints_every_phase_and_warns_once_per_trap():
    model = _model()
    with pytest.warns(tfl.TransferWarning) as record:
        fit_phases(model, two_phase(1, 1), images(16) / 255.0, LABELS, batch_size=8, verbose=0)
    unit_range = [w for w in record if "[0, 1]" in str(w.message)]
    assert len(unit_range) == 1  # phase 1 warned; phase 2 saw the same trap and stayed quiet
    assert "0-255" in str(unit_range[0].message)


def test_fit_phases_l2sp_anchors_the_base_at_its_starting_weights():
    model = _model()
    start = {id(w): np.array(w) for w in model.backbone.weights}
    fit_phases(
        model,
        two_phase(1, 1, finetune_learning_rate=1e-3),
        images(16),
        LABELS,
        batch_size=8,
        l2sp=0.5,
        verbose=0,
    )
    # The penalty measures the distance to the weights fit_phases started from.
    trainable = model.backbone.trainable_weights
    head_weights = [w for w in model.head.weights if len(w.shape) >= 2]
    expected = 0.5 * sum(float(np.sum((np.array(w) - start[id(w)]) ** 2)) for w in trainable)
    expected += 0.01 * sum(float(np.sum(np.array(w) ** 2)) for w in head_weights)
    assert expected > 0
    np.testing.assert_allclose(tfl.l2sp_penalty(model), expected, rtol=1e-4)


def test_fine_tune_in_one_call_writes_the_run_directory(tmp_path):
    model = _model()
    run_dir = tmp_path / "run"
    history = tfl.fine_tune(
        model, images(16), LABELS, epochs=1, head_epochs=1, run_dir=str(run_dir), batch_size=8,
        verbose=0,
    )  # fmt: skip
    assert [p["name"] for p in history.phases] == ["head", "finetune"]
    assert (run_dir / "best.keras").exists()
    rows = (run_dir / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2
    state = (run_dir / "backup" / "phases.json").read_text()
    assert '"finetune"' in state  # both phases recorded as finished


def test_reduce_lr_on_plateau_acts_in_constant_phases_and_sits_out_scheduled_ones():
    model = _model()
    # Reduces at every epoch end after the first (no later improvement is big enough). Keras's
    # callback raises TypeError on a scheduled rate: phase 2 would fail if it took part there.
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0,
                                                min_delta=1e9, verbose=0)  # fmt: skip
    history = fit_phases(
        model,
        two_phase(3, 2, head_learning_rate=1e-3, finetune_learning_rate=1e-3),
        images(16),
        LABELS,
        batch_size=8,
        callbacks=[plateau],
        verbose=0,
    )
    rates = history.history["learning_rate"]
    assert rates[:3] == pytest.approx([1e-3, 1e-3, 5e-4])  # the rate each epoch trained with
    # Phase 2 (2 epochs x 2 steps, cosine from 1e-3) followed its schedule untouched.
    assert rates[3:] == pytest.approx([5e-4, 0.0], abs=1e-9)
