"""Constant kernels: the symmetric starting point the tutorial warns about."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_initlab._validation import check_finite
from keras_initlab.initializers._base import Scheme


@keras.saving.register_keras_serializable(package="keras_initlab")
class Constant(Scheme):
    """Every entry equals ``value``.

    With a constant kernel and zero biases all units of a layer compute the same function,
    receive the same gradient and stay identical through training: the layer learns one
    feature however wide it is. Useful for biases and for demonstrating that failure.

    Args:
        value: a finite number.

    Example:
    >>> keras.ops.convert_to_numpy(Constant(0.5)((2, 3))).tolist()
    [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
    >>> layer = keras.layers.Dense(3, kernel_initializer=Constant(0.5))
    """

    def __init__(self, value: float = 0.0):
        self.value = check_finite("value", value)

    def variance(self, shape: Any) -> float:
        return 0.0

    def _generate(self, shape: tuple[int, ...]) -> Any:
        return ops.full(shape, self.value, dtype="float32")


@keras.saving.register_keras_serializable(package="keras_initlab")
class Zeros(Constant):
    """Every entry is 0 (``Constant(0.0)``): no gradient flows past a zero kernel.

    Example:
    >>> keras.ops.convert_to_numpy(Zeros()((2,))).tolist()
    [0.0, 0.0]
    """

    def __init__(self) -> None:
        super().__init__(0.0)

    def _generate(self, shape: tuple[int, ...]) -> Any:
        return ops.zeros(shape, dtype="float32")  # cheaper than filling with 0.0
