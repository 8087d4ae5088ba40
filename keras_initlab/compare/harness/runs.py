"""The result of an experiment that trains architectures under schemes, one run per seed.

`SetupResult` is what ``residual`` and ``transformer`` collect: their config, the data's
description, every finished run (each with ``architecture`` and ``scheme`` attributes),
the wall time and whether Ctrl-C cut it short, and the seeds of one setup (`of`) with
their median and range (`spread_of`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Generic, Protocol, TypeVar

from keras_initlab.compare.spread import Spread, spread

__all__ = ["SetupResult"]


class _Run(Protocol):
    architecture: str
    scheme: str


ConfigT = TypeVar("ConfigT")
RunT = TypeVar("RunT", bound=_Run)


@dataclasses.dataclass
class SetupResult(Generic[ConfigT, RunT]):
    """Every run of an experiment, with its config and data description.

    Attributes:
        config: the run's config.
        dataset: ``describe(dataset)`` of the data trained on (and what the experiment
            adds to it).
        runs: one run per architecture, scheme and seed, in the plan's order.
        seconds: wall time of the whole experiment.
        partial: interrupted: only the runs that finished.

    Example:
    >>> from types import SimpleNamespace as Run
    >>> runs = [Run(architecture="mlp", scheme="he", growth=g) for g in (2.0, 4.0, 3.0)]
    >>> SetupResult(None, {}, runs, 1.0).spread_of("mlp", "he", "growth").median
    3.0
    """

    config: ConfigT
    dataset: dict[str, Any]
    runs: list[RunT]
    seconds: float
    partial: bool = False

    @property
    def finished(self) -> int:
        """How many runs finished (all of them unless ``partial``)."""
        return len(self.runs)

    def of(self, architecture: str, scheme: str) -> list[RunT]:
        """The seeds of one architecture under one scheme."""
        return [r for r in self.runs if (r.architecture, r.scheme) == (architecture, scheme)]

    def spread_of(self, architecture: str, scheme: str, key: str) -> Spread:
        """Median and range over seeds of a run property (``"growth"``, ...)."""
        return spread([getattr(r, key) for r in self.of(architecture, scheme)])
