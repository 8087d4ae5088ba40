"""Float64 reductions of layer tensors, shared by the probe and the in-step taps.

Statistics are accumulated in float64 from float32 casts of the layer tensors, so mixed
precision models are measured in full precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from keras_initlab.measurement._statistics import SATURATING, SATURATION_MARGIN

__all__ = ["SATURATING", "SATURATION_MARGIN"]


def to64(t: Any) -> tf.Tensor:
    """``t`` in float64 (half-precision values pass through float32, which holds them exactly)."""
    t = tf.convert_to_tensor(t)
    return t if t.dtype == tf.float64 else tf.cast(tf.cast(t, tf.float32), tf.float64)


def as_rows(t: tf.Tensor, consts: Consts | None = None) -> tf.Tensor:
    """A layer output as a matrix (elements, units), units = last axis, in float32 or float64
    (half-precision values pass to float32, which holds them exactly; `to64` then)."""
    t = tf.convert_to_tensor(t)
    if t.dtype != tf.float64:
        t = tf.cast(t, tf.float32)
    rank = t.shape.rank
    if rank == 2:
        return t
    if rank == 0:
        return tf.reshape(t, (1, 1))
    if rank == 1:
        return tf.reshape(t, (-1, 1))
    units = t.shape[-1]
    if units is None:
        return tf.reshape(t, tf.stack([-1, tf.shape(t)[-1]]))
    shape = (-1, units)
    return tf.reshape(t, shape if consts is None else consts.get(("shape", shape), shape))


def unit_sums(a: tf.Tensor, lhs: tf.Tensor, ones: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per unit (column) of ``a`` (rows, units) float64: ``lhs^T a`` and ``ones^T (a * a)``,
    the sums of squares as ``(1, units)``. ``lhs`` (rows, r) starts with the column of ones
    ``ones`` (rows, 1), so the first row is each unit's sum. Matrix products: a column
    reduction runs about three times slower on a CPU."""
    return tf.matmul(lhs, a, transpose_a=True), tf.matmul(ones, a * a, transpose_a=True)


def row_totals(t: Any, consts: Consts) -> tuple[tf.Tensor, tf.Tensor]:
    """``sum`` (1,) and ``sum of squares`` (1, 1) of all elements of ``t`` in float64 (a
    row vector: a reduction and a dot product, no squared copy)."""
    row = tf.reshape(to64(t), consts.get("row", (1, -1)))
    return tf.reduce_sum(row, consts.get("axis1", 1)), tf.matmul(row, row, transpose_b=True)


def static_or_stacked(values: Sequence[Any], dtype: tf.DType) -> tf.Tensor:
    """A vector of Python numbers (one constant) or of numbers and scalar tensors (unit
    counts and sizes that are not static)."""
    if not any(isinstance(v, tf.Tensor) for v in values):
        return tf.constant(values, dtype)
    return tf.stack([tf.cast(v, dtype) for v in values])


class Consts:
    """Constants shared across one trace: every op costs trace and instantiation time and
    about 10 microseconds per call of the probe on a CPU, so equal constants are made once."""

    def __init__(self) -> None:
        self._cache: dict[Any, tf.Tensor] = {}

    def get(self, key: Any, value: Any, dtype: Any = None) -> tf.Tensor:
        """The constant ``value`` made for ``key`` (``value`` may be a function of no
        arguments, called the first time)."""
        if key not in self._cache:
            self._cache[key] = tf.constant(value() if callable(value) else value, dtype)
        return self._cache[key]


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
