"""What an experiment of the harness is: a definition (`Experiment`) and its runs (`Plan`).

The command line reads definitions before TensorFlow starts, so a definition module
imports no Keras: the hooks that train or plot are given as `lazy` references.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from keras_initlab.compare.config import TrainingConfig

__all__ = ["Experiment", "OnEpoch", "Plan", "lazy"]

OnEpoch = Callable[[int, dict[str, Any]], None]
"""Called after each epoch of a run with ``(epoch, {"loss": ...})``: the progress line."""


def lazy(module: str, name: str) -> Callable[..., Any]:
    """A function that imports ``module`` when first called and calls its ``name``.

    Example:
    >>> lazy("math", "sqrt")(16.0)
    4.0
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = f"lazy({module}.{name})"
    return call


@dataclasses.dataclass
class Plan:
    """The runs of one execution of an experiment, in order.

    Attributes:
        runs: ``(label, train)`` pairs; ``train(on_epoch)`` trains one run (a scheme, its
            seeds) and returns what the result is built from; ``label`` heads its
            progress line.
        collect: ``collect(finished, after, seconds, partial)`` builds the experiment's
            result from the finished runs' values, ``after``'s value (None when
            interrupted) and the wall time.
        header: the line written to the progress stream before the first run (None: none).
        after: called once every run finished, with no progress line (e.g. a check at
            initialization); its value goes to ``collect``.

    Example:
    >>> plan = Plan([("one", lambda on_epoch: 1)], lambda runs, after, s, partial: runs)
    >>> plan.collect([run(None) for _, run in plan.runs], None, 0.0, False)
    [1]
    """

    runs: list[tuple[str, Callable[[OnEpoch], Any]]]
    collect: Callable[[list[Any], Any, float, bool], Any]
    header: str | None = None
    after: Callable[[], Any] | None = None


def _nothing(*args: Any) -> list[str]:
    return []


def _no_values(*args: Any) -> dict[str, Any]:
    return {}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A command-line experiment on the shared harness: what it trains, claims and reports.

    The result its plan collects has ``config``, ``dataset`` (the data's description: a
    dict with ``name``), ``seconds``, ``partial`` and ``finished`` (the number of finished
    runs) attributes.

    Attributes:
        name: the command (``keras-initlab NAME``) and the report's title.
        config_type: its config, a frozen dataclass derived from
            `keras_initlab.compare.config.TrainingConfig`; the defaults are the default run.
        check: validates a config before anything runs (no Keras) and returns it.
        schemes: every scheme name, what ``--schemes all`` stands for.
        quick: the config overrides of ``--quick`` (a smoke run).
        plan: ``plan(config, data)``: the `Plan` of runs on the data (limits applied).
        claims: ``claims(result)``: the list of `keras_initlab.compare.harness.claims.Claim`.
        table: ``table(result, markdown=False)``: one row per run, printed and in the
            report (``table.txt``, ``table.md``).
        to_json: ``to_json(result, claims)``: the ``results.json`` document, strict JSON.
        files: ``files(result, folder, data)``: the report's other files (CSV, ``.png``
            plots), written into ``folder``; returns their paths.
        setup: ``setup(result)``: ``summary.md``'s lines between the title and the table
            (the data, networks and training; a partial run's note).
        sections: ``sections(result, markdown)``: more tables printed and written after
            the main one (none by default).
        footer: ``footer(plots)``: ``summary.md``'s lines after the plots (none by default).
        claims_title: the heading of the claims in ``summary.md``.
        load_data: ``load_data(config)``: the experiment's own `Dataset` (None: the
            built-in or ``.npz`` one ``config.dataset`` names); the limits apply after.
        check_data: ``check_data(config, data)`` raises ValueError when the runs cannot
            use the data (checked before any training); None: any data.
        help, description: the command's line in ``keras-initlab --help`` and its own.
        dataset_help: what ``--dataset`` takes, for ``--help`` (its default is the config's).
        optimizer, momentum_help, epochs_help: what ``--learning-rate``, ``--momentum`` and
            ``--epochs`` set, for ``--help`` (SGD's rate and momentum, epochs by default).
        quick_help: what ``--quick`` runs, for ``--help``.
        default_out: the report folder's default name.
        report_contents: what the report folder holds, in the command's last line.
        add_options: ``add_options(parser)`` adds the experiment's own options.
        options: the config fields those options set when given.
        from_args: ``from_args(args, values)``: more config values from the options (the
            comma-separated lists, derived defaults); none by default.

    Example:
    >>> from keras_initlab.compare.definition import COMPARE
    >>> COMPARE.name, COMPARE.config_type.__name__
    ('compare', 'CompareConfig')
    """

    name: str
    config_type: type[TrainingConfig]
    check: Callable[[Any], Any]
    schemes: tuple[str, ...]
    quick: Mapping[str, Any]
    plan: Callable[[Any, Any], Plan]
    claims: Callable[[Any], list[Any]]
    table: Callable[..., str]
    to_json: Callable[[Any, Sequence[Any]], dict[str, Any]]
    files: Callable[[Any, Path, Any], list[Path]]
    setup: Callable[[Any], list[str]]
    help: str
    description: str
    quick_help: str
    default_out: str
    report_contents: str
    add_options: Callable[[argparse.ArgumentParser], None]
    options: tuple[str, ...] = ()
    dataset_help: str = (
        "digits (default, embedded), circles, spirals, mnist, fashion_mnist (need a network "
        "once) or a PATH.npz"
    )
    optimizer: str = "SGD"
    momentum_help: str = "SGD momentum"
    epochs_help: str = "epochs per scheme"
    from_args: Callable[[argparse.Namespace, dict[str, Any]], dict[str, Any]] = _no_values
    sections: Callable[[Any, bool], list[str]] = _nothing
    footer: Callable[[list[str]], list[str]] = _nothing
    claims_title: str = "Claims"
    load_data: Callable[[Any], Any] | None = None
    check_data: Callable[[Any, Any], None] | None = None

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, config_type={self.config_type.__name__})"
