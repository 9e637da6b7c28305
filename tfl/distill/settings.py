"""What `tfl distill` is asked to do, checked before any work: `DistillSettings`, students.

Every setting is a flag of `tfl distill` (and an argument of `tfl.distill.distill`); `check`
refuses a bad value with one `ConfigError` naming the flag, the value and the fix, before a
run directory exists. What depends on the teacher (which depths its base has, which students
its data can feed) is checked against the teacher's saved files (`tfl.distill.teacher`),
still before anything is loaded or trained.

Students (`--student`):

- `shallow` (default): the teacher's own base, shallower, every kept layer initialised from the
  teacher: half the transformer layers of a BERT base (evenly spaced: DistilBERT's every other
  layer), or a CNN base cut after the stage below its last one (MobileNetV2: after stage3), plus
  a new head.
- `shallow:N` (BERT: N transformer layers) or `shallow:GROUP` (CNN: cut after that block
  group, e.g. `shallow:stage2`; `tfl.block_groups` names them).
- any base name the teacher's recipe accepts as `model.base`: an image base of
  `tfl.list_backbones()` (e.g. `mobilenet_v3_small`, `mobilenet_v2_035`) with
  `--student-weights` (`pretrained`: ImageNet, downloaded by Keras: online only; `none`: random,
  what works offline; or a weights file), or a text preset that shares the teacher's tokenizer.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os

from tfl.config import ConfigError

SHALLOW = "shallow"
WEIGHTS = ("pretrained", "imagenet", "none")


@dataclasses.dataclass(frozen=True)
class StudentSpec:
    """A parsed `--student`: a shallow copy of the teacher (`depth` None: the default one) or
    a base by name.

    Example:
    >>> from tfl.distill.settings import parse_student
    >>> parse_student("shallow:3"), parse_student("mobilenet_v3_small").name
    (StudentSpec(kind='shallow', depth=3, name=None), 'mobilenet_v3_small')
    """

    kind: str
    depth: int | str | None = None
    name: str | None = None

    def __str__(self) -> str:
        if self.kind == SHALLOW:
            return SHALLOW if self.depth is None else f"{SHALLOW}:{self.depth}"
        return str(self.name)


def parse_student(text: str) -> StudentSpec:
    """`--student` as a `StudentSpec` (its syntax only; `check_student` asks the teacher).

    Example:
    >>> from tfl.distill.settings import parse_student
    >>> parse_student("shallow"), parse_student("shallow:stage2").depth
    (StudentSpec(kind='shallow', depth=None, name=None), 'stage2')
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(
            "--student",
            f"received {text!r}",
            "Use shallow, shallow:N (BERT layers), shallow:GROUP (e.g. shallow:stage3) or a "
            "base name such as mobilenet_v3_small.",
        )
    text = text.strip()
    head, sep, tail = text.partition(":")
    if head.lower() != SHALLOW:
        return StudentSpec("base", name=text)
    if not sep:
        return StudentSpec(SHALLOW)
    tail = tail.strip()
    if not tail:
        raise ConfigError(
            "--student",
            f"received {text!r}, which names no depth after 'shallow:'",
            "Use shallow (half depth), shallow:N (BERT layers) or shallow:GROUP "
            "(e.g. shallow:stage3).",
        )
    return StudentSpec(SHALLOW, int(tail) if tail.isdigit() else tail.lower())


@dataclasses.dataclass(frozen=True)
class DistillSettings:
    """The settings of one distillation (`tfl distill RUN_DIR ...`).

    Attributes:
        teacher: the finished run to distil (a `tfl train` run directory).
        student: see the module docstring.
        student_weights: initial weights of a student given by base name: `pretrained`
            (the default: ImageNet for image bases, the preset's for text), `none` or a
            weights file. A shallow student starts from the teacher's weights instead.
        temperature: softens the teacher's and the student's outputs in the distillation
            loss (`keras.distillation.LogitsDistillation`), > 0; 1 = as they are.
        alpha: weight of the true-label loss; `1 - alpha` weighs the distillation loss
            (Keras' `student_loss_weight`). 1.0 trains the student on the labels alone, with
            no teacher: the baseline that distillation has to beat.
        epochs: epochs of distillation (early stopping may end it sooner).
        learning_rate: peak learning rate (warm-up, then cosine decay), or "auto".
        seed: seed of the student's initialisation and dropout (None: the teacher's). The
            data's splits always follow the teacher's seed, so that the student never trains
            on the teacher's test examples.
        output: the student's run directory (default `runs/<teacher name>-distilled-<time>`).
        budget_mb, budget_ms: pick the deepest shallow student whose int8 TFLite file is at
            most this many MB / whose batch-1 LiteRT latency on this CPU is at most this many
            ms (`tfl.distill.budget`).
        compare: after training, export teacher and student to int8 TFLite and compare them
            side by side (`comparison.md`).
    """

    teacher: str
    student: str = SHALLOW
    student_weights: str | None = None
    temperature: float = 4.0
    alpha: float = 0.5
    epochs: int = 10
    learning_rate: float | str = "auto"
    seed: int | None = None
    output: str | None = None
    budget_mb: float | None = None
    budget_ms: float | None = None
    compare: bool = True

    @property
    def spec(self) -> StudentSpec:
        return parse_student(self.student)

    def recorded(self) -> dict:
        """What `distill.json` records: the settings a resumed run must share (not `output`,
        `compare` or the budgets, which only choose)."""
        skip = ("output", "compare", "budget_mb", "budget_ms")
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


