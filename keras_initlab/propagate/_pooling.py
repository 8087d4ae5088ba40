"""Pooling and global pooling.

Average pooling averages the valid inputs of each window (``same`` padding averages only
those): means average, variances add divided by ``n^2`` (inputs independent); backward each
input receives ``Var(dy) / n^2`` from every window that reads it. Global average pooling
over ``P`` positions keeps each channel's mean and divides its fluctuating variance by
``P``, positions assumed uncorrelated; ``Var(dx) = Var(dy) / P^2``.

Max pooling of ``n`` inputs ``x_j = f(z_j)`` with ``f`` nondecreasing (ReLU before the pool)
is ``f(max_j z_j)``; the window's ``z_j`` are taken as iid with the window's average moments
and ``max_j z_j = mean + std M_n``, ``M_n`` the maximum of ``n`` standard normals (order
statistics). Where the input is not a known monotone activation of a Gaussian it is taken as
Gaussian itself. A zero the layer before padded in (ZeroPadding2D before MaxPooling2D in
ResNet) is left out of the window: exact for inputs >= 0. Backward, each window's gradient
goes to its argmax, ``1/n`` of the time to each input; and the activation before it sees its
derivative at the window maxima (a ReLU's is 1 there far more often than 1/2), which the
pool records on the source (``Source.selection``).
"""

from __future__ import annotations

import numpy as np

from keras_initlab.propagate._geometry import gather, scatter, window_index
from keras_initlab.propagate._moments import LINEAR, max_derivative, max_moments
from keras_initlab.propagate._signal import Signal, Source, make
from keras_initlab.propagate._step import Call, Step


def _index(call: Call) -> np.ndarray:
    layer = call.layer
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        raise NotImplementedError("channels_first")
    pool = tuple(layer.pool_size)
    strides = tuple(layer.strides) if layer.strides is not None else pool
    n_in, n_out = call.in_shapes[0][1:-1], call.out_shapes[0][1:-1]
    if any(d is None for d in (*n_in, *n_out)):
        raise NotImplementedError("unknown spatial size")
    sizes_in, sizes_out = [int(d or 0) for d in n_in], [int(d or 0) for d in n_out]
    return window_index(sizes_in, sizes_out, pool, strides, (1,) * len(pool), layer.padding)


def average_pooling(call: Call) -> Step:
    x, index = call.x, _index(call)
    c, out_shape = x.channels, tuple(call.out_shapes[0][1:])
    n = np.count_nonzero(index >= 0, axis=1).astype(np.float64)[:, None]  # (out, 1)
    means = gather(x.means.reshape(-1, c), index).sum(axis=1) / n
    variances = gather(x.variances.reshape(-1, c), index).sum(axis=1) / (n * n)
    out = make(means.reshape(out_shape), variances.reshape(out_shape))
    positions = x.means.size // c

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        per = np.repeat((g[0].reshape(-1, c) / (n * n))[:, None, :], index.shape[1], axis=1)
        return [scatter(per, index, positions).reshape(x.shape)]

    return Step([out], backward)


def _window_source(x: Signal) -> tuple[Source, str]:
    if x.source is not None and x.source.nondecreasing:
        return x.source, ""
    return Source(LINEAR, x.plain()), "inputs taken as Gaussian"


def maximum(x: Signal, index: np.ndarray, out_shape: tuple[int, ...]) -> tuple[Step, str]:
    c = x.channels
    source, note = _window_source(x)
    # a padded zero (mean and variance exactly 0) is not a candidate for the maximum
    live = (x.means != 0) | (x.variances != 0)
    ok = gather(live.reshape(-1, c).astype(np.float64), index)  # (out, taps, C)
    n = np.maximum(ok.sum(axis=1), 1.0)

    def average(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        full = np.broadcast_to(a, x.shape).reshape(-1, c)
        return (gather(full, index) * ok).sum(axis=1) / n

    pre = make(average(source.pre.means), average(source.pre.variances))
    window = Source(source.activation, pre, average(source.scale), average(source.shift))
    counts = n.astype(np.int64)
    means = np.zeros(counts.shape)
    seconds = np.zeros(counts.shape)
    for k in np.unique(counts):
        at = counts == k
        sub = Source(
            window.activation,
            make(pre.means[at], pre.variances[at]),
            None if window.scale is None else window.scale[at],
            None if window.shift is None else window.shift[at],
        )
        moments = max_moments(sub, int(k), (int(at.sum()),))
        means[at], seconds[at] = moments.means, moments.seconds
    if x.source is not None and source is x.source and source.scale is None:
        typical = int(np.bincount(counts.ravel()).argmax())
        source.selection[:] = [max_derivative(source, typical)]
    out = make(means.reshape(out_shape), (seconds - means * means).reshape(out_shape))
    positions = x.means.size // c

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        per = ok * (g[0].reshape(-1, c) / n)[:, None, :]
        return [scatter(per, index, positions).reshape(x.shape)]

    return Step([out], backward, note=note), note


def max_pooling(call: Call) -> Step:
    out_shape = tuple(int(d or 1) for d in call.out_shapes[0][1:])
    step, _ = maximum(call.x, _index(call), out_shape)
    return step


def _positions(x: Signal) -> int:
    return x.means.size // x.channels


def global_average_pooling(call: Call) -> Step:
    x = call.x
    p, c = _positions(x), x.channels
    means = x.means.reshape(-1, c).mean(axis=0)
    variances = x.variances.reshape(-1, c).mean(axis=0) / p
    out_shape = tuple(int(d or 1) for d in call.out_shapes[0][1:])
    out = make(means.reshape(out_shape), variances.reshape(out_shape))
    note = "fluctuations taken as uncorrelated over positions" if p > 1 else ""
    return Step(
        [out],
        lambda g: [np.broadcast_to(g[0].reshape(-1)[None, :] / (p * p), (p, c)).reshape(x.shape)],
        note=note,
    )


def global_max_pooling(call: Call) -> Step:
    x = call.x
    index = np.arange(_positions(x))[None, :]
    out_shape = tuple(int(d or 1) for d in call.out_shapes[0][1:])
    step, _ = maximum(x, index, out_shape)  # one window: every position
    return step
