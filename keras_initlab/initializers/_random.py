"""Fixed-scale random kernels: the tutorial's "too small" and "too large" weights."""

from __future__ import annotations

from typing import Any

import keras

from keras_initlab._validation import check_finite, check_positive
from keras_initlab.initializers._base import RandomScheme


@keras.saving.register_keras_serializable(package="keras_initlab")
class RandomNormal(RandomScheme):
    """``W ~ N(mean, stddev**2)``, whatever the shape (Keras' defaults: 0, 0.05).

    A fixed scale breaks the symmetry but ignores the fan: too small a ``stddev`` makes the
    signal vanish with depth, too large a one makes it explode.

    Args:
        mean: a finite number.
        stddev: a positive number.
        seed: int, ``keras.random.SeedGenerator`` or None (see ``keras_initlab.initializers``).

    Example:
    >>> layer = keras.layers.Dense(8, kernel_initializer=RandomNormal(stddev=0.01, seed=0))
    >>> RandomNormal(stddev=0.01).variance((4, 8))
    0.0001
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: Any = None):
        self.mean = check_finite("mean", mean)
        self.stddev = check_positive("stddev", stddev)
        super().__init__(seed)

    def variance(self, shape: Any) -> float:
        return self.stddev**2

    def _generate(self, shape: tuple[int, ...]) -> Any:
        return self._normal(shape, self.stddev, self.mean)


@keras.saving.register_keras_serializable(package="keras_initlab")
class RandomUniform(RandomScheme):
    """``W ~ U(minval, maxval)``, whatever the shape (Keras' defaults: -0.05, 0.05).

    Variance ``(maxval - minval)**2 / 12``.

    Args:
        minval: a finite number.
        maxval: a finite number above ``minval``.
        seed: int, ``keras.random.SeedGenerator`` or None (see ``keras_initlab.initializers``).

    Example:
    >>> layer = keras.layers.Dense(8, kernel_initializer=RandomUniform(-1.0, 1.0, seed=0))
    >>> RandomUniform(-3.0, 3.0).variance((4, 8))
    3.0
    """

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: Any = None):
        self.minval = check_finite("minval", minval)
        self.maxval = check_finite("maxval", maxval)
        if not self.maxval > self.minval:
            raise ValueError(
                "Argument `maxval` must be greater than `minval`. "
                f"Received: minval={minval!r}, maxval={maxval!r}"
            )
        super().__init__(seed)

    def variance(self, shape: Any) -> float:
        return (self.maxval - self.minval) ** 2 / 12.0

    def _generate(self, shape: tuple[int, ...]) -> Any:
        return self._uniform(shape, self.minval, self.maxval)
