"""Moments of an elementwise activation of a Gaussian pre-activation, and of a max pool.

Per channel, for ``y = f(z)``, ``z ~ N(mean_c, var_c)``: ``E[y]``, ``Var(y)`` and the
backward factor ``E[f'(z)^2]`` (a gradient independent of ``z``, the gradient-independence
assumption of mean-field theory, Schoenholz et al. 2017, leaves the activation with
``Var(dz) = E[f'(z)^2] Var(dy)``). Closed forms for linear, ReLU and leaky ReLU (the
rectified Gaussian: ``E[relu(u + s e)] = u Phi(u/s) + s phi(u/s)``, ``E[relu^2] = (u^2 +
s^2) Phi(u/s) + u s phi(u/s)``, ``E[relu'^2] = Phi(u/s)``); every other activation by
Simpson's rule on the Keras function itself (``keras_initlab.gaussian``, the integrator the
gains use), its derivative by central differences. Max pooling of ``n`` iid inputs
``f(z_j)`` with ``f`` nondecreasing is ``f(mean + std * M_n)``, ``M_n`` the maximum of ``n``
standard normals (order statistics).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from keras_initlab.gaussian import max_normal_nodes, normal_nodes
from keras_initlab.propagate._signal import Signal, Source, make

_INNER_POINTS = 801  # Simpson nodes per channel (kinks cost O(h^2), h = 0.03 std)
_INNER_WIDTH = 12.0


@dataclass(frozen=True)
class Activation:
    """An elementwise activation: its name, NumPy float64 function and closed form.

    ``closed`` is ``"linear"``, ``"relu"`` (with ``slope`` the negative slope) or None
    (quadrature on ``fn``).
    """

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    closed: str | None = None
    slope: float = 0.0

    def derivative(self, z: np.ndarray) -> np.ndarray:
        if self.closed == "linear":
            return np.ones_like(z)
        if self.closed == "relu":
            return np.where(z > 0, 1.0, self.slope)
        # One-sided differences; where they disagree (a kink hit exactly, e.g. the zeros a
        # ReLU leaves), the flatter side, as TensorFlow's gradients take it there.
        h = 1e-4 * max(float(np.max(np.abs(z))), 1e-30)
        y = self.fn(z)
        up, down = (self.fn(z + h) - y) / h, (y - self.fn(z - h)) / h
        kink = np.abs(up - down) > 1e-2 * (np.abs(up) + np.abs(down)) + 1e-6
        flatter = np.where(np.abs(up) < np.abs(down), up, down)
        return np.where(kink, flatter, 0.5 * (up + down))

    def is_nondecreasing(self) -> bool:
        if self.closed is not None:
            return self.closed == "linear" or self.slope >= 0.0
        z = np.linspace(-20.0, 20.0, 4001)
        return bool(np.all(np.diff(self.fn(z)) >= -1e-12))


LINEAR = Activation("linear", lambda z: z, "linear")


def _phi(t: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)


def _cdf(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(t / math.sqrt(2.0)))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _relu(u: np.ndarray, s: np.ndarray, slope: float) -> tuple[np.ndarray, ...]:
    """E of f, f^2 and f'^2 for f = leaky ReLU at z ~ N(u, s^2), per element."""
    t = u / np.where(s > 0, s, 1.0)
    cdf = np.where(s > 0, _cdf(t), (u > 0).astype(np.float64))
    pdf = np.where(s > 0, _phi(t), 0.0)
    pos1, pos2 = u * cdf + s * pdf, (u * u + s * s) * cdf + u * s * pdf
    neg1 = -u * (1.0 - cdf) + s * pdf  # E[relu(-z)]
    neg2 = (u * u + s * s) * (1.0 - cdf) - u * s * pdf  # E[relu(-z)^2]
    return pos1 - slope * neg1, pos2 + slope * slope * neg2, cdf + slope * slope * (1.0 - cdf)


def _nodes(pre: Signal, e: np.ndarray) -> np.ndarray:
    return pre.means[:, None] + np.sqrt(pre.variances)[:, None] * e[None, :]


def activation_moments(f: Activation, pre: Signal) -> tuple[Signal, np.ndarray]:
    """``(moments of f(z), E[f'(z)^2] per channel)`` for the pre-activation ``pre``.

    Example:
    >>> relu = Activation("relu", lambda z: np.maximum(z, 0.0), "relu")
    >>> out, d2 = activation_moments(relu, Signal.uniform(0.0, 1.0, 1))
    >>> round(out.mean, 6), round(out.second, 6), float(d2[0])  # 1/sqrt(2 pi), 1/2, 1/2
    (0.398942, 0.5, 0.5)
    """
    if f.closed == "linear":
        return pre, np.ones(pre.channels)
    if pre.source is not None:  # f of (scale * g(z) + shift): integrate over z itself
        e, we = normal_nodes(0.0, 1.0, breaks=(), points=_INNER_POINTS, width=_INNER_WIDTH)
        x = pre.source.apply(_nodes(pre.source.pre, e))
        y = f.fn(x)
        g1, g2 = y @ we, (y * y) @ we
        d2 = f.derivative(x) ** 2 @ we
        return make(g1, g2 - g1 * g1, source=Source(f, pre.plain())), d2
    if f.closed == "relu":
        g1, g2, d2 = _relu(pre.means, np.sqrt(pre.variances), f.slope)
    else:
        e, we = normal_nodes(0.0, 1.0, breaks=(), points=_INNER_POINTS, width=_INNER_WIDTH)
        z = _nodes(pre, e)
        y = f.fn(z)
        g1, g2 = y @ we, (y * y) @ we
        d2 = f.derivative(z) ** 2 @ we
    return make(g1, g2 - g1 * g1, source=Source(f, pre)), np.asarray(d2, dtype=np.float64)


def max_moments(source: Source, n: int) -> Signal:
    """Per-channel moments of the maximum of ``n`` iid draws of a nondecreasing source.

    Example:
    >>> gaussian = Source(LINEAR, Signal.uniform(0.0, 1.0, 1))
    >>> round(max_moments(gaussian, 2).mean, 6)  # E[max of 2 standard normals] = 1/sqrt(pi)
    0.56419
    """
    m, wm = max_normal_nodes(n, points=_INNER_POINTS, width=_INNER_WIDTH)
    y = source.apply(_nodes(source.pre, m))
    g1, g2 = y @ wm, (y * y) @ wm
    return make(g1, g2 - g1 * g1)


def softmax_moments(pre: Signal, n: int) -> tuple[Signal, np.ndarray]:
    """Moments of a softmax over ``n`` logits whose variance across channels is ``v``.

    Large-``n`` log-normal approximation (the denominator concentrates at ``n E[exp z]``):
    ``E[p] = 1/n``, ``E[p^2] = exp(v) / n^2``; the backward factor ``E[p^2]`` (``dz = p (dy -
    <p, dy>)``, the projection is O(1/n)).
    """
    second = math.exp(min(pre.var, 700.0)) / (n * n)
    out = Signal.uniform(1.0 / n, max(second - 1.0 / (n * n), 0.0), pre.channels)
    return out, np.full(pre.channels, second)
