"""What a comparison returns: per seed (``SeedRun``), per scheme over seeds (``SchemeResult``),
the finite-width check (``WidthCheck``) and the whole comparison (``CompareResult``)."""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_initlab.compare.config import CompareConfig
from keras_initlab.compare.harness.runner import ExperimentInterrupted
from keras_initlab.compare.spread import Spread, elementwise_median, spread
from keras_initlab.compare.verdicts import backward_ratio, forward_ratio, verdict


@dataclasses.dataclass
class SeedRun:
    """The measurements of one scheme under one seed (hidden layers first, then ``output``).

    ``activation_var`` and ``gradient_var`` are per layer at initialization,
    ``final_activation_var`` per layer after training, ``distinct_units`` per hidden layer
    after training (NaN where that layer's outputs were not finite: not judged), the rest
    per epoch; ``records`` are the VarianceMonitor's records of this seed's layers;
    ``boundary`` (2-D datasets only) is ``(xs, ys, classes)`` on a grid.
    """

    seed: int
    activation_var: list[float]
    gradient_var: list[float]
    final_activation_var: list[float]
    distinct_units: list[float]
    loss: list[float]
    accuracy: list[float]
    test_loss: list[float]
    test_accuracy: list[float]
    records: list[dict[str, Any]]
    boundary: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def activation_ratio(self) -> float:
        """Last over first hidden layer's activation variance at initialization."""
        return forward_ratio(self.activation_var[:-1])

    @property
    def gradient_ratio(self) -> float:
        """First over last hidden layer's gradient variance at initialization."""
        return backward_ratio(self.gradient_var[:-1])

    @property
    def verdict(self) -> str:
        return verdict(
            self.activation_var[:-1], self.gradient_var[:-1], self.distinct_units, self.loss
        )


@dataclasses.dataclass
class SchemeResult:
    """One scheme under every seed: per-seed runs and their medians.

    The list attributes of the JSON format (keras_initlab/compare/README.md:
    ``activation_var``, ``gradient_var``, ``distinct_units``, ``loss``, ``accuracy``, ...) are
    the medians over seeds, layer by layer or epoch by epoch; ``activation_ratio`` and
    ``gradient_ratio`` are the medians of the seeds' own ratios, ``*_spread`` their median
    and range.
    """

    name: str
    activation: str
    layers: list[str]
    runs: list[SeedRun]
    seconds: float

    def _median(self, key: str) -> list[float]:
        return elementwise_median([getattr(run, key) for run in self.runs])

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]

    @property
    def activation_var(self) -> list[float]:
        return self._median("activation_var")

    @property
    def gradient_var(self) -> list[float]:
        return self._median("gradient_var")

    @property
    def distinct_units(self) -> list[float]:
        return self._median("distinct_units")

    @property
    def loss(self) -> list[float]:
        return self._median("loss")

    @property
    def accuracy(self) -> list[float]:
        return self._median("accuracy")

    @property
    def test_loss(self) -> list[float]:
        return self._median("test_loss")

    @property
    def test_accuracy(self) -> list[float]:
        return self._median("test_accuracy")

    @property
    def hidden_activation_var(self) -> list[float]:
        return self.activation_var[:-1]

    @property
    def hidden_gradient_var(self) -> list[float]:
        return self.gradient_var[:-1]

    @property
    def activation_spread(self) -> Spread:
        return spread([run.activation_ratio for run in self.runs])

    @property
    def gradient_spread(self) -> Spread:
        return spread([run.gradient_ratio for run in self.runs])

    @property
    def activation_ratio(self) -> float:
        """Median over seeds of the last over first hidden layer's activation variance."""
        return self.activation_spread.median

    @property
    def gradient_ratio(self) -> float:
        """Median over seeds of the first over last hidden layer's gradient variance."""
        return self.gradient_spread.median

    def final(self, key: str) -> Spread:
        """Spread over seeds of the last epoch's ``loss``, ``test_accuracy``, ..."""
        return spread([getattr(run, key)[-1] if getattr(run, key) else None for run in self.runs])

    @property
    def verdicts(self) -> list[str]:
        """Each seed's verdict."""
        return [run.verdict for run in self.runs]

    @property
    def verdict(self) -> str:
        """The verdict most seeds give (ties: the first seed's among the most common)."""
        counts = collections.Counter(self.verdicts)
        top = max(counts.values())
        return next(v for v in self.verdicts if counts[v] == top)

    @property
    def unanimous(self) -> bool:
        return len(set(self.verdicts)) == 1

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for run in self.runs for r in run.records]

    @property
    def boundary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The first seed's decision boundary."""
        return self.runs[0].boundary

    def __repr__(self) -> str:
        accuracy = self.final("test_accuracy").median
        return (
            f"SchemeResult({self.name!r}, {self.activation}, seeds={self.seeds}, "
            f"verdict={self.verdict!r}, test_accuracy={accuracy:.3g})"
        )


@dataclasses.dataclass
class WidthCheck:
    """``WIDTH_CHECK_SCHEME``'s variance ratios across depth at initialization, per width.

    Attributes:
        activation: the hidden activation.
        depth: hidden layers.
        seeds: the weight seeds used at every width.
        activation_ratio: ``{width: [last / first hidden activation variance, per seed]}``.
        gradient_ratio: ``{width: [first / last hidden gradient variance, per seed]}``.
    """

    activation: str
    depth: int
    seeds: list[int]
    activation_ratio: dict[int, list[float]]
    gradient_ratio: dict[int, list[float]]

    @staticmethod
    def log_sd(values: Sequence[float]) -> float:
        """Standard deviation (ddof 1) of log10 of the finite positive ``values``."""
        logs = [math.log10(v) for v in values if math.isfinite(v) and v > 0]
        return float(np.std(logs, ddof=1)) if len(logs) > 1 else math.nan


@dataclasses.dataclass
class CompareResult:
    """A comparison: config, dataset summary, results by scheme, contrast, width check."""

    config: CompareConfig
    dataset: dict[str, Any]
    schemes: dict[str, SchemeResult]
    contrast: dict[str, SchemeResult]
    seconds: float
    width_check: WidthCheck | None = None
    partial: bool = False  # interrupted: only the runs that finished

    @property
    def all_runs(self) -> list[SchemeResult]:
        """The runs in report order: the main runs, then the contrast runs."""
        return [*self.schemes.values(), *self.contrast.values()]

    @property
    def finished(self) -> int:
        """How many runs finished (all of them unless ``partial``)."""
        return len(self.all_runs)

    def __repr__(self) -> str:
        return (
            f"CompareResult(dataset={self.dataset['name']!r}, schemes={list(self.schemes)}, "
            f"contrast={list(self.contrast)}, seeds={self.config.seed_values}, "
            f"seconds={self.seconds:.0f}{', partial' if self.partial else ''})"
        )


ComparisonInterrupted = ExperimentInterrupted
"""Ctrl-C during ``run_comparison``; ``result`` holds the runs that finished (partial)."""
