"""Quadrature for expectations under normal distributions: E[f(z)], z ~ N(mean, var).

Two node sets, both as ``(z, weights)`` with ``sum(weights * f(z)) ~= E[f(z)]``:

* ``normal_nodes``: Simpson's rule on ``mean +- width * std``, split at given break points
  (an activation's kinks: ReLU's 0), so that piecewise-smooth integrands converge at
  Simpson's order on each piece. ``keras_initlab.gains`` integrates ``E[f(z)^2]`` with it.
* ``max_normal_nodes``: the same for the maximum of ``n`` independent standard normals, whose
  density is ``n * phi(z) * Phi(z)**(n - 1)`` (order statistics; David and Nagaraja 2003):
  what a max pooling window of ``n`` independent Gaussian inputs returns.
* ``max_unequal_nodes``: the maximum of independent normals of unequal means and variances
  (a window whose inputs differ: near a border, or on a small map), one node set per window.

Both are NumPy only (no Keras), so ``gains`` stays cheap to import. ``erf`` is the error
function of an array, which NumPy lacks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["erf", "max_normal_nodes", "max_unequal_nodes", "normal_nodes", "simpson"]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def erf(x: np.ndarray) -> np.ndarray:
    """``math.erf`` of every element of ``x``, as a float64 array of its shape.

    The error function of Python's ``math`` (NumPy has none), mapped over a flat list of
    the elements with ``|x| < 6`` (about 1.6 times faster than ``np.vectorize``); beyond,
    ``math.erf`` is ``+-1.0`` exactly (``1 - erf(6) = 2e-17``, below half a float64 ulp of
    1; from 5.93 on), which is what is returned (NaN stays NaN). The values are
    ``math.erf``'s: the cost of `keras_initlab.propagate` on a long rectified stream
    (InceptionResNetV2's) is mostly these calls, many of them far in the tails.

    Example:
    >>> erf(np.array([0.0, 1.0])).round(6).tolist()
    [0.0, 0.842701]
    """
    flat = np.asarray(x, dtype=np.float64)
    values = np.array(np.sign(flat))
    inside = np.abs(flat) < _ERF_ONE
    values[inside] = np.fromiter(map(math.erf, flat[inside].tolist()), np.float64)
    return values


_ERF_ONE = 6.0  # math.erf(x) == 1.0 for every float x >= 5.9216


def simpson(lo: float, hi: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of Simpson's rule on ``[lo, hi]`` (``points`` odd, >= 3).

    Example:
    >>> z, w = simpson(0.0, 1.0, 5)
    >>> round(float(np.sum(w * z**2)), 12)
    0.333333333333
    """
    if points < 3 or points % 2 == 0:
        raise ValueError(f"Argument `points` must be odd and >= 3. Received: points={points}")
    z = np.linspace(lo, hi, points)
    h = (hi - lo) / (points - 1)
    w = np.full(points, 2.0)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    return z, w * h / 3.0


def normal_nodes(
    mean: float = 0.0,
    var: float = 1.0,
    *,
    breaks: Sequence[float] = (0.0,),
    points: int = 24_001,
    width: float = 12.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``z`` and weights for ``E[f(z)]``, ``z ~ N(mean, var)``.

    Simpson's rule with ``points`` nodes on each piece of ``[mean - width*std, mean +
    width*std]`` cut at the ``breaks`` inside it (in z units); the weights include the normal
    density. ``var == 0`` gives the single node ``mean``.

    Example:
    >>> z, w = normal_nodes(1.0, 4.0)
    >>> round(float(np.sum(w * z)), 9), round(float(np.sum(w * z**2)), 9)
    (1.0, 5.0)
    """
    if var <= 0.0:
        return np.array([float(mean)]), np.array([1.0])
    std = math.sqrt(var)
    lo, hi = -width, width
    cuts = sorted({lo, hi, *((b - mean) / std for b in breaks if lo < (b - mean) / std < hi)})
    nodes, weights = [], []
    for a, b in itertools.pairwise(cuts):
        u, w = simpson(a, b, points)
        nodes.append(mean + std * u)
        weights.append(w * np.exp(-0.5 * u * u) / _SQRT_2PI)
    return np.concatenate(nodes), np.concatenate(weights)


def max_normal_nodes(n: int, *, points: int = 4_001, width: float = 12.0):
    """Nodes and weights for ``E[f(M)]``, ``M`` the maximum of ``n`` iid N(0, 1) draws.

    Example:
    >>> z, w = max_normal_nodes(2)
    >>> round(float(np.sum(w * z)), 6) == round(1 / math.sqrt(math.pi), 6)  # E[max of 2]
    True
    """
    if n < 1:
        raise ValueError(f"Argument `n` must be >= 1. Received: n={n}")
    u, w = simpson(-width, width, points)
    cdf = 0.5 * (1.0 + erf(u / math.sqrt(2.0)))
    density = n * np.exp(-0.5 * u * u) / _SQRT_2PI * cdf ** (n - 1)
    return u, w * density


_CDF_EDGE, _CDF_STEP = 12.0, 1e-3
_CDF = 0.5 * (1.0 + erf(np.arange(-12_000, 12_002) * _CDF_STEP / math.sqrt(2.0)))
_CDF_SLOPE = np.diff(_CDF)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """``Phi(z)``, linear between the table's nodes 1e-3 apart (error below 1e-7)."""
    x = (np.clip(z, -_CDF_EDGE, _CDF_EDGE) + _CDF_EDGE) / _CDF_STEP
    i = x.astype(np.int32)
    return _CDF[i] + (x - i) * _CDF_SLOPE[i]


def max_unequal_nodes(
    means: np.ndarray, stds: np.ndarray, live: np.ndarray, *, points: int = 401, width: float = 8.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes, weights and win shares for the maximum ``M = max_j z_j`` of independent
    ``z_j ~ N(means[w, j], stds[w, j]^2)`` over the taps ``j`` that ``live[w, j]`` keeps,
    one set per row ``w`` (a max pooling window).

    The density of ``M`` is ``sum_j phi_j(t) prod_{k != j} Phi_k(t)`` (``phi_j``, ``Phi_j``:
    tap ``j``'s density and distribution function; David and Nagaraja 2003), integrated by
    Simpson's rule on ``[max_j(m_j - width s_j), max_j(m_j + width s_j)]`` (``M`` lies above
    every tap's lower end, so a tap whose upper end lies below that never wins and is left
    out); each term integrates to the probability that tap ``j`` is the maximum (where a max
    pool sends its gradient). A tap's std is floored at 1/25 of its row's largest, one
    grid step, so that the grid resolves it (Simpson's rule on a Gaussian sampled once per
    std is accurate to about 1e-6), and at ``1e-6`` of its row's largest absolute mean (a
    row of constants: the maximum is the largest mean); ``Phi`` is interpolated from a
    table (error below 1e-7).

    Returns:
        ``(t, weights, wins)``: ``t`` and ``weights`` of shape ``(rows, points)`` with
        ``sum(weights * f(t), axis=1) ~= E[f(M)]``; ``wins`` of the taps' shape.

    Example:
    >>> t, w, wins = max_unequal_nodes(np.zeros((1, 2)), np.ones((1, 2)), np.ones((1, 2), bool))
    >>> round(float(np.sum(w * t)), 5) == round(1 / math.sqrt(math.pi), 5), wins.round(3)
    (True, array([[0.5, 0.5]]))
    """
    top = np.where(live, stds, 0.0).max(axis=1, keepdims=True)
    size = np.where(live, np.abs(means), 0.0).max(axis=1, keepdims=True)
    s = np.maximum(stds, np.maximum(top / 25.0, 1e-6 * size + 1e-30))
    low = np.where(live, means - width * s, -np.inf).max(axis=1, keepdims=True)
    high = np.where(live, means + width * s, -np.inf).max(axis=1, keepdims=True)
    contenders = live & (means + width * s >= low)
    order = np.argsort(~contenders, axis=1, kind="stable")[:, : int(contenders.sum(axis=1).max())]
    m, sd, ok = (np.take_along_axis(a, order, axis=1) for a in (means, s, contenders))
    u, w = simpson(0.0, 1.0, points)
    t = low + (high - low) * u[None, :]  # (rows, points)
    # float32 inside (the shares' relative error about 1e-6, far below the rule's own)
    z = ((t[:, :, None] - m[:, None, :]) / sd[:, None, :]).astype(np.float32)
    cdf = np.where(ok[:, None, :], _normal_cdf(z).astype(np.float32), np.float32(1.0))
    density = np.where(ok[:, None, :], np.exp(np.float32(-0.5) * z * z), np.float32(0.0))
    ones = np.ones_like(cdf[:, :, :1])
    before = np.cumprod(np.concatenate([ones, cdf[:, :, :-1]], axis=2), axis=2)
    after = np.cumprod(np.concatenate([ones, cdf[:, :, :0:-1]], axis=2), axis=2)[:, :, ::-1]
    step = w[None, :, None] * (high - low)[:, :, None] / (_SQRT_2PI * sd[:, None, :])
    shares = (density * before * after).astype(np.float64) * step
    wins = np.zeros(means.shape)
    np.put_along_axis(wins, order, shares.sum(axis=1) * ok, axis=1)
    return t, shares.sum(axis=2), wins
