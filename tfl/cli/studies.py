"""`tfl cv`, `tfl compare` and `tfl rank`: studies of a whole run configuration."""

from __future__ import annotations

import argparse
import os

from tfl.cli.common import EXIT_FAILURE, EXIT_OK, add_debug


def add_cv(sub) -> None:
    from tfl import config as config_lib

    _study_parser(sub, "cv", config_lib)


def add_compare(sub) -> None:
    from tfl import config as config_lib

    _study_parser(sub, "compare", config_lib)


def add_rank(sub) -> None:
    from tfl import config as config_lib

    parser = sub.add_parser(
        "rank",
        help="rank pretrained bases (cuts, sizes, poolings) on your data before training",
        description=(
            "Rank candidate bases on the train and validation splits before training: each "
            "candidate's frozen features are extracted once (through the bottleneck cache a "
            "later tfl train reuses) and scored with a cross-validated linear probe, LogME and "
            "LEEP (bases with their ImageNet classifier). Candidates: --model.base auto (the "
            "bases with offline weights) or names, times --rank.cuts, --rank.image-sizes, "
            "--rank.poolings, --rank.weights. Writes rank.md, rank.json, rank.png and "
            "winner.yaml (tfl train --config winner.yaml trains the winner) into --output "
            "(default runs/<name>-rank-<time>)."
        ),
    )
    parser.set_defaults(handler=rank)
    config_lib.add_arguments(parser)
    add_debug(parser)


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
    parser.set_defaults(handler={"cv": cv, "compare": compare}[name])
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
    add_debug(parser)


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
    from tfl.studies import format_comparison

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
    table = format_comparison(result).split("\nEffect: ")[0]  # effect and rule: compare.md
    print(table)
    print(
        f"{result['verdict'].capitalize()}: {result['method'].replace('_', '-')} vs scratch, "
        f"{result['difference']:+.4f} accuracy ({result['confidence']:.0%} CI "
        f"{result['low']:+.4f} to {result['high']:+.4f}), McNemar p = {result['p_value']:.2g} "
        f"on {result['n']} held-out examples."
    )
    print(
        f"Wrote {os.path.join(result['run_dir'], studies.COMPARE_FILE)} and "
        f"{studies.COMPARE_REPORT}"
    )
    return EXIT_OK


def rank(args: argparse.Namespace) -> int:
    from tfl import config as config_lib
    from tfl import studies
    from tfl.studies import rank as rank_lib
    from tfl.studies import rank_report

    config = config_lib.from_args(args)  # every candidate is checked here, before any work
    studies.check_supported(config, "rank")  # fusion recipes: refused by rank_candidates
    if args.print_config:
        print(config_lib.to_yaml(config), end="")
        return EXIT_OK
    count = len(rank_lib.candidates(config))
    print(f"Ranking {count} candidate(s) for {config.name} (train + validation; test unused)...")
    result = rank_report.rank_config(config, progress=_progress)
    print(rank_report.format_ranking(result))
    if result["command"]:
        print(f"Train the winner: {result['command']}")
    print(f"Wrote {os.path.join(result['run_dir'], rank_report.RANK_REPORT)}, rank.json, rank.png")
    return EXIT_OK if result["winner"] is not None else EXIT_FAILURE
