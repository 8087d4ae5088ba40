"""Correlation between positions: where an attention layer averaged a sequence, the
fluctuations of its positions move together.

A ``Signal`` takes the elements of a tensor as independent from sample to sample
(`_signal`). An attention output is not: at position ``i`` it is a weighted average of the
values at the positions ``i`` sees, and positions ``i`` and ``j`` share the values both see
(uniform weights over causal prefixes: ``Cov(o_i, o_j) = Var(v) / (max(i, j) + 1)``). The
next attention averages such outputs again, and an average ``sum_s w_s x_s`` of correlated
positions has the variance ``w^T C w``, not ``sum_s w_s^2 Var(x_s)``: on keras_hub's Llama
(2 blocks, 16 tokens) the second block's attention output measures 3.7 times the
independent figure and ``w^T C w`` with the measured ``C`` to 0.05%.

``Signal.positions`` carries ``R``, the correlation between the fluctuations of positions
``a`` and ``b`` along the first axis of a sample, the same for every element of the other
axes (every channel of a position alike); None: independent. `averaged` gives what a
weighted average over positions makes of it (the attention rules); `carried` passes it on
through what acts on each position apart:

* a sum of independent tensors adds their covariances ``C_k = D_k^1/2 R_k D_k^1/2``
  (``D_k``: the variance of each position, averaged over the other axes);
* a product ``x y`` of independent tensors: ``C = M_x o C_y + C_x o M_y + C_x o C_y``
  (``M_ab``: the product of the means at ``a`` and ``b``, averaged over the other axes;
  ``o`` elementwise);
* an elementwise function ``f`` of a Gaussian ``m + s Z``: Mehler's expansion,
  ``Cov(f_a, f_b) = sum_k c_k^2 rho^k / k!`` with ``c_k = E[f(m + s Z) He_k(Z)]`` (to
  order 8, ``m`` and ``s`` averaged over the elements);
* anything else that keeps each position apart and keeps the first axis (a kernel on the
  last axes, a normalization over them, a re-layout, dropout) keeps ``R``.

Every other operation drops it: its output is read as independent across positions, as
before. Gradients are read as independent across positions (not carried), with one
exception, the gradient a softmax over keys receives: ``dp_s = g . v_s`` moves with the
values, so where they are correlated across keys the softmax's projection ``dz_s = p_s (dp_s
- sum_k p_k dp_k)`` removes the common part of their fluctuations (`projection_share`; a
pattern fixed across samples passes, `fluctuation_share`): the gradients to the queries and
keys of a deep stack's attention, whose values are nearly alike across positions, were
predicted up to 20 times too large without it.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from typing import Any

import keras
import numpy as np

from keras_initlab.model import layers as T
from keras_initlab.model import operations as table
from keras_initlab.propagate._moments import standard_nodes
from keras_initlab.propagate._signal import Signal
from keras_initlab.propagate._step import Call, Step

ORDER = 8  # the terms of Mehler's expansion kept
# The longest sequence whose correlation is carried: an average over positions costs
# O(n^3) (0.1 s at 512); beyond, positions are read as independent, as before.
MAX_POSITIONS = 512
_KEEPS = (
    T.DENSE
    + T.ACTIVATION_LAYERS
    + T.LAYER_NORMALIZATION
    + T.RMS_NORMALIZATION
    + T.DROPOUT
    + T.GAUSSIAN_DROPOUT
    + T.RESCALING
)
# (A re-layout keeps them in its own rule, which knows where each element goes.)
_ELEMENTWISE = (table.Activation, table.Function, table.Affine, table.Unchanged, table.Select)


def spread(x: Signal) -> np.ndarray:
    """The variance of each position (first axis), averaged over the other axes."""
    return x.variances.reshape(x.shape[0], -1).mean(axis=1)


def covariance(x: Signal) -> np.ndarray:
    """``C = D^1/2 R D^1/2`` between positions (``R`` the identity where not carried)."""
    d = np.sqrt(spread(x))
    r = np.eye(len(d)) if x.positions is None else x.positions
    return r * np.outer(d, d)


def correlation(c: np.ndarray) -> np.ndarray:
    """``R`` from a covariance (positions without fluctuation: uncorrelated)."""
    d = np.sqrt(np.maximum(np.diag(c), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(np.outer(d, d) > 0, c / np.outer(d, d), 0.0)
    np.fill_diagonal(r, 1.0)
    return np.clip(r, -1.0, 1.0)


def averaged(
    weights: np.ndarray, weight_var: np.ndarray, x: Signal
) -> tuple[np.ndarray, np.ndarray | None]:
    """``o_t = sum_s p_ts x_s`` with weights of mean ``weights`` and variance ``weight_var``
    (queries by positions of ``x``), independent of ``x``: the variance of each output
    position (averaged over the other axes) and their correlation.

    ``Var(o_t) = (W C W^T)_tt + sum_s Var(p_ts) D_s`` and ``Cov(o_t, o_u) = (W C W^T)_tu``
    (``C`` the covariance of ``x``'s positions, ``D`` its diagonal; the weights of two
    queries taken as independent). The correlation is None beyond `MAX_POSITIONS`.

    Example (uniform weights over causal prefixes of independent unit values: ``Var(o_t)
    = 1/(t+1)``, ``Cov(o_t, o_u) = 1/(max(t, u)+1)``):
    >>> from keras_initlab.propagate._signal import make
    >>> prefix = np.tri(3) / np.arange(1, 4)[:, None]
    >>> var, r = averaged(prefix, np.zeros((3, 3)), make(np.zeros((3, 1)), np.ones((3, 1))))
    >>> np.round(var, 3).tolist(), round(float(r[0, 2]), 3)
    ([1.0, 0.5, 0.333], 0.577)
    """
    c = covariance(x)
    if max(weights.shape) > MAX_POSITIONS:  # read as independent
        return (weights**2 + weight_var) @ np.diag(c), None
    full = weights @ c @ weights.T
    var = np.diag(full) + weight_var @ np.diag(c)
    np.fill_diagonal(full, var)
    return var, correlation(full)


# Softmax outputs (attention weights) whose gradient, from an average of values over their
# last axis, moves with those values: ``{weights: (R, fluctuation)}`` (``R`` the values'
# correlation between positions; ``fluctuation`` the share of the gradient's variance that
# their fluctuations carry), weakly, set by the average (`_ops._over_positions`) and read
# by the softmax's backward after the walk forward.
_KEYS: weakref.WeakKeyDictionary[Signal, tuple[np.ndarray, float]] = weakref.WeakKeyDictionary()


def fluctuating(values: Signal) -> float:
    """The share of the values' variance across keys (the first axis) that their
    fluctuations carry; the rest, a pattern fixed across samples, differs from key to key
    as it is, whatever their correlation."""
    fluctuation = float(values.variances.mean())
    pattern = float(values.means.var(axis=0).mean())
    total = fluctuation + pattern
    return fluctuation / total if total > 0.0 else 1.0


def keys_correlated(weights: Signal, values: Signal) -> None:
    """Record that the gradient ``weights`` receives moves along its last axis with the
    correlation of ``values``' positions (the values it averages)."""
    r = values.positions
    if r is not None and weights.shape[-1] == r.shape[0]:
        _KEYS[weights] = (r, fluctuating(values))


