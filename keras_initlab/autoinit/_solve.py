"""The scale of one kernel: the factor ``c`` on the kernel that gives its output the target.

A kernel layer's pre-activation is linear in its kernel: with the kernel times ``c`` each
element has mean ``c (m - b) + b`` (``b`` the bias) and variance ``c^2 v``, and the
elementwise affine layers that follow keep that form, so at the activation's input
``X(c)`` has means ``c a + d`` and variances ``c^2 v`` (``d``: what the bias and the
affine shifts give at ``c = 0``). ``c`` solves ``Var(f(X(c))) = target`` over all elements
(fixed pattern included, as ``Signal.var``):

* no activation (or a softmax, which is not elementwise): the quadratic
  ``c^2 (Var(a) + E[v]) + 2 c Cov(a, d) + Var(d) = target`` (``c = sqrt(target / Var)``
  for ``d = 0``, the usual case);
* a rectifier (ReLU, leaky ReLU, PReLU) with ``d = 0``: positively homogeneous, so
  ``c = sqrt(target / Var(f(X(1))))``;
* any other activation: regula falsi (Illinois) on ``log c``, the variance of ``f(X(c))``
  by the quadrature of ``keras_initlab.propagate`` on the distinct elements.

A pre-activation variance above ``MAX_PRE = 3.5`` times the target is not used, so every
layer output stays within a factor 4 of the target with room for the finite-width error of
the prediction: every rectifier and smooth ReLU reaches a
variance of 1 below it on zero-mean input (ReLU, GELU and SiLU at about 3, softplus 3.4; a
fixed pattern of channel means, which a narrow layer on a ReLU's nonzero mean has, can ask
for more: the scale is then capped there, as for an activation unbounded above, SiLU or
GELU, that a fixed pattern of negative means keeps below the target: the cap is the
closest it gets), while bounded activations cannot (``Var(tanh(z)) < 1``,
``Var(sigmoid(z)) < 1/4``); their pre-activation gets the target variance instead (unit
variance into a tanh, where it is still near linear, rather than into its saturation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keras_initlab.propagate._moments import Activation, output_moments
from keras_initlab.propagate._signal import Signal, make

MAX_PRE = 3.5
CAPPED = "pre-activation capped at"  # the note of a scale a cap bounds, not the target
# A gate's pre-activation variance (absolute, like attention logits): see `solve_gate`.
GATE_VAR = 0.1
# A kernel whose activation's `slope` exceeds this is expansive (`AutoInitReport.expansive`):
# 70 such layers in a chain double a deviation of a sample's scale.
EXPANSIVE = 1.01
_SLOPE_STEP = 0.02  # the log step in the pre-activation variance of `slope`'s difference
_ITERATIONS = 60
_LOG_TOL = 1e-9  # |log(variance / target)| at which the root is taken
_TINY = 1e-300
_FAR = 1e4  # a pre-activation far out on either side (`_saturates`)


def _rows(x1: Signal, x0: Signal) -> tuple[np.ndarray, ...]:
    """The distinct ``(a, d, v)`` element rows and their counts."""
    a = (x1.means - x0.means).reshape(-1)
    d = np.broadcast_to(x0.means, x1.shape).reshape(-1)
    v = x1.variances.reshape(-1)
    scale = math.sqrt(float(np.mean(a * a + v + d * d))) or 1.0
    stacked = np.stack([a, d, v], axis=1)
    _, first, counts = np.unique(
        np.round(stacked / scale, 9), axis=0, return_index=True, return_counts=True
    )
    rows = stacked[first]
    return rows[:, 0], rows[:, 1], rows[:, 2], counts / counts.sum()


def _variance(signal: Signal, weights: np.ndarray) -> float:
    mean = float(weights @ signal.means)
    second = float(weights @ (signal.means**2 + signal.variances))
    return max(second - mean * mean, 0.0)


class Problem:
    """``Var(f(X(c)))`` as a function of ``c``, on the distinct elements of ``X``."""

    def __init__(self, x1: Signal, x0: Signal, activation: Activation | None) -> None:
        self.a, self.d, self.v, self.w = _rows(x1, x0)
        self.activation = activation
        w = self.w
        mean_a, mean_d = float(w @ self.a), float(w @ self.d)
        self.quadratic = (
            float(w @ (self.a * self.a)) - mean_a**2 + float(w @ self.v),
            float(w @ (self.a * self.d)) - mean_a * mean_d,
            float(w @ (self.d * self.d)) - mean_d**2,
        )

    def pre(self, c: float) -> Signal:
        return make(c * self.a + self.d, c * c * self.v)

    def after(self, c: float) -> float:
        pre = self.pre(c)
        if self.activation is None:
            return _variance(pre, self.w)
        return _variance(output_moments(self.activation, pre), self.w)

    def pre_var(self, c: float) -> float:
        """The pre-activation's variance ``Var(X(c))`` over the elements."""
        q, b, r = self.quadratic
        return q * c * c + 2.0 * b * c + r

    def mean_square(self, c: float) -> float:
        """``E[f(X(c))^2]`` over the elements (``E[X(c)^2]`` without an activation)."""
        pre = self.pre(c)
        out = pre if self.activation is None else output_moments(self.activation, pre)
        return float(self.w @ (out.means**2 + out.variances))

    def pre_scale(self, target: float) -> float:
        """The ``c >= 0`` with pre-activation variance ``target`` (0 if the offsets alone
        exceed it)."""
        q, b, r = self.quadratic
        if q <= _TINY:
            return 0.0
        disc = b * b - q * (r - target)
        return max((-b + math.sqrt(max(disc, 0.0))) / q, 0.0)

    @property
    def homogeneous(self) -> bool:
        f = self.activation
        rectifier = f is None or f.closed in ("linear", "relu")
        return rectifier and not bool(np.any(self.d))


