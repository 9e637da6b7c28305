"""The distillation objective, as Keras ships it: a `keras.distillation.Distiller` over logits.

Hinton et al. (2015): the student learns from the teacher's temperature-softened predictions
and from the true labels,

    loss = alpha * CE(y, softmax(z_s)) + (1 - alpha) * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))

with `z_t`, `z_s` the teacher's and the student's logits and `T` the temperature (`T^2` keeps
the soft term's gradients on the scale of the hard one). `keras.distillation.Distiller` with
`LogitsDistillation(T)` computes exactly this (its `student_loss_weight` is `alpha`), and
`model.fit` on the `Distiller` is the training loop: nothing here writes one.

tfl's classification heads output probabilities, not logits; `LogitsDistillation` needs
logits. `logits_view(model)` is the same model (shared layers) with `log(p)` as its output:
`log softmax(z) = z - logsumexp(z)` differs from `z` by a per-example constant, and softmax
(with any temperature) ignores such a constant, so `softmax(log(p) / T)` is exactly the
teacher's softened distribution. An SVM head's scores are used as logits directly.
"""

from __future__ import annotations

import keras
from keras import ops

from tfl.heads import PROBABILITIES, ClassificationAccuracy, ClassificationCrossentropy

# Probabilities below this are taken as this before the log (float32 softmax underflows to 0
# for logit gaps above ~100; log(0) would be -inf).
MIN_PROBABILITY = 1e-30


@keras.saving.register_keras_serializable(package="tfl")
class LogProbabilities(keras.layers.Layer):
    """`log(max(p, 1e-30))`: softmax probabilities back to logits (up to a constant).

    Example:
    >>> from tfl.distill.losses import LogProbabilities
    >>> z = np.array([[1.0, 2.0, 4.0]])
    >>> p = np.exp(z) / np.exp(z).sum()
    >>> logits = np.asarray(LogProbabilities()(p))
    >>> np.round(logits - logits[0, 0], 4).tolist()  # z, up to the constant
    [[0.0, 1.0, 3.0]]
    """

    def call(self, probabilities):
        return ops.log(ops.maximum(ops.cast(probabilities, "float32"), MIN_PROBABILITY))


def logits_view(model: keras.Model, output_kind: str = PROBABILITIES) -> keras.Model:
    """`model` (its layers, not a copy) with logits as its output (see the module docstring).

    Args:
        model: a one-output tfl task model (its weights train through the view).
        output_kind: its head's `output_kind`: `"probabilities"` (logged) or `"scores"`
            (already logits).
    """
    if output_kind != PROBABILITIES:
        return keras.Model(model.input, model.output, name=f"{model.name}_logits")
    logits = LogProbabilities(name="logits")(model.output)
    return keras.Model(model.input, logits, name=f"{model.name}_logits")


def make_distiller(
    teacher: keras.Model,
    student: keras.Model,
    *,
    temperature: float,
    alpha: float,
    teacher_kind: str = PROBABILITIES,
    student_kind: str = PROBABILITIES,
) -> keras.distillation.Distiller:
    """A `keras.distillation.Distiller` of `student` from `teacher` (uncompiled).

    Args:
        teacher, student: one-output tfl task models; the teacher is frozen.
        temperature: `T` of `LogitsDistillation`.
        alpha: the weight of the true-label loss (`student_loss_weight`); 1.0 leaves the
            teacher out entirely (Keras then never calls it).
        teacher_kind, student_kind: their heads' `output_kind`.

    Example:
    >>> from tfl.distill.losses import compile_distiller, make_distiller
    >>> def tiny():
    ...     x = keras.Input((4,))
    ...     return keras.Model(x, keras.layers.Dense(3, activation="softmax")(x))
    >>> distiller = make_distiller(tiny(), tiny(), temperature=2.0, alpha=0.5)
    >>> compile_distiller(distiller, 1e-3)  # then distiller.fit(x, y, ...): model.fit is the loop
    >>> x = np.ones((2, 4), "float32")
    >>> float(distiller.compute_loss(x, np.zeros(2), distiller(x))) > 0
    True
    """
    distiller = keras.distillation.Distiller(
        teacher=logits_view(teacher, teacher_kind),
        student=logits_view(student, student_kind),
        # An explicit KLDivergence instance: Keras 3.15's default loss="kl_divergence" becomes
        # the plain function, which LogitsDistillation then applies to logits, not to
        # softened probabilities (its loss is ~0 and the teacher teaches nothing).
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=float(temperature), loss=keras.losses.KLDivergence()
        ),
        student_loss_weight=float(alpha),
    )
    # Built (one call on a zero example), as BackupAndRestore needs before `fit`.
    distiller(_zeros_like_input(distiller.student.input))
    return distiller


def _zeros_like_input(inputs):
    def zeros(tensor):
        shape = [1] + [2 if d is None else d for d in tensor.shape[1:]]
        return ops.zeros(shape, dtype=tensor.dtype)

    return keras.tree.map_structure(zeros, inputs)


def compile_distiller(distiller: keras.distillation.Distiller, optimizer, **kwargs) -> None:
    """Compile with `optimizer` (an optimizer, or Adam's learning rate or schedule), the
    true-label loss on the student's logits (integer or soft labels) and accuracy."""
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer = keras.optimizers.Adam(optimizer)
    distiller.compile(
        optimizer=optimizer,
        loss=ClassificationCrossentropy(from_logits=True, name="student_crossentropy"),
        metrics=[ClassificationAccuracy()],
        **kwargs,
    )


__all__ = [
    "MIN_PROBABILITY",
    "LogProbabilities",
    "compile_distiller",
    "logits_view",
    "make_distiller",
]