def fluctuation_share(weights: np.ndarray, r: np.ndarray | None, fluctuation: float) -> Any:
    """`projection_share` on the ``fluctuation`` share of the gradient a softmax with mean
    ``weights`` receives (the values' fluctuations, correlated by ``r``), the rest passing
    as it is: ``fluctuation * projection_share + 1 - fluctuation``."""
    if r is None:
        return 1.0
    return fluctuation * projection_share(weights, r) + (1.0 - fluctuation)


def projection_share(weights: np.ndarray, r: np.ndarray | None) -> np.ndarray | float:
    """What is left of a softmax's backward factor where the gradient it receives moves
    along its last axis with the correlation ``r`` (None: independent: 1).

    For query ``t`` with mean weights ``w`` (rows of ``weights``, ``(t_q, t_k)``, 0 where
    masked) and ``dp`` of unit variances and correlation ``R``, ``E[(dp_s - sum_k w_k
    dp_k)^2] = R_ss - 2 (w R)_s + w R w^T``, against ``1 - 2 w_s + sum_k w_k^2`` for
    independent ``dp``: their ratio (0 where the values are alike, 1 where independent).

    Example:
    >>> w = np.full((1, 4), 0.25)
    >>> alike, independent = np.ones((4, 4)), np.eye(4)
    >>> float(projection_share(w, independent)[0, 0]), float(projection_share(w, alike)[0, 0])
    (1.0, 0.0)
    """
    if r is None:
        return 1.0
    wr = weights @ r
    quad = np.sum(wr * weights, axis=-1, keepdims=True)
    num = np.diag(r)[None, :] - 2.0 * wr + quad
    den = 1.0 - 2.0 * weights + np.sum(weights * weights, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(den > 0.0, num / den, 1.0)
    return np.clip(share, 0.0, 1.0)


def received(weights: Signal) -> np.ndarray | float:
    """`fluctuation_share` for a softmax output ``weights`` whose last axis an average of
    correlated values reads (`keys_correlated`), broadcast to its shape; 1 otherwise."""
    found = _KEYS.get(weights)
    if found is None:
        return 1.0
    mean = weights.means.reshape(-1, *weights.shape[-2:]).mean(axis=0)
    return np.broadcast_to(fluctuation_share(mean, *found), weights.shape)


def _mehler(r: np.ndarray, fn: Any, mean: float, std: float) -> np.ndarray:
    """The correlation of ``f`` at two positions whose Gaussians have correlation ``r``."""
    e, w = standard_nodes(smooth=True)
    y = np.asarray(fn(mean + std * e), dtype=np.float64)
    hermite = [np.ones_like(e), e]
    for k in range(1, ORDER):
        hermite.append(e * hermite[k] - k * hermite[k - 1])
    c2 = [float((y * hermite[k]) @ w) ** 2 / math.factorial(k) for k in range(1, ORDER + 1)]
    total = float(y * y @ w - (y @ w) ** 2)  # Var(f): the whole series at rho = 1
    if not total > 0:
        return r
    mixed = np.zeros_like(r)
    for k, ck in enumerate(c2, start=1):
        mixed += ck * r**k
    mixed = np.clip(mixed / total, -1.0, 1.0)  # the terms left out: at most |rho|^9
    np.fill_diagonal(mixed, 1.0)
    return mixed


def _mapped(x: Signal, out: Signal) -> np.ndarray:
    """``x``'s correlation through an elementwise map to ``out`` (Mehler's expansion where
    ``out`` records a nonlinear function of a Gaussian)."""
    assert x.positions is not None
    source = out.source
    if source is None or source.activation.closed == "linear" or source.pre is not x:
        return x.positions
    pre = source.pre
    return _mehler(x.positions, source.activation.fn, pre.mean, math.sqrt(pre.var))


def _along(x: Signal, n: int) -> Signal | None:
    """``x`` as an operand of an output of ``n`` positions: itself where it has them, a
    fluctuation common to every position where it has one (a broadcast vector); None
    where its first axis is another."""
    if x.shape[0] == n and len(x.shape) > 1:
        return x
    if x.shape[0] == 1 or len(x.shape) < 2:
        m = x.means.reshape(1, -1).mean(axis=1)
        v = np.full(n, float(x.variances.mean()))
        return Signal(np.broadcast_to(m, (n, 1)).copy(), v[:, None]).with_positions(np.ones((n, n)))
    return None


def _sum(inputs: list[Signal], n: int) -> np.ndarray | None:
    total = np.zeros((n, n))
    for x in inputs:
        part = _along(x, n)
        if part is None:
            return None
        total += covariance(part)
    return correlation(total)


def _means(x: Signal) -> np.ndarray:
    m = x.means.reshape(x.shape[0], -1)
    return m @ m.T / m.shape[1]


def _product(inputs: list[Signal], n: int) -> np.ndarray | None:
    if len(inputs) != 2:
        return None
    a, b = (_along(x, n) for x in inputs)
    if a is None or b is None:
        return None
    ma, ca, mb, cb = _means(a), covariance(a), _means(b), covariance(b)
    return correlation(ma * cb + ca * mb + ca * cb)


def _kind(call: Call) -> str | None:
    """``"keep"``, ``"sum"``, ``"product"``, or None (the positions dropped)."""
    operation = call.layer
    if isinstance(operation, keras.layers.Layer):
        if isinstance(operation, T.SUMS):
            return "sum"
        if isinstance(operation, T.MULTIPLY):
            return "product"
        if isinstance(operation, T.EINSUM_DENSE):
            inputs, output = operation.equation.replace(" ", "").split("->")
            first, kernel = inputs.split(",")
            keeps = len(first) > 1 and len(output) > 1 and first[1] == output[1]
            return "keep" if keeps and first[1] not in kernel else None
        if isinstance(operation, T.LAYER_NORMALIZATION + T.RMS_NORMALIZATION):
            axes = np.atleast_1d(operation.axis)
            return "keep" if all(a % len(call.in_shapes[0]) != 1 for a in axes) else None
        return "keep" if isinstance(operation, _KEEPS) else None
    kind = table.OPERATIONS.get(type(operation).__name__)
    if isinstance(kind, table.Arithmetic):
        if len(call.inputs) < 2:
            return "keep"
        combined = {"add": "sum", "subtract": "sum", "multiply": "product"}
        return combined.get(kind.function)
    if isinstance(kind, table.Reduction):
        reduced = getattr(operation, "axis", None)
        rank = len(call.in_shapes[0])
        if reduced is None or any(int(a) % rank == 1 for a in np.atleast_1d(reduced)):
            return None
        return "keep"
    return "keep" if isinstance(kind, _ELEMENTWISE) else None


def carried(call: Call, step: Step) -> Step:
    """``step`` with the correlation between positions passed on to each output that has
    none (module docstring); unchanged where no input carries one."""
    inputs = [x for x in call.inputs if x.positions is not None]
    if not inputs or step.assumed:
        return step
    n = inputs[0].positions.shape[0]  # type: ignore[union-attr]
    kind = _kind(call)
    outputs = []
    for out in step.outputs:
        r = None
        if out.positions is None and kind is not None and len(out.shape) > 1 and out.shape[0] == n:
            if kind == "sum":
                r = _sum(call.inputs, n)
            elif kind == "product":
                r = _product(call.inputs, n)
            elif len(inputs) == 1:
                r = _mapped(inputs[0], out)
        if r is not None and any(out is x for x in call.inputs):
            out = out.with_positions(r)
        elif r is not None:
            # Set on the rule's own new output: the tables that know a signal by identity
            # (a re-layout's origin, a positive statistic's Gamma) keep knowing it.
            out.correlation.append(r)
        outputs.append(out)
    return dataclasses.replace(step, outputs=outputs)
