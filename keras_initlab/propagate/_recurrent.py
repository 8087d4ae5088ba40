"""SimpleRNN, LSTM and GRU over every time step, and Bidirectional wrappers.

Each step's gate pre-activation is ``z_g = x_t W_g + h_{t-1} U_g + b_g``: the Dense rule
for the input's part, the same for the state's (``x_t`` and ``h_{t-1}`` independent: the
state holds the earlier steps only), their moments added. From the zero state of step 0
the recurrent kernel does not enter. SimpleRNN: ``h = f(z)``. LSTM (gates i, f, c, o):
``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``, the factors of each product independent
(mean field), ``c_t`` read as the Gaussian of its moments, except at step 0 where
``c_0 = i g`` and the moments of ``tanh(i g)`` come from a 2-D quadrature. GRU (gates z,
r, h): ``h_t = z h_{t-1} + (1 - z) tanh(x W_h + r (h_{t-1} U_h + b'))`` (``reset_after``;
otherwise ``tanh(x W_h + (r h_{t-1}) U_h + b)``). The gradient runs back through time the
same way: at every step the gradient reaching the state (from the output at that step and
from the later steps) passes to the gates by their derivatives, then to the step's input
through ``W`` and to the earlier state through ``U``, the paths' variances added. A layer
that returns only its last state passes the gradient back from that step.

What the mean field leaves out: the correlation between a gate and the state it multiplies
(both read ``h_{t-1}``, through different kernels); for the LSTM's cell after step 0, the
skew of ``f c + i g``; and any correlation between the input's steps, which are taken as
independent (as a probe's are): a recurrent layer reading a sequence whose steps are
correlated (another recurrent layer's, a repeated vector) is not covered, its row assumed.
Against 2048 samples of 12 steps the activation and the
gradient agree within 1-8% for LSTM, GRU and SimpleRNN layers reading the probe; a GRU
reading a bidirectional LSTM's sequence measured 1.8x above what the rule gives it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from keras_initlab.model.layers import RECURRENT_GATES
from keras_initlab.propagate._activations import from_function
from keras_initlab.propagate._kernels import kernel, matrix, values
from keras_initlab.propagate._moments import LINEAR, Activation, activation_moments
from keras_initlab.propagate._signal import Signal, Source, make, require_independent_steps
from keras_initlab.propagate._step import Call, Part, Step

NOTE = "mean field over the steps, the input's steps taken as independent"
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(32)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()
Backward = Callable[[np.ndarray], np.ndarray]


def _activation(fn: Any) -> Activation:
    found = from_function(fn)
    return found if isinstance(found, Activation) else LINEAR


def _sum(a: Signal, b: Signal) -> Signal:
    """``a + b`` of independent tensors."""
    return make(a.means + b.means, a.variances + b.variances)


def _product(a: Signal, b: Signal) -> Signal:
    """``a * b`` of independent tensors."""
    means = a.means * b.means
    return make(means, a.seconds * b.seconds - means * means)


def _of_product(i: Signal, g: Signal, f: Activation) -> tuple[Signal, np.ndarray]:
    """Per unit: moments of f(i * g) and E[f'(i g)^2] for independent activations i, g of
    Gaussian pre-activations (2-D Gauss-Hermite)."""
    si, sg = i.source or Source(LINEAR, i), g.source or Source(LINEAR, g)
    shape = i.shape
    a = si.apply(_grid(si.pre), shape)
    b = sg.apply(_grid(sg.pre), shape)
    c = a[:, :, None] * b[:, None, :]
    w = np.multiply.outer(_WEIGHTS, _WEIGHTS)
    y = f.fn(c)
    m1 = np.sum(w * y, axis=(1, 2)).reshape(shape)
    m2 = np.sum(w * y * y, axis=(1, 2)).reshape(shape)
    d2 = np.sum(w * f.derivative(c) ** 2, axis=(1, 2)).reshape(shape)
    return make(m1, m2 - m1 * m1), d2


def _grid(pre: Signal) -> np.ndarray:
    mean, var = pre.means.reshape(-1), pre.variances.reshape(-1)
    return mean[:, None] + np.sqrt(var)[:, None] * _NODES[None, :]


class _Cell:
    """One cell's weights split by gate: ``w[g]``, ``u[g]`` (input and recurrent kernel
    slices), ``b[g]`` (input bias), ``rb[g]`` (the GRU's recurrent bias, ``reset_after``)."""

    def __init__(self, cell: Any) -> None:
        count = next((n for t, n in RECURRENT_GATES.items() if isinstance(cell, t)), None)
        if count is None:  # a user's cell, stacked cells
            raise NotImplementedError(f"a cell of class {type(cell).__name__}")
        self.count: int = count
        w, u = kernel(cell.kernel), kernel(cell.recurrent_kernel)
        self.units = u.shape[0]
        bias = values(getattr(cell, "bias", None))
        recurrent_bias = None
        if bias is not None and bias.ndim == 2:  # GRU reset_after: input and recurrent biases
            bias, recurrent_bias = bias[0], bias[1]
        n = self.units
        cut = [slice(g * n, (g + 1) * n) for g in range(self.count)]
        self.w = [w[:, s] for s in cut]
        self.u = [u[:, s] for s in cut]
        self.b = [None if bias is None else bias[s] for s in cut]
        self.rb = [None if recurrent_bias is None else recurrent_bias[s] for s in cut]
        self.reset_after = bool(getattr(cell, "reset_after", True))
        self.act = _activation(cell.activation)
        self.rec = _activation(getattr(cell, "recurrent_activation", None))

    def gate(self, g: int, xin: Signal, h: Signal) -> Signal:
        """``x W_g + b_g + h U_g (+ b'_g)``: the input part ``xin`` plus the state's."""
        return _sum(xin, matrix(h, self.u[g], self.rb[g]))

    def through(self, grads: list[np.ndarray], kernels: list[np.ndarray]) -> np.ndarray:
        """Gate pre-activation gradients back through ``kernels`` (``w`` or ``u``)."""
        return sum(g @ (k * k).T for g, k in zip(grads, kernels, strict=True))


def _run(cell: Any, x: Signal) -> tuple[Signal, Backward]:
    """Per-step output moments ``(T, units)`` of ``cell`` run over the steps of ``x`` (in
    order) from a zero state, and ``backward(g (T, units)) -> g_x (T, features)``."""
    c = _Cell(cell)
    xin = [matrix(x, c.w[g], c.b[g]) for g in range(c.count)]
    steps = x.shape[0]
    run = {1: _simple, 4: _lstm, 3: _gru}[c.count]
    outs, backward = run(c, [_split(xg, steps) for xg in xin])
    means = np.stack([o.means for o in outs])
    return make(means, np.stack([o.variances for o in outs])), backward


def _split(s: Signal, steps: int) -> list[Signal]:
    """Each step of ``s`` as a plain Signal of its own."""
    return [make(s.means[t], s.variances[t]) for t in range(steps)]


def _simple(c: _Cell, xin: list[list[Signal]]) -> tuple[list[Signal], Backward]:
    h = Signal.uniform(0.0, 0.0, (c.units,))
    outs, d2s = [], []
    for t in range(len(xin[0])):
        h, d2 = activation_moments(c.act, c.gate(0, xin[0][t], h))
        h = h.plain()
        outs.append(h)
        d2s.append(d2)

    def backward(g: np.ndarray) -> np.ndarray:
        gx, carried = np.zeros((len(outs), c.w[0].shape[0])), np.zeros(c.units)
        for t in reversed(range(len(outs))):
            gz = (g[t] + carried) * d2s[t]
            gx[t], carried = c.through([gz], c.w), c.through([gz], c.u)
        return gx

    return outs, backward


def _lstm(c: _Cell, xin: list[list[Signal]]) -> tuple[list[Signal], Backward]:
    h = cell = Signal.uniform(0.0, 0.0, (c.units,))
    outs, saved = [], []
    for t in range(len(xin[0])):
        (i, di), (f, df), (g, dg), (o, do) = (
            activation_moments(c.act if k == 2 else c.rec, c.gate(k, xin[k][t], h))
            for k in range(4)
        )
        if t == 0:  # c = i g
            tc, dt = _of_product(i, g, c.act)
            new = _product(i, g)
        else:
            new = _sum(_product(f, cell), _product(i, g))
            tc, dt = activation_moments(c.act, new)
        saved.append(
            (
                i.seconds,
                di,
                f.seconds,
                df,
                g.seconds,
                dg,
                do,
                tc.seconds,
                dt,
                cell.seconds,
                o.seconds,
            )
        )
        h, cell = _product(o, tc), new
        outs.append(h)

    def backward(grad: np.ndarray) -> np.ndarray:
        gx = np.zeros((len(outs), c.w[0].shape[0]))
        gh_next, gc_next, f2_next = np.zeros(c.units), np.zeros(c.units), np.zeros(c.units)
        for t in reversed(range(len(outs))):
            i2, di, f2, df, g2, dg, do, tc2, dt, c2, o2 = saved[t]
            gh = grad[t] + gh_next
            gc = gh * o2 * dt + gc_next * f2_next
            gates = [gc * g2 * di, gc * c2 * df, gc * i2 * dg, gh * tc2 * do]
            gx[t], gh_next = c.through(gates, c.w), c.through(gates, c.u)
            gc_next, f2_next = gc, f2
        return gx

    return outs, backward


def _gru(c: _Cell, xin: list[list[Signal]]) -> tuple[list[Signal], Backward]:
    h = Signal.uniform(0.0, 0.0, (c.units,))
    outs, saved = [], []
    for t in range(len(xin[0])):
        z, dz = activation_moments(c.rec, c.gate(0, xin[0][t], h))
        r, dr = activation_moments(c.rec, c.gate(1, xin[1][t], h))
        if c.reset_after:  # tanh(x W_h + b_h + r (h U_h + b'_h))
            a = matrix(h, c.u[2], c.rb[2])
            pre = _sum(xin[2][t], _product(r, a))
        else:  # tanh(x W_h + b_h + (r h) U_h)
            a = h
            pre = _sum(xin[2][t], matrix(_product(r, h), c.u[2], None))
        hh, dh = activation_moments(c.act, pre)
        z2, keep2 = z.seconds, 1.0 - 2.0 * z.means + z.seconds  # E[z^2], E[(1 - z)^2]
        mixed = (z.means - z2) * h.means * hh.means  # E[z (1 - z)] E[h] E[hh]
        means = z.means * h.means + (1.0 - z.means) * hh.means
        seconds = z2 * h.seconds + 2.0 * mixed + keep2 * hh.seconds
        spread = h.seconds - 2.0 * h.means * hh.means + hh.seconds  # E[(h - hh)^2]
        saved.append((dz, r.seconds, dr, a.seconds, dh, z2, keep2, spread))
        h = make(means, seconds - means * means)
        outs.append(h)

    def backward(grad: np.ndarray) -> np.ndarray:
        gx = np.zeros((len(outs), c.w[0].shape[0]))
        gh_next = np.zeros(c.units)
        for t in reversed(range(len(outs))):
            dz, r2, dr, a2, dh, z2, keep2, spread = saved[t]
            gh = grad[t] + gh_next
            gz, gpre = gh * spread * dz, gh * keep2 * dh
            if c.reset_after:
                gr = gpre * a2 * dr
                to_state = c.through([gpre * r2], [c.u[2]])
            else:
                grh = c.through([gpre], [c.u[2]])  # the gradient at r h
                gr, to_state = grh * a2 * dr, grh * r2
            gx[t] = c.through([gz, gr, gpre], c.w)
            gh_next = gh * z2 + c.through([gz, gr], c.u[:2]) + to_state
        return gx

    return outs, backward


def _sequence(layer: Any, x: Signal) -> tuple[Signal, Backward]:
    """The layer's output moments (every step's, in the order the layer returns them, or
    the last step's) and ``backward(g) -> g_x``. A layer that ``go_backwards`` reads the
    steps in reverse and returns them in the order it read them (as Keras does)."""
    require_independent_steps(x, "recurs over")
    backwards = bool(getattr(layer, "go_backwards", False))
    order = slice(None, None, -1) if backwards else slice(None)
    out, run_back = _run(layer.cell, make(x.means[order], x.variances[order]))

    def to_input(g: np.ndarray) -> np.ndarray:
        return run_back(g)[order]

    if getattr(layer, "return_sequences", False):  # a state carried from step to step
        return dataclasses.replace(out, correlated_steps=True), to_input
    steps = out.shape[0]

    def last(g: np.ndarray) -> np.ndarray:
        full = np.zeros((steps, *g.shape))
        full[-1] = g
        return to_input(full)

    return make(out.means[-1], out.variances[-1]), last


def _flipped(out: Signal, backward: Backward) -> tuple[Signal, Backward]:
    """A sequence's moments with its steps in reverse order, and its backward alike."""
    flipped = make(out.means[::-1], out.variances[::-1])
    return dataclasses.replace(flipped, correlated_steps=True), lambda g: backward(g[::-1])


def recurrent(call: Call) -> Step:
    if getattr(call.layer, "return_state", False):
        raise NotImplementedError("return_state")
    out, backward = _sequence(call.layer, call.x)
    return Step([out], lambda g: [backward(g[0])], note=NOTE)


def bidirectional(call: Call) -> Step:
    layer = call.layer
    forward, fb = _sequence(layer.forward_layer, call.x)
    reverse, bb = _sequence(layer.backward_layer, call.x)
    if getattr(layer, "return_sequences", False):  # Keras flips the backward layer's steps
        reverse, bb = _flipped(reverse, bb)
    mode = layer.merge_mode
    n = forward.channels
    if mode == "concat":
        out = make(
            np.concatenate([forward.means, reverse.means], axis=-1),
            np.concatenate([forward.variances, reverse.variances], axis=-1),
        )

        def backward(g: list[np.ndarray]) -> list[np.ndarray]:
            return [fb(g[0][..., :n]) + bb(g[0][..., n:])]

        split = (lambda g: g[0][..., :n], lambda g: g[0][..., n:])
    elif mode in ("sum", "ave"):
        scale = 1.0 if mode == "sum" else 0.5
        out = make(
            scale * (forward.means + reverse.means),
            scale**2 * (forward.variances + reverse.variances),
        )

        def backward(g: list[np.ndarray]) -> list[np.ndarray]:
            return [fb(g[0] * scale**2) + bb(g[0] * scale**2)]

        split = (lambda g: g[0] * scale**2, lambda g: g[0] * scale**2)
    else:
        raise NotImplementedError(f"merge_mode {mode!r}")
    out = dataclasses.replace(out, correlated_steps=forward.correlated_steps)
    parts = [
        Part(layer.forward_layer.name, layer.forward_layer, forward, split[0]),
        Part(layer.backward_layer.name, layer.backward_layer, reverse, split[1]),
    ]
    return Step([out], backward, note=NOTE, parts=parts)
