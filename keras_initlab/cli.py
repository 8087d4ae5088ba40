"""The ``keras-initlab`` command: ``compare`` (the main job), ``residual`` and ``inspect``.

``keras-initlab compare`` trains one deep MLP under every initialization scheme on an
embedded dataset (no network needed), prints a table and writes a report folder;
``keras-initlab residual`` does the same for a deep residual MLP and CNN without
normalization (He, Xavier, LSUV, ``auto`` and the residual rules);
``keras-initlab inspect MODEL.keras`` prints the audit table and the variance profile of a
saved model. Bad input (unknown names, unreadable files, output paths that cannot be
written, a download while offline) ends with a one-line error on stderr and exit status 2,
before any training. Ctrl-C writes the runs that finished as a partial report and exits
with status 130.

The arguments are parsed before Keras and TensorFlow are imported (``--help`` and usage
errors answer at once), and TensorFlow's C++ start-up lines are kept out of the output.

Example (the error line goes to stderr):
>>> main(["compare", "--schemes", "he_nrmal"])
2
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from keras_initlab.compare.harness import Experiment

PROG = "keras-initlab"
EXIT_USAGE = 2  # bad input: argparse's own exit status for usage errors
AUTO = "auto"  # the scheme name of AutoInit in `initialize` (keras_initlab.autoinit)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's status for a command stopped by Ctrl-C
AUDIT_LEGEND = (
    "!! flags a weight whose variance ratio (std / expected_std)**2 is further from 1 than "
    "{z:g} standard errors, {z:g} * sqrt(2 / n) for a weight of n values (a correct draw "
    "is flagged with probability {p:.1g}). ** marks a kernel that fits none of the healthy "
    "schemes of the activation it feeds (the healthy and healthy_ratio columns: the "
    "reference the monitor's alerts name, keras_initlab.healthy)."
)
# C++ lines TensorFlow prints while it is imported, whatever TF_CPP_MIN_LOG_LEVEL says:
# absl's notice that logging is not initialized yet, then INFO records (oneDNN, CPU features).
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"
_LOG_RECORD = re.compile(r"^([IWEF])\d{4} ")


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``keras-initlab`` command."""
    from keras_initlab.compare.harness.options import add_options  # Keras-free

    parser = _Parser(
        prog=PROG,
        description="Weight initialization, measured: `compare` trains one deep network "
        "under every scheme and writes a report; `residual` does the same for unnormalized "
        "residual networks; `inspect` audits a saved model.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for experiment in _experiments().values():
        command = commands.add_parser(
            experiment.name, help=experiment.help, description=experiment.description
        )
        add_options(command, experiment)

    inspect = commands.add_parser(
        "inspect",
        help="audit a saved model and print its variance profile",
        description="Print the audit table (fans, std vs expected, flags) of a saved model "
        "and its forward and backward variance profile on unit-variance random input.",
    )
    inspect.add_argument("model", help="a .keras (or .h5) model file")
    inspect.add_argument(
        "--scheme",
        help="audit against this scheme instead of each layer's configured initializer; "
        "'auto': initialize the loaded model with AutoInit (in memory, the file is not "
        "changed) and print its scale per layer and the profile after",
    )
    inspect.add_argument("--samples", type=int, default=256, help="random inputs (256)")
    inspect.add_argument("--seed", type=int, default=0, help="seed of the random input (0)")
    return parser


def _experiments() -> dict[str, Experiment]:
    """The experiments the command runs, by name (their definitions are Keras-free)."""
    from keras_initlab.compare.definition import COMPARE
    from keras_initlab.compare.residual.definition import RESIDUAL
    from keras_initlab.compare.transformer.definition import TRANSFORMER

    return {e.name: e for e in (COMPARE, RESIDUAL, TRANSFORMER)}


def without_startup_noise(text: str) -> list[str]:
    """The lines of ``text`` (TensorFlow's stderr during import) but its start-up noise.

    Dropped: absl's "All log messages before absl::InitializeLog()" notice and INFO records
    (``I0000 ...`` with their continuation lines); warnings and errors are kept.

    Example:
    >>> without_startup_noise("I0000 00:00 port.cc:153] oneDNN custom operations are on.\\n"
    ...     "To enable AVX2, rebuild\\nE0000 00:00 x.cc:1] broken")
    ['E0000 00:00 x.cc:1] broken']
    """
    kept, dropping = [], False
    for line in text.splitlines():
        record = _LOG_RECORD.match(line)
        if record or line.startswith(_ABSL_NOTICE):
            dropping = line.startswith(_ABSL_NOTICE) or (record is not None and record[1] == "I")
        if not dropping:
            kept.append(line)
    return kept


def _quiet_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up lines filtered out of stderr."""
    # C++ log records off, errors included: TensorFlow 2.21's own tf.data graphs log an
    # ERROR ("NodeDef mentions attribute use_unbounded_threadpool ...") on every fit over
    # more than a few hundred examples; Python exceptions are what reports a real failure.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return  # (Keras runs on JAX or PyTorch: no TensorFlow to quiet)
    if "tensorflow" not in sys.modules:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as log:
            os.dup2(log.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            log.seek(0)
            kept = without_startup_noise(log.read().decode(errors="replace"))
        if kept:
            print("\n".join(kept), file=sys.stderr)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")


def _cannot_create(path: Path) -> str | None:
    """Why no file can be created in the nearest existing folder above ``path`` (None: it can)."""
    folder = next(p for p in path.absolute().parents if p.exists())
    if not folder.is_dir():
        return f"{folder} is not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".keras-initlab-probe-"):
            pass
    except OSError as error:
        return f"{folder}: {error.strerror or error}"
    return None


def check_output_path(argument: str, path: str, *, folder: bool) -> None:
    """Raise ``UsageError`` unless the file (or folder) ``path`` can be written.

    A folder is written beside itself and then moved in place (so its parent must be
    writable); a file is overwritten in place. The reason (``is a directory``, ``Permission
    denied``, ``Read-only file system``...) ends the message.
    """
    target = Path(path)
    reason = None
    if folder and target.exists() and not target.is_dir():
        reason = "exists and is not a directory"
    elif not folder and target.is_dir():
        reason = "is a directory"
    elif not folder and target.exists():
        try:
            with target.open("r+b"):
                pass
        except OSError as error:
            reason = str(error.strerror or error)
    if reason is None:
        reason = _cannot_create(target)
    if reason is not None:
        kind = "folder" if folder else "file"
        raise UsageError(
            f"Argument `{argument}` must be a path where a {kind} can be written. "
            f"Received: {argument}={path!r} ({reason})"
        )


def _interrupted(
    experiment: Experiment, result: Any, args: argparse.Namespace, data: Any, progress: bool
) -> int:
    """Ctrl-C: end the progress line, write what finished as a partial report."""
    from keras_initlab.compare.harness import write_json, write_report

    if progress and sys.stderr.isatty():
        print(file=sys.stderr)  # the progress bar's line is still open
    if not result.finished:
        print(f"{PROG}: interrupted before any run finished; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    written = []
    if args.json:
        written.append(str(write_json(experiment, result, args.json)))
    if not args.no_report:
        written.append(str(write_report(experiment, result, args.out, data)["summary.md"]))
    where = f"; partial results of {result.finished} finished runs in {', '.join(written)}"
    print(f"{PROG}: interrupted{where if written else ''}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _prepare(args: argparse.Namespace, experiment: Experiment) -> tuple[Any, Any]:
    """The checked config and the loaded dataset of an experiment, or UsageError.

    The output paths and every argument value are checked before TensorFlow starts; the
    report folder and the dataset (and whether the experiment can use it) right after.
    """
    if args.json:
        check_output_path("json", args.json, folder=False)
    if not args.no_report:
        check_output_path("out", args.out, folder=True)
    from keras_initlab.compare.harness.options import config_from_args

    try:
        config = config_from_args(experiment, args)
    except (ValueError, TypeError) as error:
        raise UsageError(_one_line(error)) from None
    _quiet_tensorflow()
    from keras_initlab.compare.datasets import DatasetUnavailable
    from keras_initlab.compare.harness import check_report_folder, load_data

    try:
        if not args.no_report:
            check_report_folder(args.out, "out")
        data = load_data(experiment, config)
        if experiment.check_data is not None:
            experiment.check_data(config, data)
    except (ValueError, TypeError, DatasetUnavailable) as error:
        raise UsageError(_one_line(error)) from None
    return config, data


def run_experiment_command(experiment: Experiment, args: argparse.Namespace) -> int:
    """Run ``keras-initlab compare``, ``residual``, ...: train, print, write; the exit status."""
    config, data = _prepare(args, experiment)
    from keras_initlab.compare.harness import (
        ExperimentInterrupted,
        make_reproducible,
        report_text,
        run_experiment,
        write_json,
        write_report,
    )

    progress = not args.quiet
    make_reproducible()
    try:
        result = run_experiment(
            experiment, config, data=data, progress=sys.stderr if progress else None
        )
    except ExperimentInterrupted as stop:
        return _interrupted(experiment, stop.result, args, data, progress)
    print(report_text(experiment, result))
    if args.quick:
        print("(--quick is a smoke run: too short to train; the claims need the default run)")
    if args.json:
        print(f"JSON: {write_json(experiment, result, args.json)}")
    if not args.no_report:
        paths = write_report(experiment, result, args.out, data)
        print(f"Report: {paths['summary.md']} ({experiment.report_contents} in {args.out}/)")
    return 0


def inspect(args: argparse.Namespace) -> int:
    """Run ``keras-initlab inspect``; return the exit status."""
    from keras_initlab._validation import check_positive_int

    try:
        check_positive_int("samples", args.samples)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None
    _quiet_tensorflow()
    from keras_initlab.compare.inspection import ModelUnreadable, load_model_file

    auto = args.scheme == AUTO
    if args.scheme is not None and not auto:
        from keras_initlab._validation import unknown_name_message
        from keras_initlab.schemes import SCHEMES

        if args.scheme not in SCHEMES:  # "lsuv" too: it needs data, inspect has none
            raise UsageError(unknown_name_message("scheme", args.scheme, [*SCHEMES, AUTO]))
    try:
        model = load_model_file(args.model)
    except ModelUnreadable as error:
        raise UsageError(_one_line(error)) from None

    from keras_initlab.audit import AUDIT_Z, audit
    from keras_initlab.compare.inspection import variance_profile

    try:  # a model Keras loads but these cannot read (unbuilt, no known inputs, subclassed)
        if auto:
            from keras_initlab.initialize import initialize

            report = initialize(model, AUTO, seed=args.seed, report=True)
        else:
            report = audit(model, args.scheme)
        profile = variance_profile(model, samples=args.samples, seed=args.seed)
    except (TypeError, ValueError) as error:
        raise UsageError(_one_line(error)) from None
    if auto:
        print(f"AutoInit of {args.model} ({model.name}), in memory (the file is not changed):")
        print(report)
    else:
        print(f"Audit of {args.model} ({model.name}):")
        print(report)
        print(AUDIT_LEGEND.format(z=AUDIT_Z, p=math.erfc(AUDIT_Z / math.sqrt(2.0))))
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
        if args.command == "inspect":
            return inspect(args)
        return run_experiment_command(_experiments()[args.command], args)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        end_line = "\n" if sys.stderr.isatty() else ""  # after the terminal's ^C
        print(f"{end_line}{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
