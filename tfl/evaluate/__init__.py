"""Evaluation: metrics, plots and the run report of a trained model.

- `classification_metrics(y_true, probs)`: accuracy, per-class precision / recall / F1,
  macro and weighted averages, the confusion matrix, top-k accuracy, expected calibration
  error (with the per-bin table of a reliability diagram) and log loss. Numpy only.
- `evaluate_model(model, dataset)`: one pass over a `tf.data` dataset of `(x, y)` batches,
  then `classification_metrics`.
- `plot_history`, `plot_confusion`, `plot_reliability`: PNGs written with matplotlib's Agg
  canvas (no display needed; the global pyplot backend is left alone).
- `save_metrics(run_dir, metrics)` and `write_report(run_dir, ...)`: `evaluation.json`, the
  confusion-matrix PNG and a deterministic `report.md`.

Modules: `metrics` (the numbers and predicting them), `history` (reading a run's history and
phases), `plots` and `report` (`evaluation.json`, `report.md`), `significance` (paired tests
of two models on the same examples: McNemar's exact test, a bootstrap interval). Cross-validation and the
negative-transfer check are studies: `tfl.studies` (the old names here still work and warn).
"""

from tfl._deprecation import moved_names

# ECE_BINS and REPORT_FILE stay importable from here (not in __all__, as before).
from tfl.evaluate.metrics import (
    ECE_BINS,  # noqa: F401
    classification_metrics,
    evaluate_model,
    predict_arrays,
    softmax,
)
from tfl.evaluate.plots import plot_confusion, plot_history, plot_reliability
from tfl.evaluate.report import (
    REPORT_FILE,  # noqa: F401
    save_metrics,
    write_report,
)

__all__ = [
    "classification_metrics",
    "evaluate_model",
    "plot_confusion",
    "plot_history",
    "plot_reliability",
    "predict_arrays",
    "save_metrics",
    "softmax",
    "write_report",
]

# Cross-validation and the transfer check moved to tfl.studies.
__getattr__ = moved_names(
    __name__,
    {
        name: f"tfl.studies:{name}"
        for name in (
            "METHODS",
            "VERDICT_RULE",
            "compare_transfer",
            "cross_validate",
            "format_comparison",
            "stratified_folds",
            "transfer_verdict",
        )
    },
)
