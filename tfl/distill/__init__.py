"""Distillation: a fine-tuned run into a smaller student that fits the device (`tfl distill`).

Users fine-tune a large base because it transfers best, then have to ship something small. A
student learns from the teacher's temperature-softened predictions and the true labels
(Hinton et al. 2015) through Keras' own `keras.distillation.Distiller`; `model.fit` is the
loop. A shallow student starts from the teacher's own layers (DistilBERT's every other layer;
a CNN cut after an earlier block group). The modules, one concept each:

- `settings`: `DistillSettings` (every flag of `tfl distill`), `StudentSpec`, `check`.
- `teacher`: `Teacher`, a finished run described from its files (which students it can have).
- `students`: `build_student`, the student task model.
- `losses`: `make_distiller` (the Distiller over logits), `logits_view`, `compile_distiller`.
- `checkpoint`: `StudentCheckpoint`, `best.keras` holding the student.
- `run`: `Distillation` (create / fit / finish / compare) and `distill(teacher_dir, ...)`.
- `compare`: `compare_runs`, teacher and student in int8 TFLite side by side.
- `budget`: `choose_depth`, the deepest shallow student within `--budget-mb` / `--budget-ms`.
"""

from tfl.distill.run import DISTILL_FILE, Distillation, distill
from tfl.distill.settings import DistillSettings, StudentSpec, check, parse_student

__all__ = [
    "DISTILL_FILE",
    "DistillSettings",
    "Distillation",
    "StudentSpec",
    "check",
    "distill",
    "parse_student",
]
