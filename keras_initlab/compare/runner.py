"""Train the deep MLP under every scheme and several seeds, with the same data and optimizer.

For each scheme, the seeds ``config.seed, config.seed + 1, ...`` are trained together: one
stacked model (``models.build_stacked_mlp``) holds an independent MLP per seed, each
re-initialized by ``setups.apply_scheme(tower, ..., seed=seed)``; one ``fit`` with SGD
with momentum trains all of them on the same batches (the sum of the towers' losses gives
each tower the gradient of its own loss). A ``keras_initlab.callbacks.VarianceMonitor``
watches every tower's layers on a fixed probe of held-out examples, at initialization
(step 0) and after training. Every number is then kept per seed (``SeedRun``) and
summarized as the median and range over seeds (``SchemeResult``).

``width_check`` measures the finite-width effect at initialization: He's variance ratio
across depth fluctuates from seed to seed with a spread that shrinks as the width grows
(Hanin & Rolnick 2018: ``Var[log(q_L / q_1)]`` grows like ``sum_l 1 / n_l``).

Same config, same machine: the same numbers (``make_reproducible``; fixed seeds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from keras_initlab.compare.config import CONTRAST_SCHEMES, CompareConfig
from keras_initlab.compare.datasets import Dataset, describe
from keras_initlab.compare.harness.experiment import OnEpoch, Plan
from keras_initlab.compare.harness.runner import limit_data, make_reproducible, run_experiment
from keras_initlab.compare.results import (
    CompareResult,
    ComparisonInterrupted,
    SchemeResult,
    WidthCheck,
)
from keras_initlab.compare.trainer import Trainer
from keras_initlab.compare.width_check import WIDTH_CHECK_SCHEME, measure_width_check

__all__ = [  # ComparisonInterrupted: what run_comparison raises
    "ComparisonInterrupted",
    "contrast_schemes",
    "describe_run",
    "limit_data",
    "make_reproducible",
    "plan_comparison",
    "run_comparison",
]


def run_comparison(
    config: CompareConfig | None = None,
    *,
    progress: TextIO | None = None,
    data: Dataset | None = None,
) -> CompareResult:
    """Train every scheme of ``config`` (then the contrast schemes) and collect the results:
    `keras_initlab.compare.harness.run_experiment` of ``COMPARE``.

    Args:
        config: the run (default: ``CompareConfig()``, the default run).
        progress: stream for the progress bars, e.g. ``sys.stderr`` (None: silent).
        data: an already loaded dataset (default: ``load_dataset(config.dataset)``).

    Returns:
        A ``CompareResult``.

    Raises:
        ValueError: an invalid config.
        DatasetUnavailable: the dataset cannot be loaded.
        ComparisonInterrupted: Ctrl-C; its ``result`` holds the runs that finished.

    Example:
    >>> config = CompareConfig(dataset="circles", schemes=("he_normal",), depth=2, width=8,
    ...     epochs=1, contrast_activation=None, train_limit=64, test_limit=32)
    >>> run_comparison(config, progress=None).schemes["he_normal"].verdict
    'ok'
    """
    from keras_initlab.compare.definition import COMPARE

    result: CompareResult = run_experiment(COMPARE, config, progress=progress, data=data)
    return result


def plan_comparison(config: CompareConfig, data: Dataset) -> Plan:
    """The runs of a comparison: every scheme with ``config.activation``, then the contrast
    schemes with ``config.contrast_activation``; after them, the width check.

    Example:
    >>> from keras_initlab.compare.datasets import load_dataset
    >>> config = CompareConfig(schemes=("zeros", "he_normal"))
    >>> [label for label, _ in plan_comparison(config, load_dataset("circles")).runs]
    ['zeros (relu)', 'he_normal (relu)', 'he_normal (tanh)']
    """
    trainer = Trainer(data, config)
    pairs = [(name, config.activation) for name in config.schemes]
    pairs += [(name, str(config.contrast_activation)) for name in contrast_schemes(config)]

    def train(name: str, activation: str) -> Callable[[OnEpoch], SchemeResult]:
        return lambda on_epoch: trainer.train(name, activation=activation, on_epoch=on_epoch)

    def collect(
        runs: list[SchemeResult], widths: WidthCheck | None, seconds: float, partial: bool
    ) -> CompareResult:
        main = {r.name: r for r in runs[: len(config.schemes)]}
        contrast = {r.name: r for r in runs[len(config.schemes) :]}
        return CompareResult(config, describe(data), main, contrast, seconds, widths, partial)

    return Plan(
        [(f"{name} ({activation})", train(name, activation)) for name, activation in pairs],
        collect,
        header=describe_run(config, data),
        after=(lambda: measure_width_check(data, config)) if config.check_widths else None,
    )


def contrast_schemes(config: CompareConfig) -> tuple[str, ...]:
    """The schemes trained again with ``config.contrast_activation``."""
    if config.contrast_activation in (None, config.activation):
        return ()
    return tuple(s for s in CONTRAST_SCHEMES if s in config.schemes)


def describe_run(config: CompareConfig, data: Dataset) -> str:
    """One line: the data used (after the limits) and what is counted by the progress lines.

    Example:
    >>> from keras_initlab.compare.datasets import load_dataset
    >>> config = CompareConfig(schemes=("zeros", "he_normal"), train_limit=100)
    >>> data = limit_data(load_dataset("digits", seed=0), config)
    >>> for part in describe_run(config, data).split("; "):
    ...     print(part)
    digits: 100 training / 359 test examples, 64 features, 10 classes
    3 runs (2 schemes + 1 with tanh) x 3 seeds x 10 epochs
    width check: he_normal at widths 64, 256, 12 seeds each
    """
    info = describe(data)
    contrast = contrast_schemes(config)
    extra = f" + {len(contrast)} with {config.contrast_activation}" if contrast else ""
    runs = len(config.schemes) + len(contrast)
    line = (
        f"{info['name']}: {info['train']} training / {info['test']} test examples, "
        f"{info['features']} features, {info['classes']} classes; {runs} runs "
        f"({len(config.schemes)} schemes{extra}) x {config.seeds} seeds x {config.epochs} epochs"
    )
    if config.check_widths:
        widths = ", ".join(str(w) for w in config.check_widths)
        line += (
            f"; width check: {WIDTH_CHECK_SCHEME} at widths {widths}, "
            f"{config.check_seeds} seeds each"
        )
    return line
