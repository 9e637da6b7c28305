"""Phases as data and the presets: what each plan says, and the arguments it refuses."""

import warnings

import pytest

import tfl
from tfl.phases import Phase, gradual_unfreezing, partial_unfreezing, two_phase


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs=0"),
        ({"epochs": 1, "warmup": 1.5}, "warmup=1.5"),
        ({"epochs": 1, "schedule": "step"}, "schedule='step'"),
        ({"epochs": 1, "learning_rate": -1.0}, "learning_rate=-1.0"),
        ({"epochs": 1, "layer_decay": 2.0}, "layer_decay=2.0"),
        ({"epochs": 1, "trainable": -1}, "trainable=-1"),
        ({"epochs": 1, "label_smoothing": 1.0}, "label_smoothing=1.0"),
    ],
)
def test_bad_phase_names_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Phase(**kwargs)


def test_presets_say_what_trains_in_each_phase():
    assert [(p.name, p.trainable) for p in two_phase(1, 1)] == [("head", None), ("finetune", "all")]
    assert [p.trainable for p in gradual_unfreezing(2)] == [None, 1, 2]
    assert [p.trainable for p in partial_unfreezing(top_n=3)] == [None, 3]
    assert not tfl.feature_extraction(2)[0].trains_base


def test_the_old_names_still_work_and_warn():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tfl.partial is tfl.partial_unfreezing
    assert [w.category for w in caught] == [DeprecationWarning]
    assert "tfl.phases.partial_unfreezing" in str(caught[0].message)
    assert "partial" not in tfl.__all__ and "partial_unfreezing" in tfl.__all__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import tfl.schedules as old

    assert old.fit_phases is tfl.fit_phases and old.Phase is Phase
    assert old.partial is partial_unfreezing and old._compile is tfl.fitting.compile_phase
