"""Merge layers (and the ``keras.ops`` arithmetic a Functional graph records).

Inputs are taken as independent (the residual branch's weights are independent of the
stream it is added to; Brock et al. 2021 plot exactly this sum), element by element with
NumPy broadcasting (a squeeze-excite gate of shape (1, 1, C) multiplies every position),
except where two summands are the same value (`_identity`: NASNet's two average pools of
one tensor): their weights add, ``Var(pool + pool) = 4 Var(pool)``. Backward each copy
gets the gradient of its own output, and the walk adds what the copies pass back above
them as amplitudes (``Step.weights``: ``4 Var(J^T dy)`` at ``p``, 0 for a difference),
where each copy is the one output of its call and read by the sum alone (elsewhere the
paths stay independent; approximation):

* ``Add``/``Subtract``: means add (subtract), variances add; ``Var(dx_i) = Var(dy)``.
  Where one summand is a function of a Gaussian (a rectified stream) and the others are
  Gaussian, the sum records it as that function plus an independent Gaussian
  (`_signal.Blend`), which the next activation integrates; that activation's mask and the
  function's are correlated along the stream, and the sum's backward passes each path's
  gradient to that summand (`_paths`: the activation layer after it draws the paths).
  Where the function's elements moved from its activation's (a crop or a pad between),
  it scales that gradient by ``E[g'^2 f'^2] / (E[g'^2] E[f'^2])`` (``Blend.selection``)
  instead: exact below the function ``g``, too high by that ratio at ``g``'s own output,
  where the walk keeps one gradient for all of its consumers.
* ``Average`` of ``n``: the same divided by ``n`` (``n^2`` for variances and gradients).
* ``Multiply``: ``E[y] = prod E[x_i]``, ``E[y^2] = prod E[x_i^2]``; ``Var(dx_1) = Var(dy)
  E[x_2^2]`` (a product of copies of one value is not covered: its rows are assumed).
* ``Concatenate``: the inputs side by side; the gradient is split back.

A broadcast input receives the sum of the gradients of the elements it was broadcast to.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np

from keras_initlab.propagate import _paths
from keras_initlab.propagate._signal import Blend, Signal, Source, make
from keras_initlab.propagate._step import Call, Step


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` over the axes ``shape`` was broadcast along."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    axes = tuple(i for i, (a, b) in enumerate(zip(shape, g.shape, strict=True)) if a == 1 < b)
    return g.sum(axis=axes, keepdims=True) if axes else g


def add(call: Call, signs: tuple[float, ...] | None = None, scale: float = 1.0) -> Step:
    xs: list[Signal] = call.inputs
    signs = signs or (1.0,) * len(xs)
    same = call.same or tuple(range(len(xs)))
    # one term per value: summands that are the same value add their weights
    first = sorted(set(same))
    weights = [scale * sum(s for s, j in zip(signs, same, strict=True) if j == i) for i in first]
    terms = [xs[i] for i in first]
    means = scale * sum(s * x.means for s, x in zip(signs, xs, strict=True))
    variances = sum(w * w * x.variances for w, x in zip(weights, terms, strict=True))
    out = make(means, variances)
    shapes = [x.shape for x in xs]
    odd = [i for i, x in enumerate(terms) if not x.gaussian]
    blend = _blend(terms, weights, out.shape, odd[0]) if len(odd) == 1 else None

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        along = blend is not None and bool(blend.paths)
        mean = _paths.averaged(g[0])
        grads = [mean * scale * scale for _ in xs]
        if along:  # each path's gradient to the stream's summand (`_paths`)
            for i, j in enumerate(same):
                if j == first[odd[0]]:
                    grads[i] = g[0] * scale * scale
            return [
                d if _paths.pathwise(d) else unbroadcast(d, s)
                for d, s in zip(grads, shapes, strict=True)
            ]
        # the masks of the activation after the sum, where that summand is the function
        # itself (a summand that is a sum already passes the ratio to its branch as well)
        if blend is not None and blend.selection and terms[odd[0]].blend is None:
            for i, j in enumerate(same):
                if j == first[odd[0]]:
                    grads[i] = grads[i] * blend.selection[0]
        return [unbroadcast(d, s) for d, s in zip(grads, shapes, strict=True)]

    signed = tuple(scale * s for s in signs)
    return Step(
        [dataclasses.replace(out, blend=blend)], backward, weights=signed, paths=blend is not None
    )


def _blend(xs: list[Signal], weights: list[float], shape: tuple[int, ...], i: int) -> Blend | None:
    """``sum_i w_i x_i`` as a ``Blend``: where the one summand ``xs[i]`` that is not
    Gaussian has the sum's shape, that summand's function (its own blend's, for a blend)
    plus the other summands, taken as one independent Gaussian; else None."""
    if xs[i].shape != shape:
        return None
    x, w = xs[i], np.asarray(weights[i], dtype=np.float64)
    own = x.blend or Blend(x.source, np.zeros(1), np.zeros(1))  # type: ignore[arg-type]
    part = own.affine(w, np.zeros(1))
    rest = [j for j in range(len(xs)) if j != i]
    mean = part.mean + sum(weights[j] * xs[j].means for j in rest)
    var = part.var + sum(weights[j] ** 2 * xs[j].variances for j in rest)
    return Blend(part.source, np.broadcast_to(mean, shape), np.broadcast_to(var, shape))


def subtract(call: Call) -> Step:
    return add(call, (1.0, -1.0))


def average(call: Call) -> Step:
    return add(call, scale=1.0 / len(call.inputs))


def multiply(call: Call) -> Step:
    xs: list[Signal] = call.inputs
    if len(set(call.same)) < len(call.same):  # E[x^2 x^2] is E[x^4], not E[x^2]^2
        raise NotImplementedError("a product of copies of one value")
    means = np.prod(np.broadcast_arrays(*[x.means for x in xs]), axis=0)
    seconds = np.prod(np.broadcast_arrays(*[x.seconds for x in xs]), axis=0)
    out = make(means, seconds - means * means)

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        result = []
        for i, x in enumerate(xs):
            others = [y.seconds for j, y in enumerate(xs) if j != i]
            factor = np.prod(np.broadcast_arrays(*others), axis=0) if others else 1.0
            result.append(unbroadcast(g[0] * factor, x.shape))
        return result

    return Step([out], backward)


def _same_function(sources: list[Source]) -> bool:
    """Whether the sources apply one function: one ``Activation``, or closed forms alike
    (ReLU of one slope, ReLU6 of one top)."""
    first = sources[0].activation
    if all(s.activation is first for s in sources):
        return True
    key = (first.closed, first.slope, first.top)
    return first.closed is not None and all(
        (s.activation.closed, s.activation.slope, s.activation.top) == key for s in sources
    )


def _joint_source(xs: list[Signal], axis: int) -> Source | None:
    """The concatenation of one function of Gaussians (an Inception block's ReLU branches)
    as that function of their concatenation, each part with its own scale and shift; None
    where an input is not such a function or its Gaussian is itself one."""
    sources = [x.source for x in xs]
    if any(
        s is None or s.pre.shape != x.shape or s.pre.source is not None or s.pre.blend is not None
        for s, x in zip(sources, xs, strict=True)
    ):
        return None
    found = [s for s in sources if s is not None]
    if not _same_function(found):
        return None

    def joined(part: Any) -> np.ndarray:
        return np.concatenate([part(s, x.shape) for s, x in zip(found, xs, strict=True)], axis)

    pre = make(joined(lambda s, _: s.pre.means), joined(lambda s, _: s.pre.variances))
    scale = joined(lambda s, shape: np.broadcast_to(1.0 if s.scale is None else s.scale, shape))
    shift = joined(lambda s, shape: np.broadcast_to(0.0 if s.shift is None else s.shift, shape))
    return Source(found[0].activation, pre, scale, shift)


def concatenate(call: Call) -> Step:
    axis = call.layer.axis
    rank = len(call.out_shapes[0])
    axis = (axis % rank) - 1  # per sample: the batch axis is gone
    xs = call.inputs
    out = make(
        np.concatenate([x.means for x in xs], axis=axis),
        np.concatenate([x.variances for x in xs], axis=axis),
        _joint_source(xs, axis),
    )
    bounds = np.cumsum([0] + [x.shape[axis] for x in xs])

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        return [np.take(g[0], np.arange(a, b), axis=axis) for a, b in itertools.pairwise(bounds)]

    return Step([out], backward)