def _number(flag: str, value, low: float, high: float | None, fix: str, open_low=True) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and (high is None or value <= high)
    if not ok:
        bound = f"{'>' if open_low else '>='} {low:g}" + (f" and <= {high:g}" if high else "")
        raise ConfigError(flag, f"received {value!r}; expected a number {bound}", fix)
    return float(value)


def check(settings: DistillSettings) -> DistillSettings:
    """Check every setting that does not need the teacher; return them normalised.

    Raises:
        ConfigError: the first bad value, naming its flag and the fix.

    Example:
    >>> from tfl.distill.settings import DistillSettings, check
    >>> try:
    ...     check(DistillSettings("runs/digits", temperature=0))
    ... except ValueError as e:
    ...     print(e)
    --temperature: received 0; expected a number > 0. Use e.g. --temperature 4 (1 = the outputs as they are).
    """
    parse_student(settings.student)
    temperature = _number(
        "--temperature", settings.temperature, 0, None,
        "Use e.g. --temperature 4 (1 = the outputs as they are).",
    )  # fmt: skip
    alpha = _number(
        "--alpha", settings.alpha, 0, 1.0,
        "Use a weight in [0, 1], e.g. --alpha 0.5 (1 = labels only, no teacher).",
        open_low=False,
    )  # fmt: skip
    epochs = settings.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ConfigError(
            "--epochs", f"received {epochs!r}; expected an integer >= 1", "Use e.g. --epochs 10."
        )
    rate = settings.learning_rate
    if rate != "auto":
        rate = _number("--learning-rate", rate, 0, 1.0, "Use e.g. --learning-rate 1e-4 or auto.")
    seed = settings.seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError("--seed", f"received {seed!r}; expected an integer >= 0", "Use e.g. 0.")
    weights = settings.student_weights
    if settings.spec.kind == SHALLOW:
        if weights is not None:
            raise ConfigError(
                "--student-weights",
                f"received {weights!r}, but a shallow student starts from the teacher's weights",
                "Drop --student-weights, or name a base with --student (e.g. mobilenet_v3_small).",
            )
    elif weights is None or str(weights).lower() in WEIGHTS:
        weights = "pretrained" if weights is None else str(weights).lower()
    elif not os.path.isfile(str(weights)):
        raise ConfigError(
            "--student-weights",
            f"received {weights!r}, which is neither pretrained, none nor an existing file",
            "Use pretrained (ImageNet; needs internet), none (random) or a weights file.",
        )
    budgets = {}
    for flag, value in (("--budget-mb", settings.budget_mb), ("--budget-ms", settings.budget_ms)):
        if value is not None:
            budgets[flag] = _number(flag, value, 0, None, f"Use a positive number, e.g. {flag} 2.")
    if budgets and settings.spec != StudentSpec(SHALLOW):
        raise ConfigError(
            next(iter(budgets)),
            f"a budget picks the depth of a shallow student, but --student is {settings.student!r}",
            "Use --student shallow with the budget (or drop the budget).",
        )
    return dataclasses.replace(
        settings,
        student=str(settings.spec),
        student_weights=weights,
        temperature=temperature,
        alpha=alpha,
        epochs=int(epochs),
        learning_rate=rate,
        budget_mb=budgets.get("--budget-mb"),
        budget_ms=budgets.get("--budget-ms"),
    )


__all__ = ["SHALLOW", "DistillSettings", "StudentSpec", "check", "parse_student"]
