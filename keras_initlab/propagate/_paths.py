"""The paths of a rectified residual stream: samples that keep each element's history.

A stream ``x_k = relu(x_{k-1} + b_k)`` (a ResNet's blocks: the skip plus a branch end
``b_k`` independent of it) passes an element's gradient back through the ReLU derivatives
``1[x_{k-1} + b_k > 0]`` of every block it crosses, and these are not independent: an
element the ReLU passes at one block it mostly passes again at the next. The mean-field
factor ``E[f'^2]`` per block, corrected for two consecutive blocks (``Blend.selection``),
leaves the input's gradient of six blocks of width 256 6% low (17% without the weighting
of `for_rule`, the paths 2%: ``tests/propagate``). The stream's forward law drifts too
(`along`), and with both: the training-mode gradient of InceptionResNetV2 5.46x -> 2.21x
off (median, 20 probes), ResNet101's 1.88x -> 1.12x, ResNet152's 1.79x -> 1.21x
(``benchmarks/README.md``).

Along its paths the walk keeps ``K`` samples of every element's pre-activation, block after
block: ``z_k = scale f(z_{k-1}) + shift + e_k``, ``e_k`` a fresh draw of the Gaussian the
sum adds (the branch, `_signal.Blend`), so that the derivatives at all the blocks are those
of one path. The backward pass carries each path's gradient variance along the stream, as
arrays of shape ``(K, *shape)``: an activation layer multiplies each path by its own
``f'(z)^2``, the sum passes each path to the stream's summand, and every other rule reads
the mean over the paths (the branch, which mixes elements), weighted by the derivatives of
its output's own function where that output is the stream (`for_rule`: a Dense layer's
ReLU, the ReLUs below a concatenation or a max pool that the stream starts from).
`PathGradients` marks the arrays that hold paths. The forward moments are the integrals
of `_moments` per element, rescaled so that their averages over the tensor are the paths'
(`along`): the integrals take the stream one block back as a function of a Gaussian, the
paths its whole history.

``K`` is `PATH_ELEMENTS` over the tensor's size, within [`MIN_PATHS`, `MAX_PATHS`] (an
element's factor then has a sampling error of about ``1/sqrt(K)``, which the rows average
over their elements); the paths are kept in float32 until the backward pass (4 MB a
tensor at most: ResNet152's 50 blocks hold about 200 MB), and drawn in float64 from a
seeded generator (`SEED`, one per stream), so a walk gives the same numbers every time.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from keras_initlab.propagate._signal import Blend, Signal, Source

PATH_ELEMENTS = 2**20  # paths times elements of one tensor, at most (4 MB in float32)
MIN_PATHS, MAX_PATHS = 16, 256
SEED = 0


def count(shape: tuple[int, ...]) -> int:
    """``K`` for a tensor of ``shape`` (without the batch axis).

    Example:
    >>> count((2, 2, 1024)), count((56, 56, 256))
    (256, 16)
    >>> count((8, 8, 256))
    64
    """
    return int(min(MAX_PATHS, max(MIN_PATHS, PATH_ELEMENTS // max(math.prod(shape), 1))))


def values(source: Source) -> tuple[np.ndarray, np.random.Generator] | None:
    """``scale f(z) + shift`` of ``source`` on each path (``(K, *shape)``) and the stream's
    generator; the root's paths are drawn from its Gaussian pre-activation where it has
    none (the first ReLU of a stream, or a Gaussian stand-in: a max pool's, a concatenation
    of ReLUs'). None where its elements moved from the root's (a crop, a pad): the walk
    then reads the sum with the pairwise correction of ``Blend.selection``."""
    root = source.root
    if source.pre is not root.pre:
        return None
    if not root.paths:
        rng = np.random.default_rng(SEED)
        pre = root.pre
        noise = rng.standard_normal((count(pre.shape), *pre.shape))
        root.paths[:] = [(pre.means + np.sqrt(pre.variances) * noise).astype(np.float32), rng]
    z, rng = root.paths
    y = root.activation.fn(z)
    if source.scale is not None:
        y = source.scale * y
    if source.shift is not None:
        y = y + source.shift
    return y, rng


def read(blend: Blend, into: Source) -> None:
    """Record on ``into``, the Source of the activation that reads ``blend``, the paths of
    its pre-activation: each path of the blend's source plus a fresh draw of its Gaussian;
    the blend then passes its gradient along them (``Blend.paths``); nothing where its
    source has no paths (`values`)."""
    found = values(blend.source)
    if found is None:
        return
    y, rng = found
    z = y + blend.mean + np.sqrt(blend.var) * rng.standard_normal(y.shape)
    into.paths[:] = [z.astype(np.float32), rng]  # kept until the backward pass
    blend.paths[:] = [True]


def along(blend: Blend, out: Signal) -> Signal:
    """``out``, the activation of ``blend`` the rules integrated, with its paths read
    (`read`) and its moments from them: the means and the second moments rescaled so that
    their averages over the tensor are those of ``f(z)`` over every path and element.

    The rules integrate the sum as ``f(scale g(z) + shift + e)`` with ``z`` Gaussian: the
    stream one block back is a function of a Gaussian, but further back it is not (``z``
    is itself a rectified stream plus a branch), and along a long stream whose branches
    are small beside it the error grows: ResNet101 in training mode (each branch a unit
    variance BatchNormalization output) at ``conv4_block22_out``, 22 blocks along one
    stream, variance 7.51 predicted against 8.22 measured (16 x 8 probes; a plain
    Gaussian of the sum's moments: 5.14). The paths carry the whole history, so their
    moments are the stream's (8.20 in a scalar simulation of the same recursion). The
    element pattern of the integrals is kept (borders, channels): only their averages
    move, so the paths' sampling error (about ``1/sqrt(K)`` per element) does not enter
    the moments, only that of their average over ``K`` times the tensor's elements
    (``2^20`` samples for 4,096 to 65,536 elements, ``256`` an element below).
    """
    source = out.source
    if source is None:
        return out
    read(blend, source)
    if not source.paths:
        return out
    y = source.activation.fn(source.paths[0].astype(np.float64))
    seconds = out.means * out.means + out.variances
    mean, second = float(np.mean(out.means)), float(np.mean(seconds))
    if not (second > 0.0 and np.isfinite(second)):
        return out
    # a mean near 0 beside the spread (an activation with a negative side) keeps its own
    means = out.means * (float(np.mean(y)) / mean) if abs(mean) > 1e-9 * second**0.5 else out.means
    seconds = seconds * (float(np.mean(y * y)) / second)
    return replace(out, means=means, variances=np.maximum(seconds - means * means, 0.0))


class PathGradients(np.ndarray):
    """Gradient variances per path of a stream: the first axis is the paths, the rest the
    tensor's shape. NumPy's arithmetic keeps the type, so the walk's sums and a rule's
    factors carry it; `averaged` gives what every other rule reads."""


def _derivatives(source: Source | None) -> np.ndarray | None:
    """``f'(z)^2`` on each path of ``source``'s root (``(K, *shape)``), where the source has
    the root's elements and the root has paths; else None."""
    if source is None:
        return None
    root = source.root
    if source.pre is not root.pre or not root.paths:
        return None
    return root.activation.derivative(root.paths[0].astype(np.float64)) ** 2


def factor(out: Signal, d2: np.ndarray) -> np.ndarray:
    """The backward factor of an activation whose output is ``out``: ``f'(z)^2`` on each
    path (`PathGradients`) where a stream reads the output along its paths, else ``d2``
    (a max pool's correction of ``d2``, ``Source.selection``, is not applied on paths)."""
    d = _derivatives(out.source)
    return d2 if d is None else d.view(PathGradients)


def for_rule(g: np.ndarray, out: Signal) -> np.ndarray:
    """The gradient a rule that does not follow paths receives for its output ``out``:
    ``E[g f'(z)^2] / E[f'(z)^2]`` over the paths, ``f`` and ``z`` the function and paths of
    ``out``'s source, so that the rule's own factor ``E[f'^2]`` (a Dense layer's ReLU, the
    ReLUs below a concatenation or a max pool) gives ``E[g f'^2]``, the correlation of the
    stream's derivatives with its own kept; the mean where ``out`` has no paths (or the
    factor is 0 on every path)."""
    if not pathwise(g):
        return g
    g = np.asarray(g)
    mean = g.mean(axis=0)
    d = _derivatives(out.source)
    if d is None:
        return mean
    weight = d.mean(axis=0)
    return np.where(weight > 0, (g * d).mean(axis=0) / np.where(weight > 0, weight, 1.0), mean)


def pathwise(g: np.ndarray) -> bool:
    """Whether ``g`` holds a gradient per path (`PathGradients`)."""
    return isinstance(g, PathGradients)


def averaged(g: np.ndarray) -> np.ndarray:
    """``g`` averaged over its paths, where it has them."""
    return np.asarray(g).mean(axis=0) if pathwise(g) else g
