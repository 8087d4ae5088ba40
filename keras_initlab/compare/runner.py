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

import collections
import dataclasses
import math
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import numpy as np

from keras_initlab.compare.config import CONTRAST_SCHEMES, CompareConfig, check_config
from keras_initlab.compare.datasets import Dataset, describe, load_dataset
from keras_initlab.compare.models import (
    OUTPUT_NAME,
    build_stacked_mlp,
    hidden_names,
    tower_name,
)
from keras_initlab.compare.setups import apply_scheme
from keras_initlab.compare.spread import Spread, elementwise_median, spread
from keras_initlab.compare.verdicts import backward_ratio, forward_ratio, verdict

# Points per side of the grid on which a 2-D dataset's decision boundary is drawn.
BOUNDARY_GRID = 80
BOUNDARY_MARGIN = 0.5  # the grid extends this far beyond the data (standardized units)
WIDTH_CHECK_SCHEME = "he_normal"  # the scheme whose finite-width fluctuation is measured
_BAR_WIDTH = 12  # characters of the progress bar (a finished line fits in 79 columns)


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

    The list attributes of design.md's JSON format (``activation_var``, ``gradient_var``,
    ``distinct_units``, ``loss``, ``accuracy``, ...) are the medians over seeds, layer by
    layer or epoch by epoch; ``activation_ratio`` and ``gradient_ratio`` are the medians of
    the seeds' own ratios, ``*_spread`` their median and range.
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

    def __repr__(self) -> str:
        return (
            f"CompareResult(dataset={self.dataset['name']!r}, schemes={list(self.schemes)}, "
            f"contrast={list(self.contrast)}, seeds={self.config.seed_values}, "
            f"seconds={self.seconds:.0f}{', partial' if self.partial else ''})"
        )


class ComparisonInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``run_comparison``; ``result`` holds the runs that finished (partial)."""

    def __init__(self, result: CompareResult) -> None:
        super().__init__()
        self.result = result


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class _Progress:
    """One progress line per run (a scheme, all its seeds) with elapsed time and an ETA.

    On a terminal the line is redrawn in place (``\\r``), padded to clear what a longer
    line left and cut to the terminal's width so that it never wraps; elsewhere only the
    finished line is written.
    """

    def __init__(self, stream: TextIO | None, total: int, epochs: int) -> None:
        self.stream, self.total, self.index = stream, total, 0
        self.epochs_total, self.epochs_done = total * epochs, 0
        self.start_time = time.perf_counter()
        self._shown = 0

    def _write(self, line: str, *, final: bool) -> None:
        stream = self.stream
        if stream is None:
            return
        if stream.isatty():
            columns = shutil.get_terminal_size((80, 24)).columns - 1
            line = line[:columns]
            stream.write("\r" + line.ljust(self._shown) + ("\n" if final else ""))
            self._shown = 0 if final else len(line)
        elif final:
            stream.write(line + "\n")
        stream.flush()

    def start(self, label: str, epochs: int) -> Callable[[int, dict[str, Any]], None]:
        self.index += 1
        prefix = f"[{self.index:>2}/{self.total}] {label:<22}"

        def update(epoch: int, logs: dict[str, Any]) -> None:
            done = epoch + 1
            self.epochs_done += 1
            elapsed = time.perf_counter() - self.start_time
            left = self.epochs_total - self.epochs_done
            eta = elapsed / self.epochs_done * left
            bar = "#" * (done * _BAR_WIDTH // epochs)
            line = (
                f"{prefix} |{bar:<{_BAR_WIDTH}}| {done}/{epochs} "
                f"loss {logs.get('loss', math.nan):.3g} "
                f"{_clock(elapsed)} ETA {_clock(eta)}"
            )
            self._write(line, final=done == epochs)

        return update


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _split_layer(name: str) -> tuple[str, str]:
    """``("seed_3", "hidden_2")`` from a monitored path ``".../seed_3/hidden_2"``."""
    parts = str(name).split("/")
    return (parts[-2] if len(parts) > 1 else ""), parts[-1]


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(float(value))


def _history(logs: dict[str, list[float]], key: str, metric: str, single: bool) -> list[float]:
    """One tower's per-epoch values from a multi-output ``History`` (no prefix for one)."""
    name = metric if single else f"{key}_{metric}"
    if metric.startswith("val_"):
        name = metric if single else f"val_{key}_{metric[4:]}"
    return [float(v) for v in logs[name]]