def solve(problem: Problem, target: float) -> tuple[float, str]:
    """The kernel factor ``c`` and how it was found (a note for the report)."""
    f = problem.activation
    top = problem.pre_scale(MAX_PRE * target)
    if top <= 0.0:
        return 1.0, "output is constant (no variance to scale): kept"
    if f is None:
        return problem.pre_scale(target), "output variance"
    name = f"variance after {f.name}"
    if problem.homogeneous:
        now = problem.after(1.0)
        if now <= _TINY:
            return 1.0, "no variance: kept"
        c = math.sqrt(target / now)
        if c > top:  # fixed channel means below zero: the rectifier would need more
            return top, f"{name}, {CAPPED} {MAX_PRE:g}x the target"
        return c, name
    if problem.after(top) < target:
        if _saturates(f):
            return problem.pre_scale(target), (
                f"{f.name} cannot reach the target below {MAX_PRE:g}x pre-activation "
                "variance: pre-activation variance"
            )
        return top, f"{name}, {CAPPED} {MAX_PRE:g}x the target"
    return _regula_falsi(problem, target, top), name


def solve_gate(problem: Problem) -> tuple[float, str] | None:
    """The kernel factor of a gate, and its note; None if the activation is not one that
    can start neutral (bounded on both sides, ``f(0) != 0``: sigmoid, hard sigmoid).

    A gate ``e = f(u)`` multiplies another tensor ``x`` (squeeze-and-excitation: ``x``
    times a sigmoid of its pooled channels). Its pre-activation gets variance
    ``GATE_VAR = 0.1`` rather than the target: near ``u = 0`` the product carries
    ``E[e^2] ~ f(0)^2 + f'(0)^2 s^2 Var(u)`` of ``x``'s variance, where ``s^2`` is one
    sample's scale relative to the others (``u`` is computed from that sample's own
    ``x``), so the gate passes more of a larger sample: the elasticity of ``E[e^2]`` in
    ``s^2`` is ``Var(u) / (4 + Var(u))`` for a sigmoid, 0.2 at unit variance and 0.024 at
    ``GATE_VAR``. Compounded over a stack of gated blocks, 0.2 spreads the samples'
    energies apart: after ``initialize(model, "auto")`` with unit-variance gates,
    EfficientNetB1 (32x32, 256 Gaussian samples) has a standard deviation of 3.6 in the log
    of the per-sample energy at ``block6d_add`` (median 0.09, mean 40; predicted 2.1); with
    ``GATE_VAR`` it is 1.6, and the rest is SiLU's own elasticity (see `autoinit`).
    """
    f = problem.activation
    if f is None or not neutral_gate(f):
        return None
    c = problem.pre_scale(GATE_VAR)
    return c, f"gate: pre-activation variance {GATE_VAR:g} (a near-constant {f.name} at start)"


