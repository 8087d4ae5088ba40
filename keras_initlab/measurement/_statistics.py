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
  `layer_statistics`).

With ``kappa = E[y^2] / Var(y)`` (1 for centred data, large for a big mean), the computed
variance ``v`` of one unit satisfies (`variance_bound`, which also gives the pooled one)::

    |v - Var(y)| / Var(y) <= gamma_{k+4} + 2 gamma_k^2 kappa

(the squared terms are non-negative, so their sum is relative-accurate; the computed mean
is off by at most ``gamma_k sqrt(E[y^2])``, which adds its square). Reductions only, no
matmul or einsum: GPUs run float32 matmuls as TF32 (10-bit mantissa) by default.

Small outputs of the same shape are measured stacked, and the per-unit sums of every layer
are finished together (`layer_statistics`: segment sums over all units at once); kernels of
the same size are stacked (`kernel_statistics`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

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
    ``units`` columns of ``n`` rows (`layer_statistics`' activation and gradient
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
    """What `layer_statistics` needs of rows (..., n, units) (one layer's, or a stack of
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
# The columns `layer_statistics` computes per layer, in this order, and
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


@dataclass
class UnitTerms:
    """`unit_terms` of some layers' outputs (``slots``, in order), each of ``n`` rows: the
    per-unit ``means``, ``squares`` and ``residuals`` as tensors whose flattened
    concatenation lists every slot's units in order ((layers, units) for a stack of
    outputs, or one (units,) vector per output), ``hits`` per slot (None: not saturating).
    """

    slots: list[int]
    n: int
    units: int
    means: list[Any]
    squares: list[Any]
    residuals: list[Any]
    hits: Any = None


def _segment_sum(data: Any, ids: Any, segments: int) -> Any:
    """``keras.ops.segment_sum`` in ``data``'s dtype on every backend: Keras' PyTorch backend
    sums in float32 whatever the dtype (``data.float()``, Keras 3.12-3.15), which would
    make ``precision="float64"`` a float32 computation there."""
    if keras.backend.backend() != "torch":
        return ops.segment_sum(data, ids, num_segments=segments)
    import torch

    out = torch.zeros((segments, *data.shape[1:]), dtype=data.dtype, device=data.device)
    return torch.index_add(out, 0, ops.convert_to_tensor(ids).long(), data)


def _segments(terms: Sequence[UnitTerms]) -> tuple[np.ndarray, ...]:
    """The two levels of `layer_statistics`' sums: per unit its block (``block_size`` of
    its layer's units) and per block its slot; per unit its slot and its rows ``n``."""
    block, block_slot, unit_slot, rows = [], [], [], []
    blocks = 0
    for t in terms:
        b = block_size(t.units)
        per = -(-t.units // b)
        for slot in t.slots:
            block.append(blocks + np.arange(t.units) // b)
            block_slot.append(np.full(per, slot))
            unit_slot.append(np.full(t.units, slot))
            rows.append(np.full(t.units, float(t.n)))
            blocks += per
    return tuple(np.concatenate(a) for a in (block, block_slot, unit_slot, rows))


def layer_statistics(
    terms: Sequence[UnitTerms], grads: Sequence[UnitTerms] | None, slots: int, dtype: str
) -> Any:
    """`ACTIVATION_COLUMNS` (slots, 7) in ``dtype`` from every measured output's
    `UnitTerms` (and the loss's gradients' at them, laid out alike; None: NaN gradient
    column); NaN rows for the slots no term names.

    A layer's variance pools its units' (no third pass over the data): with ``d_c =
    mean_c - mean``, ``n units var = sum_c S_c + 2 sum_c d_c r_c + n sum_c d_c^2`` (``S_c``,
    ``r_c``: unit c's sum of squares about its computed mean and its residual; an identity
    for any centres). Every per-layer sum over units is taken in blocks of `block_size`
    units, then over the blocks (``k = block_terms(units)`` in `variance_bound`), for all
    layers at once: two segment sums of the units of every output laid end to end, so the
    ops do not grow with the layers or their shapes (each op costs trace time, and on
    TensorFlow and PyTorch a launch per record). A unit is dead when its mean and its sum
    of squares are both zero: every row zero (or so small that its square underflows:
    below about 4e-23 in float32)."""
    if not terms:  # (no measured layer ran)
        return ops.full((slots, len(ACTIVATION_COLUMNS)), math.nan, dtype)
    block, block_slot, unit_slot, rows = _segments(terms)
    present = np.zeros(slots, bool)
    units, count = np.ones(slots), np.ones(slots)
    for t in terms:
        present[t.slots] = True
        units[t.slots], count[t.slots] = t.units, t.units * t.n
    block_ids = ops.convert_to_tensor(block.astype(np.int32))
    block_slots = ops.convert_to_tensor(block_slot.astype(np.int32))

    def per_slot(x: Any) -> Any:  # (units, k) -> (slots, k), blocked
        first = _segment_sum(x, block_ids, len(block_slot))
        return _segment_sum(first, block_slots, slots)

    def flat(parts: list[Any]) -> Any:  # (the terms are in ``dtype`` already)
        return ops.concatenate([p if len(p.shape) == 1 else ops.reshape(p, (-1,)) for p in parts])

    sets = [terms] if grads is None else [terms, grads]
    means = ops.stack([flat([m for t in ts for m in t.means]) for ts in sets], axis=1)
    squares = [flat([q for t in ts for q in t.squares]) for ts in sets]
    residuals = [flat([r for t in ts for r in t.residuals]) for ts in sets]
    mean = per_slot(means) / ops.convert_to_tensor(units[:, None], dtype)  # (slots, 1|2)
    d = means - ops.take(mean, ops.convert_to_tensor(unit_slot.astype(np.int32)), axis=0)
    n = ops.convert_to_tensor(rows, dtype)
    dead = ops.logical_and(ops.equal(means[:, 0], 0.0), ops.equal(squares[0], 0.0))
    parts = [ops.cast(dead, dtype), means[:, 0] * means[:, 0]]
    for k in range(len(sets)):
        parts += [squares[k], 2.0 * d[:, k] * residuals[k], n * d[:, k] * d[:, k]]
    sums = per_slot(ops.stack(parts, axis=1))  # (slots, 2 + 3 per set)
    size = ops.convert_to_tensor(count, dtype)
    nan = ops.full((slots,), math.nan, dtype)
    variance = [
        (sums[:, 2 + 3 * k] + sums[:, 3 + 3 * k] + sums[:, 4 + 3 * k]) / size
        for k in range(len(sets))
    ]
    saturated = nan
    hit = [t for t in terms if t.hits is not None]
    if hit:
        at = np.concatenate([t.slots for t in hit]).astype(np.int32)
        counts = ops.concatenate([ops.reshape(ops.cast(t.hits, dtype), (-1,)) for t in hit])
        found = np.zeros(slots, bool)
        found[at] = True
        saturated = ops.where(
            ops.convert_to_tensor(found),
            _segment_sum(counts, ops.convert_to_tensor(at), slots) / size,
            nan,
        )
    columns = [
        mean[:, 0],
        variance[0],
        nan if grads is None else variance[1],
        sums[:, 0] / ops.convert_to_tensor(units, dtype),
        saturated,
        sums[:, 1] / ops.convert_to_tensor(units, dtype),
        sums[:, 2] / size,
    ]
    return ops.where(ops.convert_to_tensor(present[:, None]), ops.stack(columns, axis=1), math.nan)


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