class Trainer:
    """Trains the seeds of one scheme after another, with one compiled model per activation.

    The stacked model of an activation (``models.build_stacked_mlp``, a tower per seed) is
    built and compiled once (so Keras traces its training and test functions once); before
    each scheme, ``keras.utils.set_random_seed(config.seed)`` is called, every tower is
    re-initialized by the scheme with its own seed and the optimizer's variables (step
    counter, momenta) are restored to their initial values, so every scheme starts from the
    same state apart from its weights.

    Args:
        data: the dataset.
        config: the run's configuration.
    """

    def __init__(self, data: Dataset, config: CompareConfig) -> None:
        self.data, self.config = data, config
        self._models: dict[str, tuple[Any, list[tuple[Any, Any]], Any]] = {}

    def __repr__(self) -> str:
        return f"Trainer({self.data!r}, models={sorted(self._models)})"

    def _model(self, activation: str) -> tuple[Any, list[tuple[Any, Any]], Any]:
        """The compiled stacked model, its optimizer's initial state, its measurement and probe.

        One `keras_initlab.measurement.Measurement` per model, with its probe: each scheme
        reuses the probe pass it traced.
        """
        import keras

        from keras_initlab.measurement import Measurement, probe_data

        if activation not in self._models:
            config = self.config
            model = build_stacked_mlp(
                self.data.num_features,
                self.data.num_classes,
                config.seed_values,
                depth=config.depth,
                width=config.width,
                activation=activation,
            )
            keys = [tower_name(s) for s in config.seed_values]
            model.compile(
                optimizer=keras.optimizers.SGD(config.learning_rate, momentum=config.momentum),
                loss={
                    k: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for k in keys
                },
                metrics={k: ["accuracy"] for k in keys},
            )
            model.optimizer.build(model.trainable_variables)
            initial = [(v, keras.ops.convert_to_numpy(v.value)) for v in model.optimizer.variables]
            x, y = self.data.x_test[: config.probe_size], self.data.y_test[: config.probe_size]
            layers = [*hidden_names(config.depth), OUTPUT_NAME]
            measurement = Measurement(
                model, layers=[f"{k}/{layer}" for k in keys for layer in layers]
            )
            probe = probe_data((x, {k: y for k in keys}))
            self._models[activation] = (model, initial, (measurement, probe))
        return self._models[activation]

    def train(
        self,
        name: str,
        *,
        activation: str,
        on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> SchemeResult:
        """Train every seed under one scheme and collect the measurements.

        Args:
            name: a compare scheme name.
            activation: hidden activation of this run.
            on_epoch: called with ``(epoch, {"loss": median over seeds})`` after each epoch.

        Returns:
            A ``SchemeResult``.
        """
        import keras

        start = time.perf_counter()
        config, data = self.config, self.data
        seeds = config.seed_values
        keys = [tower_name(s) for s in seeds]
        single = len(seeds) == 1
        model, optimizer_state, (measurement, probe) = self._model(activation)
        keras.utils.set_random_seed(config.seed)
        for variable, value in optimizer_state:
            variable.assign(value)
        for seed, key in zip(seeds, keys, strict=True):
            apply_scheme(
                model.get_layer(key),
                name,
                seed=seed,
                width=config.width,
                activation=activation,
                x=data.x_train,
            )
        layers = [*hidden_names(config.depth), OUTPUT_NAME]
        callbacks: list[Any] = []
        if on_epoch is not None:

            def report(epoch: int, logs: dict[str, Any]) -> None:
                losses = [logs.get("loss" if single else f"{k}_loss") for k in keys]
                on_epoch(epoch, {"loss": spread(losses).median})

            callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=report))
        records = measurement(probe, epoch=0)
        history = model.fit(
            data.x_train,
            {k: data.y_train for k in keys},
            epochs=config.epochs,
            batch_size=config.batch_size,
            validation_data=(data.x_test, {k: data.y_test for k in keys}),
            validation_batch_size=len(data.y_test),
            callbacks=callbacks,
            verbose=0,
        )
        records += measurement(probe, epoch=config.epochs)
        # records by tower and step; layer names without the tower prefix
        by_tower: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        for record in records:
            key, layer = _split_layer(record["layer"])
            by_tower[key].append(
                {"scheme": name, "seed": seeds[keys.index(key)], **record, "layer": layer}
            )
        logs = history.history
        boundaries = self._boundaries(model, keys) if data.num_features == 2 else {}
        runs = [
            self._seed_run(seed, by_tower[key], logs, key, single, boundaries.get(key))
            for seed, key in zip(seeds, keys, strict=True)
        ]
        return SchemeResult(name, activation, layers, runs, time.perf_counter() - start)

    def _seed_run(
        self,
        seed: int,
        records: list[dict[str, Any]],
        logs: dict[str, list[float]],
        key: str,
        single: bool,
        boundary: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> SeedRun:
        steps: dict[int, dict[str, dict[str, Any]]] = {}
        for record in records:
            steps.setdefault(int(record["step"]), {})[record["layer"]] = record
        first, last = steps[min(steps)], steps[max(steps)]
        layers = [*hidden_names(self.config.depth), OUTPUT_NAME]
        hidden = layers[:-1]

        def units(layer: str) -> float:  # judged only where the outputs were finite
            r = last[layer]
            ok = _finite(r["activation_var"]) and _finite(r["activation_mean"])
            return _float(r["distinct_units"]) if ok else math.nan

        return SeedRun(
            seed=seed,
            activation_var=[_float(first[k]["activation_var"]) for k in layers],
            gradient_var=[_float(first[k]["gradient_var"]) for k in layers],
            final_activation_var=[_float(last[k]["activation_var"]) for k in layers],
            distinct_units=[units(k) for k in hidden],
            loss=_history(logs, key, "loss", single),
            accuracy=_history(logs, key, "accuracy", single),
            test_loss=_history(logs, key, "val_loss", single),
            test_accuracy=_history(logs, key, "val_accuracy", single),
            records=records,
            boundary=boundary,
        )

    def _boundaries(
        self, model: Any, keys: list[str]
    ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``{tower: (xs, ys, classes)}``: the predicted class on a grid over a 2-D dataset."""
        xs, ys = boundary_axes(self.data)
        grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)
        logits = model.predict(grid, batch_size=len(grid), verbose=0)
        return {
            k: (xs, ys, np.argmax(logits[k], axis=-1).reshape(len(ys), len(xs)).astype(np.int16))
            for k in keys
        }


def measure_width_check(data: Dataset, config: CompareConfig) -> WidthCheck:
    """He's variance ratios across depth at initialization, ``check_seeds`` seeds per width.

    For each width of ``config.check_widths``, one stacked model (a tower per seed,
    ``config.depth`` hidden layers, ``config.activation``) is initialized with
    ``WIDTH_CHECK_SCHEME`` and measured by a VarianceMonitor on the same probe as the
    main runs, before any update.

    Returns:
        A ``WidthCheck``.
    """
    import keras

    from keras_initlab.measurement import measure

    seeds = [config.seed + i for i in range(config.check_seeds)]
    keys = [tower_name(s) for s in seeds]
    x, y = data.x_test[: config.probe_size], data.y_test[: config.probe_size]
    first, last = hidden_names(config.depth)[0], hidden_names(config.depth)[-1]
    act: dict[int, list[float]] = {}
    grad: dict[int, list[float]] = {}
    for width in config.check_widths:
        keras.utils.set_random_seed(config.seed)
        model = build_stacked_mlp(
            data.num_features,
            data.num_classes,
            seeds,
            depth=config.depth,
            width=width,
            activation=config.activation,
        )
        model.compile(
            optimizer="sgd",
            loss={k: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for k in keys},
        )
        for seed, key in zip(seeds, keys, strict=True):
            apply_scheme(
                model.get_layer(key),
                WIDTH_CHECK_SCHEME,
                seed=seed,
                width=width,
                activation=config.activation,
            )
        by_layer = {str(r["layer"]): r for r in measure(model, (x, {k: y for k in keys}))}
        act[width] = [
            forward_ratio([_float(by_layer[f"{k}/{n}"]["activation_var"]) for n in (first, last)])
            for k in keys
        ]
        grad[width] = [
            backward_ratio([_float(by_layer[f"{k}/{n}"]["gradient_var"]) for n in (first, last)])
            for k in keys
        ]
    return WidthCheck(config.activation, config.depth, seeds, act, grad)


def boundary_axes(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The x and y coordinates of the decision-boundary grid of a 2-D dataset."""
    points = np.concatenate([data.x_train, data.x_test])
    low, high = points.min(axis=0) - BOUNDARY_MARGIN, points.max(axis=0) + BOUNDARY_MARGIN
    return (
        np.linspace(low[0], high[0], BOUNDARY_GRID),
        np.linspace(low[1], high[1], BOUNDARY_GRID),
    )


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
    data = limit_data(data, config)
    contrast = contrast_schemes(config)
    runs = len(config.schemes) + len(contrast)
    if progress is not None:
        progress.write(f"{describe_run(config, data)}\n")
    bars = _Progress(progress, runs, config.epochs)
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
        widths = measure_width_check(data, config) if config.check_widths else None
    except KeyboardInterrupt:
        done = CompareResult(
            config, describe(data), results, contrasts, time.perf_counter() - start, partial=True
        )
        raise ComparisonInterrupted(done) from None
    seconds = time.perf_counter() - start
    return CompareResult(config, describe(data), results, contrasts, seconds, widths)


def limit_data(data: Dataset, config: CompareConfig) -> Dataset:
    """``data`` cut to ``config.train_limit`` / ``test_limit`` examples (the data trained on)."""
    return data.subset(
        config.train_limit or len(data.y_train), config.test_limit or len(data.y_test)
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


def make_reproducible() -> None:
    """Make TensorFlow give the same numbers on every rerun of the same run, on this machine.

    One intra-op and one inter-op thread (the order of float additions then no longer
    depends on scheduling; a small MLP loses little from it) where TensorFlow has not
    started yet, and ``tf.config.experimental.enable_op_determinism()``. Seeds are set by
    the runner itself (``keras.utils.set_random_seed`` before every scheme). It changes
    process-wide settings: the ``keras-initlab compare`` command calls it, a library user
    may.
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialized: its thread pools are fixed
        pass
    tf.config.experimental.enable_op_determinism()


def as_array(values: Sequence[float]) -> np.ndarray:
    """``values`` as float64 (None -> NaN), for plots."""
    return np.array([_float(v) for v in values], dtype=np.float64)
