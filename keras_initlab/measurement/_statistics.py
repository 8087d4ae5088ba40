"""The statistics of one measured layer, written once in `keras.ops`, with a stated error.

Every statistic is a mean or a variance of a tensor's elements (or of its units' columns),
computed in ``dtype`` (float32 by default: JAX runs without float64 unless x64 is switched
on, TPUs have none and consumer GPUs run it at 1/32-1/64 of float32's speed) by a blocked
two-pass method:

* a sum of ``n`` terms is taken as block sums of ``b`` terms (`block_size`, about
  ``sqrt(n)``), then their sum (`_blocked`): whatever order the backend reduces a block in,
  the rounding error is at most ``gamma_k sum|y_i|`` with ``k = block_terms(n)`` (about
  ``2 sqrt(n)``; ``gamma_k = k u / (1 - k u)``, ``u`` the unit roundoff: 2^-24 in
  float32), not ``gamma_n``;
* per unit (column) ``mean = sum(y) / n``, then the sum of ``(y - mean)^2`` (two passes: no
  cancellation of ``E[y^2] - mean^2``); a layer's variance pools its units' (no third pass:
  `pooled_moments`).

With ``kappa = E[y^2] / Var(y)`` (1 for centred data, large for a big mean), the computed
variance ``v`` of one unit satisfies (`variance_bound`, which also gives the pooled one)::

    |v - Var(y)| / Var(y) <= gamma_{k+4} + 2 gamma_k^2 kappa

(the squared terms are non-negative, so their sum is relative-accurate; the computed mean
is off by at most ``gamma_k sqrt(E[y^2])``, which adds its square). Reductions only, no
matmul or einsum: GPUs run float32 matmuls as TF32 (10-bit mantissa) by default.

Layers whose outputs have the same shape are measured stacked (`stacked_statistics`,
`kernel_statistics`): one set of ops per shape, not per layer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import keras

from keras_initlab._roundoff import UNIT_ROUNDOFF

ops = keras.ops

# A tanh/sigmoid output within this distance of its bound counts as saturated.
SATURATION_MARGIN = 0.01
# The activations whose saturation is counted.
SATURATING = ("tanh", "sigmoid", "hard_sigmoid")
DTYPES = ("float32", "float64")


def gamma(k: int, dtype: str = "float32") -> float:
    """``gamma_k = k u / (1 - k u)``: the relative error bound of ``k`` roundings."""
    ku = k * UNIT_ROUNDOFF[dtype]
    return ku / (1.0 - ku) if ku < 1.0 else math.inf


# Sums of at most this many terms are taken whole (their bound: gamma_n, under 7e-5 in
# float32); longer ones in blocks. Every block costs two more ops, and ops cost time.
WHOLE = 1024


@functools.lru_cache(maxsize=1024)
def block_size(n: int) -> int:
    """The block size ``b`` of a sum of ``n`` terms: ``n`` (one block) up to `WHOLE` terms,
    else a divisor of ``n`` in ``[sqrt(n) / 2, sqrt(n)]`` where there is one (no
    padding), else ``ceil(sqrt(n))``."""
    if n <= WHOLE:
        return max(n, 1)
    root = math.isqrt(n - 1) + 1  # ceil(sqrt(n))
    for b in range(root, root // 2 - 1, -1):
        if n % b == 0:
            return b
    return root


def block_terms(n: int) -> int:
    """``k``, the terms a sum of ``n`` terms accumulates in sequence (in any order within a
    block): ``n`` up to `WHOLE` terms, else ``b + ceil(n / b)`` (``b = block_size(n)``,
    at most about ``2.5 sqrt(n)``)."""
    b = block_size(n)
    return n if b >= n else b + -(-n // b)


def variance_bound(n: int, kappa: float, dtype: str = "float32", units: int = 1) -> float:
    """The relative error bound of a computed variance of ``n * units`` elements.

    One unit (`moments`, a kernel): ``gamma_{k+4} + 2 gamma_k^2 kappa``. Pooled over
    ``units`` columns of ``n`` rows (`stacked_statistics`' activation and gradient
    variances): ``gamma_{k+4} + gamma_{k+1} + gamma_{j+6} + 2 (gamma_{k+1} +
    gamma_{j+1})^2 kappa``, with ``k = block_terms(n)``, ``j = block_terms(units)`` and
    ``kappa = E[y^2] / Var(y)``: the per-unit sums of squares are sums of non-negative
    terms (``gamma_{k+3}``); the pooled variance adds the units' between part and a
    correction from each unit's computed residual ``sum(y - mean_unit)``, whose error is at
    most ``gamma_{k+1}`` of the variance, and the computed mean's error enters squared.

    Args:
        n: the elements of one unit (rows).
        kappa: ``E[y^2] / Var(y)`` of the elements (>= 1).
        dtype: the dtype the statistics are computed in.
        units: the columns pooled.

    Example:
    >>> variance_bound(10**6, 1.0) < 2e-4  # a million centred float32 values
    True
    """
    k = block_terms(n)
    if units == 1:
        return gamma(k + 4, dtype) + 2.0 * gamma(k, dtype) ** 2 * kappa
    j = block_terms(units)
    first = gamma(k + 4, dtype) + gamma(k + 1, dtype) + gamma(j + 6, dtype)
    return first + 2.0 * (gamma(k + 1, dtype) + gamma(j + 1, dtype)) ** 2 * kappa


def _blocked(x: Any, axis: int = -2) -> Any:
    """``x`` summed over its ``axis`` (-2: (..., n, w) to (..., w); -1: (..., n) to (...))
    as `block_size` block sums, then their sum. Whatever order the backend sums a block in,
    the error of each sum is at most ``gamma_k sum|x|``, ``k = block_terms(n)``, not
    ``gamma_n``. (Reduce the axis the data is laid along: a reduction over a short last
    axis runs many times slower.)"""
    n = x.shape[axis]
    b = block_size(n)
    if b >= n:
        return ops.sum(x, axis=axis)
    blocks = -(-n // b)
    lead, tail = x.shape[: axis % len(x.shape)], x.shape[axis % len(x.shape) + 1 :]
    if blocks * b > n:
        x = ops.pad(x, [(0, 0)] * len(lead) + [(0, blocks * b - n)] + [(0, 0)] * len(tail))
    x = ops.reshape(x, (*lead, blocks, b, *tail))
    inner = -2 if axis == -2 else -1
    return ops.sum(ops.sum(x, axis=inner), axis=inner)


def unit_moments(x: Any, axis: int = -2) -> tuple[Any, Any, Any]:
    """Per unit of ``x`` over its ``axis`` (-2: the rows of (..., n, units); -1: each
    vector of (..., n)): the mean, the sum of squares about it and the residual
    ``sum(y - mean)`` (two passes, blocked)."""
    n = x.shape[axis]
    means = _blocked(x, axis) / n
    flat_rows = len(x.shape) == 2 and axis == -2  # (means broadcast over the rows)
    centred = x - (means if flat_rows else ops.expand_dims(means, axis))
    return means, _blocked(centred * centred, axis), _blocked(centred, axis)


def pooled_moments(means: Any, squares: Any, residuals: Any, n: int) -> tuple[Any, ...]:
    """Per layer, from `unit_moments` of (layers, n, units): the mean and variance of all
    its elements, the mean over units of the squared unit mean and of the unit variance.

    With ``d_c = mean_c - mean``: ``n units var = sum_c S_c + 2 sum_c d_c r_c + n sum_c
    d_c^2`` (``S_c``, ``r_c``: unit c's sum of squares and residual; an identity for any
    centres), so the variance needs no third pass over the data.
    """
    units = means.shape[1]
    mean = _blocked(means, axis=-1) / units
    d = means - ops.expand_dims(mean, 1)
    parts = ops.stack([squares, 2.0 * d * residuals, n * (d * d), means * means], axis=1)
    sums = _blocked(parts, axis=-1)  # (layers, 4)
    count = n * units
    variance = (sums[:, 0] + sums[:, 1] + sums[:, 2]) / count
    return mean, variance, sums[:, 3] / units, sums[:, 0] / count


def moments(t: Any, dtype: str = "float32") -> tuple[Any, Any]:
    """``(mean, variance)`` of all elements of ``t``, two-pass and blocked.

    Example:
    >>> import numpy as np
    >>> m, v = moments(np.arange(4.0))
    >>> float(m), float(v)
    (1.5, 1.25)
    """
    count, total, m2 = flat_moments(t, dtype)
    return total / count, m2 / count


def flat_moments(t: Any, dtype: str = "float32") -> tuple[Any, Any, Any]:
    """``(count, total, m2)`` of all elements of ``t``: their number (a Python float where
    the shape is static), their sum and their sum of squares about their mean, two-pass and
    blocked in ``dtype``.

    A static count ``n`` is summed in `block_size` blocks (`variance_bound` with ``k =
    block_terms(n)``); an unknown one (a training step traced for any batch size) in blocks
    of `WHOLE` terms (``k = WHOLE + ceil(n / WHOLE)``), zeros padded after the centring.
    ``m2 / count`` is the variance. Several tensors' (calls of a layer, replicas) combine in
    float64 through ``q = m2 + total^2 / count``, which adds: their variance is ``(sum q -
    (sum total)^2 / sum count) / sum count``, within the float32 bound plus about ``4 u64
    E[y^2] / Var(y)`` (``u64 = 2^-53``).

    Example:
    >>> import numpy as np
    >>> [float(v) for v in flat_moments(np.arange(4.0))]
    [4.0, 6.0, 5.0]
    """
    flat = ops.reshape(ops.cast(t, dtype), (-1,))
    n = flat.shape[0]
    if n is not None:
        total = _blocked(flat, axis=-1)
        centred = flat - total / n
        return float(n), total, _blocked(centred * centred, axis=-1)
    count = ops.cast(ops.size(flat), dtype)
    total = _padded_sum(flat)
    centred = flat - total / count
    return count, total, _padded_sum(centred * centred)


def _padded_sum(flat: Any) -> Any:
    """The sum of a vector of unknown length in blocks of `WHOLE` terms (zeros padded)."""
    pad = (-ops.size(flat)) % WHOLE
    blocks = ops.reshape(ops.pad(flat, [(0, pad)]), (-1, WHOLE))
    return ops.sum(ops.sum(blocks, axis=1), axis=0)


def as_rows(t: Any, dtype: str) -> Any:
    """``t`` as a matrix (elements, units): units the last axis, in ``dtype``."""
    t = ops.cast(t, dtype)
    if len(t.shape) == 0:
        return ops.reshape(t, (1, 1))
    if len(t.shape) == 1:
        return ops.reshape(t, (-1, 1))
    return ops.reshape(t, (-1, t.shape[-1]))


def unit_terms(rows: Any, activation: str | None) -> tuple[Any, ...]:
    """What `stacked_statistics` needs of rows (..., n, units) (one layer's, or a stack of
    layers' with a leading axis): `unit_moments`, and the number of elements within
    `SATURATION_MARGIN` of a tanh/sigmoid bound (None for another ``activation``)."""
    saturated = None
    if activation in SATURATING:
        if activation == "tanh":
            hit = ops.abs(rows) >= 1.0 - SATURATION_MARGIN
        else:
            hit = ops.logical_or(rows <= SATURATION_MARGIN, rows >= 1.0 - SATURATION_MARGIN)
        saturated = ops.sum(ops.cast(hit, "int32"), axis=(-2, -1))
    return (*unit_moments(rows), saturated)


def non_finite_count(weights: Sequence[Any]) -> int:
    """The number of NaN/Inf values among the floating-point ``weights``."""
    total = 0
    for w in weights:
        value = w.value if hasattr(w, "value") else w
        if "float" in str(w.dtype):
            total += int(ops.convert_to_numpy(ops.sum(ops.cast(~ops.isfinite(value), "int32"))))
    return total


# Column layout of the matrix returned by the probe function (one row per measured layer).
COLUMNS = (
    "activation_mean",
    "activation_var",
    "gradient_var",
    "weight_var",
    "weight_grad_var",
    "dead_fraction",
    "distinct_units",
    "saturation_fraction",
    "non_finite_weights",
    "channel_mean_sq",
    "channel_var",
)
# The columns `stacked_statistics` computes per layer, in this order, and
# `kernel_statistics`; together `DEVICE_COLUMNS`.
ACTIVATION_COLUMNS = (
    "activation_mean",
    "activation_var",
    "gradient_var",
    "dead_fraction",
    "saturation_fraction",
    "channel_mean_sq",
    "channel_var",
)
KERNEL_COLUMNS = ("weight_var", "weight_grad_var")
# The device's columns, in this order (the other two are the host's).
DEVICE_COLUMNS = ACTIVATION_COLUMNS + KERNEL_COLUMNS


def stacked_statistics(terms: tuple[Any, ...], grads: tuple[Any, ...] | None, n: int) -> Any:
    """`ACTIVATION_COLUMNS` (layers, 7) of layers whose outputs have the same shape (``n``
    rows of the same units), from their `unit_terms` stacked (layers, units) (and the
    stacked `unit_moments` of the loss's gradients at them; None: no gradient column), in
    the statistics' dtype (NaN where a column does not apply); all in `keras.ops`,
    traceable: one set of ops per stack, not per layer (every op costs trace time, and on
    TensorFlow and PyTorch a launch per call). A unit is dead when its mean and its sum of
    squares are both zero: every row zero (or so small that its square underflows: below
    about 4e-23 in float32).
    """
    means, squares, residuals, hits = terms
    mean, variance, channel_mean_sq, channel_var = pooled_moments(means, squares, residuals, n)
    nan = ops.full_like(mean, math.nan)
    gradient = nan if grads is None else pooled_moments(grads[0], grads[1], grads[2], n)[1]
    zero = ops.logical_and(ops.equal(means, 0.0), ops.equal(squares, 0.0))
    dead = ops.mean(ops.cast(zero, mean.dtype), axis=1)
    saturated = nan if hits is None else ops.cast(hits, mean.dtype) / (n * means.shape[1])
    columns = [mean, variance, gradient, dead, saturated, channel_mean_sq, channel_var]
    return ops.stack(columns, axis=1)


def kernel_statistics(kernels: Any, grads: Any | None) -> Any:
    """`KERNEL_COLUMNS` (layers, 2) of kernels of the same size stacked as (layers, n) in
    the statistics' dtype, with their gradients alike (None: NaN): each one's variance."""
    if grads is None:
        variances = unit_moments(kernels, axis=-1)[1] / kernels.shape[1]
        return ops.stack([variances, ops.full_like(variances, math.nan)], axis=1)
    both = ops.stack([kernels, grads], axis=1)  # (layers, 2, n)
    return unit_moments(both, axis=-1)[1] / kernels.shape[1]


def all_finite(weights: Sequence[Any]) -> Any:
    """A device scalar, true when every value of the floating-point ``weights`` is finite,
    and at most rarely false when they are (a sum that overflows): one sum per weight and
    their total times zero, which is NaN exactly when a term is NaN or infinite; the exact
    count (`non_finite_count`) runs on the host when it is false."""
    sums = [ops.sum(ops.cast(w, "float32")) for w in weights if "float" in str(w.dtype)]
    if not sums:
        return ops.convert_to_tensor(True)
    return ops.isfinite(ops.sum(ops.stack(sums)) * 0.0)
