"""Evaluation: metrics, plots, the run report, cross-validation and the negative-transfer check.

- `classification_metrics(y_true, probs)`: accuracy, per-class precision / recall / F1,
  macro and weighted averages, the confusion matrix, top-k accuracy, expected calibration
  error (with the per-bin table of a reliability diagram) and log loss. Numpy only.
- `evaluate_model(model, dataset)`: one pass over a `tf.data` dataset of `(x, y)` batches,
  then `classification_metrics`.
- `plot_history`, `plot_confusion`, `plot_reliability`: PNGs written with matplotlib's Agg
  canvas (no display needed; the global pyplot backend is left alone).
- `save_metrics(run_dir, metrics)` and `write_report(run_dir, ...)`: `evaluation.json`, the
  confusion-matrix PNG and a deterministic `report.md`.
- `cross_validate(build_model, x, y, phases=...)`: stratified k-fold with a fresh model per
  fold, trained by `tfl.fit_phases`.
- `compare_transfer(build_pretrained, build_scratch, x, y)`: training from scratch, a linear
  probe and a fine-tune on the same folds with the same epoch budget, and a plain verdict on
  whether the pretrained weights help (`transfer_verdict`, `format_comparison`).

Modules: `metrics` (the numbers and predicting them), `history` (reading a run's history and
phases), `plots`, `report` (`evaluation.json`, `report.md`) and `crossval`.
"""

# METHODS, VERDICT_RULE, ECE_BINS and REPORT_FILE stay importable from here (not in __all__,
# as before).
from tfl.evaluate.crossval import (  # noqa: F401
    METHODS,
    VERDICT_RULE,
    compare_transfer,
    cross_validate,
    format_comparison,
    stratified_folds,
    transfer_verdict,
)
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
    "compare_transfer",
    "cross_validate",
    "evaluate_model",
    "format_comparison",
    "plot_confusion",
    "plot_history",
    "plot_reliability",
    "predict_arrays",
    "save_metrics",
    "softmax",
    "stratified_folds",
    "transfer_verdict",
    "write_report",
]
