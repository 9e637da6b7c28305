"""Building a student task model for a teacher (the kinds are in `tfl.distill.settings`).

- A shallow student (`shallow[:depth]`) is `tfl.backbones.shallow.shallow_copy` of the
  teacher's base, every kept layer starting from the teacher's weights. An image student gets
  a new head (its features are narrower); a BERT student keeps the teacher's width, so it
  starts from the teacher's head too, and reads the teacher's preprocessor (same tokenizer and
  sequence length).
- A student named by base is what `tfl train --model.base NAME` would build
  (`tfl.builders.build_model`): an image base with ImageNet, random or file weights; a text
  preset must share the teacher's vocabulary (the teacher and the student read the same token
  ids), checked when it is loaded.

Students train all their layers; BatchNorm stays frozen in a pretrained student (as in
fine-tuning), while a student from random weights trains it, with momentum 0.9 (Keras'
0.999 never settles in the few hundred steps a small data set gives: see `ASSETS.md`).
"""

from __future__ import annotations

import keras
import numpy as np

from tfl import builders
from tfl.config import RunConfig
from tfl.distill.settings import SHALLOW, StudentSpec
from tfl.tasks import Task

SCRATCH_BATCHNORM_MOMENTUM = 0.9


def build_student(
    spec: StudentSpec, teacher_model: keras.Model, config: RunConfig, data
) -> keras.Model:
    """The student task model of `spec` (depth filled in) for `teacher_model`, trainable.

    Args:
        spec: a checked `StudentSpec` (`Teacher.check_student`).
        teacher_model: the teacher's task model (loaded).
        config: the student run's configuration (`Teacher.student_config`).
        data: the run's `DataSplits` (for the number of classes).
    """
    import tfl

    scratch = spec.kind != SHALLOW and config.model.weights == "none"
    if spec.kind == SHALLOW:
        student = _shallow_student(spec.depth, teacher_model, config, len(data.labels))
    elif builders.is_text(config):
        student = _text_student(spec.name, teacher_model, config, len(data.labels))
    else:
        student = builders.build_model(config, data)
    if scratch:
        for layer in _batchnorms(student):
            layer.momentum = SCRATCH_BATCHNORM_MOMENTUM
    tfl.unfreeze(student, top_n="all", train_batchnorm=scratch)
    # A task's compile() also freezes weights its graph never uses (BERT's pooler under mean
    # pooling), which would otherwise get no gradient in the Distiller.
    student.compile()
    return student


def _head(config: RunConfig) -> str:
    return Task.from_config(config).outputs[0].head


def _shallow_student(depth, teacher_model, config: RunConfig, num_classes: int) -> keras.Model:
    import tfl
    from tfl.backbones.shallow import shallow_copy

    base = shallow_copy(teacher_model.backbone, depth)
    if not isinstance(teacher_model, tfl.TextClassifier):
        return tfl.ImageClassifier(base, num_classes, head=_head(config))
    student = tfl.TextClassifier(
        base,
        num_classes,
        head=keras.layers.deserialize(keras.layers.serialize(teacher_model.head)),
        preprocessor=teacher_model.preprocessor,
        pooling=teacher_model.pooling,
    )
    student.head.set_weights(teacher_model.head.get_weights())
    return student


def _text_student(name: str, teacher_model, config: RunConfig, num_classes: int) -> keras.Model:
    import tfl

    backbone = tfl.backbones.text.load_bert_backbone(
        name, load_weights=config.model.weights != "none"
    )
    teacher_base = teacher_model.backbone
    preprocessor = teacher_model.preprocessor
    tokenizer = preprocessor.tokenizer
    student_vocabulary = tfl.backbones.text.load_bert_tokenizer(name).get_vocabulary()
    if backbone.vocabulary_size != teacher_base.vocabulary_size or not np.array_equal(
        student_vocabulary, tokenizer.get_vocabulary()
    ):
        raise ValueError(
            f"Received --student {name!r}, whose vocabulary is not the teacher's: a text student "
            "reads the teacher's token ids. Use --student shallow (or shallow:N), or a preset "
            "with the teacher's tokenizer."
        )
    if backbone.max_sequence_length < preprocessor.sequence_length:
        raise ValueError(
            f"Received --student {name!r}, which reads at most {backbone.max_sequence_length} "
            f"tokens; the teacher's inputs have {preprocessor.sequence_length}. Use --student "
            "shallow, or a preset that reads as many tokens."
        )
    return tfl.TextClassifier(
        backbone,
        num_classes,
        head=_head(config),
        preprocessor=preprocessor,
        pooling=config.model.pooling,
    )


def _batchnorms(model: keras.Model) -> list:
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def count_params(model: keras.Model) -> int:
    """Parameters of a task model (trainable and not)."""
    return int(sum(np.prod(v.shape) for v in model.weights))


__all__ = ["SCRATCH_BATCHNORM_MOMENTUM", "build_student", "count_params"]
