"""Old home of phases and their runner: `tfl.phases` (Phase, presets) and `tfl.fitting`."""

from tfl._deprecation import warn_moved

warn_moved(__name__, "tfl.phases (Phase and presets) and tfl.fitting (fit_phases, fine_tune)")

from tfl.fitting import (  # noqa: E402
    PhaseHistory,
    apply_trainable,
    compile_like,
    compile_phase,
    fine_tune,
    fit_phases,
    make_optimizer,
)
from tfl.fitting import compile_phase as _compile  # noqa: E402, F401  (tfl.runner's old name)
from tfl.phases import (  # noqa: E402
    SCHEDULES,
    Phase,
    feature_extraction,
    gradual_unfreezing,
    partial_unfreezing,
    two_phase,
)

partial = partial_unfreezing

__all__ = [
    "SCHEDULES",
    "Phase",
    "PhaseHistory",
    "apply_trainable",
    "compile_like",
    "compile_phase",
    "feature_extraction",
    "fine_tune",
    "fit_phases",
    "gradual_unfreezing",
    "make_optimizer",
    "partial",
    "partial_unfreezing",
    "two_phase",
]
