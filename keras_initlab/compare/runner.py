"""Train the deep MLP under every scheme with the same data, seeds and optimizer.

For each scheme: ``keras.utils.set_random_seed(seed)``, build the MLP, re-initialize it with
``setups.apply_scheme(..., seed=seed)``, compile it with the same optimizer (SGD with
momentum, the same learning rate) and fit it on the same split with a
``keras_initlab.callbacks.VarianceMonitor`` watching a fixed probe of held-out examples.
The monitor records every layer at initialization (step 0) and after each epoch; the
runner keeps those records and the loss and accuracy of each epoch.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import numpy as np

from keras_initlab.compare.datasets import Dataset, describe, load_dataset
from keras_initlab.compare.models import OUTPUT_NAME, build_mlp, check_size, hidden_names
from keras_initlab.compare.setups import COMPARE_SCHEMES, apply_scheme, check_scheme_names
from keras_initlab.compare.verdicts import backward_ratio, forward_ratio, verdict

# Points per side of the grid on which a 2-D dataset's decision boundary is drawn.
BOUNDARY_GRID = 80
BOUNDARY_MARGIN = 0.5  # the grid extends this far beyond the data (standardized units)
# Schemes trained again under the contrast activation (Xavier vs He, claims 6-8).
CONTRAST_SCHEMES = ("xavier_normal", "he_normal")
_BAR_WIDTH = 20  # characters of the progress bar


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """Everything that defines a comparison run (the defaults are the default run).

    Attributes:
        dataset: dataset name or ``.npz`` path (``keras_initlab.compare.datasets``).
        schemes: compare scheme names (``setups.COMPARE_SCHEMES``).
        depth, width, activation: the MLP (``models.build_mlp``).
        contrast_activation: the activation ``CONTRAST_SCHEMES`` are trained again with
            (None: no contrast run).
        epochs, batch_size, learning_rate, momentum: the optimizer and schedule, the same
            for every scheme.
        seed: seed of the split, of every scheme's weights and of the batch order.
        probe_size: held-out examples the VarianceMonitor measures on.
        train_limit, test_limit: keep only the first examples of each split (None: all).
    """

    dataset: str = "digits"
    schemes: tuple[str, ...] = COMPARE_SCHEMES
    depth: int = 10
    width: int = 64
    activation: str = "relu"
    contrast_activation: str | None = "tanh"
    epochs: int = 15
    batch_size: int = 32
    learning_rate: float = 0.01
    momentum: float = 0.9
    seed: int = 0
    probe_size: int = 256
    train_limit: int | None = None
    test_limit: int | None = None


QUICK = {
    "depth": 6,
    "width": 32,
    "epochs": 2,
    "probe_size": 128,
    "train_limit": 512,
    "test_limit": 128,
}
"""Overrides of ``--quick``: a smoke run of every scheme in seconds."""


@dataclasses.dataclass
class SchemeResult:
    """The measurements of one scheme (hidden layers input side first, then ``output``).

    ``activation_var`` and ``gradient_var`` are per layer at initialization,
    ``distinct_units`` per hidden layer after training, the rest per epoch; ``records`` are
    all of the VarianceMonitor's records; ``boundary`` (2-D datasets only) is
    ``(xs, ys, classes)``, the trained network's class on a grid.
    """

    name: str
    activation: str
    layers: list[str]
    activation_var: list[float]
    gradient_var: list[float]
    distinct_units: list[float]
    loss: list[float]
    accuracy: list[float]
    test_loss: list[float]
    test_accuracy: list[float]
    records: list[dict[str, Any]]
    seconds: float
    boundary: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def hidden_activation_var(self) -> list[float]:
        return self.activation_var[:-1]

    @property
    def hidden_gradient_var(self) -> list[float]:
        return self.gradient_var[:-1]

    @property
    def activation_ratio(self) -> float:
        """Last over first hidden layer's activation variance at initialization."""
        return forward_ratio(self.hidden_activation_var)

    @property
    def gradient_ratio(self) -> float:
        """First over last hidden layer's gradient variance at initialization."""
        return backward_ratio(self.hidden_gradient_var)

    @property
    def verdict(self) -> str:
        return verdict(
            self.hidden_activation_var, self.hidden_gradient_var, self.distinct_units, self.loss
        )

    def __repr__(self) -> str:
        return (
            f"SchemeResult({self.name!r}, {self.activation}, verdict={self.verdict!r}, "
            f"test_accuracy={self.test_accuracy[-1] if self.test_accuracy else None})"
        )


