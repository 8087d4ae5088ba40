"""Train the deep transformers under every scheme and seed, and measure them at initialization.

For each architecture one model is built and compiled (`SGDRuns` with Adam), so Keras
traces its training step once; before each scheme and seed every weight is put back to its
value at build time (normalization weights, gates), the scheme re-draws the kernels and the
token table (`apply_scheme`), the optimizer's variables are restored and
``keras.utils.set_random_seed(config.seed)`` fixes the batch order, so runs differ only in
their weights. At initialization `keras_initlab.Measurement` records the stream's variance
and its gradient's after the token embedding and after every residual sum on held-out
windows, `keras_initlab.propagate` predicts the same variances from the weights alone, and
the test loss is evaluated; then each of ``config.epochs`` rounds trains ``config.steps``
steps on windows no earlier round saw and evaluates the test loss.

The seeds are not stacked into one model (`keras_initlab.compare.harness.stacking`): the
training step is traced once per architecture already, and on one thread a stacked model
computes its towers one after another, so stacking would save nothing and lose the
per-run progress and Ctrl-C granularity.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, TextIO

from keras_initlab.compare.datasets import Dataset, describe
from keras_initlab.compare.harness.experiment import OnEpoch, Plan
from keras_initlab.compare.harness.runner import run_experiment
from keras_initlab.compare.harness.runs import SetupResult
from keras_initlab.compare.sgd_runs import SGDRuns
from keras_initlab.compare.transformer.config import TransformerConfig
from keras_initlab.compare.transformer.models import EMBEDDING, build_decoder, sum_names
from keras_initlab.compare.transformer.text import load_stdlib, stdlib_text, unigram_loss

__all__ = [
    "TABLE_SEED_OFFSET",
    "TransformerResult",
    "TransformerRun",
    "apply_scheme",
    "check_data",
    "load_data",
    "plan_transformer",
    "run_transformer",
]

TABLE_SEED_OFFSET = 1_000_003
"""The token table of seed ``s`` is drawn with seed ``s + TABLE_SEED_OFFSET`` where the
experiment draws it (the kernels' seeds derive from ``s``)."""


@dataclasses.dataclass
class TransformerRun:
    """One architecture under one scheme and one seed.

    Attributes:
        architecture, scheme, seed: what was trained.
        stream: the stream's variance at initialization after the token embedding, then
            after each residual sum (``1 + 2 depth`` values).
        predicted: `keras_initlab.propagate`'s prediction of the same variances.
        gradient: the variance of the loss's gradient at the same tensors.
        initial_loss: the test loss at initialization.
        loss, test_loss: the training loss and the test loss after each round.
    """

    architecture: str
    scheme: str
    seed: int
    stream: list[float]
    predicted: list[float]
    gradient: list[float]
    initial_loss: float
    loss: list[float]
    test_loss: list[float]

    @property
    def growth(self) -> float:
        """The last sum's variance over the first sum's: the stream's growth through the
        blocks (not over the embedding, whose scale each scheme sets on its own)."""
        return _ratio(self.stream[-1], self.stream[1])

    @property
    def predicted_growth(self) -> float:
        return _ratio(self.predicted[-1], self.predicted[1])

    @property
    def diverged(self) -> bool:
        """The training or test loss became NaN or infinite."""
        return not all(math.isfinite(v) for v in (*self.loss, *self.test_loss))

    @property
    def final_test_loss(self) -> float:
        return self.test_loss[-1] if self.test_loss and not self.diverged else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else math.nan


@dataclasses.dataclass
class TransformerResult(SetupResult[TransformerConfig, TransformerRun]):
    """Every run of an experiment (`SetupResult`): ``config`` a `TransformerConfig`,
    ``runs`` one `TransformerRun` per architecture, scheme and seed, ``dataset`` the
    windows' description with the text's ``sha256`` and ``unigram_loss`` (the test windows'
    byte-frequency entropy); `spread_of` reads ``"growth"``, ``"final_test_loss"``, ..."""

    @property
    def unigram_loss(self) -> float:
        return float(self.dataset["unigram_loss"])


def _table_std(scheme: str, width: int) -> float | None:
    """The std the experiment draws the token table with under ``scheme``, or None where
    the recipe draws it itself (``gpt2``, ``t_fixup``)."""
    if scheme == "normal_0.02":
        return 0.02  # keras_hub's GPT-2: every weight N(0, 0.02)
    if scheme == "small_init":
        return math.sqrt(2.0 / (5.0 * width))  # GPT-NeoX draws its embedding so
    if scheme in ("gpt2", "t_fixup"):
        return None
    return 1.0  # unit-variance tokens: the input scale variance-preserving schemes assume


def apply_scheme(model: Any, scheme: str, *, seed: int) -> Any:
    """Re-initialize ``model`` (`build_decoder`'s) under the experiment scheme ``scheme``.

    The token table first: N(0, 0.02) for ``"normal_0.02"``, SmallInit's
    ``sqrt(2 / (5 width))`` for ``"small_init"``, N(0, 1) for He, LeCun, Xavier, DeepNet
    and ``auto`` (which then scales it to unit output variance itself); the recipes
    ``"gpt2"`` and ``"t_fixup"`` draw it themselves. Then the kernels:
    ``initialize(model, RandomNormal(0, 0.02), seed=seed)`` for ``"normal_0.02"``, else
    ``initialize(model, scheme, seed=seed)`` (a scheme name or a recipe).

    Example:
    >>> model = build_decoder("pre_ln", vocabulary=8, length=4, depth=1, width=8, heads=2)
    >>> model = apply_scheme(model, "normal_0.02", seed=0)
    >>> round(float(model.get_layer("tokens").embeddings.numpy().std()), 2)
    0.02
    """
    import keras

    from keras_initlab.initialize import initialize
    from keras_initlab.initializers import RandomNormal

    layer = model.get_layer(EMBEDDING)
    std = _table_std(scheme, int(layer.embeddings.shape[-1]))
    if std is not None:
        draw = RandomNormal(0.0, std, seed=seed + TABLE_SEED_OFFSET)
        layer.embeddings.assign(keras.ops.cast(draw(layer.embeddings.shape), "float32"))
    kernels: Any = RandomNormal(0.0, 0.02) if scheme == "normal_0.02" else scheme
    return initialize(model, kernels, seed=seed)


def _optimizer(config: TransformerConfig) -> Any:
    import keras

    warmup = round(config.warmup * config.total_steps)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else config.learning_rate,
        decay_steps=max(1, config.total_steps - warmup),
        alpha=0.1,
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    return keras.optimizers.Adam(schedule, beta_1=config.momentum, beta_2=config.beta_2)


class _Trainer:
    """One compiled model of an architecture, its start weights and its measurement."""

    def __init__(self, architecture: str, config: TransformerConfig, data: Dataset) -> None:
        import keras

        from keras_initlab.measurement import Measurement, probe_data

        self.architecture, self.config, self.data = architecture, config, data
        self.model = build_decoder(
            architecture,
            vocabulary=data.num_classes,
            length=data.num_features,
            depth=config.depth,
            width=config.width,
            heads=config.heads,
        )
        self.start = self.model.get_weights()
        self.runs = SGDRuns(
            self.model,
            learning_rate=config.learning_rate,
            momentum=config.momentum,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=None,
            optimizer=_optimizer(config),
        )
        self.layers = [EMBEDDING, *sum_names(config.depth)]
        self.measurement = Measurement(self.model, layers=self.layers)
        n = config.probe_size
        self.probe = probe_data((data.x_test[:n], data.y_test[:n]))

    def _evaluate(self) -> float:
        data = self.data
        return float(
            self.model.evaluate(
                data.x_test, data.y_test, batch_size=self.config.batch_size, verbose=0
            )
        )

    def run(self, scheme: str, seed: int, on_epoch: OnEpoch) -> TransformerRun:
        import keras

        from keras_initlab.propagate import propagate

        config, model, data = self.config, self.model, self.data
        model.set_weights(self.start)
        self.runs.reset()
        apply_scheme(model, scheme, seed=seed)
        records = {r["layer"]: r for r in self.measurement(self.probe, epoch=0)}
        rows = propagate(model, input_shapes=[(data.num_features,)]).by_layer()
        stream = [float(records[name]["activation_var"]) for name in self.layers]
        gradient = [float(records[name]["gradient_var"]) for name in self.layers]
        predicted = [float(rows[name].activation_var) for name in self.layers]
        initial = self._evaluate()
        keras.utils.set_random_seed(config.seed)
        per_round = config.steps * config.batch_size
        loss, test_loss = [], []
        for epoch in range(config.epochs):
            part = slice(epoch * per_round, (epoch + 1) * per_round)
            history = model.fit(
                data.x_train[part], data.y_train[part], batch_size=config.batch_size, verbose=0
            ).history
            loss.append(float(history["loss"][-1]))
            test_loss.append(self._evaluate())
            on_epoch(epoch, {"loss": loss[-1]})
        return TransformerRun(
            self.architecture, scheme, seed, stream, predicted, gradient, initial, loss, test_loss
        )


def run_transformer(
    config: TransformerConfig | None = None,
    *,
    progress: TextIO | None = None,
    data: Dataset | None = None,
) -> TransformerResult:
    """Train every setup of ``config`` under every seed:
    `keras_initlab.compare.harness.run_experiment` of ``TRANSFORMER``.

    Args:
        config: the run (default: ``TransformerConfig()``).
        progress: stream for the progress lines, e.g. ``sys.stderr`` (None: silent).
        data: already loaded windows (default: `load_data`).

    Returns:
        A `TransformerResult`.

    Raises:
        ValueError: an invalid config, or too few training windows for its steps.
        ExperimentInterrupted: Ctrl-C; its ``result`` holds the runs that finished.

    Example:
    >>> from keras_initlab.compare.transformer.config import TransformerConfig
    >>> config = TransformerConfig(schemes=("gpt2",), architectures=("pre_ln",), depth=2,
    ...     width=8, heads=2, length=8, epochs=1, steps=2, batch_size=4, seeds=1,
    ...     probe_size=8, test_limit=16)
    >>> run = run_transformer(config).runs[0]
    >>> len(run.stream), len(run.test_loss)
    (5, 1)
    """
    from keras_initlab.compare.transformer.definition import TRANSFORMER

    result: TransformerResult = run_experiment(TRANSFORMER, config, progress=progress, data=data)
    return result


def load_data(config: TransformerConfig) -> Dataset:
    """The standard library's windows of ``config.length`` tokens (`load_stdlib`)."""
    return load_stdlib(config.length, seed=config.seed)


def check_data(config: TransformerConfig, data: Dataset) -> None:
    """Raise ValueError when ``data`` has too few training windows for every round's fresh
    ones, or windows of another length than ``config.length``."""
    needed = config.total_steps * config.batch_size
    if len(data.y_train) < needed:
        raise ValueError(
            f"The transformer experiment trains on {needed} windows ({config.epochs} rounds "
            f"of {config.steps} steps of {config.batch_size}), each seen once; the data "
            f"hold {len(data.y_train)}. Lower `steps`, `epochs` or `batch_size`."
        )
    if data.num_features != config.length:
        raise ValueError(
            f"The windows hold {data.num_features} tokens; the config reads length={config.length}."
        )


def plan_transformer(config: TransformerConfig, data: Dataset) -> Plan:
    """The runs: every architecture, under each of its schemes, under every seed (in that
    order). One model per architecture, built when its first run starts."""
    trainers: dict[str, _Trainer] = {}
    info = {
        **describe(data),
        "sha256": stdlib_text()[1],
        "unigram_loss": unigram_loss(data.y_test),
    }

    def train(architecture: str, scheme: str, seed: int) -> Callable[[OnEpoch], TransformerRun]:
        def run(on_epoch: OnEpoch) -> TransformerRun:
            if architecture not in trainers:
                trainers[architecture] = _Trainer(architecture, config, data)
            return trainers[architecture].run(scheme, seed, on_epoch)

        return run

    def collect(runs: list[TransformerRun], _: None, seconds: float, partial: bool) -> Any:
        return TransformerResult(config, info, runs, seconds, partial)

    return Plan(
        [
            (f"{architecture} {scheme} s{seed}", train(architecture, scheme, seed))
            for architecture, scheme in config.setups
            for seed in config.seed_values
        ],
        collect,
    )
