"""Studies: questions answered over folds rather than by one training run.

- `tfl.studies.folds`: stratified k-fold and `cross_validate` of a fine-tuning plan on arrays,
  a fresh model per fold.
- `tfl.studies.transfer`: does transfer help? `compare_transfer` (scratch vs linear probe vs
  fine-tune on the same folds), `transfer_verdict`, `format_comparison`.
- `tfl.studies.rank` / `rank_report`: which base, cut, input size or pooling for this
  data, before training (`tfl rank`, `tfl.rank`, `model.base: auto`): frozen features
  scored with `tfl.studies.transferability` (LogME, LEEP, a cross-validated linear probe).
- `tfl.studies.configured`: the same studies of a whole run configuration, as `tfl cv`
  (`cross_validate_config`) and `tfl compare` (`compare_config`) run them: the configured
  data pooled, the configured model built afresh for every fold.
"""

from tfl.studies.configured import (
    COMPARE_FILE,
    COMPARE_REPORT,
    CV_FILE,
    CV_REPORT,
    SINGLE_LABEL_HEADS,
    build_model,
    check_supported,
    compare_config,
    cross_validate_config,
    format_cv,
    pooled_data,
    study_dir,
)
from tfl.studies.folds import cross_validate, stratified_folds
from tfl.studies.rank import Candidate, candidates, choose_schedule, rank_candidates
from tfl.studies.rank_report import format_ranking, rank_config
from tfl.studies.transfer import (
    METHODS,
    VERDICT_RULE,
    compare_transfer,
    format_comparison,
    transfer_verdict,
)

__all__ = [
    "COMPARE_FILE",
    "Candidate",
    "COMPARE_REPORT",
    "CV_FILE",
    "CV_REPORT",
    "METHODS",
    "SINGLE_LABEL_HEADS",
    "VERDICT_RULE",
    "build_model",
    "candidates",
    "check_supported",
    "choose_schedule",
    "compare_config",
    "compare_transfer",
    "cross_validate",
    "cross_validate_config",
    "format_comparison",
    "format_cv",
    "format_ranking",
    "pooled_data",
    "rank_candidates",
    "rank_config",
    "stratified_folds",
    "study_dir",
    "transfer_verdict",
]
