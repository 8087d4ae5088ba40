"""Training the seeds of one scheme together in a stacked model and measuring them.

For each scheme, the seeds are trained together: one stacked model
(``models.build_stacked_mlp``) holds an independent MLP per seed, each re-initialized by
``setups.apply_scheme(tower, ..., seed=seed)``; one ``fit`` with SGD with momentum trains all
of them on the same batches (the sum of the towers' losses gives each tower the gradient of
its own loss). A ``keras_initlab.measurement.Measurement`` measures every tower's layers on
a fixed probe of held-out examples, at initialization (step 0) and after training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from keras_initlab.compare.config import CompareConfig
from keras_initlab.compare.datasets import Dataset
from keras_initlab.compare.harness.stacking import split_tower, tower_history, tower_name
from keras_initlab.compare.models import OUTPUT_NAME, build_stacked_mlp, hidden_names
from keras_initlab.compare.results import SchemeResult, SeedRun
from keras_initlab.compare.setups import apply_scheme
from keras_initlab.compare.sgd_runs import SGDRuns
from keras_initlab.compare.spread import spread

# Points per side of the grid on which a 2-D dataset's decision boundary is drawn.
BOUNDARY_GRID = 80
BOUNDARY_MARGIN = 0.5  # the grid extends this far beyond the data (standardized units)


def as_float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(float(value))


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
        self._models: dict[str, tuple[Any, SGDRuns, Any]] = {}

    def __repr__(self) -> str:
        return f"Trainer({self.data!r}, models={sorted(self._models)})"

    def _model(self, activation: str) -> tuple[Any, SGDRuns, Any]:
        """The compiled stacked model, its `SGDRuns`, its measurement and probe.

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
            sgd = SGDRuns(
                model,
                learning_rate=config.learning_rate,
                momentum=config.momentum,
                loss={
                    k: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for k in keys
                },
                metrics={k: ["accuracy"] for k in keys},
            )
            x, y = self.data.x_test[: config.probe_size], self.data.y_test[: config.probe_size]
            layers = [*hidden_names(config.depth), OUTPUT_NAME]
            measurement = Measurement(
                model, layers=[f"{k}/{layer}" for k in keys for layer in layers]
            )
            probe = probe_data((x, {k: y for k in keys}))
            self._models[activation] = (model, sgd, (measurement, probe))
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
        model, sgd, (measurement, probe) = self._model(activation)
        keras.utils.set_random_seed(config.seed)
        sgd.reset()
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
        # Measured at initialization and after training only: two probe passes per scheme.
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
            key, layer = split_tower(record["layer"])
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
            return as_float(r["distinct_units"]) if ok else math.nan

        return SeedRun(
            seed=seed,
            activation_var=[as_float(first[k]["activation_var"]) for k in layers],
            gradient_var=[as_float(first[k]["gradient_var"]) for k in layers],
            final_activation_var=[as_float(last[k]["activation_var"]) for k in layers],
            distinct_units=[units(k) for k in hidden],
            loss=tower_history(logs, key, "loss", single),
            accuracy=tower_history(logs, key, "accuracy", single),
            test_loss=tower_history(logs, key, "val_loss", single),
            test_accuracy=tower_history(logs, key, "val_accuracy", single),
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


def boundary_axes(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The x and y coordinates of the decision-boundary grid of a 2-D dataset."""
    points = np.concatenate([data.x_train, data.x_test])
    low, high = points.min(axis=0) - BOUNDARY_MARGIN, points.max(axis=0) + BOUNDARY_MARGIN
    return (
        np.linspace(low[0], high[0], BOUNDARY_GRID),
        np.linspace(low[1], high[1], BOUNDARY_GRID),
    )
