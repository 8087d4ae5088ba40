"""The command-line options every experiment shares, and its config from the options.

`add_options` gives an experiment's subcommand ``--dataset`` and ``--schemes``, then the
experiment's own options, then the training and output options; `config_from_args`
builds the checked config: the default run, ``--quick``'s overrides, then every option
given. Keras-free: the command line checks every value before TensorFlow starts.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from keras_initlab.compare.harness.experiment import Experiment

__all__ = ["RUN_FIELDS", "add_options", "config_from_args", "names"]

# Config fields of the shared training options (`keras_initlab.compare.config.TrainingConfig`).
RUN_FIELDS = ("epochs", "batch_size", "learning_rate", "momentum", "seed", "seeds", "probe_size")


def names(text: str, every: tuple[str, ...]) -> tuple[str, ...]:
    """The comma-separated names of ``text``; ``all``: ``every``.

    Example:
    >>> names("zeros, he_normal", ("zeros", "he_normal", "lsuv")), names("all", ("a", "b"))
    (('zeros', 'he_normal'), ('a', 'b'))
    """
    if text == "all":
        return every
    return tuple(n.strip() for n in text.split(",") if n.strip())


def add_options(parser: argparse.ArgumentParser, experiment: Experiment) -> None:
    """Add the options of ``experiment``'s subcommand to ``parser``.

    Example:
    >>> from keras_initlab.compare.residual.definition import RESIDUAL
    >>> parser = argparse.ArgumentParser()
    >>> add_options(parser, RESIDUAL)
    >>> parser.parse_args(["--blocks", "4"]).blocks
    4
    """
    default, out = experiment.config_type(), experiment.default_out
    parser.add_argument("--dataset", default=default.dataset, help=experiment.dataset_help)
    parser.add_argument(
        "--schemes", default="all", help="comma-separated scheme names, or 'all' (default)"
    )
    experiment.add_options(parser)
    parser.add_argument(
        "--epochs", type=int, help=f"{experiment.epochs_help} (default {default.epochs})"
    )
    parser.add_argument("--batch-size", type=int, help=f"batch size (default {default.batch_size})")
    parser.add_argument(
        "--learning-rate",
        type=float,
        help=f"{experiment.optimizer} learning rate (default {default.learning_rate:g})",
    )
    parser.add_argument(
        "--momentum",
        type=float,
        help=f"{experiment.momentum_help} (default {default.momentum:g})",
    )
    parser.add_argument(
        "--seed", type=int, help=f"seed of the split, weights and batches ({default.seed})"
    )
    parser.add_argument(
        "--seeds", type=int, help=f"weight seeds per scheme (default {default.seeds})"
    )
    parser.add_argument(
        "--probe-size",
        type=int,
        help=f"test examples the variance is measured on (default {default.probe_size})",
    )
    parser.add_argument("--quick", action="store_true", help=experiment.quick_help)
    parser.add_argument("--out", default=out, help=f"report folder (default ./{out})")
    parser.add_argument("--no-report", action="store_true", help="print only, write no folder")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(experiment: Experiment, args: argparse.Namespace) -> Any:
    """The checked config of ``experiment`` from parsed options (see the module).

    Raises:
        ValueError, TypeError: a value the experiment does not take.

    Example:
    >>> from keras_initlab.compare.residual.definition import RESIDUAL
    >>> parser = argparse.ArgumentParser()
    >>> add_options(parser, RESIDUAL)
    >>> config = config_from_args(RESIDUAL, parser.parse_args(["--quick", "--seeds", "1"]))
    >>> config.blocks, config.seeds, config.architectures
    (6, 1, ('mlp', 'cnn'))
    """
    values: dict[str, Any] = dataclasses.asdict(experiment.config_type())
    if args.quick:
        values.update(experiment.quick)
    for field in (*experiment.options, *RUN_FIELDS):
        if getattr(args, field) is not None:
            values[field] = getattr(args, field)
    values["dataset"] = args.dataset
    values["schemes"] = names(args.schemes, experiment.schemes)
    values.update(experiment.from_args(args, values))
    return experiment.check(experiment.config_type(**values))
