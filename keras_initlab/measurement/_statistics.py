"""The statistics of one measured layer, written once in `keras.ops`, with a stated error.

Every statistic is a mean or a variance of a tensor's elements (or of its units' columns),
computed in ``dtype`` (float32 by default: JAX runs without float64 unless x64 is switched
on, TPUs have none and consumer GPUs run it at 1/32-1/64 of float32's speed) by a blocked
two-pass method:

* a sum of ``n`` terms is taken as ``b = ceil(sqrt(n))`` block sums of at most ``b`` terms,
  then their sum (`blocked_sum`): whatever order the backend reduces a block in, the
  rounding error is at most ``gamma_k sum|y_i|`` with ``k = 2b`` (``gamma_k = k u / (1 - k
  u)``, ``u`` the unit roundoff: 2^-24 in float32), not ``gamma_n``;
* ``mean = sum(y) / n``, then ``var = sum((y - mean)^2) / n`` (two passes: no cancellation
  of ``E[y^2] - mean^2``).

With ``kappa = E[y^2] / Var(y)`` (1 for centred data, large for a big mean), the computed
variance ``v`` satisfies (`variance_bound`)::

    |v - Var(y)| / Var(y) <= gamma_{k+4} + 2 gamma_k^2 kappa

(the squared terms are non-negative, so their sum is relative-accurate; the computed mean
is off by at most ``gamma_k sqrt(E[y^2])``, which adds its square). Reductions only, no
matmul or einsum: GPUs run float32 matmuls as TF32 (10-bit mantissa) by default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

ops = keras.ops

# A tanh/sigmoid output within this distance of its bound counts as saturated.
SATURATION_MARGIN = 0.01
# The activations whose saturation is counted.
SATURATING = ("tanh", "sigmoid", "hard_sigmoid")
DTYPES = ("float32", "float64")
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}


def gamma(k: int, dtype: str = "float32") -> float:
    """``gamma_k = k u / (1 - k u)``: the relative error bound of ``k`` roundings."""
    ku = k * UNIT_ROUNDOFF[dtype]
    return ku / (1.0 - ku) if ku < 1.0 else math.inf


def block_terms(n: int) -> int:
    """``k = 2 ceil(sqrt(n))``: the terms one `blocked_sum` result accumulates in sequence."""
    return 2 * math.isqrt(max(n - 1, 0)) + 2


def variance_bound(n: int, kappa: float, dtype: str = "float32") -> float:
    """The relative error bound of `moments`' variance of ``n`` elements.

    ``gamma_{k+4} + 2 gamma_k^2 kappa`` with ``k = block_terms(n)`` and ``kappa = E[y^2] /
    Var(y)``.

    Args:
        n: the number of elements.
        kappa: ``E[y^2] / Var(y)`` of the elements (>= 1).
        dtype: the dtype the statistics are computed in.

    Example:
    >>> variance_bound(10**6, 1.0) < 2e-4  # a million centred float32 values
    True
    """
    k = block_terms(n)
    return gamma(k + 4, dtype) + 2.0 * gamma(k, dtype) ** 2 * kappa


def _rows(t: Any, dtype: str) -> Any:
    """``t`` as a matrix (elements, units): units the last axis, in ``dtype``."""
    t = ops.cast(t, dtype)
    if len(t.shape) == 0:
        return ops.reshape(t, (1, 1))
    if len(t.shape) == 1:
        return ops.reshape(t, (-1, 1))
    return ops.reshape(t, (-1, t.shape[-1]))


def blocked_sum(t: Any) -> Any:
    """Column sums of a matrix ``t`` (rows, units) as ``ceil(sqrt(rows))`` block sums.

    Example:
    >>> import numpy as np
    >>> float(blocked_sum(np.ones((10, 1), "float32"))[0])
    10.0
    """
    rows = t.shape[0]
    b = max(math.isqrt(max(rows - 1, 0)) + 1, 1)
    blocks = -(-rows // b)
    pad = blocks * b - rows
    if pad:
        t = ops.pad(t, [(0, pad), (0, 0)])
    return ops.sum(ops.sum(ops.reshape(t, (blocks, b, t.shape[-1])), axis=1), axis=0)


def moments(t: Any, dtype: str = "float32") -> tuple[Any, Any]:
    """``(mean, variance)`` of all elements of ``t``, two-pass and blocked.

    Example:
    >>> import numpy as np
    >>> m, v = moments(np.arange(4.0))
    >>> float(m), float(v)
    (1.5, 1.25)
    """
    flat = ops.reshape(ops.cast(t, dtype), (-1, 1))
    n = flat.shape[0]
    mean = blocked_sum(flat)[0] / n
    centred = flat - mean
    return mean, blocked_sum(centred * centred)[0] / n


def unit_moments(rows: Any) -> tuple[Any, Any]:
    """Per unit (column) of ``rows``: its mean and variance over the rows, two-pass."""
    n = rows.shape[0]
    means = blocked_sum(rows) / n
    centred = rows - means
    return means, blocked_sum(centred * centred) / n


def saturated_share(rows: Any, activation: str | None) -> Any:
    """The share of elements within `SATURATION_MARGIN` of a tanh/sigmoid bound."""
    if activation == "tanh":
        hit = ops.abs(rows) >= 1.0 - SATURATION_MARGIN
    else:
        hit = ops.logical_or(rows <= SATURATION_MARGIN, rows >= 1.0 - SATURATION_MARGIN)
    return ops.cast(ops.sum(ops.cast(hit, "int32")), rows.dtype) / (rows.shape[0] * rows.shape[1])


def non_finite_count(weights: Sequence[Any]) -> int:
    """The number of NaN/Inf values among the floating-point ``weights``."""
    total = 0
    for w in weights:
        value = w.value if hasattr(w, "value") else w
        if "float" in str(w.dtype):
            total += int(ops.convert_to_numpy(ops.sum(ops.cast(~ops.isfinite(value), "int32"))))
    return total


SCREEN = 4  # random projections that screen the pairs `distinct_count` compares


def distinct_count(rows: Any, rtol: float) -> int:
    """Units (columns of ``rows``) whose outputs differ by more than ``rtol`` relative.

    Two columns are one unit when ``|a - b| <= rtol max(|a|, |b|)``; counted greedily (a
    column is new unless an earlier new one is its twin) on the host in float64. Only
    pairs that pass a screen are compared: for a fixed Gaussian vector ``r``,
    ``|r.a - r.b| <= |r| |a - b|``, so a twin pair lies within ``|r| rtol max(|a|, |b|)`` on
    each of `SCREEN` projections (a necessary condition: no twin is missed); candidates
    are found by sorting the first projection, and a unit alone in its window is new. The
    measurement compares a layer's `sketch` (at most `SKETCH_ROWS` rows): equal columns
    stay equal there, and a pair of different columns is merged only where the sketch
    shrinks their difference below ``rtol`` (for a difference spread over many rows, a
    chance that falls exponentially with the sketch's rows).

    Example:
    >>> import numpy as np
    >>> distinct_count(np.ones((8, 5)), 1e-3), distinct_count(np.eye(5), 1e-3)
    (1, 5)
    """
    a = np.asarray(rows, np.float64)
    units = a.shape[1]
    norms = np.linalg.norm(a, axis=0)
    r = np.random.default_rng(0).standard_normal((SCREEN, a.shape[0]))
    projected = r @ a  # (SCREEN, units)
    reach = np.linalg.norm(r, axis=1)[:, None] * rtol  # times max(|a|, |b|) per pair
    order = np.argsort(projected[0])
    sorted_p = projected[0][order]
    # A twin of unit j has a norm of at most |a_j| / (1 - rtol): j's window on the first
    # projection is that times reach (and a twin found from the other side is in both).
    width = reach[0, 0] * np.max(norms) if rtol >= 1.0 else reach[0, 0] * norms / (1.0 - rtol)
    lows = np.searchsorted(sorted_p, projected[0] - width, "left")
    highs = np.searchsorted(sorted_p, projected[0] + width, "right")
    kept = np.ones(units, bool)
    for j in np.flatnonzero(highs - lows > 1):  # a unit alone in its window is new
        near = order[lows[j] : highs[j]]
        near = near[(near < j) & kept[near]]
        if near.size == 0:
            continue
        scale = np.maximum(norms[near], norms[j])
        screened = np.all(np.abs(projected[:, near] - projected[:, [j]]) <= reach * scale, axis=0)
        near, bound = near[screened], rtol * scale[screened]
        if near.size and np.any(np.linalg.norm(a[:, near] - a[:, [j]], axis=0) <= bound):
            kept[j] = False
    return int(kept.sum())


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
# The columns `device_statistics` computes, in this order (the other two are the host's).
DEVICE_COLUMNS = tuple(c for c in COLUMNS if c not in ("distinct_units", "non_finite_weights"))
SKETCH_ROWS = 256  # rows `distinct_count` compares at most (a count sketch beyond)


def sketch(rows: Any, size: int = SKETCH_ROWS) -> Any:
    """``rows`` (n, units) as a count sketch of ``size`` rows when ``n > size`` (each row
    added with a random sign to one bucket, drawn from a fixed seed; on device)."""
    n = rows.shape[0]
    if n <= size:
        return rows
    rng = np.random.default_rng(0)
    bucket = rng.integers(0, size, n).astype("int32")
    sign = rng.choice([-1.0, 1.0], n).astype(str(rows.dtype).split(".")[-1])
    return ops.segment_sum(rows * sign[:, None], bucket, num_segments=size)


def device_statistics(
    outputs: Sequence[Any],
    grads: Sequence[Any] | None,
    kernel: Any,
    kernel_grad: Any,
    activation: str | None,
    *,
    dtype: str = "float32",
    max_units: int,
) -> tuple[Any, Any]:
    """One layer's `DEVICE_COLUMNS` as a vector (NaN where a column does not apply) and the
    rows `distinct_count` compares (`sketch`; None above ``max_units`` units), all in
    `keras.ops` (traceable: JAX computes them inside its jitted pass).

    Args:
        outputs: the layer's output at each call (their elements pooled).
        grads: the loss's gradient at each output (None: no gradient columns).
        kernel, kernel_grad: the layer's kernel values and their gradient (None: absent).
        activation: the name of the layer's last function (saturation of tanh/sigmoid).
        dtype: ``"float32"`` or ``"float64"``, the statistics' precision.
        max_units: above this many units there is nothing to compare.
    """
    nan = ops.convert_to_tensor(math.nan, dtype)
    rows = ops.concatenate([_rows(o, dtype) for o in outputs], axis=0)
    mean, var = moments(rows, dtype)
    means, variances = unit_moments(rows)
    peak = ops.max(ops.abs(rows), axis=0)
    gradient = nan
    if grads is not None:
        pooled = ops.concatenate([ops.reshape(ops.cast(g, dtype), (-1,)) for g in grads], 0)
        gradient = moments(pooled, dtype)[1]
    weight = nan if kernel is None else moments(kernel, dtype)[1]
    weight_grad = nan if kernel_grad is None else moments(kernel_grad, dtype)[1]
    saturated = saturated_share(rows, activation) if activation in SATURATING else nan
    vector = ops.stack(
        [
            mean,
            var,
            gradient,
            weight,
            weight_grad,
            ops.mean(ops.cast(ops.equal(peak, 0.0), dtype)),
            saturated,
            ops.mean(means * means),
            ops.mean(variances),
        ]
    )
    compared = sketch(rows) if rows.shape[1] <= max_units else None
    return vector, compared


def host_columns(
    vector: Any, compared: Any, weights: Sequence[Any], rtol: float
) -> dict[str, float | None]:
    """All `keras_initlab.measurement.COLUMNS` of one layer: `device_statistics`' vector
    and rows, its weights' ``non_finite_weights`` and ``distinct_units`` (None where the
    activations are not finite or there is nothing to compare)."""
    values = np.asarray(ops.convert_to_numpy(vector), np.float64)
    columns: dict[str, float | None] = {
        k: None if math.isnan(v) else float(v) for k, v in zip(DEVICE_COLUMNS, values, strict=True)
    }
    columns["non_finite_weights"] = non_finite_count(weights)
    variance = columns["activation_var"]
    finite = variance is not None and math.isfinite(variance)
    columns["distinct_units"] = (
        distinct_count(ops.convert_to_numpy(compared), rtol)
        if compared is not None and finite
        else None
    )
    return columns
