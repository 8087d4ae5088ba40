"""One model compiled once for many runs, each from the same optimizer state."""

from __future__ import annotations

from typing import Any


class SGDRuns:
    """``model`` compiled with SGD with momentum (or ``optimizer``), and its optimizer's start
    state.

    Keras traces a model's training step once per compile, so the experiments compile one
    model and re-draw its weights before each run; `reset` puts the optimizer's variables
    (step counter, momenta) back as they were when it was built, so runs differ only in
    their weights.

    Args:
        model: the model to compile.
        learning_rate, momentum: SGD's.
        loss, metrics: as in ``model.compile``.
        optimizer: another Keras optimizer, compiled instead of SGD (``learning_rate`` and
            ``momentum`` then go unused); a learning-rate schedule restarts with the step
            counter.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> runs = SGDRuns(model, learning_rate=0.1, momentum=0.9, loss="mse", metrics=None)
    >>> _ = model.fit(keras.ops.ones((4, 2)), keras.ops.zeros((4, 1)), verbose=0)
    >>> int(model.optimizer.iterations.numpy())
    1
    >>> runs.reset()
    >>> int(model.optimizer.iterations.numpy())
    0
    """

    def __init__(
        self,
        model: Any,
        *,
        learning_rate: float,
        momentum: float,
        loss: Any,
        metrics: Any,
        optimizer: Any = None,
    ) -> None:
        import keras

        model.compile(
            optimizer=optimizer or keras.optimizers.SGD(learning_rate, momentum=momentum),
            loss=loss,
            metrics=metrics,
        )
        model.optimizer.build(model.trainable_variables)
        self._start = [(v, keras.ops.convert_to_numpy(v.value)) for v in model.optimizer.variables]

    def __repr__(self) -> str:
        return f"SGDRuns(variables={len(self._start)})"

    def reset(self) -> None:
        """Put the optimizer's variables back to their start values."""
        for variable, value in self._start:
            variable.assign(value)
