"""Quadrature for expectations under normal distributions: E[f(z)], z ~ N(mean, var).

Two node sets, both as ``(z, weights)`` with ``sum(weights * f(z)) ~= E[f(z)]``:

* ``normal_nodes``: Simpson's rule on ``mean +- width * std``, split at given break points
  (an activation's kinks: ReLU's 0), so that piecewise-smooth integrands converge at
  Simpson's order on each piece. ``keras_initlab.gains`` integrates ``E[f(z)^2]`` with it.
* ``max_normal_nodes``: the same for the maximum of ``n`` independent standard normals, whose
  density is ``n * phi(z) * Phi(z)**(n - 1)`` (order statistics; David and Nagaraja 2003):
  what a max pooling window of ``n`` independent Gaussian inputs returns.

Both are NumPy only (no Keras), so ``gains`` stays cheap to import.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["max_normal_nodes", "normal_nodes", "simpson"]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


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
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(u / math.sqrt(2.0)))
    density = n * np.exp(-0.5 * u * u) / _SQRT_2PI * cdf ** (n - 1)
    return u, w * density
