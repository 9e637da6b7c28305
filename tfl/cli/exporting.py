"""`tfl export`: a finished run as .keras, SavedModel and TFLite, each checked against Keras."""

from __future__ import annotations

import argparse
import os
import sys

from tfl.cli.common import EXIT_FAILURE, EXIT_OK, add_debug


def add_export(sub) -> None:
    from tfl import export as export_lib

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
        choices=export_lib.FORMATS,
        default=list(export_lib.FORMATS),
        dest="formats",
        help="formats to write (default: all)",
    )
    parser.add_argument(
        "--quantize",
        nargs="+",
        choices=export_lib.QUANTIZATIONS,
        default=list(export_lib.QUANTIZATIONS),
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
    add_debug(parser)
    parser.set_defaults(handler=export)


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
