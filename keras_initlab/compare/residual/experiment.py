"""Train the unnormalized residual networks under every scheme and seed, and measure them.

For each architecture one model is built and compiled (one with a SkipInit gate per branch
for ``he_normal+skipinit``), so Keras traces its training step once; before each scheme and
seed the weights are re-drawn by `apply_scheme`, the optimizer's variables (step counter,
momenta) are restored and ``keras.utils.set_random_seed(config.seed)`` fixes the batch
order, so runs differ only in their weights. At initialization `keras_initlab.Measurement`
records the stream's variance after the stem and after every residual sum on held-out
examples (inference mode: no dropout, nothing else changes); then SGD with momentum trains
for ``config.epochs`` epochs and the per-epoch loss and test accuracy are kept.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from keras_initlab.compare.datasets import Dataset, describe
from keras_initlab.compare.harness.experiment import OnEpoch, Plan
from keras_initlab.compare.harness.runner import run_experiment
from keras_initlab.compare.harness.runs import SetupResult
from keras_initlab.compare.residual.config import ResidualConfig, split_scheme
from keras_initlab.compare.residual.models import (
    STEM,
    add_name,
    build_residual_cnn,
    build_residual_mlp,
    image_side,
)
from keras_initlab.compare.setups import LSUV_BATCH
from keras_initlab.compare.sgd_runs import SGDRuns

__all__ = [
    "ResidualResult",
    "ResidualRun",
    "apply_scheme",
    "check_data",
    "plan_residual",
    "run_residual",
]


@dataclasses.dataclass
class ResidualRun:
    """One architecture under one scheme and one seed.

    Attributes:
        architecture, scheme, seed: what was trained.
        stream: the stream's activation variance at initialization, after the stem then
            after each residual sum (``1 + blocks`` values).
        loss, test_loss, test_accuracy: per epoch.
    """

    architecture: str
    scheme: str
    seed: int
    stream: list[float]
    loss: list[float]
    test_loss: list[float]
    test_accuracy: list[float]

    @property
    def growth(self) -> float:
        """The last sum's variance over the stem's (the stream's growth through depth)."""
        return self.stream[-1] / self.stream[0] if self.stream[0] > 0 else math.nan

    @property
    def relative_stream(self) -> list[float]:
        """Each sum's variance over the stem's."""
        return [v / self.stream[0] if self.stream[0] > 0 else math.nan for v in self.stream]

    @property
    def diverged(self) -> bool:
        """The training loss became NaN or infinite."""
        return not all(math.isfinite(v) for v in self.loss)

    @property
    def final_accuracy(self) -> float:
        return self.test_accuracy[-1] if self.test_accuracy else math.nan


@dataclasses.dataclass
class ResidualResult(SetupResult[ResidualConfig, ResidualRun]):
    """Every run of an experiment (`SetupResult`): ``config`` a `ResidualConfig`, ``runs``
    one `ResidualRun` per architecture, scheme and seed; `spread_of` reads ``"growth"``,
    ``"final_accuracy"``, ..."""


def apply_scheme(model: Any, name: str, *, seed: int, x: Any) -> Any:
    """Re-initialize ``model`` under the experiment scheme ``name`` (`RESIDUAL_SCHEMES`).

    ``he_normal`` / ``xavier_normal`` / ``auto``: ``initialize(model, name, seed=seed)``;
    ``lsuv``: `keras_initlab.LSUV` on the first ``LSUV_BATCH`` rows of ``x``; ``he_normal+rule``:
    ``initialize(model, "he_normal", seed=seed, residual=rule)``.

    Example:
    >>> from keras_initlab.compare.residual.models import build_residual_mlp
    >>> model = build_residual_mlp(4, 2, blocks=2, width=4)
    >>> model = apply_scheme(model, "he_normal+zero", seed=0, x=None)
    >>> float(abs(model.get_layer("block_1_dense_2").kernel.numpy()).sum())
    0.0
    """
    from keras_initlab.initialize import initialize
    from keras_initlab.lsuv import LSUV

    base, rule = split_scheme(name)
    scheme: Any = LSUV(x[:LSUV_BATCH]) if base == "lsuv" else base
    if rule is None:
        return initialize(model, scheme, seed=seed)
    return initialize(model, scheme, seed=seed, residual=rule)


class _Fitter:
    """One compiled model of an architecture (`SGDRuns`) and its measurement."""

    def __init__(self, model: Any, config: ResidualConfig, blocks: int, probe: Any) -> None:
        import keras

        from keras_initlab.measurement import Measurement, probe_data

        self.model, self.config = model, config
        self.runs = SGDRuns(
            model,
            learning_rate=config.learning_rate,
            momentum=config.momentum,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        self.layers = [STEM, *(add_name(i) for i in range(1, blocks + 1))]
        self.measurement = Measurement(model, layers=self.layers)
        self.probe = probe_data(probe)

    def run(self, architecture: str, scheme: str, seed: int, data: Dataset, on_epoch: Any):
        import keras

        config, model = self.config, self.model
        self.runs.reset()
        apply_scheme(model, scheme, seed=seed, x=data.x_train)
        records = {r["layer"]: r for r in self.measurement(self.probe, epoch=0)}
        stream = [float(records[name]["activation_var"]) for name in self.layers]
        keras.utils.set_random_seed(config.seed)
        callback = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch(epoch, logs or {})
        )
        history = model.fit(
            data.x_train,
            data.y_train,
            epochs=config.epochs,
            batch_size=config.batch_size,
            validation_data=(data.x_test, data.y_test),
            validation_batch_size=len(data.y_test),
            callbacks=[callback],
            verbose=0,
        ).history
        return ResidualRun(
            architecture,
            scheme,
            seed,
            stream,
            [float(v) for v in history["loss"]],
            [float(v) for v in history["val_loss"]],
            [float(v) for v in history["val_accuracy"]],
        )


def _build(architecture: str, data: Dataset, config: ResidualConfig, gated: bool) -> Any:
    gate = None
    if gated:  # SkipInit: a scalar gate, 0 at initialization, ends every branch
        from keras_initlab.residual_gate import ResidualGate

        def gate(name: str) -> Any:
            return ResidualGate(name=name)

    if architecture == "mlp":
        return build_residual_mlp(
            data.num_features,
            data.num_classes,
            blocks=config.blocks,
            width=config.width,
            gate=gate,
        )
    return build_residual_cnn(
        data.num_features,
        data.num_classes,
        blocks=config.cnn_blocks,
        channels=config.channels,
        gate=gate,
    )


def run_residual(
    config: ResidualConfig | None = None,
    *,
    progress: TextIO | None = None,
    data: Dataset | None = None,
) -> ResidualResult:
    """Train every architecture of ``config`` under every scheme and seed:
    `keras_initlab.compare.harness.run_experiment` of ``RESIDUAL``.

    Args:
        config: the run (default: ``ResidualConfig()``).
        progress: stream for the progress lines, e.g. ``sys.stderr`` (None: silent).
        data: an already loaded dataset (default: ``load_dataset(config.dataset)``).

    Returns:
        A `ResidualResult`.

    Raises:
        ValueError: an invalid config (or a CNN on data that are not square images).
        ExperimentInterrupted: Ctrl-C; its ``result`` holds the runs that finished.

    Example:
    >>> from keras_initlab.compare.residual.config import ResidualConfig
    >>> config = ResidualConfig(schemes=("he_normal+zero",), architectures=("mlp",),
    ...     blocks=2, width=8, epochs=1, seeds=1, train_limit=64, test_limit=32)
    >>> result = run_residual(config)
    >>> [round(v, 6) for v in result.runs[0].relative_stream]
    [1.0, 1.0, 1.0]
    """
    from keras_initlab.compare.residual.definition import RESIDUAL

    result: ResidualResult = run_experiment(RESIDUAL, config, progress=progress, data=data)
    return result


def check_data(config: ResidualConfig, data: Dataset) -> None:
    """Raise ValueError when ``config`` has a CNN and ``data`` are not square images."""
    if "cnn" in config.architectures:
        image_side(data.num_features)


def plan_residual(config: ResidualConfig, data: Dataset) -> Plan:
    """The runs: every architecture, under every scheme, under every seed (in that order).

    One model per architecture (and one with gates for ``he_normal+skipinit``), built when
    its first run starts.
    """
    probe = np.asarray(data.x_test[: config.probe_size])
    fitters: dict[tuple[str, bool], _Fitter] = {}

    def train(architecture: str, scheme: str, seed: int) -> Callable[[OnEpoch], ResidualRun]:
        def run(on_epoch: OnEpoch) -> ResidualRun:
            gated = split_scheme(scheme)[1] == "skipinit"
            if (architecture, gated) not in fitters:
                model = _build(architecture, data, config, gated)
                blocks = config.depth(architecture)
                fitters[architecture, gated] = _Fitter(model, config, blocks, probe)
            return fitters[architecture, gated].run(architecture, scheme, seed, data, on_epoch)

        return run

    def collect(runs: list[ResidualRun], _: None, seconds: float, partial: bool) -> ResidualResult:
        return ResidualResult(config, describe(data), runs, seconds, partial)

    return Plan(
        [
            (f"{architecture} {scheme} s{seed}", train(architecture, scheme, seed))
            for architecture in config.architectures
            for scheme in config.schemes
            for seed in config.seed_values
        ],
        collect,
    )