def neutral_gate(f: Activation | None) -> bool:
    """Whether ``f`` can start a gate neutral (`solve_gate`): bounded on both sides with
    ``f(0) != 0`` (sigmoid, hard sigmoid)."""
    return f is not None and _saturates(f) and float(f.fn(np.zeros(1))[0]) != 0.0


def gate_square(f: Activation) -> float:
    """``E[f(u)^2]`` for ``u ~ N(0, GATE_VAR)``: the share of its operand's variance a gate
    started neutral passes (0.256 for a sigmoid, ``f(0)^2 = 1/4`` plus ``f'(0)^2
    GATE_VAR``).

    Example:
    >>> import keras
    >>> from keras_initlab.propagate import _activations
    >>> round(gate_square(_activations.from_function(keras.activations.sigmoid)), 3)
    0.256
    """
    out = output_moments(f, make(np.zeros(1), np.full(1, GATE_VAR)))
    return float(out.means[0] ** 2 + out.variances[0])


def solve_operand(
    problem: Problem, target: float, square: float, hidden: bool = False
) -> tuple[float, str]:
    """The kernel factor of the operand of a gate's product, and its note.

    A gate started neutral passes ``square`` (`gate_square`, about 1/4) of its operand's
    variance, so with the operand at the target the product sits at ``T/4``, on the edge
    of ``[T/4, 4 T]``, while the operand's pre-activation (about ``2.9 T`` before a SiLU)
    is near the other edge. The operand's scale is the one that puts the two ends of the
    chain equally far from the target on a log scale, ``Var(X) * square * Var(f(X)) =
    T^2`` (``Var(m s) >= square Var(m)`` for the product of independent ``m`` and ``s``):
    for SiLU an output of 1.16 T, a pre-activation of 3.4 T and a product of 0.30 T, 1.18x
    inside both edges; without an activation ``2 T`` and ``T/2``. Where the pre-activation
    is ``hidden`` (the layer's own activation: no layer outputs it) the ends are the
    operand and the product, ``square * Var(f(X))^2 = T^2``: about ``2 T`` and ``T/2``.
    Never below the scale that reaches the target; a pre-activation that is a layer's
    output at most ``4 T``.

    Example:
    >>> import keras, numpy as np
    >>> from keras_initlab.propagate import _activations
    >>> from keras_initlab.propagate._signal import make
    >>> x, zero = make(np.zeros(64), np.ones(64)), make(np.zeros(64), np.zeros(64))
    >>> c, note = solve_operand(Problem(x, zero, None), 1.0, 0.25)
    >>> round(c**2, 3)
    2.0
    """
    low, how = solve(problem, target)
    high = problem.pre_scale((4.0 * MAX_PRE if hidden else 4.0) * target)

    def h(u: float) -> float:
        c = math.exp(u)
        after = max(problem.after(c), _TINY)
        top = after if hidden else max(problem.pre_var(c), _TINY)
        return math.log(top) + math.log(square * after) - 2.0 * math.log(target)

    note = f"{how}; operand of a gate's product: pre-activation times product = target^2"
    if not high > low > 0.0:
        return low, how
    ends = (math.log(low), h(math.log(low))), (math.log(high), h(math.log(high)))
    if ends[0][1] >= 0.0:
        return low, how
    if ends[1][1] <= 0.0:
        return high, f"{note}, {CAPPED} 4x the target"
    return math.exp(_root(h, *ends)), note


