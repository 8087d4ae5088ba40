"""Moments of an elementwise activation of a Gaussian pre-activation, and of a max pool.

Per channel, for ``y = f(z)``, ``z ~ N(mean_c, var_c)``: ``E[y]``, ``Var(y)`` and the
backward factor ``E[f'(z)^2]`` (a gradient independent of ``z``, the gradient-independence
assumption of mean-field theory, Schoenholz et al. 2017, leaves the activation with
``Var(dz) = E[f'(z)^2] Var(dy)``). Closed forms for linear, ReLU and leaky ReLU (the
rectified Gaussian: ``E[relu(u + s e)] = u Phi(u/s) + s phi(u/s)``, ``E[relu^2] = (u^2 +
s^2) Phi(u/s) + u s phi(u/s)``, ``E[relu'^2] = Phi(u/s)``) and ReLU6 (truncated normal
moments); every other activation by quadrature on the Keras function itself: Gauss-Hermite
for the smooth ones (tanh, sigmoid, gelu, silu, ...), Simpson's rule (``keras_initlab.
gaussian``, the integrator the gains use) for the rest; derivatives by one-sided
differences (the flatter side at a kink, as TensorFlow's gradients). Elements with equal
moments (a map's interior) are integrated once. A ReLU or ReLU6 of a function of a Gaussian
plus an independent Gaussian (a residual sum on a rectified stream, `_signal.Blend`) is
integrated in closed form over the Gaussian part at each node of the other (the stand-in
Gaussian of the sum's moments misses its skew: 9% of the variance on ResNet50's stream).
Max pooling of ``n`` iid inputs ``f(z_j)`` with ``f`` nondecreasing is ``f(mean + std *
M_n)``, ``M_n`` the maximum of ``n`` standard normals (order statistics). A softmax (not
elementwise) by the log-normal sum of the other logits' terms (``softmax_square``, also the
attention weights' rule).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_initlab.gaussian import erf, max_normal_nodes, normal_nodes
from keras_initlab.propagate._signal import Blend, Signal, Source, make

_INNER_POINTS = 801  # Simpson nodes per channel (kinks cost O(h^2), h = 0.03 std)
_INNER_WIDTH = 12.0
# Simpson nodes over the Gaussian of a blend (its other part smooths the kink)
_BLEND_POINTS = 201


@dataclass(frozen=True)
class Activation:
    """An elementwise activation: its name, NumPy float64 function and closed form.

    ``closed`` is ``"linear"``, ``"relu"`` (with ``slope`` the negative slope),
    ``"clipped"`` (``min(relu(z), top)``: ReLU6) or None: quadrature on ``fn``, Gauss-Hermite
    (64 nodes) where ``smooth``, else Simpson's rule (kinks).
    """

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    closed: str | None = None
    slope: float = 0.0
    top: float = 0.0
    smooth: bool = False

    def derivative(self, z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """``f'(z)``; ``y``: ``f(z)`` where the caller has it (one evaluation fewer)."""
        if self.closed == "linear":
            return np.ones_like(z)
        if self.closed == "relu":
            return np.where(z > 0, 1.0, self.slope)
        if self.closed == "clipped":
            return ((z > 0) & (z < self.top)).astype(np.float64)
        # One-sided differences; where they disagree (a kink hit exactly, e.g. the zeros a
        # ReLU leaves), the flatter side, as TensorFlow's gradients take it there.
        h = 1e-4 * max(float(np.max(np.abs(z))), 1e-30)
        y = self.fn(z) if y is None else y
        up, down = (self.fn(z + h) - y) / h, (y - self.fn(z - h)) / h
        kink = np.abs(up - down) > 1e-2 * (np.abs(up) + np.abs(down)) + 1e-6
        flatter = np.where(np.abs(up) < np.abs(down), up, down)
        return np.where(kink, flatter, 0.5 * (up + down))

    def is_nondecreasing(self) -> bool:
        """Whether ``fn`` never falls on [-20, 20] by more than float32 rounding: the
        backend may compute it in float32 whatever it is handed (JAX without x64: tanh's
        steps near 1 fall by 1.8e-7, and a tolerance of 1e-12 called tanh not monotone on
        JAX and monotone on TensorFlow). A non-monotone activation falls by far more
        (SiLU and GELU by about 1e-3 per step of 0.01 below their minimum)."""
        if self.closed is not None:
            return self.closed != "relu" or self.slope >= 0.0
        y = np.asarray(self.fn(np.linspace(-20.0, 20.0, 4001)), dtype=np.float64)
        tolerance = 4.0 * float(np.finfo(np.float32).eps) * max(1.0, float(np.abs(y).max()))
        return bool(np.all(np.diff(y) >= -tolerance))


