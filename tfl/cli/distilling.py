"""`tfl distill`: a finished run distilled into a smaller student, compared side by side."""

from __future__ import annotations

import argparse
import os

from tfl.cli.common import EXIT_OK, add_debug


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text  # checked (and refused by name) with the other settings


def _integer(text: str):
    try:
        return int(text)
    except ValueError:
        return text


def add_distill(sub) -> None:
    parser = sub.add_parser(
        "distill",
        help="distil a finished run into a smaller student (and compare them in int8 TFLite)",
        description=(
            "Train a smaller student on a finished run's data (the same splits) from the "
            "teacher's temperature-softened predictions and the true labels "
            "(keras.distillation.Distiller), evaluate it on the test split and write a run "
            "directory that tfl evaluate / predict / export accept. Then export teacher and "
            "student to int8 TFLite and compare size, LiteRT latency (batch 1) and throughput "
            "(batch 32) on this CPU, accuracy, ECE and parity (comparison.md). Re-running with "
            "the same --output resumes a killed distillation."
        ),
    )
    parser.add_argument("run_dir", help="the teacher: a run directory written by `tfl train`")
    parser.add_argument(
        "--student",
        default="shallow",
        help="shallow (default: half the BERT layers, or the CNN cut below its last stage, "
        "initialised from the teacher), shallow:N (BERT layers), shallow:GROUP (CNN cut after "
        "that block group, e.g. shallow:stage2), or a base name (e.g. mobilenet_v3_small)",
    )
    parser.add_argument(
        "--student-weights",
        default=None,
        metavar="W",
        help="a student named by base: pretrained (default; ImageNet, needs internet), none "
        "(random: what works offline) or a weights file",
    )
    parser.add_argument(
        "--temperature", type=_number, default=4.0, metavar="T", help="softening (default 4)"
    )
    parser.add_argument(
        "--alpha",
        type=_number,
        default=0.5,
        metavar="A",
        help="weight of the true labels in [0, 1]; 1 - A weighs the teacher (default 0.5; "
        "1 = no teacher: the baseline)",
    )
    parser.add_argument(
        "--epochs", type=_integer, default=10, metavar="N", help="epochs (default 10)"
    )
    parser.add_argument(
        "--learning-rate",
        type=_number,
        default="auto",
        metavar="LR",
        help="peak rate of warm-up + cosine decay (default auto: 1e-3 image, 1e-4 text; the "
        "head 10x unless the student starts from random weights)",
    )
    parser.add_argument(
        "--seed", type=_integer, default=None, help="student seed (default: the teacher's)"
    )
    parser.add_argument(
        "--output", default=None, help="run directory (default runs/<teacher>-distilled-<time>)"
    )
    parser.add_argument(
        "--budget-mb",
        type=_number,
        default=None,
        metavar="MB",
        help="pick the deepest shallow student whose int8 TFLite file fits (binary search, "
        "measured)",
    )
    parser.add_argument(
        "--budget-ms",
        type=_number,
        default=None,
        metavar="MS",
        help="pick the deepest shallow student whose int8 batch-1 latency on this CPU fits",
    )
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the int8 TFLite export and side-by-side comparison",
    )
    add_debug(parser)
    parser.set_defaults(handler=distill)


def distill(args: argparse.Namespace) -> int:
    from tfl.distill import Distillation, DistillSettings

    settings = DistillSettings(
        args.run_dir,
        student=args.student,
        student_weights=args.student_weights,
        temperature=args.temperature,
        alpha=args.alpha,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        seed=args.seed,
        output=args.output,
        budget_mb=args.budget_mb,
        budget_ms=args.budget_ms,
        compare=not args.no_compare,
    )
    job = Distillation.create(settings)  # checked before any work: bad settings stop here
    print(f"Distilling {args.run_dir} into student {job.spec} ({job.run_dir})...")
    job.fit().finish()
    results = job.results()
    teacher, student = results["teacher"], results["student"]
    print(f"\nRun directory: {job.run_dir}")
    print(f"Report: {os.path.join(job.run_dir, 'report.md')}")
    if student["accuracy"] is not None:
        shown = f"{teacher['accuracy']:.4f}" if teacher.get("accuracy") is not None else "n/a"
        print(
            f"Test accuracy: student {student['accuracy']:.4f} ({student['parameters']:,} "
            f"parameters), teacher {shown} ({teacher['parameters']:,}) on the "
            f"{results['evaluated_on']} split"
        )
    if job.settings.compare:
        from tfl.distill.compare import COMPARISON_REPORT

        print("Exporting teacher and student to int8 TFLite and measuring them...")
        job.compare()
        with open(os.path.join(job.run_dir, COMPARISON_REPORT)) as f:
            print(f.read().split("\n\nOn the test split")[0])
        print(f"Wrote {os.path.join(job.run_dir, COMPARISON_REPORT)}")
    return EXIT_OK
