"""`tfl train`, `tfl evaluate` and `tfl predict`: a run, its evaluation, its predictions."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tfl.cli.common import EXIT_FAILURE, EXIT_OK, add_debug


def add_train(sub) -> None:
    from tfl import config as config_lib

    train_parser = sub.add_parser(
        "train",
        help="fine-tune a pretrained base (default: offline MobileNetV2 on MNIST-5k)",
        description=(
            "Train a recipe (default image_classification: the offline ImageNet MobileNetV2 "
            "fine-tuned on MNIST-5k in two phases). Settings come from the recipe's defaults, "
            "then --config FILE (YAML), then flags; --print-config shows the result."
        ),
    )
    config_lib.add_arguments(train_parser)
    add_debug(train_parser)
    train_parser.set_defaults(handler=train)


def add_evaluate(sub) -> None:
    evaluate_parser = sub.add_parser(
        "evaluate",
        help="evaluate a finished run again (accuracy, per-class F1, confusion matrix, ECE)",
    )
    evaluate_parser.add_argument("run_dir", help="a run directory written by `tfl train`")
    evaluate_parser.add_argument(
        "--split", default="test", choices=("test", "validation", "train"), help="which split"
    )
    evaluate_parser.add_argument(
        "--data",
        metavar="PATH",
        default=None,
        help="new labelled data instead of a split: a folder of class subfolders (image runs) "
        "or a CSV/JSONL file with the run's columns (text runs)",
    )
    add_debug(evaluate_parser)
    evaluate_parser.set_defaults(handler=evaluate)


def add_predict(sub) -> None:
    predict_parser = sub.add_parser(
        "predict",
        help="predict image files (or lines of text files) with a finished run",
        description=(
            "Predict with a run written by `tfl train`: each FILE is an image (image runs; "
            "read as in training: same size and resize policy) or a text file whose non-empty "
            "lines are the inputs (text runs; - reads stdin). Prints `file[:line]  label  "
            "probability` per input."
        ),
    )
    predict_parser.add_argument("run_dir", help="a run directory written by `tfl train`")
    predict_parser.add_argument(
        "files", nargs="+", metavar="FILE", help="images, or text files / -"
    )
    predict_parser.add_argument(
        "--top-k", type=int, default=1, metavar="K", help="classes per input (default 1)"
    )
    predict_parser.add_argument("--json", action="store_true", help="one JSON object per line")
    predict_parser.add_argument(
        "--checkpoint",
        choices=("final", "best"),
        default="final",
        help="final: model.keras (default); best: best.keras, the best epoch",
    )
    predict_parser.add_argument(
        "--tta",
        nargs="?",
        const="run",
        default=None,
        metavar="T[,T]",
        help="test-time augmentation of image runs: average the probabilities over views "
        "(flip, crops); --tta alone uses the run's evaluate.tta, else flip,crops",
    )
    add_debug(predict_parser)
    predict_parser.set_defaults(handler=predict)


def train(args: argparse.Namespace) -> int:
    from tfl import config as config_lib
    from tfl.run import train as train_run

    config = config_lib.from_args(args)  # validated: bad settings stop here, before any work
    if args.print_config:
        print(config_lib.to_yaml(config), end="")
        return EXIT_OK
    run = train_run(config)
    print(f"\nRun directory: {run.run_dir}")
    print(f"Model: {os.path.join(run.run_dir, 'model.keras')}")
    print(f"Report: {os.path.join(run.run_dir, 'report.md')}")
    if run.metrics.get("accuracy") is not None:
        print(
            f"Test accuracy: {run.metrics['accuracy']:.4f} on the {run.evaluated_on} split "
            f"({run.seconds:.0f} s in all)"
        )
    return EXIT_OK


def evaluate(args: argparse.Namespace) -> int:
    from tfl.run import evaluate_run

    metrics = evaluate_run(args.run_dir, split=args.split, data=args.data)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, list | dict)}))
    print(f"Wrote {os.path.join(args.run_dir, metrics['file'])}")
    return EXIT_OK


def predict(args: argparse.Namespace) -> int:
    from tfl import predict as predict_lib

    if args.top_k < 1:
        raise ValueError(f"Received --top-k {args.top_k}; expected an integer >= 1.")
    run = predict_lib.load_run(args.run_dir, checkpoint=args.checkpoint)
    tta = _tta(args.tta, run)
    predictions, problems = predict_lib.predict_files(run, args.files, top_k=args.top_k, tta=tta)
    for problem in problems:
        print(f"tfl predict: skipped {problem}", file=sys.stderr)
    if predictions and predict_lib.SCORES in predictions[0].outputs.values() and not args.json:
        print(
            "note: this run's head outputs scores (SVM); the numbers shown are a softmax of "
            "the scores, not calibrated probabilities.",
            file=sys.stderr,
        )
    for prediction in predictions:
        print(predict_lib.format_prediction(prediction, as_json=args.json))
    if not predictions:
        print("tfl predict: failed: no input could be read.", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _tta(flag: str | None, run) -> tuple[str, ...]:
    """`--tta`'s transforms: none, the run's `evaluate.tta` (else flip and crops), or a list."""
    from tfl.tta import check_transforms

    if flag is None:
        return ()
    if flag == "run":
        return tuple(run.config.evaluate.tta) or ("flip", "crops")
    try:
        return check_transforms(flag)
    except ValueError as error:
        raise ValueError(f"--tta {flag}: {error}") from None
