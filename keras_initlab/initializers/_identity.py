"""Scaled identity kernels: the tutorial's ``1.5 I`` and ``0.5 I``, also for convs (Dirac)."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from keras_initlab._validation import check_positive, check_rank
from keras_initlab.initializers._base import Scheme
from keras_initlab.initializers._orthogonal import centre_tap


@keras.saving.register_keras_serializable(package="keras_initlab")
class ScaledIdentity(Scheme):
    """``W = scale * I``: the identity matrix, or the Dirac (identity) kernel for convs.

    A 2-D kernel ``(in, out)`` gets ``scale`` on its diagonal (rectangular kernels too); a
    conv kernel ``(k..., in, out)`` gets ``scale * I`` at its centre tap ``(k - 1) // 2`` on
    each spatial axis and 0 elsewhere, so a ``padding="same"`` conv passes its input through,
    scaled, for odd and even kernel sizes. A stack of ``L`` such linear layers multiplies
    the signal by ``scale**L``: with 1.5 it explodes, with 0.5 it vanishes, the tutorial's
    experiment. Deterministic: no seed.

    Args:
        scale: positive multiplier of the identity.

    Raises:
        ValueError: a shape of rank < 2.

    Example:
    >>> keras.ops.convert_to_numpy(ScaledIdentity(1.5)((2, 2))).tolist()
    [[1.5, 0.0], [0.0, 1.5]]
    >>> layer = keras.layers.Dense(2, kernel_initializer=ScaledIdentity(0.5))
    """

    def __init__(self, scale: float = 1.0):
        self.scale = check_positive("scale", scale)

    @staticmethod
    def _check(shape: tuple[int, ...]) -> None:
        check_rank("ScaledIdentity", shape, 2)

    def variance(self, shape: Any) -> float:
        shape = tuple(shape)
        self._check(shape)
        n = math.prod(shape)
        ones = min(shape[-2], shape[-1])
        mean = self.scale * ones / n
        return self.scale**2 * ones / n - mean**2

    def _generate(self, shape: tuple[int, ...]) -> Any:
        self._check(shape)
        eye = self.scale * ops.eye(shape[-2], shape[-1], dtype="float32")
        return eye if len(shape) == 2 else centre_tap(eye, shape)