@dataclasses.dataclass
class CompareResult:
    """A comparison: config, dataset summary, results by scheme, contrast results."""

    config: CompareConfig
    dataset: dict[str, Any]
    schemes: dict[str, SchemeResult]
    contrast: dict[str, SchemeResult]
    seconds: float
    partial: bool = False  # interrupted: only the runs that finished

    def __repr__(self) -> str:
        return (
            f"CompareResult(dataset={self.dataset['name']!r}, schemes={list(self.schemes)}, "
            f"contrast={list(self.contrast)}, seconds={self.seconds:.0f}"
            f"{', partial' if self.partial else ''})"
        )


class ComparisonInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``run_comparison``; ``result`` holds the runs that finished (partial)."""

    def __init__(self, result: CompareResult) -> None:
        super().__init__()
        self.result = result


class _Progress:
    """One progress bar line per scheme on a text stream (``\\r`` updates on a terminal)."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream, self.total, self.index = stream, total, 0

    def start(self, label: str, epochs: int) -> Callable[[int, dict[str, Any]], None]:
        self.index += 1
        prefix = f"[{self.index:>2}/{self.total}] {label:<22}"
        stream = self.stream
        live = stream is not None and stream.isatty()

        def update(epoch: int, logs: dict[str, Any]) -> None:
            if stream is None:
                return
            done = epoch + 1
            bar = "#" * (done * _BAR_WIDTH // epochs)
            line = (
                f"{prefix} |{bar:<{_BAR_WIDTH}}| epoch {done}/{epochs} "
                f"loss {logs.get('loss', math.nan):.4g} "
                f"test acc {logs.get('val_accuracy', math.nan):.3f}"
            )
            if live:
                stream.write("\r" + line + ("\n" if done == epochs else ""))
            elif done == epochs:
                stream.write(line + "\n")
            stream.flush()

        return update


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _layer_key(name: str) -> str:
    return str(name).split("/")[-1]


def _by_step(records: Sequence[dict[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    steps: dict[int, dict[str, dict[str, Any]]] = {}
    for record in records:
        steps.setdefault(int(record["step"]), {})[_layer_key(record["layer"])] = record
    return steps


class Trainer:
    """Trains the MLP under one scheme after another, with one compiled model per activation.

    The model of an activation is built and compiled once (so Keras traces its training and
    test functions once); before each scheme, ``keras.utils.set_random_seed(seed)`` is
    called, every weight is re-initialized by the scheme and the optimizer's variables
    (step counter, momenta) are restored to their initial values, so every scheme starts
    from the same state apart from its weights.

    Args:
        data: the dataset.
        config: the run's configuration.
    """

    def __init__(self, data: Dataset, config: CompareConfig) -> None:
        self.data, self.config = data, config
        self._models: dict[str, tuple[Any, list[tuple[Any, Any]]]] = {}

    def __repr__(self) -> str:
        return f"Trainer({self.data!r}, models={sorted(self._models)})"

    def _model(self, activation: str) -> tuple[Any, list[tuple[Any, Any]]]:
        import keras

        if activation not in self._models:
            config = self.config
            model = build_mlp(
                self.data.num_features,
                self.data.num_classes,
                depth=config.depth,
                width=config.width,
                activation=activation,
            )
            model.compile(
                optimizer=keras.optimizers.SGD(config.learning_rate, momentum=config.momentum),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )
            model.optimizer.build(model.trainable_variables)
            initial = [(v, keras.ops.convert_to_numpy(v.value)) for v in model.optimizer.variables]
            self._models[activation] = (model, initial)
        return self._models[activation]

    def train(
        self,
        name: str,
        *,
        activation: str,
        on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> SchemeResult:
        """Train under one scheme and collect its measurements.

        Args:
            name: a compare scheme name.
            activation: hidden activation of this run.
            on_epoch: called with ``(epoch, logs)`` after each epoch (progress display).

        Returns:
            A ``SchemeResult``.
        """
        import keras

        from keras_initlab.callbacks import VarianceMonitor

        start = time.perf_counter()
        config, data = self.config, self.data
        model, optimizer_state = self._model(activation)
        keras.utils.set_random_seed(config.seed)
        for variable, value in optimizer_state:
            variable.assign(value)
        apply_scheme(
            model, name, seed=config.seed, width=config.width, activation=activation, x=data.x_train
        )
        probe = (data.x_test[: config.probe_size], data.y_test[: config.probe_size])
        layers = [*hidden_names(config.depth), OUTPUT_NAME]
        monitor = VarianceMonitor(probe, layers=layers, alert=False)
        callbacks: list[Any] = [monitor]
        if on_epoch is not None:
            callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=on_epoch))
        history = model.fit(
            data.x_train,
            data.y_train,
            epochs=config.epochs,
            batch_size=config.batch_size,
            validation_data=(data.x_test, data.y_test),
            callbacks=callbacks,
            verbose=0,
        )
        records = [dict(r) for r in monitor.records]
        steps = _by_step(records)
        first, last = steps[min(steps)], steps[max(steps)]
        hidden = hidden_names(config.depth)
        logs = history.history
        return SchemeResult(
            name=name,
            activation=activation,
            layers=layers,
            activation_var=[_float(first[k]["activation_var"]) for k in layers],
            gradient_var=[_float(first[k]["gradient_var"]) for k in layers],
            distinct_units=[_float(last[k]["distinct_units"]) for k in hidden],
            loss=[float(v) for v in logs["loss"]],
            accuracy=[float(v) for v in logs["accuracy"]],
            test_loss=[float(v) for v in logs["val_loss"]],
            test_accuracy=[float(v) for v in logs["val_accuracy"]],
            records=[{"scheme": name, **r} for r in records],
            seconds=time.perf_counter() - start,
            boundary=self._boundary(model) if data.num_features == 2 else None,
        )

    def _boundary(self, model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(xs, ys, classes)``: the predicted class on a grid over a 2-D dataset."""
        xs, ys = boundary_axes(self.data)
        grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)
        logits = model.predict(grid, batch_size=len(grid), verbose=0)
        classes = np.argmax(logits, axis=-1).reshape(len(ys), len(xs)).astype(np.int16)
        return xs, ys, classes


def boundary_axes(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The x and y coordinates of the decision-boundary grid of a 2-D dataset."""
    points = np.concatenate([data.x_train, data.x_test])
    low, high = points.min(axis=0) - BOUNDARY_MARGIN, points.max(axis=0) + BOUNDARY_MARGIN
    return (
        np.linspace(low[0], high[0], BOUNDARY_GRID),
        np.linspace(low[1], high[1], BOUNDARY_GRID),
    )


def check_config(config: CompareConfig) -> CompareConfig:
    """Validate a config before any training; return it.

    Raises:
        ValueError: an unknown scheme or activation, or a non-positive size.
    """
    from keras_initlab._validation import check_choice, check_positive
    from keras_initlab.compare.datasets import check_dataset_name
    from keras_initlab.compare.models import ACTIVATIONS

    check_dataset_name(config.dataset)
    if not config.schemes:
        raise ValueError("Argument `schemes` must name at least one scheme. Received: schemes=()")
    check_scheme_names(list(config.schemes))
    check_choice("activation", config.activation, ACTIVATIONS)
    if config.contrast_activation is not None:
        check_choice("contrast_activation", config.contrast_activation, ACTIVATIONS)
    for field in ("depth", "width", "epochs", "batch_size", "probe_size"):
        check_size(field, getattr(config, field))
    if config.depth < 2:
        raise ValueError(
            f"Argument `depth` must be at least 2 (a first and a last hidden "
            f"layer to compare). Received: depth={config.depth}"
        )
    for field in ("train_limit", "test_limit"):
        if getattr(config, field) is not None:
            check_size(field, getattr(config, field))
    check_positive("learning_rate", config.learning_rate)
    if not 0.0 <= config.momentum < 1.0:
        raise ValueError(
            f"Argument `momentum` must be in [0, 1). Received: momentum={config.momentum!r}"
        )
    return config


def run_comparison(
    config: CompareConfig | None = None,
    *,
    progress: TextIO | None = None,
    data: Dataset | None = None,
) -> CompareResult:
    """Train every scheme of ``config`` (then the contrast schemes) and collect the results.

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
    config = check_config(config or CompareConfig())
    start = time.perf_counter()
    if data is None:
        data = load_dataset(config.dataset, seed=config.seed)
    train = config.train_limit or len(data.y_train)
    test = config.test_limit or len(data.y_test)
    data = data.subset(train, test)
    contrast = (
        ()
        if config.contrast_activation in (None, config.activation)
        else tuple(s for s in CONTRAST_SCHEMES if s in config.schemes)
    )
    bars = _Progress(progress, len(config.schemes) + len(contrast))
    trainer = Trainer(data, config)
    results: dict[str, SchemeResult] = {}
    contrasts: dict[str, SchemeResult] = {}
    try:
        for name in config.schemes:
            results[name] = trainer.train(
                name,
                activation=config.activation,
                on_epoch=bars.start(f"{name} ({config.activation})", config.epochs),
            )
        for name in contrast:
            act = str(config.contrast_activation)
            contrasts[name] = trainer.train(
                name, activation=act, on_epoch=bars.start(f"{name} ({act})", config.epochs)
            )
    except KeyboardInterrupt:
        done = CompareResult(
            config, describe(data), results, contrasts, time.perf_counter() - start, partial=True
        )
        raise ComparisonInterrupted(done) from None
    return CompareResult(config, describe(data), results, contrasts, time.perf_counter() - start)


def as_array(values: Sequence[float]) -> np.ndarray:
    """``values`` as float64 (None -> NaN), for plots."""
    return np.array([_float(v) for v in values], dtype=np.float64)
