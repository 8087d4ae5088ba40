"""The ``keras-initlab`` command: ``compare`` (the main job) and ``inspect``.

``keras-initlab compare`` trains one deep MLP under every initialization scheme on an
embedded dataset (no network needed), prints a table and writes a report folder;
``keras-initlab inspect MODEL.keras`` prints the audit table and the variance profile of a
saved model. Bad input (unknown names, unreadable files, a download while offline) ends
with a one-line error on stderr and exit status 2.

Example (the error line goes to stderr):
>>> main(["compare", "--schemes", "he_nrmal"])
2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

PROG = "keras-initlab"
EXIT_USAGE = 2  # bad input: argparse's own exit status for usage errors
DEFAULT_REPORT_DIR = "initlab-report"


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _names(text: str) -> tuple[str, ...]:
    from keras_initlab.compare.setups import COMPARE_SCHEMES

    if text == "all":
        return COMPARE_SCHEMES
    return tuple(n.strip() for n in text.split(",") if n.strip())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``keras-initlab`` command."""
    parser = _Parser(
        prog=PROG,
        description="Weight initialization, measured: `compare` trains one deep network "
        "under every scheme and writes a report; `inspect` audits a saved model.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    compare = commands.add_parser(
        "compare",
        help="train one deep network under every initialization scheme",
        description="Train one deep MLP under every initialization scheme with the same "
        "data, seed and optimizer; print a table and write a report folder.",
    )
    compare.add_argument(
        "--dataset",
        default="digits",
        help="digits (default, embedded), circles, spirals, mnist, "
        "fashion_mnist (need a network once) or a PATH.npz",
    )
    compare.add_argument(
        "--schemes",
        default="all",
        type=str,
        help="comma-separated scheme names, or 'all' (default)",
    )
    compare.add_argument("--depth", type=int, help="hidden layers (default 10)")
    compare.add_argument("--width", type=int, help="units per hidden layer (default 64)")
    compare.add_argument("--activation", help="hidden activation (default relu)")
    compare.add_argument(
        "--contrast-activation",
        help="activation Xavier and He are also trained with (default: tanh, "
        "or relu when --activation tanh; 'none' to skip)",
    )
    compare.add_argument("--epochs", type=int, help="epochs per scheme (default 10)")
    compare.add_argument("--batch-size", type=int, help="batch size (default 64)")
    compare.add_argument("--learning-rate", type=float, help="SGD learning rate (default 0.02)")
    compare.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    compare.add_argument("--seed", type=int, help="seed of the split, weights and batches (0)")
    compare.add_argument(
        "--seeds", type=int, help="weight seeds per scheme, trained together (default 3)"
    )
    compare.add_argument(
        "--probe-size", type=int, help="test examples the variance is measured on (default 256)"
    )
    compare.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: depth 6, width 32, 2 epochs, 512 training examples",
    )
    compare.add_argument(
        "--out", default=DEFAULT_REPORT_DIR, help=f"report folder (default ./{DEFAULT_REPORT_DIR})"
    )
    compare.add_argument("--no-report", action="store_true", help="print only, write no folder")
    compare.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    compare.add_argument("--quiet", action="store_true", help="no progress bars")

    inspect = commands.add_parser(
        "inspect",
        help="audit a saved model and print its variance profile",
        description="Print the audit table (fans, std vs expected, flags) of a saved model "
        "and its forward and backward variance profile on unit-variance random input.",
    )
    inspect.add_argument("model", help="a .keras (or .h5) model file")
    inspect.add_argument(
        "--scheme", help="audit against this scheme instead of each layer's configured initializer"
    )
    inspect.add_argument("--samples", type=int, default=256, help="random inputs (256)")
    inspect.add_argument("--seed", type=int, default=0, help="seed of the random input (0)")
    return parser


def _config(args: argparse.Namespace) -> Any:
    from keras_initlab.compare.runner import QUICK, CompareConfig, check_config

    values: dict[str, Any] = dataclasses.asdict(CompareConfig())
    if args.quick:
        values.update(QUICK)
    for field in (
        "depth",
        "width",
        "activation",
        "epochs",
        "batch_size",
        "learning_rate",
        "momentum",
        "seed",
        "seeds",
        "probe_size",
    ):
        if getattr(args, field) is not None:
            values[field] = getattr(args, field)
    values["dataset"] = args.dataset
    values["schemes"] = _names(args.schemes)
    contrast = args.contrast_activation
    if contrast is None:
        contrast = "relu" if values["activation"] == "tanh" else "tanh"
    values["contrast_activation"] = None if contrast == "none" else contrast
    return check_config(CompareConfig(**values))


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")


def compare(args: argparse.Namespace) -> int:
    """Run ``keras-initlab compare``; return the exit status."""
    from keras_initlab.compare.datasets import DatasetUnavailable, load_dataset

    try:
        config = _config(args)
    except (ValueError, TypeError) as error:
        raise UsageError(_one_line(error)) from None
    try:  # fail before training, not after, when the outputs cannot be written
        if not args.no_report:
            Path(args.out).mkdir(parents=True, exist_ok=True)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"Cannot write the report: {_one_line(error)}") from None
    _quiet_tensorflow()
    try:
        data = load_dataset(config.dataset, seed=config.seed)
    except DatasetUnavailable as error:
        raise UsageError(_one_line(error)) from None

    from keras_initlab.compare.claims import check_claims
    from keras_initlab.compare.report import (
        format_claims,
        format_table,
        format_width_check,
        width_heading,
        write_json,
        write_report,
    )
    from keras_initlab.compare.runner import make_reproducible, run_comparison

    make_reproducible()
    result = run_comparison(config, data=data, progress=None if args.quiet else sys.stderr)
    print(format_table(result))
    print()
    if result.width_check is not None:
        print(width_heading(result.width_check))
        print(format_width_check(result.width_check))
        print()
    print(format_claims(check_claims(result)))
    if args.quick:
        print("(--quick is a smoke run: too short to train; the claims need the default run)")
    if args.json:
        print(f"JSON: {write_json(result, args.json)}")
    if not args.no_report:
        paths = write_report(result, args.out, data)
        print(f"Report: {paths['summary.md']} (plots, results.json, CSV in {args.out}/)")
    return 0


def inspect(args: argparse.Namespace) -> int:
    """Run ``keras-initlab inspect``; return the exit status."""
    from keras_initlab.compare.inspection import ModelUnreadable, load_model_file

    if args.scheme is not None:
        from keras_initlab.schemes import get_scheme

        try:
            get_scheme(args.scheme)
        except ValueError as error:
            raise UsageError(_one_line(error)) from None
    if args.samples < 1:
        raise UsageError(
            f"Argument `samples` must be a positive integer. Received: samples={args.samples}"
        )
    _quiet_tensorflow()
    try:
        model = load_model_file(args.model)
    except ModelUnreadable as error:
        raise UsageError(_one_line(error)) from None

    from keras_initlab.audit import audit
    from keras_initlab.compare.inspection import variance_profile

    try:  # a model Keras loads but these cannot read (unbuilt, no known inputs)
        report = audit(model, args.scheme)
        profile = variance_profile(model, samples=args.samples, seed=args.seed)
    except ValueError as error:
        raise UsageError(_one_line(error)) from None
    print(f"Audit of {args.model} ({model.name}):")
    print(report)
    print()
    print(f"Variance profile on {args.samples} unit-variance random inputs:")
    print(profile)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``keras-initlab`` and ``python -m keras_initlab``; returns the status.

    Bad input prints ``keras-initlab: error: <one line>`` on stderr and returns 2.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return compare(args) if args.command == "compare" else inspect(args)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
