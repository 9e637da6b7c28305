"""The teacher of a distillation: a finished run, described from its files before it loads.

`Teacher.open(run_dir)` reads the run's `config.yaml` (through `tfl.saved_run.SavedRun`) and
the architecture in its `model.keras` (the `config.json` inside the file: no weights are
read), so `check_student` can refuse a student the teacher cannot have, with the depths it
can, before any work starts. `student_config` is the run configuration of the student's run
directory: the teacher's data and task settings (the same splits), the student's base.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile

import keras

from tfl import config as config_lib
from tfl.distill.settings import SHALLOW, StudentSpec
from tfl.freezing import TRAILING_GROUPS
from tfl.heads import SINGLE_LABEL_KINDS
from tfl.saved_run import SavedRun

_IMAGE_TASKS = ("ImageClassifier", "FusionClassifier")
_TASKS = (*_IMAGE_TASKS, "TextClassifier")


def _read_model_config(path: str) -> dict:
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable .keras file ({error}).") from None


@dataclasses.dataclass
class Teacher:
    """A finished run as a teacher (see the module docstring).

    Attributes:
        run: the `SavedRun` (its `model` loads on first use).
        task_model: the class of its task model (`"ImageClassifier"`, `"TextClassifier"`...).
        output_kind: what its head outputs (`Head.output_kind`).
        base_kind: `"image"`, `"bert"` (a keras-hub BERT) or `"fusion"` (several bases).
        architecture: the image base's name (`"mobilenet_v2_torchvision"`).
        groups: the image base's block groups, bottom to top (a teacher that is itself cut:
            up to its last group).
        num_layers: the BERT base's transformer layers.
    """

    run: SavedRun
    task_model: str
    output_kind: str | None
    base_kind: str
    architecture: str | None = None
    groups: tuple[str, ...] = ()
    num_layers: int | None = None

    @classmethod
    def open(cls, run_dir: str) -> Teacher:
        """Open and describe the run in `run_dir`.

        Raises:
            FileNotFoundError: not a finished run directory.
            ConfigError: a run tfl cannot distil (several heads, or a head that does not
                give one class per input).
        """
        run = SavedRun.open(run_dir)
        model = _read_model_config(run.model_path)
        task_model = model.get("class_name")
        if task_model not in _TASKS:
            raise config_lib.ConfigError(
                "RUN_DIR",
                f"{run_dir} holds a {task_model} (several heads); tfl distill trains a student "
                "with one classification head",
                "Distil an image_classification, text_classification, feature_extraction or "
                "feature_fusion run.",
            )
        head = keras.layers.deserialize(model["config"]["head"])
        kind = head.output_kind
        if kind not in SINGLE_LABEL_KINDS:
            raise config_lib.ConfigError(
                "RUN_DIR",
                f"{run_dir} has a {type(head).__name__} ({kind}); distillation matches "
                "class predictions",
                "Distil a run whose model.head is classification, logistic, mlp or svm.",
            )
        if task_model == "FusionClassifier":
            return cls(run, task_model, kind, "fusion")
        backbone = model["config"]["backbone"]
        if task_model == "TextClassifier":
            return cls(run, task_model, kind, "bert", num_layers=backbone["config"]["num_layers"])
        return cls(run, task_model, kind, "image", **_image_base(backbone["config"]))

    @property
    def config(self) -> config_lib.RunConfig:
        return self.run.config

    def depths(self) -> list[int | str]:
        """The depths of a shallow student, deepest first (see `tfl.backbones.shallow`)."""
        if self.base_kind == "bert":
            return list(range(self.num_layers - 1, 0, -1))
        return list(self.groups[:-1][::-1]) if self.base_kind == "image" else []

    def default_depth(self) -> int | str | None:
        """Half the transformer layers; or the stage below a CNN's last stage."""
        if self.base_kind == "bert":
            return self.num_layers // 2 or None
        stages = [g for g in self.groups if g not in TRAILING_GROUPS]
        return stages[-2] if len(stages) > 1 else None

    def check_student(self, spec: StudentSpec) -> StudentSpec:
        """`spec` with its depth filled in, or a `ConfigError` naming what the teacher allows."""
        if spec.kind != SHALLOW:
            return spec
        if self.base_kind == "fusion":
            raise config_lib.ConfigError(
                "--student",
                f"received {str(spec)!r}, but the teacher fuses two bases, so it has no single "
                "base to make shallower",
                "Name a base instead, e.g. --student mobilenet_v3_small.",
            )
        depths, default = self.depths(), self.default_depth()
        depth = default if spec.depth is None else spec.depth
        if depth in depths:
            return StudentSpec(SHALLOW, depth)
        raise config_lib.ConfigError("--student", *self._bad_depth(spec, depth, depths))

    def _bad_depth(self, spec: StudentSpec, depth, depths) -> tuple[str, str]:
        what = (
            f"the teacher's base has {self.num_layers} transformer layers"
            if self.base_kind == "bert"
            else f"the teacher's base {self.architecture!r} has the block groups "
            f"{', '.join(self.groups)}"
        )
        if not depths or depth is None:
            return (f"received {str(spec)!r}, but {what}: nothing to drop", "Name a base instead.")
        choices = ", ".join(f"{SHALLOW}:{d}" for d in depths)
        return (f"received {str(spec)!r}, but {what}", f"Use one of {choices}.")

    def student_config(
        self, spec: StudentSpec, weights: str | None = "pretrained", output: str | None = None
    ) -> config_lib.RunConfig:
        """The student run's configuration: the teacher's data and task settings, the
        student's base (a shallow student keeps the teacher's base name: `distill.json` says
        where it was cut), `output`, and the name `<teacher name>-distilled`. A teacher trained
        by several workers is distilled on one machine (`runtime.strategy: auto`)."""
        config = self.config
        name = f"{config.name}-distilled"
        if config.runtime.strategy == "multi_worker":  # a distillation runs on one machine
            config = dataclasses.replace(
                config, runtime=dataclasses.replace(config.runtime, strategy="auto")
            )
        if spec.kind == SHALLOW:
            return dataclasses.replace(config, name=name, output=output)
        recipe = config.recipe
        if self.base_kind == "fusion":  # a one-base student: the one-base image recipe
            kinds = config_lib.RECIPE_KINDS.values()
            recipe = next(k.name for k in kinds if k.model == "image" and k.schedules is None)
        model = dataclasses.replace(config.model, base=spec.name, weights=weights, fusion="concat")
        student = dataclasses.replace(config, recipe=recipe, name=name, output=output, model=model)
        try:
            return config_lib.validate(student)
        except config_lib.ConfigError as error:
            flag = "--student-weights" if error.key.startswith("model.weights") else "--student"
            raise config_lib.ConfigError(
                flag, f"received {spec.name!r} for this teacher: {error.message}", error.fix
            ) from None


def _image_base(backbone: dict) -> dict:
    from tfl.backbones import get_family

    architecture = backbone["architecture"]
    groups = tuple(get_family(architecture).group_names)
    last = backbone.get("cut")
    if last is not None:
        groups = groups[: groups.index(last) + 1]
    return {"architecture": architecture, "groups": groups}


__all__ = ["Teacher"]
