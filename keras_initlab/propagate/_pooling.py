"""Pooling and global pooling.

Average pooling averages the valid inputs of each window (``same`` padding averages only
those): means average, variances add divided by ``n^2`` (inputs independent); backward each
input receives ``Var(dy) / n^2`` from every window that reads it. Global average pooling
over ``P`` positions keeps each channel's mean and divides its fluctuating variance by
``P``, positions assumed uncorrelated; ``Var(dx) = Var(dy) / P^2``.

Max pooling of ``n`` inputs ``x_j = f(z_j)`` with ``f`` nondecreasing (ReLU before the pool)
is ``f(max_j z_j)``, the window's ``z_j`` independent. Where they have the same moments,
``max_j z_j = mean + std M_n``, ``M_n`` the maximum of ``n`` standard normals (order
statistics); where they differ (near a border, and anywhere on a small map, by a part
common to all samples), the maximum of Gaussians of unequal moments
(`keras_initlab.gaussian.max_unequal_nodes`), whose gradient goes to each input as often as
it wins. Where the input is not a known monotone activation of a Gaussian it is taken as
Gaussian itself. A zero the layer before padded in (ZeroPadding2D before MaxPooling2D in
ResNet) is left out of the window: exact for inputs >= 0. Backward, each window's gradient
goes to its argmax, ``1/n`` of the time to each input of an alike window; and the
activation before it sees its derivative at the window maxima (a ReLU's is 1 there far
more often than 1/2), which the pool records on the source (``Source.selection``, taken
for the window size most windows have). A max pool of a max pool's output (a global max
pool after pooling, a pool after a pool) is the maximum over both windows: ``k`` windows of
``d`` draws are ``k d`` draws (`Signal.pooled`; the inner windows taken alike), and the
activation sees its derivative at the maximum of ``k d``, not of ``d`` (a tanh Conv1D
pooled by 2 then globally over 8 positions: the maximum of 16). A max pool of a rectified
residual stream takes each channel's level from the stream's paths (`_along_paths`). The
window's inputs are taken as independent: a map pooled by overlapping windows (3x3, stride
2) and convolved again is correlated between neighbours (InceptionResNetV2's stem: 0.24-0.29
at ``batch_normalization_4``), whose next pool's maximum is then a few percent lower and its
variance higher than predicted (training mode: 1.48 and 0.36 against 1.40 and 0.43).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_initlab.gaussian import max_unequal_nodes
from keras_initlab.propagate import _paths
from keras_initlab.propagate._geometry import gather, scatter, window_index
from keras_initlab.propagate._moments import (
    LINEAR,
    max_derivative,
    max_moments,
    rectified,
    unique_at_float32,
)
from keras_initlab.propagate._signal import Signal, Source, make, require_independent_steps
from keras_initlab.propagate._step import Call, Step

_ROWS = 512  # windows integrated at once (rows x 401 nodes x taps numbers)


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
    require_independent_steps(call.x, "pools")
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


def _window_source(x: Signal) -> tuple[Source, int, Source | None, str]:
    """``(source, draws, root, note)``: each input is ``source`` of the maximum of
    ``draws`` pre-activations, ``root`` the activation whose derivative the pool selects."""
    if x.pooled is not None:
        return *x.pooled, ""
    if x.source is not None and x.source.nondecreasing:
        return x.source, 1, x.source, ""
    return Source(LINEAR, x.plain()), 1, None, "inputs taken as Gaussian"


def maximum(x: Signal, index: np.ndarray, out_shape: tuple[int, ...]) -> tuple[Step, str]:
    c = x.channels
    source, draws, root, note = _window_source(x)
    # a padded zero (mean and variance exactly 0) is not a candidate for the maximum
    live = (x.means != 0) | (x.variances != 0)
    ok = gather(live.reshape(-1, c).astype(np.float64), index)  # (out, taps, C)
    n = np.maximum(ok.sum(axis=1), 1.0)

    def taps(a: np.ndarray) -> np.ndarray:
        return gather(np.broadcast_to(a, x.shape).reshape(-1, c), index)

    def average(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else (taps(a) * ok).sum(axis=1) / n

    pre = make(average(source.pre.means), average(source.pre.variances))
    window = Source(source.activation, pre, average(source.scale), average(source.shift))
    counts = n.astype(np.int64)
    means = np.zeros(counts.shape)
    seconds = np.zeros(counts.shape)
    shares = ok / n[:, None, :]  # where the window's gradient goes: its argmax
    unequal = (
        None
        if draws > 1
        else _unequal(window, taps(source.pre.means), taps(source.pre.variances), ok > 0)
    )
    alike = np.ones(counts.shape, bool)
    if unequal is not None:
        at, (mean, second, wins) = unequal
        means[at], seconds[at] = mean, second
        shares.transpose(0, 2, 1)[at] = wins
        alike = ~at
    for k in np.unique(counts[alike]):
        at = (counts == k) & alike
        sub = Source(
            window.activation,
            make(pre.means[at], pre.variances[at]),
            None if window.scale is None else window.scale[at],
            None if window.shift is None else window.shift[at],
        )
        moments = max_moments(sub, int(k) * draws, (int(at.sum()),))
        means[at], seconds[at] = moments.means, moments.seconds
    typical = int(np.bincount(counts.ravel()).argmax()) * draws
    if root is not None and root.scale is None:
        root.selection[:] = [max_derivative(root, typical)]
    if draws == 1:
        means, seconds = _along_paths(x.source, index, ok > 0, means, seconds)
    out = make(means.reshape(out_shape), (seconds - means * means).reshape(out_shape))
    f = window.activation
    if (
        f.closed == "relu"
        and f.slope == 0.0
        and (window.scale is None or bool(np.all(window.scale > 0)))
        and (window.shift is None or not np.any(window.shift))
    ):  # the maximum of ReLUs is a ReLU (of the maximum): recorded as one, alike in moments
        out = make(out.means, out.variances, rectified(f, out.means, out.seconds))
    out = dataclasses.replace(out, pooled=(_reshaped(window, out_shape), typical, root))
    positions = x.means.size // c

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        per = shares * g[0].reshape(-1, c)[:, None, :]
        return [scatter(per, index, positions).reshape(x.shape)]

    return Step([out], backward, note=note), note


def _along_paths(
    source: Source | None,
    index: np.ndarray,
    live: np.ndarray,
    means: np.ndarray,
    seconds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The window maxima's ``(E[y], E[y^2])`` (``(out, C)``, from the integrals) rescaled
    per channel where the pool reads a rectified residual stream that keeps its paths
    (`_paths`): each path takes the window's maximum of its own elements' values, and a
    channel's averages over the output's positions become the paths'. The integrals take
    each input as a monotone function of a Gaussian; a stream's law is its whole history (a
    rectified sum of rectified sums), whose right tail, which a maximum reads, a Gaussian
    misses, and whose channel offsets a maximum amplifies: InceptionResNetV2 in training mode
    (75x75, batch 16) pools ``block35_10_ac`` at a variance of 0.25 by the integrals, 0.49
    by the paths, against 0.54 measured, and the 1x1 pool of ``block17_20_ac`` left
    ``mixed_7a`` with 0.70 of its measured within-channel variance after a tensor-wide
    rescale, 0.94 after this one. As in `_paths.along`, the integrals' pattern over
    positions (borders) is kept; unchanged where the source has no paths."""
    if source is None or not source.root.paths or source.pre is not source.root.pre:
        return means, seconds
    found = _paths.values(source)
    if found is None:
        return means, seconds
    y = found[0]
    k, c = y.shape[0], y.shape[-1]
    flat = y.reshape(k, -1, c)
    padded = np.concatenate([flat, np.full((k, 1, c), -np.inf, flat.dtype)], axis=1)
    taps = padded[:, np.where(index >= 0, index, flat.shape[1])]  # (K, out, taps, C)
    peak = np.where(live[None], taps, -np.inf).max(axis=2).astype(np.float64)  # (K, out, C)
    peak = np.where(np.isfinite(peak), peak, 0.0)  # (a window of padding only)
    mean, second = means.mean(axis=0), seconds.mean(axis=0)  # per channel
    path_mean, path_second = peak.mean(axis=(0, 1)), (peak * peak).mean(axis=(0, 1))
    # a mean near 0 beside the spread keeps its own (as `_paths.along`)
    moves = np.abs(mean) > 1e-9 * np.sqrt(np.abs(second))
    means = means * np.where(moves, path_mean / np.where(moves, mean, 1.0), 1.0)
    positive = second > 0.0
    return means, seconds * np.where(positive, path_second / np.where(positive, second, 1.0), 1.0)