def slope(problem: Problem, c: float) -> float | None:
    """The elasticity of the mean square after the activation in the variance before, at
    the kernel factor ``c``: ``d log E[f(X)^2] / d log Var(X)`` with ``X = c a + d`` (a
    central difference in ``log c``); None without an activation.

    One sample whose input is ``s`` times the others' reaches this layer ``s^2``-fold in
    mean square and leaves it ``s^(2 slope)``-fold (the next kernel maps mean squares to
    variances), so along a chain of layers with slope above 1 the samples' scales spread
    apart geometrically and no kernel scale holds a target (the slope of ``c^2 E[f^2]``
    does not depend on ``c^2``): the fixed point every scale gives is unstable. A
    rectifier has slope 1 (positively homogeneous); ELU 0.89-0.93, SELU 0.78-0.83, softplus
    and tanh below 1 (they pull a sample back towards the others); SiLU 1.10-1.17, GELU
    1.03-1.18, hard swish 1.09-1.22 and mish 1.02-1.08, for a pre-activation variance from
    0.3 to 5 (SiLU at the 3 auto gives it: 1.13).
    A bias ``d`` does not scale with the sample, and lowers the slope.

    Example:
    >>> import keras, numpy as np
    >>> from keras_initlab.propagate import _activations
    >>> from keras_initlab.propagate._signal import make
    >>> x = make(np.zeros(64), np.ones(64))
    >>> silu = _activations.from_function(keras.activations.silu)
    >>> problem = Problem(x, make(np.zeros(64), np.zeros(64)), silu)
    >>> round(slope(problem, 3 ** 0.5), 2)
    1.13
    """
    if problem.activation is None:
        return None
    step = math.exp(_SLOPE_STEP / 2.0)
    up, down = problem.mean_square(c * step), problem.mean_square(c / step)
    if not (up > _TINY and down > _TINY):
        return None
    return (math.log(up) - math.log(down)) / (2.0 * _SLOPE_STEP)


def _saturates(f: Activation) -> bool:
    """Whether ``f`` is bounded on both sides (tanh, sigmoid, hard sigmoid, ReLU6): more
    pre-activation variance only pushes it into saturation."""
    ends = f.fn(np.array([-_FAR, _FAR]))
    return bool(np.all(np.abs(ends) < _FAR / 10.0))


def _regula_falsi(problem: Problem, target: float, top: float) -> float:
    """``c`` in ``(top / 1e3, top]`` with ``Var(f(X(c))) = target``, on ``log Var`` against
    ``log c`` (a near-straight line: slope 2 for a homogeneous map)."""

    def h(u: float) -> float:
        return math.log(max(problem.after(math.exp(u)), _TINY)) - math.log(target)

    low = math.log(top) - math.log(1e3)
    f_low = h(low)
    if f_low >= 0.0:  # the offsets alone give the target: the smallest scale tried
        return math.exp(low)
    return math.exp(_root(h, (low, f_low), (math.log(top), h(math.log(top)))))


def _root(h: Any, start: tuple[float, float], end: tuple[float, float]) -> float:
    """The root of an increasing ``h`` between ``start = (low, h(low))`` (``h < 0``) and
    ``end = (high, h(high))`` (``h > 0``), by regula falsi, Illinois variant."""
    (low, f_low), (high, f_high) = start, end
    side = 0
    for _ in range(_ITERATIONS):
        u = high - f_high * (high - low) / (f_high - f_low)
        f_u = h(u)
        if abs(f_u) < _LOG_TOL:
            return u
        if f_u > 0.0:
            high, f_high = u, f_u
            if side == 1:
                f_low /= 2.0
            side = 1
        else:
            low, f_low = u, f_u
            if side == -1:
                f_high /= 2.0
            side = -1
    return 0.5 * (low + high)


def scaled(variable: Any, factor: float) -> None:
    """Multiply a kernel variable by ``factor`` in its own dtype."""
    variable.assign(variable * factor)
