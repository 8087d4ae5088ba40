"""Merge layers (and the ``keras.ops`` arithmetic a Functional graph records).

Inputs are taken as independent (the residual branch's weights are independent of the
stream it is added to; Brock et al. 2021 plot exactly this sum):

* ``Add``/``Subtract``: means add (subtract), both variances add; ``Var(dx_i) = Var(dy)``.
* ``Average`` of ``n``: the same divided by ``n`` (``n^2`` for the variances and gradients).
* ``Multiply``: ``E[y] = prod m_i``, ``E[y^2] = prod E[x_i^2]``, the channel offsets'
  product is the fixed part; ``Var(dx_1) = Var(dy) E[x_2^2]``.
* ``Concatenate``: the mixture of its inputs by their share of the concatenated axis; the
  gradient passes unchanged.

An input broadcast over positions (squeeze-excite gates) receives the sum of the gradients
of the elements it was broadcast to: ``Var(dx_i) *= N_out / N_i``.
"""

from __future__ import annotations

import itertools

import numpy as np

from keras_initlab.propagate._signal import Signal, make
from keras_initlab.propagate._step import Call, Step, elements


def _aligned(xs: list[Signal]) -> list[Signal]:
    """Inputs with the same number of channels (a 1-channel input is broadcast)."""
    c = max(x.channels for x in xs)
    return [x if x.channels == c else Signal.uniform(x.mean, x.var, c) for x in xs]


def _broadcast(call: Call) -> list[float]:
    """Per input: how many output elements each of its elements feeds (positions)."""
    n_out = elements(call.out_shapes[0]) / max(call.out_shapes[0][-1] or 1, 1)
    return [n_out / (elements(s) / max(s[-1] or 1, 1)) for s in call.in_shapes]


def _reduce(g: np.ndarray, channels: int) -> np.ndarray:
    return g if g.size == channels else np.full(channels, float(g.sum()))


def add(call: Call, signs: tuple[float, ...] | None = None, scale: float = 1.0) -> Step:
    xs = _aligned(call.inputs)
    signs = signs or (1.0,) * len(xs)
    means = scale * sum(s * x.means for s, x in zip(signs, xs, strict=True))
    variances = scale * scale * sum(x.variances for x in xs)
    fans = _broadcast(call)
    sizes = [x.channels for x in call.inputs]
    return Step(
        [make(means, variances)],
        lambda g: [_reduce(g[0] * scale * scale * f, n) for f, n in zip(fans, sizes, strict=True)],
    )


def subtract(call: Call) -> Step:
    return add(call, (1.0, -1.0))


def average(call: Call) -> Step:
    return add(call, scale=1.0 / len(call.inputs))


def multiply(call: Call) -> Step:
    xs = _aligned(call.inputs)
    means = np.prod([x.means for x in xs], axis=0)
    seconds = np.prod([x.seconds for x in xs], axis=0)
    out = make(means, seconds - means * means)
    fans = _broadcast(call)
    sizes = [x.channels for x in call.inputs]

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        result = []
        for i, (f, n) in enumerate(zip(fans, sizes, strict=True)):
            others = np.prod([x.seconds for j, x in enumerate(xs) if j != i], axis=0)
            result.append(_reduce(g[0] * others * f, n))
        return result

    return Step([out], backward)


def concatenate(call: Call) -> Step:
    rank = len(call.out_shapes[0])
    axis = call.layer.axis % rank
    xs = call.inputs
    if axis == rank - 1:  # channels side by side
        out = make(np.concatenate([x.means for x in xs]), np.concatenate([x.variances for x in xs]))
        bounds = np.cumsum([0] + [x.channels for x in xs])
        return Step([out], lambda g: [g[0][a:b] for a, b in itertools.pairwise(bounds)])
    sizes = [float(s[axis] or 1) for s in call.in_shapes]
    total = sum(sizes)
    aligned = _aligned(xs)
    means = sum(n / total * x.means for n, x in zip(sizes, aligned, strict=True))
    seconds = sum(n / total * x.seconds for n, x in zip(sizes, aligned, strict=True))
    out = make(means, seconds - means * means)
    counts = [x.channels for x in xs]
    return Step([out], lambda g: [_reduce(g[0], n) if n != g[0].size else g[0] for n in counts])
