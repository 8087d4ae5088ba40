"""Float64 reductions of layer tensors, shared by the probe and the in-step taps.

Statistics are accumulated in float64 from float32 casts of the layer tensors, so mixed
precision models are measured in full precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

# A tanh/sigmoid output within this distance of its bound counts as saturated.
SATURATION_MARGIN = 0.01
# The activations whose saturation is counted.
SATURATING = ("tanh", "sigmoid", "hard_sigmoid")


def to64(t: Any) -> tf.Tensor:
    """``t`` in float64 (half-precision values pass through float32, which holds them exactly)."""
    t = tf.convert_to_tensor(t)
    return t if t.dtype == tf.float64 else tf.cast(tf.cast(t, tf.float32), tf.float64)


def flat64(t: Any) -> tf.Tensor:
    return tf.reshape(to64(t), (-1,))


def as_rows(t: tf.Tensor) -> tf.Tensor:
    """A layer output as a float64 matrix (elements, units): units = last axis."""
    t = to64(t)
    rank = t.shape.rank
    if rank == 2:
        return t
    if rank == 0:
        return tf.reshape(t, (1, 1))
    if rank == 1:
        return tf.reshape(t, (-1, 1))
    units = t.shape[-1]
    return tf.reshape(t, (-1, units if units is not None else tf.shape(t)[-1]))


def saturated_count(a: tf.Tensor, activation: str | None) -> tf.Tensor:
    if activation == "tanh":
        hit = tf.abs(a) >= 1.0 - SATURATION_MARGIN
    elif activation in ("sigmoid", "hard_sigmoid"):
        hit = tf.logical_or(a <= SATURATION_MARGIN, a >= 1.0 - SATURATION_MARGIN)
    else:
        return tf.constant(0.0, tf.float64)
    return tf.reduce_sum(tf.cast(hit, tf.float64))


def variance_of(count: Any, total: tf.Tensor, squares: tf.Tensor) -> tf.Tensor:
    mean = total / count
    return tf.maximum(squares / count - mean * mean, 0.0) + 0.0 * mean  # keep NaN


def moments(t: tf.Tensor) -> tf.Tensor:
    """``[count, sum, sum of squares]`` of a tensor, in float64."""
    t = flat64(t)
    return tf.stack([tf.cast(tf.size(t), tf.float64), tf.reduce_sum(t), tf.reduce_sum(t * t)])


class Sums:
    """Sums of float64 tensors, sharing the reduction-axis constants (fewer ops to trace)."""

    def __init__(self) -> None:
        self._axes: dict[tuple[int, int], tf.Tensor] = {}

    def axes(self, start: int, stop: int) -> tf.Tensor:
        if (start, stop) not in self._axes:
            self._axes[start, stop] = tf.constant(np.arange(start, stop, dtype=np.int32))
        return self._axes[start, stop]

    def sum_and_squares(self, t: tf.Tensor, batch: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """``sum(t)``, ``sum(t * t)`` over all elements, or per row when ``batch``."""
        axes = self.axes(int(batch), t.shape.rank)
        return tf.reduce_sum(t, axes), tf.reduce_sum(t * t, axes)
