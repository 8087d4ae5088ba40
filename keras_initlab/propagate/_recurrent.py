"""SimpleRNN, LSTM and GRU at step 0 (zero initial state), and Bidirectional wrappers.

From the zero state the recurrent kernel does not enter the first step; each gate's
pre-activation ``z_g = x W_g + b_g`` follows the Dense rule with that gate's slice of the
kernel (gates independent: their weights are). SimpleRNN: ``h = f(z)``. LSTM: ``c = i g``,
``h = o tanh(c)`` with ``i, o = sigmoid(z_i, z_o)``, ``g = tanh(z_g)``, the forget gate
multiplying the zero state; the moments of ``tanh(i g)`` by a 2-D quadrature. GRU:
``h = (1 - z) tanh(z_h)``. The prediction is the first step's: later steps add the
recurrent term, so a layer returning a long sequence (or its last state) departs from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_initlab.model.layers import RECURRENT_GATES
from keras_initlab.propagate._activations import from_function
from keras_initlab.propagate._kernels import kernel, matrix, values
from keras_initlab.propagate._moments import LINEAR, Activation, activation_moments
from keras_initlab.propagate._signal import Signal, Source, make
from keras_initlab.propagate._step import Call, Part, Step

NOTE = "first step from a zero state (the recurrent kernel does not enter)"
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(32)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def _gates(cell: Any, x: Signal, count: int) -> list[tuple[Signal, np.ndarray]]:
    """Per gate: pre-activation moments and the squared kernel slice (backward)."""
    w = kernel(cell.kernel)
    units = w.shape[1] // count
    bias = values(cell.bias)
    if bias is not None and bias.ndim == 2:  # GRU reset_after: input and recurrent biases
        bias = bias.sum(axis=0)
    out = []
    for g in range(count):
        part = w[:, g * units : (g + 1) * units]
        b = None if bias is None else bias[g * units : (g + 1) * units]
        out.append((matrix(x, part, b), part * part))
    return out


def _activation(fn: Any) -> Activation:
    found = from_function(fn)
    return found if isinstance(found, Activation) else LINEAR


def _product(a: Signal, b: Signal) -> Signal:
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


def _cell_step(cell: Any, x: Signal) -> tuple[Signal, Any]:
    """Output moments and ``backward(g_h) -> g_x`` of one cell's first step."""
    count = next(n for t, n in RECURRENT_GATES.items() if isinstance(cell, t))
    gates = _gates(cell, x, count)
    act = _activation(cell.activation)
    rec = _activation(getattr(cell, "recurrent_activation", None))

    def through(pairs: list[tuple[int, np.ndarray]]) -> np.ndarray:  # gate grads -> g_x
        return sum(g @ gates[j][1].T for j, g in pairs)

    if count == 1:
        out, d2 = activation_moments(act, gates[0][0])
        return out.plain(), lambda g: through([(0, g * d2)])
    if count == 4:  # LSTM: gates i, f, c, o
        i, di = activation_moments(rec, gates[0][0])
        cand, dc = activation_moments(act, gates[2][0])
        o, do = activation_moments(rec, gates[3][0])
        tc, dt = _of_product(i, cand, act)
        out = _product(o, tc)

        def lstm(g: np.ndarray) -> np.ndarray:
            g_c = g * o.seconds * dt
            return through(
                [(0, g_c * cand.seconds * di), (2, g_c * i.seconds * dc), (3, g * tc.seconds * do)]
            )

        return out, lstm
    z, dz = activation_moments(rec, gates[0][0])  # GRU: gates z, r, h
    hh, dh = activation_moments(act, gates[2][0])
    keep = make(1.0 - z.means, z.variances)
    out = _product(keep, hh)
    return out, lambda g: through([(0, g * hh.seconds * dz), (2, g * keep.seconds * dh)])


def _sequence(layer: Any, x: Signal) -> tuple[Signal, Any]:
    """Step-0 moments at every time step; the last step's when no sequence is returned."""
    out, backward = _cell_step(layer.cell, x)
    if getattr(layer, "return_sequences", False):
        return out, backward
    t = x.shape[0]

    def last(g: np.ndarray) -> np.ndarray:
        full = np.zeros((t, *g.shape))
        full[-1] = g
        return backward(full)

    return make(out.means[-1], out.variances[-1]), last


def recurrent(call: Call) -> Step:
    if getattr(call.layer, "return_state", False):
        raise NotImplementedError("return_state")
    out, backward = _sequence(call.layer, call.x)
    return Step([out], lambda g: [backward(g[0])], note=NOTE)


def bidirectional(call: Call) -> Step:
    layer = call.layer
    forward, fb = _sequence(layer.forward_layer, call.x)
    reverse, bb = _sequence(layer.backward_layer, call.x)
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
    parts = [
        Part(layer.forward_layer.name, layer.forward_layer, forward, split[0]),
        Part(layer.backward_layer.name, layer.backward_layer, reverse, split[1]),
    ]
    return Step([out], backward, note=NOTE, parts=parts)
