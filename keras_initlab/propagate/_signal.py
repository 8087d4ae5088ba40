"""The state propagated along every edge of the graph: per channel, a mean and a variance.

A tensor's elements are modelled channel by channel (channel = last axis): element
``x[n, p, c]`` has mean ``means[c]`` and variance ``variances[c]``, the same at every
position, independent across channels and positions, Gaussian where a layer needs a
distribution (mean field: Poole et al. 2016; Schoenholz et al. 2017). Keeping channels apart
is what makes the rules exact for the actual weights of one layer: a Dense layer maps them
to ``means @ W + b`` and ``variances @ W**2``, so the mean a ReLU leaves (He et al. 2015)
and the spread of per-channel scales of a depthwise kernel with 9 weights per channel are
carried instead of averaged away.

What a measurement over all elements reports is ``mean = mean_c(means)``, ``var =
var_c(means) + mean_c(variances)``: the first term (``between``) is the fixed per-channel
offset, which global average pooling keeps and BatchNormalization in training mode removes;
the second (``within``) fluctuates and is what pooling averages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Source:
    """A tensor that is ``scale_c * f(z_c) + shift_c`` of a Gaussian pre-activation ``z``.

    Elementwise maps after an activation (BatchNormalization in inference mode, Rescaling,
    a depthwise kernel with one valid tap) keep it, so the next activation or max pool
    integrates over ``z`` itself rather than over a Gaussian stand-in for a rectified
    distribution. ``scale``/``shift`` None: 1 and 0.
    """

    activation: Any
    pre: Signal
    scale: np.ndarray | None = None
    shift: np.ndarray | None = None
    # Set by a max pool that reads this tensor: the derivative factor where its gradient
    # lands (the window maxima) over the factor at a random position, per channel.
    selection: list[np.ndarray] = field(default_factory=list)

    def affine(self, scale: np.ndarray, shift: np.ndarray) -> Source:
        old_scale = 1.0 if self.scale is None else self.scale
        old_shift = 0.0 if self.shift is None else self.shift
        return Source(self.activation, self.pre, scale * old_scale, scale * old_shift + shift)

    def apply(self, z: np.ndarray) -> np.ndarray:
        """``scale * f(z) + shift`` for nodes ``z`` of shape (channels, nodes)."""
        y = self.activation.fn(z)
        if self.scale is not None:
            y = self.scale[:, None] * y
        if self.shift is not None:
            y = y + self.shift[:, None]
        return y

    @property
    def nondecreasing(self) -> bool:
        ok = self.scale is None or bool(np.all(self.scale >= 0))
        return ok and self.activation.is_nondecreasing()


@dataclass(frozen=True, eq=False)
class Padded:
    """The output of a ZeroPadding layer: the real inputs, their spatial size and the zeros
    added per axis. A conv or max pool reading it counts the zeros as outside the map
    (their window geometry), instead of as diluted inputs."""

    original: Signal
    sizes: tuple[int | None, ...]
    pads: tuple[tuple[int, int], ...]


@dataclass(frozen=True, eq=False)
class Signal:
    """Per-channel moments of one tensor.

    Attributes:
        means: per-channel means, shape ``(channels,)``.
        variances: per-channel variances (over samples and positions).
        padded: a ``Padded`` when the tensor is a ZeroPadding layer's output.
        source: a ``Source`` when the tensor is an elementwise function of a Gaussian
            pre-activation: activations and max pooling integrate over that (the maximum
            of a nondecreasing function is the function of the maximum).
    """

    means: np.ndarray
    variances: np.ndarray
    source: Source | None = None
    padded: Padded | None = None

    @staticmethod
    def uniform(mean: float, var: float, channels: int | None) -> Signal:
        n = max(int(channels or 1), 1)
        return Signal(np.full(n, float(mean)), np.full(n, float(var)))

    @property
    def channels(self) -> int:
        return int(self.means.size)

    @property
    def mean(self) -> float:
        return float(self.means.mean())

    @property
    def between(self) -> float:
        return float(self.means.var())

    @property
    def within(self) -> float:
        return float(self.variances.mean())

    @property
    def var(self) -> float:
        return self.between + self.within

    @property
    def second(self) -> float:
        """E[x^2] over all elements."""
        return float(np.mean(self.means**2 + self.variances))

    @property
    def seconds(self) -> np.ndarray:
        """Per-channel E[x^2]."""
        return self.means**2 + self.variances

    def plain(self) -> Signal:
        """The same moments without a source."""
        return Signal(self.means, self.variances)


def make(means: Any, variances: Any, source: Any = None) -> Signal:
    """A ``Signal`` from array-likes (variances clipped at 0)."""
    m = np.atleast_1d(np.asarray(means, dtype=np.float64))
    v = np.maximum(np.atleast_1d(np.asarray(variances, dtype=np.float64)), 0.0)
    m, v = np.broadcast_arrays(m, v)
    return Signal(np.array(m), np.array(v), source)


def collapse(means: np.ndarray, variances: np.ndarray) -> Signal:
    """Per-last-axis moments of a tensor given per-element ones (shape ``(..., C)``): the
    other axes become positions, their spread of means joins the variance."""
    c = means.shape[-1] if means.ndim else 1
    m = means.reshape(-1, c)
    v = np.broadcast_to(variances, means.shape).reshape(-1, c)
    return make(m.mean(axis=0), v.mean(axis=0) + m.var(axis=0))