LINEAR = Activation("linear", lambda z: z, "linear")


def _phi(t: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)


def _cdf(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + erf(t / math.sqrt(2.0)))


def _relu(u: np.ndarray, s: np.ndarray, slope: float) -> tuple[np.ndarray, ...]:
    """E of f, f^2 and f'^2 for f = leaky ReLU at z ~ N(u, s^2), per element."""
    t = u / np.where(s > 0, s, 1.0)
    cdf = np.where(s > 0, _cdf(t), (u > 0).astype(np.float64))
    pdf = np.where(s > 0, _phi(t), 0.0)
    pos1, pos2 = u * cdf + s * pdf, (u * u + s * s) * cdf + u * s * pdf
    neg1 = -u * (1.0 - cdf) + s * pdf  # E[relu(-z)]
    neg2 = (u * u + s * s) * (1.0 - cdf) - u * s * pdf  # E[relu(-z)^2]
    return pos1 - slope * neg1, pos2 + slope * slope * neg2, cdf + slope * slope * (1.0 - cdf)


def unique_rows(*arrays: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of the stacked per-element parameters, and the inverse index."""
    stacked = np.stack([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays], axis=1)
    rounded = np.round(stacked, 12)
    # A stable sort of the rows by their columns; a row starts a group where it differs from
    # the one before. (np.unique(axis=0) sorts the rows as bytes: ten times slower.)
    order = np.lexsort(rounded.T[::-1])
    ordered = rounded[order]
    starts = np.ones(len(order), bool)
    starts[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    inverse = np.empty(len(order), np.intp)
    inverse[order] = np.cumsum(starts) - 1
    first = order[starts]  # the first row of each group, in the original order
    return [stacked[first, k] for k in range(stacked.shape[1])], inverse


def _clipped(u: np.ndarray, s: np.ndarray, top: float) -> tuple[np.ndarray, ...]:
    """E of f, f^2 and f'^2 for f = min(relu(z), top) at z ~ N(u, s^2) (truncated normal)."""
    safe = np.where(s > 0, s, 1.0)
    a, b = -u / safe, (top - u) / safe
    ca, cb, pa, pb = _cdf(a), _cdf(b), _phi(a), _phi(b)
    inside = np.where(s > 0, cb - ca, ((u > 0) & (u < top)).astype(np.float64))
    above = np.where(s > 0, 1.0 - cb, (u >= top).astype(np.float64))
    first = u * inside + np.where(s > 0, s * (pa - pb), 0.0)
    second = (u * u + s * s) * inside + np.where(
        s > 0, 2.0 * u * s * (pa - pb) + s * s * (a * pa - b * pb), 0.0
    )
    return first + top * above, second + top * top * above, inside


_HERMITE = np.polynomial.hermite_e.hermegauss(64)  # smooth activations


def standard_nodes(smooth: bool) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``e`` and weights ``w`` with ``w @ f(e) ~= E[f(e)]``, ``e ~ N(0, 1)``:
    Gauss-Hermite (64 nodes) for a smooth ``f``, else Simpson's rule (kinks)."""
    if smooth:
        return _HERMITE[0], _HERMITE[1] / _HERMITE[1].sum()
    return normal_nodes(0.0, 1.0, breaks=(), points=_INNER_POINTS, width=_INNER_WIDTH)


def _gaussian(f: Activation, mean: np.ndarray, var: np.ndarray, derivative: bool = True):
    """E[f], E[f^2], E[f'^2] per element for z ~ N(mean, var) (E[f'^2] 0 without
    ``derivative``: the quadrature then calls ``f`` once)."""
    if f.closed == "relu":
        return _relu(mean, np.sqrt(var), f.slope)
    if f.closed == "clipped":
        return _clipped(mean, np.sqrt(var), f.top)
    e, we = standard_nodes(f.smooth)
    z = mean[:, None] + np.sqrt(var)[:, None] * e[None, :]
    y = f.fn(z)
    d2 = f.derivative(z, y) ** 2 @ we if derivative else np.zeros(len(mean))
    return y @ we, (y * y) @ we, d2


def output_moments(f: Activation, pre: Signal) -> Signal:
    """The moments of ``f(z)`` alone (no backward factor), for a ``pre`` without a source."""
    (m, v), inverse = unique_rows(pre.means, pre.variances)
    g1, g2, _ = _gaussian(f, m, v, derivative=False)
    g1, g2 = (np.asarray(t, dtype=np.float64)[inverse].reshape(pre.shape) for t in (g1, g2))
    return make(g1, g2 - g1 * g1)


def rectified_gaussian(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(m, v)`` with ``relu(z)``, ``z ~ N(m, v)``, of mean ``first`` and second moment
    ``second`` (per element).

    ``E[relu(z)]^2 / E[relu(z)^2] = (t Phi(t) + phi(t))^2 / ((t^2 + 1) Phi(t) + t phi(t))``
    depends on ``t = m / sqrt(v)`` alone and rises from 0 to 1: ``t`` by bisection, then
    ``sqrt(v) = first / (t Phi(t) + phi(t))``. A ReLU of a residual sum is recorded so: its
    output is close to a rectified Gaussian, and a Gaussian of the sum's own moments, whose
    ReLU has other moments, is not (InceptionResNetV2's stream of ReLUs).

    Example:
    >>> m, v = rectified_gaussian(np.array([1 / np.sqrt(2 * np.pi)]), np.array([0.5]))
    >>> round(float(m[0]), 6) + 0.0, round(float(v[0]), 6)  # relu of N(0, 1)
    (0.0, 1.0)
    """
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    # a constant 0 (a padded window, a dead unit): the ReLU of N(0, 0)
    zero = ~((first > 0.0) & (second > 0.0) & np.isfinite(first) & np.isfinite(second))
    first, second = np.where(zero, 1.0, first), np.where(zero, 1.0, second)
    target = np.minimum(first / np.sqrt(second), 1.0) ** 2
    lo, hi = np.full(first.shape, -30.0), np.full(first.shape, 40.0)  # phi(-30): 1e-196
    for _ in range(52):  # bisection: t to 70 / 2^52, float64's resolution
        t = 0.5 * (lo + hi)
        cdf, pdf = _cdf(t), _phi(t)
        ratio = (t * cdf + pdf) ** 2 / ((t * t + 1.0) * cdf + t * pdf)
        below = ratio < target
        lo, hi = np.where(below, t, lo), np.where(below, hi, t)
    t = 0.5 * (lo + hi)
    std = np.where(zero, 0.0, first / (t * _cdf(t) + _phi(t)))
    return np.where(zero, 0.0, t * std), std * std


def rectified(f: Activation, first: np.ndarray, second: np.ndarray) -> Source:
    """A nonnegative output with a ReLU's mass at 0 (a ReLU of a residual sum, a max pool
    of ReLUs), recorded as the ReLU ``f`` of the Gaussian whose ReLU has its mean ``first``
    and second moment ``second`` (`rectified_gaussian`), for the activation or pool that
    reads it next."""
    m, v = rectified_gaussian(first.ravel(), second.ravel())
    return Source(f, make(m.reshape(first.shape), v.reshape(first.shape)))


def joint_ratio(joint: np.ndarray, both: np.ndarray) -> np.ndarray:
    """``E[g'^2 f'^2] / (E[g'^2] E[f'^2])`` from the joint mean ``joint`` and the product of
    the two means ``both``; 1 where the product is 0 (no gradient passes either way)."""
    return np.where(both > 0, joint / np.where(both > 0, both, 1.0), 1.0)


def _blended(f: Activation, blend: Blend, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """E[f], E[f^2], E[f'^2] (distinct rows) and the inverse index, for ``f(x)``, ``x =
    a g(z) + b + e`` (a ``Blend``): over ``e`` in closed form at each node of ``z``, then
    over ``z`` by Simpson's rule."""
    src = blend.source
    scale = np.broadcast_to(1.0 if src.scale is None else src.scale, shape)
    shift = np.broadcast_to(0.0 if src.shift is None else src.shift, shape)
    mean, var = np.broadcast_to(blend.mean, shape), np.broadcast_to(blend.var, shape)
    pre = src.pre
    (m, v, a, b, em, ev), inverse = unique_rows(pre.means, pre.variances, scale, shift, mean, var)
    e, we = normal_nodes(0.0, 1.0, breaks=(), points=_BLEND_POINTS, width=_INNER_WIDTH)
    z = m[:, None] + np.sqrt(v)[:, None] * e
    gz = src.activation.fn(z)
    x = a[:, None] * gz + b[:, None] + em[:, None]
    s = np.broadcast_to(np.sqrt(ev)[:, None], x.shape)
    y1, y2, dy2 = _gaussian(f, x, s * s)
    # the source's derivative and f's see the same z: the gradient the sum passes to the
    # source's summand is corrected by E[g'^2 f'^2] / (E[g'^2] E[f'^2]) (Blend.selection)
    below = src.activation.derivative(z, gz) ** 2
    joint, both = (below * dy2) @ we, (below @ we) * (dy2 @ we)
    ratio = joint_ratio(joint, both)
    blend.selection[:] = [ratio[inverse].reshape(shape)]
    return y1 @ we, y2 @ we, dy2 @ we, inverse


def activation_moments(f: Activation, pre: Signal) -> tuple[Signal, np.ndarray]:
    """``(moments of f(z), E[f'(z)^2] per element)`` for the pre-activation ``pre``.

    Example:
    >>> relu = Activation("relu", lambda z: np.maximum(z, 0.0), "relu")
    >>> out, d2 = activation_moments(relu, Signal.uniform(0.0, 1.0, (1,)))
    >>> round(out.mean, 6), round(out.second, 6), float(d2[0])  # 1/sqrt(2 pi), 1/2, 1/2
    (0.398942, 0.5, 0.5)
    """
    shape = pre.shape
    if f.closed == "linear":
        return pre, np.ones(shape)
    src = pre.source
    if src is not None:  # f of (scale * g(z) + shift): integrate over z itself
        scale = np.broadcast_to(1.0 if src.scale is None else src.scale, shape)
        shift = np.broadcast_to(0.0 if src.shift is None else src.shift, shape)
        (m, v, a, b), inverse = unique_rows(src.pre.means, src.pre.variances, scale, shift)
        e, we = normal_nodes(0.0, 1.0, breaks=(), points=_INNER_POINTS, width=_INNER_WIDTH)
        z = m[:, None] + np.sqrt(v)[:, None] * e
        gz = src.activation.fn(z)
        x = a[:, None] * gz + b[:, None]
        y = f.fn(x)
        top = f.derivative(x, y) ** 2
        g1, g2, d2 = y @ we, (y * y) @ we, top @ we
        root = src.root
        if root.pre.shape == shape:
            # the two derivatives see the same z: E[g'(z)^2 f'(x)^2] is not the product of
            # the two means; the earlier activation's backward factor is corrected by this
            below = src.activation.derivative(z, gz) ** 2
            joint, d2_below = (below * top) @ we, below @ we
            both = d2_below * d2
            ratio = joint_ratio(joint, both)
            root.selection[:] = [np.asarray(ratio)[inverse].reshape(shape)]
        next_source = Source(f, pre.plain())
    elif pre.blend is not None and f.closed in ("relu", "clipped"):
        g1, g2, d2, inverse = _blended(f, pre.blend, shape)
        next_source = Source(f, pre.plain())
        if f.closed == "relu" and f.slope == 0.0:  # the ReLU of a Gaussian alike in moments
            next_source = rectified(f, g1[inverse].reshape(shape), g2[inverse].reshape(shape))
    else:
        (m, v), inverse = unique_rows(pre.means, pre.variances)
        g1, g2, d2 = _gaussian(f, m, v)
        next_source = Source(f, pre)
    g1, g2, d2 = (np.asarray(t, dtype=np.float64)[inverse].reshape(shape) for t in (g1, g2, d2))
    return make(g1, g2 - g1 * g1, source=next_source), d2


def max_moments(source: Source, n: int, shape: tuple[int, ...]) -> Signal:
    """Per-element moments of the maximum of ``n`` iid draws of a nondecreasing source.

    Example:
    >>> gaussian = Source(LINEAR, Signal.uniform(0.0, 1.0, (1,)))
    >>> round(max_moments(gaussian, 2, (1,)).mean, 6)  # E[max of 2 normals] = 1/sqrt(pi)
    0.56419
    """
    m, wm = max_normal_nodes(n, points=_INNER_POINTS, width=_INNER_WIDTH)
    pre = source.pre
    z = pre.means.reshape(-1)[:, None] + np.sqrt(pre.variances.reshape(-1))[:, None] * m
    y = source.apply(z, pre.shape)
    g1, g2 = (y @ wm).reshape(shape), ((y * y) @ wm).reshape(shape)
    return make(g1, g2 - g1 * g1)


def max_derivative(source: Source, n: int) -> np.ndarray:
    """``E[f'(z_max)^2] / E[f'(z)^2]`` per element, ``z_max`` the maximum of ``n`` draws."""
    f, pre = source.activation, source.pre
    e, we = normal_nodes(0.0, 1.0, breaks=(), points=_INNER_POINTS, width=_INNER_WIDTH)
    m, wm = max_normal_nodes(n, points=_INNER_POINTS, width=_INNER_WIDTH)
    (mu, var), inverse = unique_rows(pre.means, pre.variances)
    mu, sd = mu[:, None], np.sqrt(var)[:, None]
    at_max = f.derivative(mu + sd * m) ** 2 @ wm
    anywhere = f.derivative(mu + sd * e) ** 2 @ we
    ratio = np.where(anywhere > 0, at_max / np.where(anywhere > 0, anywhere, 1.0), 1.0)
    return ratio[inverse].reshape(pre.shape)


_LOGIT_GRID = np.linspace(-9.0, 9.0, 361)  # a logit's N(0, 1) quantiles for softmax_square
_LOGIT_WEIGHTS = np.exp(-0.5 * _LOGIT_GRID**2) / np.exp(-0.5 * _LOGIT_GRID**2).sum()
_LOG_TAU_STEP = 0.05  # the step of u = log(tau) in softmax_square's outer integral
ONE_HOT_S2 = 2500.0  # logit variance beyond which softmax_square takes the one-hot limit


def softmax_square(s2: float, t: Any) -> Any:
    """``E[p_1^2]`` for ``p = softmax(z)`` over ``t`` iid N(0, s2) logits (``t``: an int, or
    an array of them: one value each).

    Exact up to quadrature, by the Laplace transform: for ``y > 0``, ``1/y^2 = int_0^inf tau
    e^{-tau y} dtau``, so with ``y = e^{z_1} + R`` (``R`` the other ``t - 1`` terms,
    independent) ``E[p_1^2] = int_0^inf tau E[e^{2 z} e^{-tau e^z}] E[e^{-tau e^z}]^(t - 1)
    dtau``: two one-dimensional integrals over one logit (a fixed grid of 361 points to 9
    standard deviations), then one over ``u = log tau`` (step 0.05), where the first factor
    is ``E[exp(2 (u + z) - e^(u + z))]``, bounded. Equal to the closed form of ``t = 2``
    (the expectation of a squared sigmoid of ``N(0, 2 s2)``) to 1e-13, and to 100,000
    sampled softmaxes within their error from ``s2 = 0.5`` to 50 and ``t = 2`` to 128 (the
    Fenton-Wilkinson log-normal fit used before overstated it 1.8x at ``s2 = 4``, ``t =
    16``: a MultiHeadAttention after He normal). ``1/t^2`` at ``s2 = 0``; tends to ``1/t``
    as the softmax nears one-hot; 1 for ``t = 1``. Beyond ``s2 = ONE_HOT_S2`` (logits of
    std 50, where the grid would take ``9 s / 0.05`` steps: an exploding stack's attention
    reaches std 1e10) the softmax is taken as one-hot, ``1/t``: the exact value is
    ``1/t`` less ``O(1/s)`` (``0.56 / s`` relatively for ``t = 2``, the sigmoid's closed
    form; the grid gives 1.9%, 5.9% and 8.6% at ``s = 30`` for ``t`` = 2, 16, 128).

    Example:
    >>> round(softmax_square(0.0, 16), 6)  # uniform attention: 1 / t^2
    0.003906
    >>> round(float(softmax_square(4.0, 2)), 4)  # E[sigmoid(N(0, 8))^2]
    0.38
    """
    counts = np.asarray(t, dtype=np.float64)
    s = math.sqrt(max(s2, 0.0))
    if s == 0.0:
        out = 1.0 / np.maximum(counts, 1.0) ** 2
    elif not s2 <= ONE_HOT_S2:  # NaN too
        out = 1.0 / np.maximum(counts, 1.0)
    else:
        z = s * _LOGIT_GRID
        u = np.arange(-z[-1] - 40.0, -z[0] + 40.0, _LOG_TAU_STEP)
        y = u[:, None] + z[None, :]
        e = np.exp(np.minimum(y, 700.0))
        laplace = np.maximum(np.exp(-e) @ _LOGIT_WEIGHTS, 1e-300)  # E[exp(-tau e^z)]
        first = np.exp(2.0 * y - e) @ _LOGIT_WEIGHTS
        rest = np.exp(np.log(laplace)[:, None] * (np.maximum(counts, 1.0).ravel() - 1.0))
        out = ((first[:, None] * rest).sum(axis=0) * _LOG_TAU_STEP).reshape(counts.shape)
    out = np.where(counts <= 1, 1.0, np.minimum(out, 1.0 / np.maximum(counts, 1.0)))
    return float(out) if out.ndim == 0 else out


# Fixed standard normal draws (one set per number of classes): a softmax's moments are
# expectations over all its logits at once, taken over these (at most `SOFTMAX_ELEMENTS`
# numbers: fewer draws for many classes, whose sums over classes vary less).
SOFTMAX_DRAWS = 4096
SOFTMAX_ELEMENTS = 1 << 22
MIN_GROUPS = 8  # groups of `batch` draws a softmax's typical batch value needs


def unique_at_float32(rows: np.ndarray, **kwargs: Any) -> tuple[np.ndarray, ...]:
    """``np.unique(rows, axis=0, **kwargs)`` of ``rows`` rounded to float32's 24-bit
    significand, in float64: rows that differ by rounding are one, and values beyond
    float32's range (a stream of variance 1e54 deep in an unnormalized network) stay finite
    instead of overflowing a cast to float32.

    Example:
    >>> unique_at_float32(np.array([[1.0, 1e54], [1.0 + 1e-9, 1e54]])).shape
    (1, 2)
    """
    mantissa, exponent = np.frexp(rows)
    rounded = np.ldexp(np.round(mantissa * 2.0**24) / 2.0**24, exponent)
    return np.unique(rounded, axis=0, **kwargs)


@functools.lru_cache(maxsize=16)
def _softmax_draws(n: int, draws: int = SOFTMAX_DRAWS) -> np.ndarray:
    draws = max(min(draws, SOFTMAX_ELEMENTS // n), 64)
    return np.random.default_rng(n).standard_normal((draws, n))


def _drawn_sums(
    z: np.ndarray, batch: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(E[p_j], E[p_j^2], backward factor_j, groups)`` per logit ``j`` of a softmax,
    averaged over the rows of ``z`` (drawn logits, ``-inf`` where masked); the factor is
    scaled to the typical value of a batch of ``batch`` draws (`softmax_sums`), and
    ``groups`` holds each disjoint group of ``batch`` draws' mean backward energy (summed
    over the logits; empty without ``batch`` or where fewer than `MIN_GROUPS` groups fit or
    no draw passes a gradient), from which `_spread` tells how far one batch's value moves."""
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    s_2 = np.sum(p * p, axis=1, keepdims=True)
    energy = p * p * (1.0 - 2.0 * p + s_2)  # E[dz_j^2] / g for each draw
    factor = energy.mean(axis=0)
    totals = energy.sum(axis=1)
    count = len(totals) // batch if batch else 0
    groups = np.zeros(0)
    if batch and count >= MIN_GROUPS and totals.mean() > 0.0:
        groups = totals[: count * batch].reshape(count, batch).mean(axis=1)
        factor = factor * (np.median(groups) / totals.mean())
    return p.mean(axis=0), (p * p).mean(axis=0), factor, groups


def _spread(groups: np.ndarray) -> float:
    """How far a batch's backward energy moves from batch to batch: the ratio of the 90th
    to the 10th percentile of the groups' (1 without groups, infinite where a tenth of
    them pass no gradient)."""
    if groups.size == 0:
        return 1.0
    low, high = np.quantile(groups, [0.1, 0.9])
    return float(high / low) if low > 0.0 else math.inf


def softmax_sums(s2: float, n: int, batch: int | None = None) -> tuple[float, float]:
    """``(E[p^2], backward factor)`` of a softmax over ``n`` iid ``N(0, s2)`` logits.

    ``E[p^2] = E[S_2] / n`` (``S_m = sum_k p_k^m``). The backward factor: ``dz_j = p_j (dy_j -
    sum_k p_k dy_k)``; for an output gradient ``dy`` of iid elements of variance ``g``,
    ``E[dz_j^2] = g E[p_j^2 (1 - 2 p_j + S_2)]``, so the factor, averaged over the ``n``
    elements, is ``E[S_2 - 2 S_3 + S_2^2] / n``. Both are averages over fixed normal draws
    of the ``n`` logits (`SOFTMAX_DRAWS`, fewer for many classes: relative error about
    ``1/sqrt(draws)`` where the draws are alike, more where a near one-hot softmax lets few
    draws count). The factor is ``(1 - 1/n) / n^2`` at ``s2 = 0`` and falls as the softmax
    saturates: only samples whose two largest logits lie within O(1) of each other pass a
    gradient, a share of about ``1/sqrt(s2)``, where ``E[p^2]`` tends to ``1/n``. That
    expectation rests on rare samples: a small batch measured at a saturated softmax often
    sees none of them and a far smaller gradient. Given ``batch``, the factor is the value
    a batch of that many samples typically measures: the median, over disjoint groups of
    ``batch`` draws, of the group's mean (the mean where fewer than `MIN_GROUPS` groups fit);
    the same as the expectation where the draws are alike, far below it at saturation,
    where one batch's value still varies by orders of magnitude with its draw.

    Example:
    >>> n = 10
    >>> second, factor = softmax_sums(0.0, n)
    >>> round(second * n * n, 6), round(factor * n * n, 6)  # uniform: 1 and 1 - 1/n
    (1.0, 0.9)
    >>> softmax_sums(1e6, n)[1] / factor < 0.01  # near one-hot
    True
    >>> softmax_sums(1e4, n, batch=16)[1] < softmax_sums(1e4, n)[1] / 5  # a typical batch
    True
    """
    if n <= 1:
        return 1.0, 0.0
    _, second, factor, _ = _drawn_sums(math.sqrt(max(s2, 0.0)) * _softmax_draws(n), batch)
    return float(second.mean()), float(factor.mean())


def softmax_moments(
    pre: Signal, batch: int | None = None, visible: np.ndarray | None = None
) -> tuple[Signal, np.ndarray, float]:
    """Moments of a softmax over the last axis, each row's logits ``z_j ~ N(m_j, v_j)``.

    The logits of one row are taken as independent across its ``n`` channels, each about
    its own mean ``m_j`` (the part common to all samples, which a trained-from-scratch
    classifier's features make large: one class then wins for most samples, and whether a
    batch passes any gradient rests on how close the runner-up's mean is) with its variance
    over samples ``v_j``: ``E[p_j]``, ``E[p_j^2]`` and the backward factor ``E[p_j^2 (1 -
    2 p_j + S_2)]`` (with the projection ``dz = p (dy - <p, dy>)``, which matters for few
    classes and makes a saturated softmax pass almost no gradient; its typical value for a
    batch of ``batch`` samples, where given, as in `softmax_sums`) are averages over fixed
    normal draws (`_softmax_draws`; rows alike are drawn once, and many distinct rows share
    `SOFTMAX_ELEMENTS` numbers, at least ``MIN_GROUPS * batch`` draws each). With equal
    means and variances this is `softmax_sums`. ``visible`` (1 or 0, broadcast to the
    logits: a mask) leaves the logits of each row it marks in: the masked ones get
    probability 0 and no gradient. The third value is the batch-to-batch spread of the
    backward energy of all rows together, as a measurement of a batch sees it (`_spread`;
    1 without ``batch``): rows are drawn from the same normals, so each row's groups are
    shifted against the others' to add as independent ones.
    """
    mask = np.ones(pre.shape) if visible is None else np.broadcast_to(visible, pre.shape)
    mask = mask.astype(bool)
    if not np.all(mask.any(axis=-1)):
        raise NotImplementedError("a softmax mask that hides every logit of a row")
    n = pre.shape[-1]
    shown = np.where(mask, pre.means, 0.0)
    offsets = pre.means - shown.sum(axis=-1, keepdims=True) / mask.sum(axis=-1, keepdims=True)
    rows = np.concatenate(
        [np.where(mask, offsets, -np.inf), np.where(mask, pre.variances, 0.0)], axis=-1
    ).reshape(-1, 2 * n)
    values, where = unique_at_float32(rows, return_inverse=True)
    draws = max(SOFTMAX_ELEMENTS // (n * len(values)), MIN_GROUPS * (batch or 0), 64)
    noise = _softmax_draws(n, min(draws, SOFTMAX_DRAWS))
    drawn = [_drawn_sums(row[:n] + np.sqrt(row[n:]) * noise, batch) for row in values]
    sums = np.stack([np.stack(d[:3]) for d in drawn])  # (rows, 3, n)
    # What one batch measures: the energy of all rows, each row's groups shifted so that
    # rows drawn from the same normals add as independent ones.
    counts = np.bincount(where.ravel(), minlength=len(values))
    sized = [(c, d[3]) for c, d in zip(counts, drawn, strict=True) if d[3].size]
    total = sum(c * np.roll(g, r) for r, (c, g) in enumerate(sized))
    spread = _spread(total) if sized else 1.0  # rows that pass no gradient add nothing
    sums = sums[where.ravel()].reshape(*pre.shape[:-1], 3, n)
    mean, second, factor = (np.where(mask, sums[..., i, :], 0.0) for i in range(3))
    return make(mean, second - mean * mean), factor, spread
