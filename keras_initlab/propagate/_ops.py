"""``keras.ops`` calls a graph records (``x + 3.0``, ``ops.relu6(h)``, ``ops.mean(x, -1)``).

What each operation is comes from the table ``keras_initlab.model.operations``; its rules
here work per element, as the layers' (``Signal``). Constant operands (numbers and arrays
in the arguments) are elements of mean ``c`` and variance 0.

* Activations and math functions ``y = f(x)``: ``E[f]``, ``E[f^2]`` and the backward
  factor ``E[f'^2]`` by the quadrature of ``_moments``, over ``x`` taken as Gaussian or
  over the Gaussian ``z`` it is a function of (``square(x) + 1`` is ``g(z) + 1``, ``g =
  square``); the output records that it is ``f`` of ``x`` (a ``Source``), as an activation
  layer's does. A function defined only above a bound (``sqrt``, ``log``) needs an argument
  that stays above it.
* ``x + c``, ``c - x``, ``c x``, ``x / c`` (and ``negative``): affine maps ``a x + b``:
  ``means' = a means + b``, ``variances' = a^2 variances``, ``Var(dx) = a^2 Var(dy)``. Any
  other function of ``x`` and a scalar ``c`` (``power(x, 2)``, ``maximum(x, 0)``) is the
  function ``t -> f(t, c)`` above.
* Two tensors: independent ones add and multiply as the merge layers do (``E[y^2] = E[a^2]
  E[b^2]``). Two functions of one Gaussian ``z`` (hard swish ``h * relu6(h + 3)``) are
  integrated over ``z``: ``E[f(F_a(z), F_b(z))]``. Their gradients meet again at ``z``,
  where the walk adds the variances of the two paths, ``Var(dy) (E[f_a^2] E[F_a'^2] +
  E[f_b^2] E[F_b'^2])``; the true one is ``Var(dy) E[(f_a F_a' + f_b F_b')^2]``. The
  difference goes to the operand that is ``z`` itself (its path has no other step), or
  both operands' factors are scaled to it where neither is.
* Re-layouts (reshape, transpose, slicing, concatenation, padding, ...): the operation run
  on numbered elements says which input element, or which constant, each output element
  is; the moments move with the elements and the gradients move back, adding up over
  copies.
* Reductions over per-sample axes of ``n`` elements, taken as independent: ``mean``: means
  average, variances add divided by ``n^2``, ``Var(dx) = Var(dy) / n^2``; ``sum``: both
  add. A sum or mean of elements that cannot be negative (``mean(square(x))``, what an RMS
  normalization divides by) is positive: taken as Gamma-distributed with its mean ``m`` and
  variance ``v`` (shape ``a = m^2 / v``, scale ``t = v / m``; a mean of ``n`` squares of
  iid centred Gaussians is exactly Gamma, ``a = n / 2``), kept through ``c G`` (``c > 0``) and ``G +
  c`` (moments refitted), and a power of it (``sqrt``, ``rsqrt``, ``reciprocal``,
  ``power(G, c)``) takes the Gamma's moments ``E[G^k] = t^k Gamma(a + k) / Gamma(a)``:
  ``E[y] = E[G^p]``, ``E[y^2] = E[G^{2p}]``, backward ``p^2 E[G^{2(p-1)}]``. The product
  ``x * rsqrt(mean(x^2))`` is then taken as one of independent tensors: ``E[y^2] =
  n / (n - 2)`` for a true 1, and the gradient's ``O(1/n)`` correlation is dropped.
  ``max``/``min``: as a global max pooling of the ``n`` elements (order statistics).
  ``x +- r`` with ``r = c sum_G x`` a sum or mean of ``x`` itself (centring) adds the
  covariance ``Cov(x_i, r) = c Var(x_i)``: ``Var(y) = Var(x) + Var(r) +- 2 c Var(x)``, and
  backward ``(1 +- 2 c) Var(dy)`` on the direct path.
* ``matmul``/``einsum`` of independent operands: ``E[y] = sum E[a] E[b]``, ``Var(y) = sum
  (E[a^2] E[b^2] - E[a]^2 E[b]^2)``; backward ``Var(da) = sum Var(dy) E[b^2]``. Operands
  that read the same elements of one tensor (``x @ transpose(x)``, followed back through
  elementwise functions and re-layouts) are not independent: not covered. Two projections
  of one tensor (a query and a key) are correlated where they read one position: their
  covariance is added (`_linear`), as it is to a sum of two of them (RoPE's halves).

A rule that cannot read its call (the batch axis reduced or moved, an array operand of a
nonlinear function, two independent tensors divided, moments that are not finite) raises
``NotImplementedError`` with the reason: the walk marks the operation assumed.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np

from keras_initlab.model import operations as table
from keras_initlab.propagate import (
    _activations,
    _attention,
    _linear,
    _merge,
    _paths,
    _pooling,
    _positions,
)
from keras_initlab.propagate._kernels import kernel
from keras_initlab.propagate._moments import (
    LINEAR,
    Activation,
    joint_ratio,
    standard_nodes,
    unique_rows,
)
from keras_initlab.propagate._signal import Signal, Source, make, require_independent_steps
from keras_initlab.propagate._step import Arg, Call, Step
from keras_initlab.propagate._structural import moved

Rule = Callable[[Call], Step]
ArrayMap = Callable[[np.ndarray], np.ndarray]
SHARED_NOTE = "operands are functions of one tensor: both paths' gradients scaled to their sum"
# The one tensor each re-layout's output was moved from and which of its elements (flat;
# -1: a constant), weakly (for as long as the walk keeps the signals): a contraction tells
# ``x @ transpose(x)`` from the product of two independent halves of x.
_MOVED_FROM: weakref.WeakKeyDictionary[Signal, tuple[Signal, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)
# Positive statistics, ``G ** p`` with ``G`` Gamma of shape ``a`` and scale ``t`` (arrays of
# the tensor's shape): ``{signal: (a, t, p)}``, as weakly as `_MOVED_FROM`.
_GAMMA: weakref.WeakKeyDictionary[Signal, tuple[np.ndarray, np.ndarray, float]] = (
    weakref.WeakKeyDictionary()
)
# The power each function of a positive statistic is.
POWERS = {"sqrt": 0.5, "rsqrt": -0.5, "reciprocal": -1.0}
# Each sum or mean's input, its shape with the reduced axes kept (as 1) and the coefficient
# (1 or 1/n), the same way: ``x - mean(x)`` is not a difference of independent tensors.
_REDUCED_FROM: weakref.WeakKeyDictionary[Signal, tuple[Signal, tuple[int, ...], float]] = (
    weakref.WeakKeyDictionary()
)


@dataclasses.dataclass(frozen=True)
class Operand:
    """An argument of the call: a graph tensor (``index`` into ``call.inputs``) or a
    constant (``index`` None, variance 0)."""

    signal: Signal
    index: int | None


def rule_for(operation: Any) -> Rule | None:
    """The rule for a Keras ``Operation`` (by class name, see ``model.operations``); one that
    raises the reason for an operation listed not covered; None for an unknown class."""
    cls = type(operation)
    if not cls.__module__.startswith("keras."):  # a user's own Operation subclass
        return None
    if cls.__name__ in table.NOT_COVERED:
        return functools.partial(_not_covered, table.NOT_COVERED[cls.__name__])
    kind = table.OPERATIONS.get(cls.__name__)
    return None if kind is None else functools.partial(RULES[type(kind)], kind)


def _not_covered(reason: str, call: Call) -> Step:
    raise NotImplementedError(reason)


# ----------------------------------------------------------------------------- arguments
def _arguments(call: Call) -> list[Any]:
    """The call's arguments in the order of the operation's ``call`` signature."""
    signature = inspect.signature(call.layer.call)
    try:
        bound = signature.bind(*call.args, **call.kwargs)
    except TypeError as error:
        raise NotImplementedError(f"arguments not read: {error}") from None
    values: list[Any] = []
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            values.extend(value)
        elif kind is not inspect.Parameter.VAR_KEYWORD:
            values.append(value)
    return values


def _operand(call: Call, value: Any, elementwise: bool = True) -> Operand:
    """A tensor argument's moments, or a constant's; an ``elementwise`` operation aligns
    the constant's axes with the output's last ones, so one with the output's rank has a
    batch axis (dropped: one value for every sample)."""
    if isinstance(value, Arg):
        return Operand(call.inputs[value.index], value.index)
    try:
        c = (
            kernel(value)
            if keras.ops.is_tensor(value) or isinstance(value, keras.Variable)
            else (np.asarray(value, dtype=np.float64))
        )
    except (TypeError, ValueError):
        raise NotImplementedError(f"an argument that is not a number: {value!r}") from None
    rank = len(call.out_shapes[0])
    if elementwise and c.ndim >= rank > 0:
        if c.ndim > rank or c.shape[0] != 1:
            raise NotImplementedError("a constant that varies along the batch axis")
        c = c[0]
    return Operand(make(c, np.zeros_like(c)), None)


def _operands(call: Call, count: int, elementwise: bool = True) -> list[Operand]:
    values = _arguments(call)
    if len(values) < count:
        raise NotImplementedError(f"{count} operands expected")
    return [_operand(call, v, elementwise) for v in values[:count]]


def _tensor(call: Call) -> Operand:
    x = _operands(call, 1)[0]
    if x.index is None:
        raise NotImplementedError("a constant input")
    return x


def _options(call: Call, options: Any) -> dict[str, Any]:
    return {keyword: getattr(call.layer, attribute) for keyword, attribute in options.items()}


def _to_inputs(call: Call, pairs: Iterable[tuple[Operand, np.ndarray]]) -> list[np.ndarray]:
    """The gradient of every input from the operands' (summed where a tensor is read twice;
    a broadcast operand gets the sum over the elements it was broadcast to)."""
    grads = [np.zeros(x.shape) for x in call.inputs]
    for operand, g in pairs:
        if operand.index is not None:  # a stream's paths (`_paths`) have its shape
            along = g if _paths.pathwise(g) else _merge.unbroadcast(g, operand.signal.shape)
            grads[operand.index] = grads[operand.index] + along
    return grads


def _sample_shape(shape: Any) -> tuple[int, ...]:
    if any(d is None for d in shape[1:]):
        raise NotImplementedError("an unknown shape")
    return tuple(int(d) for d in shape[1:])


def _finite(*arrays: np.ndarray) -> None:
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise NotImplementedError("moments that are not finite")


# ----------------------------------------------------------------------------- lineage
def lineage(x: Signal) -> tuple[Signal, tuple[Source, ...]]:
    """``(z, maps)``: ``x`` is ``maps[-1](... maps[0](z))`` element by element, each map
    ``t -> scale f(t) + shift`` (a ``Source``), ``z`` the Gaussian it starts from (``x``
    itself when it is not a function of another tensor)."""
    if x.source is None:
        return x, ()
    z, maps = lineage(x.source.pre)
    return z, (*maps, x.source)


def _origin(x: Signal) -> tuple[Signal, np.ndarray]:
    """The tensor ``x`` comes from through elementwise functions and re-layouts, and the
    element of it (flat) each element of ``x`` is a function of (-1: a constant)."""
    index = np.arange(x.means.size)
    while True:
        if x in _MOVED_FROM:
            x, moves = _MOVED_FROM[x]
            index = np.where(index >= 0, moves[np.maximum(index, 0)], -1)
        elif x.source is not None:
            x = lineage(x)[0]
        else:
            return x, index


def _independent(operands: list[Operand]) -> bool:
    """Whether no two tensor operands are functions of the same element of one tensor."""
    seen: dict[int, np.ndarray] = {}
    for o in operands:
        if o.index is None:
            continue
        root, index = _origin(o.signal)
        index = index[index >= 0]
        if id(root) in seen and np.intersect1d(seen[id(root)], index).size:
            return False
        seen[id(root)] = np.union1d(seen.get(id(root), index), index)
    return True


@dataclasses.dataclass(frozen=True)
class Nodes:
    """A chain of maps on the quadrature nodes of its Gaussian ``z``: its values, its
    derivative ``d/dz``, and its last map's derivative ``f'`` at that map's own argument
    (1 for no map)."""

    values: np.ndarray
    slope: np.ndarray
    last: np.ndarray


def _on_nodes(
    z: Signal, chains: list[tuple[Source, ...]]
) -> tuple[list[Nodes], np.ndarray, np.ndarray]:
    """Each chain on the quadrature nodes of ``z``'s distinct elements (rows), the weights,
    and the inverse index (elements -> rows)."""
    shape = z.shape
    params = [z.means, z.variances]
    for s in (s for chain in chains for s in chain):
        if s.pre.shape != shape:
            raise NotImplementedError("a broadcast function of a tensor")
        params.append(np.broadcast_to(1.0 if s.scale is None else s.scale, shape))
        params.append(np.broadcast_to(0.0 if s.shift is None else s.shift, shape))
    rows, inverse = unique_rows(*params)
    e, w = standard_nodes(smooth=False)
    t = rows[0][:, None] + np.sqrt(rows[1])[:, None] * e
    found, k = [], 2
    for chain in chains:
        y, dy, last = t, np.ones_like(t), np.ones_like(t)
        for s in chain:
            a, b = rows[k][:, None], rows[k + 1][:, None]
            fy = s.activation.fn(y)
            last = s.activation.derivative(y, fy)
            y, dy, k = a * fy + b, dy * a * last, k + 2
        found.append(Nodes(y, dy, last))
    return found, w, inverse


def _nonnegative(x: Signal) -> bool:
    """Whether no element of ``x`` can be negative (a square, a ReLU's output): its lowest
    value over its Gaussian's nodes (`_lowest`) is at least 0."""
    try:
        return _lowest(x) >= 0.0
    except NotImplementedError:
        return False


def _lowest(x: Signal) -> float:
    """The smallest value ``x`` takes within 12 standard deviations of its Gaussian."""
    z, chain = lineage(x)
    with np.errstate(all="ignore"):
        [nodes], _, _ = _on_nodes(z, [chain])
    return float(np.min(nodes.values))


# ----------------------------------------------------------------------------- elementwise
def _elementwise(
    call: Call, x: Operand, f: Activation | str | None, everywhere: bool = True
) -> Step:
    """``f`` of every element (an ``Activation``, or ``"softmax"`` over the last axis).

    ``x`` Gaussian (an affine map of one: ``h + 3``) or one function of its Gaussian: as
    an activation layer's; a function of a function of its Gaussian (``exp(sin(x) + 1)``):
    the quadrature is over that Gaussian through the whole chain, and the function before
    ``f`` learns how their derivatives correlate (``_select``). The output records that it
    is ``f(x)`` unless ``f`` is defined on part of the line only (``everywhere`` False:
    ``sqrt``): the layers read such a record as ``f`` of a Gaussian with ``x``'s moments.
    """
    z, chain = lineage(x.signal)
    gaussian = all(s.activation.closed == "linear" for s in chain)
    selection = None
    with np.errstate(all="ignore"):  # a function not finite on some nodes: checked below
        if isinstance(f, Activation) and len(chain) > 1 and not gaussian:
            [nodes], w, inverse = _on_nodes(z, [chain])
            y = f.fn(nodes.values)
            d = f.derivative(nodes.values, y)
            below, top = nodes.last**2, d * d
            per = (y, y * y, top, below * top, below)
            m1, m2, d2, joint, d2_below = ((t @ w)[inverse].reshape(z.shape) for t in per)
            out = make(m1, m2 - m1 * m1)
            selection = (chain[-1], d2_below * d2, joint)
        else:
            # a Gaussian through affine maps is read by its moments; a sum on a rectified
            # stream (no chain, a Blend) is integrated as the activation layers do
            pre = x.signal.plain() if gaussian and chain else x.signal
            out, d2, _ = _activations.apply(f, pre, call.batch)
    _finite(out.means, out.variances, d2)
    if selection is not None:
        _select(*selection)
    if isinstance(f, Activation):  # y = f(x), with x's own lineage kept
        out = Signal(out.means, out.variances, Source(f, x.signal) if everywhere else None)
        if x.signal.blend is not None and out.source is not None:
            out = _paths.along(x.signal.blend, out)  # as the activation layers read it

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        factor = _paths.factor(out, _activations.backward_factor(out, d2))
        return _to_inputs(call, [(x, g[0] * factor)])

    return Step([out], backward, paths=True)


def _select(source: Source, both: np.ndarray, joint: np.ndarray) -> None:
    """Correct the backward factor of the function ``source`` records (``E[g'^2]``) for an
    elementwise function ``f`` of its output: the two derivatives see the same argument,
    ``E[g'^2 f'^2] / (E[g'^2] E[f'^2])`` (``Source.selection``, as ``_moments`` does)."""
    ratio = joint_ratio(joint, both)
    if source.root.pre.shape == both.shape and np.all(np.isfinite(ratio)):
        source.root.selection[:] = [ratio]


def _function(name: str, fn: ArrayMap, smooth: bool) -> Activation:
    return Activation(name, lambda z: np.asarray(fn(z), dtype=np.float64), smooth=smooth)


def activation(kind: table.Activation, call: Call) -> Step:
    """``keras.activations.<function>`` with the operation's options."""
    options = _options(call, kind.options)
    if kind.function == "softmax":
        rank = len(call.in_shapes[0])
        if int(options.pop("axis")) % rank != rank - 1:
            raise NotImplementedError("a softmax over another axis than the last")
    f = _activations.from_function(getattr(keras.activations, kind.function), **options)
    return _elementwise(call, _tensor(call), f)


def _gamma(out: Signal, means: np.ndarray, variances: np.ndarray, p: float) -> None:
    """Record ``out`` as ``G ** p`` for the Gamma ``G`` of these moments (where they fit
    one: positive means and variances)."""
    if np.all(means > 0) and np.all(variances > 0) and np.all(np.isfinite(means / variances)):
        _GAMMA[out] = (means * means / variances, variances / means, p)


def _gamma_moment(a: np.ndarray, t: np.ndarray, k: float) -> np.ndarray:
    """``E[G^k] = t^k Gamma(a + k) / Gamma(a)`` (``a + k > 0``)."""
    if not np.all(a + k > 0):
        raise NotImplementedError(f"a power {k} of a statistic too spread to have it")
    lgamma = np.vectorize(math.lgamma, otypes=[np.float64])
    return np.exp(k * np.log(t) + lgamma(a + k) - lgamma(a))


def _power(call: Call, x: Operand, p: float) -> Step | None:
    """``x ** p`` of a positive statistic ``x = G ** q`` (None where ``x`` is not one)."""
    found = _GAMMA.get(x.signal)
    if found is None:
        return None
    a, t, q = found
    first, second = _gamma_moment(a, t, q * p), _gamma_moment(a, t, 2 * q * p)
    d2 = p * p * _gamma_moment(a, t, 2 * q * (p - 1))
    out = make(first, second - first * first)
    _finite(out.means, out.variances, d2)
    _GAMMA[out] = (a, t, q * p)
    return Step([out], lambda g: _to_inputs(call, [(x, g[0] * d2)]))


def function(kind: table.Function, call: Call) -> Step:
    """``keras.ops.<function>`` with the operation's options, its argument above ``lower``
    (or a power of a positive statistic: `_power`)."""
    x = _tensor(call)
    if kind.function in POWERS and (step := _power(call, x, POWERS[kind.function])) is not None:
        return step
    if kind.lower is not None and not _lowest(x.signal) > kind.lower:
        raise NotImplementedError(f"defined above {kind.lower} only: the argument is not")
    fn = functools.partial(getattr(keras.ops, kind.function), **_options(call, kind.options))
    f = _function(kind.function, fn, kind.smooth)
    return _elementwise(call, x, f, everywhere=kind.lower is None)


def _affine(call: Call, x: Operand, scale: Any, shift: Any) -> Step:
    """``scale x + shift`` (arrays broadcast); the output is still a function of x's ``z``."""
    s = x.signal
    scale, shift = np.asarray(scale, dtype=np.float64), np.asarray(shift, dtype=np.float64)
    means = scale * s.means + shift
    variances = np.broadcast_to(scale * scale * s.variances, means.shape)
    source = None
    if means.shape == s.shape:
        source = s.source.affine(scale, shift) if s.source else Source(LINEAR, s, scale, shift)
    out = make(means, variances, source)
    _finite(out.means, out.variances)
    _linear.scaled(out, s, scale)
    found = _GAMMA.get(s)
    if found is not None and np.all(scale > 0) and np.all(shift >= 0):
        a, t, q = found
        if np.all(shift == 0):  # c G^q = (c^(1/q) G)^q: the Gamma's scale
            _GAMMA[out] = (np.broadcast_to(a, means.shape), t * scale ** (1.0 / q), q)
        elif q == 1.0:  # G + c: a Gamma again by its moments
            _gamma(out, out.means, out.variances, 1.0)
    s2 = scale * scale
    return Step([out], lambda g: _to_inputs(call, [(x, g[0] * s2)]))


def affine(kind: table.Affine, call: Call) -> Step:
    return _affine(call, _tensor(call), kind.scale, 0.0)


def unchanged(kind: table.Unchanged, call: Call) -> Step:
    """The values pass (a cast to a float type, a copy); the gradient, unless stopped."""
    dtype = getattr(call.layer, "dtype", None)
    if dtype is not None and not keras.backend.is_float_dtype(dtype):
        raise NotImplementedError(f"a cast to {dtype}")
    x, factor = _tensor(call), 1.0 if kind.gradient else 0.0
    return Step([x.signal], lambda g: _to_inputs(call, [(x, g[0] * factor)]))


# ----------------------------------------------------------------------------- two operands
# (scale, shift) of ``f(x, c)`` (``first``: x is the first operand), where it is affine.
AFFINE: dict[str, Callable[[np.ndarray, bool], tuple[Any, Any] | None]] = {
    "add": lambda c, first: (1.0, c),
    "subtract": lambda c, first: (1.0, -c) if first else (-1.0, c),
    "multiply": lambda c, first: (c, 0.0),
    "divide": lambda c, first: (1.0 / c, 0.0) if first else None,
}
# Functions of (x, c) with a pole at x = 0 (or not finite below it): x must stay above 0.
POSITIVE: dict[str, Callable[[float, bool], bool]] = {
    "divide": lambda c, first: not first,
    "power": lambda c, first: first and not (c >= 0 and float(c).is_integer()),
}


def arithmetic(kind: table.Arithmetic, call: Call) -> Step:
    a, b = _operands(call, 2)
    if a.index is None and b.index is None:
        raise NotImplementedError("no tensor operand")
    if a.index is None or b.index is None:
        return _with_constant(kind, call, a, b)
    if lineage(a.signal)[0] is lineage(b.signal)[0]:
        return _shared(kind, call, a, b)
    merge = {"add": _merge.add, "subtract": _merge.subtract, "multiply": _merge.multiply}
    if kind.function not in merge:
        raise NotImplementedError(f"{kind.function} of two independent tensors")
    alike = bool(call.same) and call.same[a.index] == call.same[b.index]
    operands = dataclasses.replace(call, inputs=[a.signal, b.signal], same=(0, 0 if alike else 1))
    step = merge[kind.function](operands)
    if kind.function != "multiply":
        return _with_reduction(call, a, b, 1.0 if kind.function == "add" else -1.0, step)

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        return _to_inputs(call, zip((a, b), step.backward(g), strict=True))

    return Step(step.outputs, backward)


def _with_reduction(call: Call, a: Operand, b: Operand, sign: float, step: Step) -> Step:
    """``a + sign b`` (the merge layers' ``step``), corrected where one operand is ``r = c
    sum_G x`` of the other, ``x``: ``Cov(x_i, r) = c Var(x_i)``, so ``Var(y_i) = Var(x_i) +
    Var(r) + 2 sign c Var(x_i)``; backward ``Var(dx_i) = (1 + 2 sign c) Var(dy_i) + c^2
    sum_G Var(dy)``, whose second term the walk brings through the reduction."""
    pairs = [(x, r) for x, r in ((a, b), (b, a)) if r.signal in _REDUCED_FROM]
    found = [(x, r) for x, r in pairs if _REDUCED_FROM[r.signal][0] is x.signal]
    factors = [1.0, 1.0]
    out = step.outputs[0]
    if found:
        x, r = found[0]
        _, kept, c = _REDUCED_FROM[r.signal]
        shape = r.signal.shape
        aligned = kept[len(kept) - len(shape) :] == shape and set(kept[: -len(shape)]) <= {1}
        if out.shape != x.signal.shape or not aligned or 1.0 + 2.0 * sign * c < 0.0:
            raise NotImplementedError("a sum of a tensor and its own reduction")
        out = make(out.means, out.variances + 2.0 * sign * c * x.signal.variances)
        factors[0 if x is a else 1] = 1.0 + 2.0 * sign * c
    else:
        out = _linear.summed(out, a.signal, b.signal, sign)

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        grads = step.backward(g)
        return _to_inputs(call, [(a, grads[0] * factors[0]), (b, grads[1] * factors[1])])

    weights = [0.0] * len(call.inputs)  # a plain sum's, per input (`Step.weights`)
    for operand, w in zip((a, b), step.weights, strict=True):
        weights[operand.index] = w  # type: ignore[index]
    return Step([out], backward, weights=() if found else tuple(weights), paths=step.paths)


def _with_constant(kind: table.Arithmetic, call: Call, a: Operand, b: Operand) -> Step:
    """``f(x, c)`` or ``f(c, x)``: affine, or the function ``t -> f(t, c)`` of a scalar c."""
    first = a.index is not None
    x, c = (a, b.signal.means) if first else (b, a.signal.means)
    with np.errstate(divide="ignore"):  # x / 0: not finite, found by _affine
        coefficients = AFFINE.get(kind.function, lambda c, first: None)(c, first)
    if coefficients is not None:
        return _affine(call, x, *coefficients)
    if np.ptp(c) != 0:
        raise NotImplementedError(f"{kind.function} with an array that is not one value")
    scalar = float(c.reshape(-1)[0])
    if kind.function == "power" and first and (step := _power(call, x, scalar)) is not None:
        return step
    positive = POSITIVE.get(kind.function, lambda c, first: False)(scalar, first)
    if positive and not _lowest(x.signal) > 0.0:
        raise NotImplementedError(f"{kind.function} with a tensor that can reach 0")
    op = getattr(keras.ops, kind.function)
    fn = (lambda t: op(t, scalar)) if first else (lambda t: op(scalar, t))
    return _elementwise(call, x, _function(kind.function, fn, kind.smooth), not positive)


def _partials(f: Callable[..., Any], u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
    """``df/du``, ``df/dv`` by central differences."""
    hu, hv = 1e-6 * (1.0 + np.abs(u)), 1e-6 * (1.0 + np.abs(v))
    du = (np.asarray(f(u + hu, v)) - np.asarray(f(u - hu, v))) / (2.0 * hu)
    dv = (np.asarray(f(u, v + hv)) - np.asarray(f(u, v - hv))) / (2.0 * hv)
    return du, dv


def _shared(kind: table.Arithmetic, call: Call, a: Operand, b: Operand) -> Step:
    """``f(F_a(z), F_b(z))`` for two functions of one Gaussian ``z``, by quadrature over z."""
    (z, chain_a), (_, chain_b) = lineage(a.signal), lineage(b.signal)
    if a.signal.shape != z.shape or b.signal.shape != z.shape:
        raise NotImplementedError("a broadcast function of a tensor")
    op = getattr(keras.ops, kind.function)

    def f(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.asarray(op(p, q), dtype=np.float64)

    with np.errstate(all="ignore"):  # not finite on some nodes: checked below
        [na, nb], w, inverse = _on_nodes(z, [chain_a, chain_b])
        u, du, v, dv = na.values, na.slope, nb.values, nb.slope
        y = f(u, v)
        fu, fv = _partials(f, u, v)
        per = [
            y @ w,
            (y * y) @ w,
            (fu * fu) @ w,  # the edge to a: E[f_a^2]
            (fv * fv) @ w,
            (du * du) @ w,  # the path from z to a: E[F_a'^2]
            (dv * dv) @ w,
            (fu * du + fv * dv) ** 2 @ w,  # what reaches z
        ]
    m1, m2, ea, eb, pa, pb, total = (t[inverse].reshape(z.shape) for t in per)
    _finite(m1, m2, ea, eb, total)
    (ga, gb), note = _matched([ea, eb], [pa, pb], total, [not chain_a, not chain_b])
    out = make(m1, m2 - m1 * m1)
    return Step([out], lambda g: _to_inputs(call, [(a, g[0] * ga), (b, g[0] * gb)]), note=note)


def _matched(
    edges: list[np.ndarray], paths: list[np.ndarray], total: np.ndarray, direct: list[bool]
) -> tuple[list[np.ndarray], str]:
    """The operands' backward factors, so that ``sum(edge * path) = total``: the excess over
    the independent sum goes to an operand that is ``z`` itself (path 1), else all scale."""
    independent = sum(e * p for e, p in zip(edges, paths, strict=True))
    excess = total - independent
    for i, is_z in enumerate(direct):
        if is_z and np.all(edges[i] + excess >= 0.0):
            return [e + excess if j == i else e for j, e in enumerate(edges)], ""
    positive = independent > 0
    ratio = np.where(positive, total / np.where(positive, independent, 1.0), 1.0)
    return [e * ratio for e in edges], SHARED_NOTE


# ----------------------------------------------------------------------------- re-layouts
def _run(call: Call, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The operation on concrete ``arrays`` (with their batch axis) for its tensor inputs."""

    def bind(value: Any) -> Any:
        if isinstance(value, Arg):
            return arrays[value.index]
        if isinstance(value, list | tuple):
            return type(value)(bind(v) for v in value)
        return value

    try:
        outputs = call.layer(*bind(call.args), **{k: bind(v) for k, v in call.kwargs.items()})
    except Exception as error:  # whatever the backend raises on these arrays
        raise NotImplementedError(f"not run on numbered elements ({error})") from None
    return [np.asarray(y, dtype=np.float64) for y in keras.tree.flatten(outputs)]


def _copies(call: Call) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per output: the element of the inputs (flattened one after the other) each element
    copies, -1 for a constant, and the constants. The operation is run on every input
    element numbered, twice with numbers apart by ``shift``: a copy moves with them, a
    constant does not; sample ``s`` must copy from sample ``s`` only."""
    shapes = [_sample_shape(s) for s in call.in_shapes]
    sizes = [math.prod(s) for s in shapes]
    total, starts = sum(sizes), np.cumsum([0, *sizes[:-1]])
    batch = int(call.in_shapes[0][0] or 2)
    samples = total * np.arange(batch)[:, None]

    def numbered(first: float) -> list[np.ndarray]:
        return [
            (first + start + samples + np.arange(size)).reshape(batch, *shape)
            for start, size, shape in zip(starts, sizes, shapes, strict=True)
        ]

    shift = float(batch * total)
    runs = zip(_run(call, numbered(1.0)), _run(call, numbered(1.0 + shift)), strict=True)
    copies = []
    for (y, y_shifted), out_shape in zip(runs, call.out_shapes, strict=True):
        if y.shape != (batch, *_sample_shape(out_shape)):
            raise NotImplementedError("the batch axis is moved or mixed")
        copied = y_shifted - y == shift
        index = np.rint(y - 1.0 - samples.reshape(batch, *[1] * (y.ndim - 1))).astype(np.int64)
        valid = (index >= 0) & (index < total) & (y == np.rint(y))
        if not (
            np.all(copied == copied[0])  # the same pattern in every sample,
            and np.all(~copied | (valid & (index == index[0])))  # copies from its own sample
            and np.all(copied | ((y_shifted == y) & (y == y[0])))  # or one constant
        ):
            raise NotImplementedError("not a copy of its inputs' elements, sample by sample")
        copies.append((np.where(copied[0], index[0], -1), np.where(copied[0], 0.0, y[0])))
    return copies


def relayout(kind: table.Relayout, call: Call) -> Step:
    copies = _copies(call)
    xs = call.inputs
    means = np.concatenate([x.means.reshape(-1) for x in xs])
    variances = np.concatenate([x.variances.reshape(-1) for x in xs])
    outs = []
    for index, constant in copies:
        copied = index >= 0
        at = np.maximum(index, 0)
        if len(xs) == 1 and np.all(copied):  # a move of one tensor: its lineage moves too
            out = moved(xs[0], lambda a, i=index: np.asarray(a).reshape(-1)[i])
        else:
            out = make(np.where(copied, means[at], constant), np.where(copied, variances[at], 0))
        if len(xs) == 1:
            _MOVED_FROM[out] = (xs[0], index.reshape(-1))
        out = _positions_kept(xs, index, out)
        _linear.moved(out, xs, index)
        outs.append(out)
    sizes = [x.means.size for x in xs]
    bounds = np.cumsum([0, *sizes])

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        flat = np.zeros(int(bounds[-1]))
        for (index, _), gk in zip(copies, g, strict=True):
            copied = index >= 0
            weights = np.reshape(gk, index.shape)[copied]
            flat += np.bincount(index[copied], weights=weights, minlength=flat.size)
        return [flat[bounds[i] : bounds[i + 1]].reshape(x.shape) for i, x in enumerate(xs)]

    return Step(outs, backward)


def _positions_kept(xs: list[Signal], index: np.ndarray, out: Signal) -> Signal:
    """``out`` with the inputs' correlation between positions (`_positions`) where every
    element copied keeps its position on the first axis (a reshape of the other axes, a
    repeat of heads, a concatenation of channels); ``out`` itself otherwise."""
    carried = [x.positions for x in xs if x.positions is not None]
    n = out.shape[0] if len(out.shape) > 1 else 0
    if not carried or any(x.shape[0] != n or len(x.shape) < 2 for x in xs):
        return out
    rows = np.concatenate([np.arange(x.means.size) // (x.means.size // n) for x in xs])
    flat = index.reshape(-1)
    copied = flat >= 0
    if not copied.any():
        return out
    own = np.arange(flat.size) // (flat.size // n)
    if np.array_equal(rows[flat[copied]], own[copied]):
        return out.with_positions(carried[0])
    return out


# ----------------------------------------------------------------------------- reductions
def _reduced_axes(call: Call) -> tuple[int, ...]:
    """The per-sample axes the operation's ``axis`` reduces (the batch axis must stay)."""
    axis, rank = getattr(call.layer, "axis", None), len(call.in_shapes[0])
    if axis is None:
        raise NotImplementedError("a reduction over the batch axis")
    axes = sorted({int(a) % rank for a in (axis if isinstance(axis, list | tuple) else [axis])})
    if 0 in axes:
        raise NotImplementedError("a reduction over the batch axis")
    return tuple(a - 1 for a in axes)


def reduction(kind: table.Reduction, call: Call) -> Step:
    x = _tensor(call)
    extra = [v for v in _arguments(call)[1:] if v is not None]  # Average's weights
    if extra or getattr(call.layer, "initial", None) is not None:
        raise NotImplementedError("weights or an initial value")
    axes, shape = _reduced_axes(call), x.signal.shape
    if 0 in axes and len(shape) > 1:  # over the steps (not only the channels)
        require_independent_steps(x.signal, "reduces")
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
    out_shape = _sample_shape(call.out_shapes[0])
    if kind.function in ("max", "min"):
        return _extreme(call, x, axes, kind.function == "min", out_shape)
    n = math.prod(shape[a] for a in axes)
    c = 1.0 / n if kind.function == "mean" else 1.0
    s = x.signal
    out = make(
        (c * s.means.sum(axis=axes)).reshape(out_shape),
        (c * c * s.variances.sum(axis=axes)).reshape(out_shape),
    )
    _REDUCED_FROM[out] = (s, kept, c)
    if _nonnegative(s):
        _gamma(out, out.means, out.variances, 1.0)
    return Step(
        [out],
        lambda g: _to_inputs(call, [(x, np.broadcast_to(g[0].reshape(kept) * c * c, shape))]),
    )


def _extreme(
    call: Call, x: Operand, axes: tuple[int, ...], minimum: bool, out_shape: tuple[int, ...]
) -> Step:
    """The maximum (minimum: of ``-x``) of the ``n`` elements along ``axes``: a global max
    pool over them (``_pooling.maximum``)."""
    s, shape = x.signal, x.signal.shape
    rest = [i for i in range(len(shape)) if i not in axes]
    order = [*axes, *rest]
    n = math.prod(shape[a] for a in axes)
    transposed = tuple(shape[i] for i in order)
    sign = -1.0 if minimum else 1.0
    signal = make(sign * s.means, s.variances) if minimum else s
    window = moved(signal, lambda a: np.transpose(a, order).reshape(n, -1))
    step, _ = _pooling.maximum(window, np.arange(n)[None, :], (1, window.channels))
    inverse = np.argsort(order)
    if window.source is not None and window.source.selection and s.source is not None:
        # the activation's derivative at the maxima, back where its elements are
        back = window.source.selection[0].reshape(transposed)
        s.source.root.selection[:] = [np.transpose(back, inverse)]
    out = step.outputs[0]
    result = make(sign * out.means.reshape(out_shape), out.variances.reshape(out_shape))

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        back = step.backward([g[0].reshape(1, -1)])[0].reshape(transposed)
        return _to_inputs(call, [(x, np.transpose(back, inverse))])

    return Step([result], backward, note=step.note)


# ----------------------------------------------------------------------------- contractions
def _sample_einsum(subscripts: str, tensors: list[bool]) -> str:
    """The equation per sample: the batch index (each tensor operand's first, the output's
    first) dropped; an ellipsis that holds the batch axis stays."""
    equation = subscripts.replace(" ", "")
    if "->" not in equation:
        raise NotImplementedError("an einsum without an explicit output")
    inputs, output = equation.split("->")
    terms = inputs.split(",")
    ours = [t for t, is_tensor in zip(terms, tensors, strict=True) if is_tensor]
    if all(t.startswith("...") for t in ours) and output.startswith("..."):
        return equation
    batch = ours[0][:1]
    if (
        not batch.isalpha()
        or not output.startswith(batch)
        or batch in output[1:]
        or any(not t.startswith(batch) or batch in t[1:] for t in ours)
        or any(batch in t for t, is_tensor in zip(terms, tensors, strict=True) if not is_tensor)
    ):
        raise NotImplementedError("the batch axis is not a batch index of the einsum")
    kept = [t[1:] if is_tensor else t for t, is_tensor in zip(terms, tensors, strict=True)]
    return f"{','.join(kept)}->{output[1:]}"


def _matmul_einsum(ranks: list[int]) -> str:
    """``matmul`` per sample as an einsum (``ranks``: the per-sample ranks)."""
    a = "...ij" if ranks[0] > 1 else "j"
    b = "...jk" if ranks[1] > 1 else "j"
    out = "..." + ("i" if ranks[0] > 1 else "") + ("k" if ranks[1] > 1 else "")
    return f"{a},{b}->{out}"


def contraction(kind: table.Contraction, call: Call) -> Step:
    if kind.function == "einsum":
        operands = _operands(call, len(_arguments(call)), elementwise=False)
        equation = _sample_einsum(call.layer.subscripts, [o.index is not None for o in operands])
    else:
        operands = _operands(call, 2, elementwise=False)
        ranks = [len(call.in_shapes[o.index]) if o.index is not None else -1 for o in operands]
        right, tensors = ranks[1], [r for r in ranks if r >= 0]
        if (right >= 0 and right < 3) or len(set(tensors)) > 1:
            raise NotImplementedError("a matmul that contracts the batch axis")
        equation = _matmul_einsum([len(o.signal.shape) for o in operands])
    return _contract(call, equation, operands)


def _contract(call: Call, equation: str, operands: list[Operand]) -> Step:
    """``einsum(equation)`` of independent operands."""
    if all(o.index is None for o in operands) or not _independent(operands):
        raise NotImplementedError("operands that share elements (not independent)")
    means = [o.signal.means for o in operands]
    seconds = [o.signal.seconds for o in operands]
    try:
        m = np.einsum(equation, *means)
        v = np.einsum(equation, *seconds) - np.einsum(equation, *[a * a for a in means])
    except ValueError as error:
        raise NotImplementedError(f"shapes not contracted per sample ({error})") from None
    if len(operands) == 2 and all(o.index is not None for o in operands):
        covariance = _linear.contracted(equation, operands[0].signal, operands[1].signal)
        if covariance is not None:
            m, v = m + covariance[0], v + covariance[1]
    out_shape = _sample_shape(call.out_shapes[0])
    if m.shape != out_shape:
        raise NotImplementedError("the batch axis is contracted or moved")
    inputs, output = equation.split("->")
    terms = inputs.split(",")

    def back(i: int, g: np.ndarray) -> np.ndarray:
        """``Var(dx_i) = einsum(Var(dy), E[x_j^2] of the others)``."""
        term = terms[i]
        if "..." in equation and "..." not in term:
            term = "..." + term  # numpy keeps the broadcast axes; summed by _to_inputs
        others = [t for j, t in enumerate(terms) if j != i]
        rest = [s for j, s in enumerate(seconds) if j != i]
        return np.einsum(f"{','.join([output, *others])}->{term}", g, *rest)

    try:  # each operand's backward is an einsum too (not where it sums an axis alone)
        for i, o in enumerate(operands):
            if o.index is not None:
                back(i, np.ones(out_shape))
    except ValueError as error:
        raise NotImplementedError(f"no backward einsum ({error})") from None

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        gy = g[0].reshape(out_shape)
        pairs = [(o, back(i, gy)) for i, o in enumerate(operands) if o.index is not None]
        return _to_inputs(call, pairs)

    return Step([_over_positions(equation, operands, make(m, v))], backward)


def _over_positions(equation: str, operands: list[Operand], out: Signal) -> Signal:
    """``out`` of ``einsum(equation)`` where it averages a tensor over its positions
    (`_positions`): values ``x`` summed over their first axis, with weights ``p`` (no
    correlation of their own) whose axes hold it and the output's first axis (attention
    weights times the values: ``o_t = sum_s p_ts x_s``). Correlated positions of ``x``
    add ``(W C W^T)_tt - sum_s W_ts^2 D_s`` to position ``t``'s variance (``W`` the
    weights' means, averaged over their other axes), and ``out`` gets the correlation
    the average makes (shared values: correlated even where ``x``'s positions are not)."""
    terms, output = equation.split("->")
    named = [(t, o) for t, o in zip(terms.split(","), operands, strict=True) if o.index is not None]
    if "..." in equation or len(named) != 2 or not output or len(out.shape) < 2:
        return out
    t = output[0]
    found = [
        (tw, w, tx, x)
        for (tw, w), (tx, x) in (named, named[::-1])
        if w.signal.positions is None
        and len(x.signal.shape) > 1
        and tx[0] not in output
        and tx[0] in tw
        and t in tw
        and t not in tx
    ]
    if len(found) != 1:
        return out
    tw, w, tx, x = found[0]
    s = tx[0]

    def arranged(a: np.ndarray) -> np.ndarray:
        moved = np.moveaxis(a, [tw.index(t), tw.index(s)], [0, 1])
        return moved.reshape(*moved.shape[:2], -1).mean(axis=-1)

    weights, weight_var = arranged(w.signal.means), arranged(w.signal.variances)
    if tw[-1] == s:
        _positions.keys_correlated(w.signal, x.signal)
    var, positions = _positions.averaged(weights, weight_var, x.signal)
    independent = (weights**2 + weight_var) @ _positions.spread(x.signal)
    extra = (var - independent).reshape(-1, *([1] * (len(out.shape) - 1)))
    corrected = make(out.means, np.maximum(out.variances + extra, 0.0))
    return corrected.with_positions(positions)


def filled(kind: table.Filled, call: Call) -> Step:
    """``zeros_like(x)``, ``ones_like(x)``, ``full_like(x, c)``: the operation run on zeros
    of ``x``'s shape gives every element's value, the same in every sample; no gradient."""
    [value] = _run(call, [np.zeros((1, *s.shape)) for s in call.inputs])
    out = make(value[0], np.zeros(value.shape[1:]))
    return Step([out], lambda g: [np.zeros(x.shape) for x in call.inputs])


def select(kind: table.Select, call: Call) -> Step:
    """``where(condition, x1, x2)`` with the condition's value known (its first sample, or a
    constant): each element's moments from the operand it selects, and its gradient back
    to that operand alone."""
    values = _arguments(call)
    if len(values) < 3:
        raise NotImplementedError("where with one argument (the indices of its condition)")
    shape = _sample_shape(call.out_shapes[0])
    condition = call.known(values[0], len(shape))
    if condition is None:
        raise NotImplementedError("a condition whose value the walk does not know")
    a, b = (_operand(call, v) for v in values[1:3])
    chosen = np.broadcast_to(condition.astype(bool), shape)
    means = np.where(chosen, *(np.broadcast_to(o.signal.means, shape) for o in (a, b)))
    variances = np.where(chosen, *(np.broadcast_to(o.signal.variances, shape) for o in (a, b)))
    out = make(means, variances)

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        return _to_inputs(
            call, [(a, np.where(chosen, g[0], 0.0)), (b, np.where(chosen, 0.0, g[0]))]
        )

    return Step([out], backward)


RULES: dict[type, Callable[[Any, Call], Step]] = {
    table.Activation: activation,
    table.Function: function,
    table.Affine: affine,
    table.Arithmetic: arithmetic,
    table.Relayout: relayout,
    table.Reduction: reduction,
    table.Contraction: contraction,
    table.Attention: _attention.dot_product_attention,
    table.Filled: filled,
    table.Select: select,
    table.Unchanged: unchanged,
}
