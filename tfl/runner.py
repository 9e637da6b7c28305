"""Deprecated: a run is now one object, `tfl.run.Run`, built by `tfl.builders`.

The step functions of this module keep their old signatures and run the new code:

    run = tfl.run.Run.create(config)   # was: prepare, load_data, build_model, make_phases
    run.fit()                          # was: fit(config, model, data, phases, run_dir, ...)
    run.finish()                       # was: finish(config, model, data, history, run_dir, ...)
"""

from __future__ import annotations

import time

from tfl._deprecation import warn_moved
from tfl.builders import build_model, get_strategy, image_size, is_text, load_new_data, make_phases
from tfl.builders import load_data as _load_data
from tfl.run import Run, evaluate_run
from tfl.run import prepare as _prepare
from tfl.tasks import Task

warn_moved(__name__, "tfl.run")

strategy = get_strategy


def prepare(config):
    """`(config, run_dir)`: `tfl.run.prepare` without the strategy."""
    config, run_dir, _ = _prepare(config)
    return config, run_dir


def load_data(config, run_dir=None):
    return _load_data(config, None, run_dir)


def _run(config, model, data, phases, run_dir, notes) -> Run:
    return Run(
        config,
        run_dir,
        get_strategy(config),
        Task.from_config(config),
        data,
        model,
        phases,
        notes=[] if notes is None else notes,
    )


def fit(config, model, data, phases, run_dir, verbose="auto", notes=None):
    """Train through `phases`; returns the history (`Run.fit`)."""
    return _run(config, model, data, phases, run_dir, notes).fit(verbose).history


def finish(config, model, data, history, run_dir, seconds=None, notes=()):
    """Evaluate and write the run directory; returns the metrics (`Run.finish`)."""
    run = _run(config, model, data, [], run_dir, list(notes))
    run.history = history
    run.started = time.time() - (seconds or 0.0)
    return run.finish().metrics


def train(config, verbose="auto") -> dict:
    """`tfl.run.train`, as the dict of before: run_dir, model, metrics, history, data."""
    from tfl.run import train as train_run

    run = train_run(config, verbose)
    return {
        "run_dir": run.run_dir,
        "model": run.model,
        "metrics": run.metrics,
        "history": run.history,
        "data": run.data,
    }


__all__ = [
    "build_model",
    "evaluate_run",
    "finish",
    "fit",
    "image_size",
    "is_text",
    "load_data",
    "load_new_data",
    "make_phases",
    "prepare",
    "train",
]
