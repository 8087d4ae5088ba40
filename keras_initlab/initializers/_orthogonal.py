"""Orthogonal kernels: plain (flattened), per recurrent gate, and delta-orthogonal for convs."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from keras_initlab._validation import check_choice, check_rank
from keras_initlab.fans import compute_fans
from keras_initlab.initializers._base import RandomScheme, resolve_gain

ORTHOGONAL_LAYOUTS = ("auto", "recurrent")


def _orthogonal_blocks(scheme: RandomScheme, blocks: int, rows: int, cols: int) -> Any:
    """``blocks`` independent Haar-orthogonal (rows, cols) matrices, float32.

    QR of a Gaussian (max, min) matrix, with the columns of Q multiplied by the signs of
    diag(R) so that the result is uniform (Haar) over the orthogonal group, not biased
    towards the signs QR happens to choose (Mezzadri 2007).
    """
    tall, short = max(rows, cols), min(rows, cols)
    a = scheme._normal((blocks, tall, short), 1.0)
    q, r = ops.qr(a)
    q = q * ops.expand_dims(ops.sign(ops.diagonal(r, axis1=-2, axis2=-1)), -2)
    return q if rows >= cols else ops.transpose(q, (0, 2, 1))


@keras.saving.register_keras_serializable(package="keras_initlab")
class Orthogonal(RandomScheme):
    """A (semi-)orthogonal kernel times ``gain``: ``W^T W = gain**2 I`` (or ``W W^T``).

    The kernel is flattened to ``(prod(shape[:-1]), shape[-1])``. With
    ``layout="recurrent"`` and ``layout_args={"gates": g}`` the kernel ``(rows, g * units)`` is
    made of ``g`` independent orthogonal blocks, one per gate, as an LSTM (g=4), GRU (3) or
    SimpleRNN (1) uses them; a single orthogonal ``(units, 4 units)`` matrix is not
    orthogonal per gate. Each entry has mean 0 and variance ``gain**2 / max(rows, cols)``.

    Args:
        gain: a positive number or an activation name (``keras_initlab.gain``).
        seed: int, ``keras.random.SeedGenerator`` or None (see ``keras_initlab.initializers``).
        layout: ``"auto"`` or ``"recurrent"``.
        layout_args: ``{"gates": g}`` for the recurrent layout.

    Raises:
        ValueError: a shape of rank < 2.

    Example:
    >>> w = Orthogonal(seed=0)((8, 8))
    >>> bool(ops.all(ops.abs(ops.matmul(ops.transpose(w), w) - ops.eye(8)) < 1e-5))
    True
    >>> layer = keras.layers.LSTM(16, recurrent_initializer=Orthogonal(
    ...     layout="recurrent", layout_args={"gates": 4}))

    Reference: Saxe et al. 2014, "Exact solutions to the nonlinear dynamics of learning".
    """

    def __init__(
        self,
        gain: float | str = 1.0,
        seed: Any = None,
        *,
        layout: str = "auto",
        layout_args: dict[str, Any] | None = None,
    ):
        self._gain_value = resolve_gain(gain)
        self.gain = gain if isinstance(gain, str) else self._gain_value
        self.layout = check_choice("layout", layout, ORTHOGONAL_LAYOUTS)
        self.layout_args = dict(layout_args or {})
        if layout == "auto" and self.layout_args:
            raise ValueError(
                f"Argument `layout_args` must be empty for layout 'auto'. "
                f"Received: layout_args={layout_args!r}"
            )
        super().__init__(seed)

    def _blocks(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        check_rank("Orthogonal", shape, 2)
        if self.layout == "recurrent":
            rows, units = compute_fans(shape, "recurrent", **self.layout_args)
            return shape[-1] // int(units), int(rows), int(units)
        return 1, math.prod(shape[:-1]), shape[-1]

    def variance(self, shape: Any) -> float:
        _, rows, cols = self._blocks(tuple(shape))
        return self._gain_value**2 / max(rows, cols)

    def _generate(self, shape: tuple[int, ...]) -> Any:
        blocks, rows, cols = self._blocks(shape)
        q = _orthogonal_blocks(self, blocks, rows, cols)  # (blocks, rows, cols)
        q = ops.reshape(ops.transpose(q, (1, 0, 2)), (rows, blocks * cols))
        return self._gain_value * ops.reshape(q, shape)


@keras.saving.register_keras_serializable(package="keras_initlab")
class DeltaOrthogonal(RandomScheme):
    """Delta-orthogonal conv kernel: zero except the centre tap, an orthogonal ``(in, out)``.

    ``W[c..., :, :] = gain * Q`` with ``Q^T Q = I`` (or ``Q Q^T``) and ``c = (k - 1) // 2`` on
    each spatial axis (the middle tap for odd ``k``, the one before the middle for even
    ``k``); every other tap is 0. That is the tap Keras' ``padding="same"`` aligns with the
    output position, so a ``same``-padded convolution with this kernel applies ``gain * Q``
    to the channels at every position, for every kernel size: an orthogonal map, which lets
    very deep CNNs train without normalization. Entry variance
    ``gain**2 / (max(in, out) * prod(k))``.

    Args:
        gain: a positive number or an activation name (``keras_initlab.gain``).
        seed: int, ``keras.random.SeedGenerator`` or None (see ``keras_initlab.initializers``).

    Raises:
        ValueError: a shape of rank < 3 (not a conv kernel).

    Example:
    >>> layer = keras.layers.Conv2D(32, 3, kernel_initializer=DeltaOrthogonal(seed=0))
    >>> w = DeltaOrthogonal(seed=0)((3, 3, 4, 4))
    >>> float(ops.sum(ops.abs(w[0]))), round(float(ops.sum(w[1, 1] * w[1, 1])), 4)
    (0.0, 4.0)

    Reference: Xiao et al. 2018, "Dynamical Isometry and a Mean Field Theory of CNNs".
    """

    def __init__(self, gain: float | str = 1.0, seed: Any = None):
        self._gain_value = resolve_gain(gain)
        self.gain = gain if isinstance(gain, str) else self._gain_value
        super().__init__(seed)

    @staticmethod
    def _check(shape: tuple[int, ...]) -> None:
        check_rank("DeltaOrthogonal", shape, 3, "a conv kernel")

    def variance(self, shape: Any) -> float:
        shape = tuple(shape)
        self._check(shape)
        return self._gain_value**2 / (max(shape[-2], shape[-1]) * math.prod(shape[:-2]))

    def _generate(self, shape: tuple[int, ...]) -> Any:
        self._check(shape)
        centre = self._gain_value * _orthogonal_blocks(self, 1, shape[-2], shape[-1])[0]
        return centre_tap(centre, shape)


def centre_index(size: int) -> int:
    """The centre tap of a kernel axis of ``size``: ``(size - 1) // 2``.

    Keras' ``padding="same"`` pads ``(size - 1) // 2`` steps before the input (and the rest
    after), so the output at position ``i`` reads the input at ``i`` through this tap: a
    kernel that is the identity there passes its input through, for odd and even sizes.

    Example:
    >>> [centre_index(k) for k in (1, 2, 3, 4, 5)]
    [0, 0, 1, 1, 2]
    """
    return (size - 1) // 2


def centre_tap(matrix: Any, shape: tuple[int, ...]) -> Any:
    """A kernel of ``shape`` that is ``matrix`` at the centre tap and 0 elsewhere.

    The centre tap is ``centre_index(k)`` on each spatial axis.
    """
    spatial = shape[:-2]
    tap = ops.reshape(matrix, (1,) * len(spatial) + tuple(shape[-2:]))
    pads = [(centre_index(k), k - 1 - centre_index(k)) for k in spatial] + [(0, 0), (0, 0)]
    return ops.pad(tap, pads)