def _reshaped(window: Source, shape: tuple[int, ...]) -> Source:
    """``window`` (per pooled element, ``(out, C)``) laid out in the pool's output shape."""

    def lay(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a.reshape(shape)

    pre = make(lay(window.pre.means), lay(window.pre.variances))
    return Source(window.activation, pre, lay(window.scale), lay(window.shift))


def _unequal(
    window: Source, means: np.ndarray, variances: np.ndarray, live: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """The windows (``(out, C)`` mask) whose live inputs differ in mean or variance, with
    their ``(E[y], E[y^2], win share per tap)``: the maximum of independent Gaussians of
    unequal moments (`max_unequal_nodes`; alike windows are integrated once). Near a
    border, and everywhere on a small map, a window's inputs differ by a part common to all
    samples; its iid stand-in (the window's average moments) loses that part, and the
    input with the largest mean wins more often than ``1/n``."""

    def spread(a: np.ndarray) -> np.ndarray:
        return np.where(live, a, -np.inf).max(axis=1) != np.where(live, a, np.inf).min(axis=1)

    at = spread(means) | spread(variances)
    at &= live.any(axis=1)  # a window of padding only: no input to take the maximum of
    if not at.any():
        return None
    m, v, ok = (a.transpose(0, 2, 1)[at] for a in (means, variances, live))  # (rows, taps)
    scale = np.ones(len(m)) if window.scale is None else window.scale[at]
    shift = np.zeros(len(m)) if window.shift is None else window.shift[at]
    key = np.concatenate(
        [np.where(ok, m, 0.0), np.where(ok, v, 0.0), ok, scale[:, None], shift[:, None]], axis=1
    )
    _, first, inverse = unique_at_float32(key, return_index=True, return_inverse=True)
    results = []
    for chunk in np.array_split(first, max(1, len(first) // _ROWS)):
        t, w, wins = max_unequal_nodes(m[chunk], np.sqrt(v[chunk]), ok[chunk])
        y = scale[chunk, None] * window.activation.fn(t) + shift[chunk, None]
        results.append(((w * y).sum(axis=1), (w * y * y).sum(axis=1), wins))
    mean, second, wins = (
        np.concatenate(parts)[inverse.ravel()] for parts in zip(*results, strict=True)
    )
    return at, (mean, second, wins)


def max_pooling(call: Call) -> Step:
    require_independent_steps(call.x, "pools")
    out_shape = tuple(int(d or 1) for d in call.out_shapes[0][1:])
    step, _ = maximum(call.x, _index(call), out_shape)
    return step


def _positions(x: Signal) -> int:
    return x.means.size // x.channels


def global_average_pooling(call: Call) -> Step:
    require_independent_steps(call.x, "pools")
    x = call.x
    p, c = _positions(x), x.channels
    means = x.means.reshape(-1, c).mean(axis=0)
    variances = x.variances.reshape(-1, c).mean(axis=0) / p
    note = "fluctuations taken as uncorrelated over positions" if p > 1 else ""
    if x.positions is not None and len(x.shape) == 2:  # a sequence an attention averaged
        sd = np.sqrt(x.variances)  # (p, c): sum_ab R_ab sd_a sd_b per channel, over p^2
        variances = np.einsum("ab,ac,bc->c", x.positions, sd, sd) / (p * p)
        note = "over positions correlated by attention"
    out_shape = tuple(int(d or 1) for d in call.out_shapes[0][1:])
    out = make(means.reshape(out_shape), variances.reshape(out_shape))
    return Step(
        [out],
        lambda g: [np.broadcast_to(g[0].reshape(-1)[None, :] / (p * p), (p, c)).reshape(x.shape)],
        note=note,
    )


def global_max_pooling(call: Call) -> Step:
    require_independent_steps(call.x, "pools")
    x = call.x
    index = np.arange(_positions(x))[None, :]
    out_shape = tuple(int(d or 1) for d in call.out_shapes[0][1:])
    step, _ = maximum(x, index, out_shape)  # one window: every position
    return step
