"""Pooling and global pooling.

Average pooling keeps the mean and the channel offsets (the same at every position) and
divides the fluctuating part by the number of valid inputs of each window (``same``
padding averages only those), positions assumed uncorrelated: ``within' = within *
mean_o(1 / n_o)``; backward ``Var(dx) = Var(dy) * sum_o(1 / n_o) / N_in``. Global average
pooling over ``P`` positions is the case ``n = P``: ``within / P``, ``Var(dy) / P^2``.

Max pooling of ``n`` iid inputs ``x_j = f(m + a + e_j)`` with ``f`` nondecreasing (ReLU
before the pool) is ``f(m + a + sqrt(within) M_n)``, ``M_n`` the maximum of ``n`` standard
normals (order statistics); where the input is not a known monotone activation of a
Gaussian it is taken as Gaussian itself. Window sizes that differ at the borders are mixed
in proportion. Backward, each window's gradient goes to its argmax: ``Var(dx) = Var(dy) *
N_out / N_in``.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_initlab.gaussian import max_normal_nodes, normal_nodes
from keras_initlab.propagate._geometry import taps
from keras_initlab.propagate._moments import LINEAR, max_moments
from keras_initlab.propagate._signal import Signal, Source, make
from keras_initlab.propagate._step import Call, Step, elements

L = keras.layers
AVERAGE = (L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D)
MAXIMUM = (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D)
GLOBAL_AVERAGE = (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D)
GLOBAL_MAXIMUM = (L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D)


def _spatial(layer, shape):
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return tuple(shape[2:])
    return tuple(shape[1:-1])


def _window_counts(call: Call, x: Signal | None = None) -> np.ndarray:
    """The number of valid inputs of every output window (``x`` padded: real inputs)."""
    layer = call.layer
    pool = tuple(layer.pool_size)
    strides = tuple(layer.strides) if layer.strides is not None else pool
    n_in, n_out = _spatial(layer, call.in_shapes[0]), _spatial(layer, call.out_shapes[0])
    if x is not None and x.padded is not None:
        n_in = x.padded.sizes
        pads = x.padded.pads
        return taps(n_in, n_out, pool, strides, (1,) * len(pool), layer.padding, pads).counts
    return taps(n_in, n_out, pool, strides, (1,) * len(pool), layer.padding).counts


def _mixture(parts: list[tuple[float, Signal]]) -> Signal:
    means = sum(p * s.means for p, s in parts)
    seconds = sum(p * s.seconds for p, s in parts)
    return make(means, seconds - means * means)


def _maximum(x: Signal, counts: np.ndarray) -> tuple[Signal, str]:
    source, note = x.source, ""
    if source is None or not source.nondecreasing:
        source, note = Source(LINEAR, x.plain()), "inputs taken as Gaussian"
    values, frequency = np.unique(counts, return_counts=True)
    parts = [
        (c / counts.size, max_moments(source, int(n)))
        for n, c in zip(values, frequency, strict=True)
    ]
    if x.source is not None and source is x.source and source.scale is None:
        typical = int(values[np.argmax(frequency)])
        source.selection[:] = [_selected_derivative(source, typical)]
    return _mixture(parts), note


def _selected_derivative(source: Source, n: int) -> np.ndarray:
    """``E[f'(z_max)^2] / E[f'(z)^2]`` per channel: ``z_max`` the window's maximum."""
    f, pre = source.activation, source.pre
    e, we = normal_nodes(0.0, 1.0, breaks=(), points=801, width=12.0)
    m, wm = max_normal_nodes(n, points=801, width=12.0)
    sd = np.sqrt(pre.variances)[:, None]
    at_max = f.derivative(pre.means[:, None] + sd * m[None, :]) ** 2 @ wm
    anywhere = f.derivative(pre.means[:, None] + sd * e[None, :]) ** 2 @ we
    return np.where(anywhere > 0, at_max / np.where(anywhere > 0, anywhere, 1.0), 1.0)


def average_pooling(call: Call) -> Step:
    counts = _window_counts(call).astype(np.float64)
    x = call.x
    inverse = float(np.mean(1.0 / counts))
    out = make(x.means, x.variances * inverse)
    positions_in = max(elements(call.in_shapes[0]) / max(x.channels, 1), 1.0)
    factor = inverse * counts.size / positions_in
    return Step([out], lambda g: [g[0] * factor])


def max_pooling(call: Call) -> Step:
    """A ZeroPadding's zeros just before count as absent (exact for inputs >= 0, a ReLU's)."""
    x = call.x
    if x.padded is not None:
        out, note = _maximum(x.padded.original, _window_counts(call, x))
        ratio = elements(call.out_shapes[0]) / elements(call.in_shapes[0])
        return Step([out], lambda g: [g[0] * ratio], note=note)
    out, note = _maximum(call.x, _window_counts(call))
    ratio = elements(call.out_shapes[0]) / elements(call.in_shapes[0])
    return Step([out], lambda g: [g[0] * ratio], note=note)


def _positions(call: Call) -> int:
    return int(np.prod([d or 1 for d in _spatial(call.layer, call.in_shapes[0])]))


def global_average_pooling(call: Call) -> Step:
    p = _positions(call)
    x = call.x
    out = make(x.means, x.variances / p)
    note = "fluctuations taken as uncorrelated over positions" if p > 1 else ""
    return Step([out], lambda g: [g[0] / (p * p)], note=note)


def global_max_pooling(call: Call) -> Step:
    p = _positions(call)
    out, note = _maximum(call.x, np.array([p]))
    return Step([out], lambda g: [g[0] / p], note=note)
