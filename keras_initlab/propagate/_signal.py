"""The state propagated along every edge of the graph: a mean and a variance per element.

A tensor is described per sample: for every position and channel (the tensor's shape
without the batch axis) the mean and the variance of that element over samples, elements
taken as independent and, where a layer needs a distribution, Gaussian (mean field: Poole
et al. 2016; Schoenholz et al. 2017). Keeping positions and channels apart makes the rules
exact for the actual weights of one layer: a Dense layer maps them to ``means @ W + b`` and
``variances @ W**2``, a conv convolves the mean map with ``W`` and the variance map with
``W**2``, so a ReLU's mean (He et al. 2015), the spread of per-channel scales of a
depthwise kernel with 9 weights per channel and the zeros a ``same`` conv reads at the
border of a small map are carried instead of averaged away. Positions whose moments are
equal (the interior of a map) are computed once by the activation rules.

What a measurement over all elements reports is ``mean = mean(means)``, ``var =
var(means) + mean(variances)``: the first term is the fixed pattern over positions and
channels (global average pooling keeps its channel part; BatchNormalization in training mode
removes it), the second fluctuates from sample to sample.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np


@dataclass(frozen=True, eq=False)
class Source:
    """A tensor that is ``scale * f(z) + shift`` of a Gaussian pre-activation ``z``.

    Elementwise maps after an activation (BatchNormalization in inference mode, Rescaling,
    a depthwise kernel with one valid tap) keep it, so the next activation or max pool
    integrates over ``z`` itself rather than over a Gaussian stand-in for a rectified
    distribution. ``scale``/``shift`` None: 1 and 0 (arrays broadcast to the tensor).
    """

    activation: Any
    pre: Signal
    scale: np.ndarray | None = None
    shift: np.ndarray | None = None
    # Set by a max pool that reads this tensor: the derivative factor where its gradient
    # lands (the window maxima) over the factor at a random element.
    selection: list[np.ndarray] = field(default_factory=list)
    # The activation's own Source when this one was derived from it (affine maps, moves).
    origin: Source | None = None
    # Set on a root Source where a rectified residual stream reads it (`_paths`): ``[z,
    # generator]``, samples of the pre-activation ``z`` per path, shape ``(K, *shape)``
    # (float32), and the generator the stream draws its next blocks from.
    paths: list[Any] = field(default_factory=list)

    @property
    def root(self) -> Source:
        return self if self.origin is None else self.origin

    def affine(self, scale: np.ndarray, shift: np.ndarray) -> Source:
        old_scale = 1.0 if self.scale is None else self.scale
        old_shift = 0.0 if self.shift is None else self.shift
        return Source(
            self.activation,
            self.pre,
            scale * old_scale,
            scale * old_shift + shift,
            origin=self.root,
        )

    def apply(self, z: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """``scale * f(z) + shift`` for nodes ``z`` of shape (elements, nodes)."""
        y = self.activation.fn(z)
        if self.scale is not None:
            y = np.broadcast_to(self.scale, shape).reshape(-1)[:, None] * y
        if self.shift is not None:
            y = y + np.broadcast_to(self.shift, shape).reshape(-1)[:, None]
        return y

    @property
    def nondecreasing(self) -> bool:
        ok = self.scale is None or bool(np.all(self.scale >= 0))
        return ok and self.activation.is_nondecreasing()


@dataclass(frozen=True, eq=False)
class Blend:
    """A tensor that is ``source + e``: a function of a Gaussian (a ``Source``) plus an
    independent Gaussian ``e ~ N(mean, var)`` (arrays broadcast to the tensor).

    A residual sum is one: a rectified stream ``relu(z)`` plus a branch that is a sum of
    many terms. The sum is skewed, and an activation of it is not that of a Gaussian with
    its moments (ResNet50 in training mode: ``relu(relu(z) + e)`` has a variance 9% above
    the Gaussian stand-in's, at every block of the stream). The activation rules integrate
    over ``z`` and over ``e`` (`_moments.activation_moments`); every other rule reads the
    tensor as the Gaussian of its moments.
    """

    source: Source
    mean: np.ndarray
    var: np.ndarray
    # Set by the activation ``f`` that reads the sum: ``E[g'^2 f'^2] / (E[g'^2] E[f'^2])``
    # per element (``g`` the source's function), by which the sum's backward corrects the
    # gradient it passes to the source's summand; shared by the blend's affine copies.
    selection: list[np.ndarray] = field(default_factory=list)
    # Set (``[True]``) by an activation layer that reads the sum along its paths
    # (`_paths`): the sum's backward then passes each path's gradient to the source's
    # summand, instead of scaling it by ``selection``.
    paths: list[bool] = field(default_factory=list)

    def affine(self, scale: np.ndarray, shift: np.ndarray) -> Blend:
        """``scale * (source + e) + shift``: the scale goes into both parts, the shift
        into ``e``'s mean."""
        scale = np.asarray(scale, dtype=np.float64)
        return Blend(
            self.source.affine(scale, np.zeros(1)),
            scale * self.mean + shift,
            scale * scale * self.var,
            self.selection,
            self.paths,
        )


@dataclass(frozen=True, eq=False)
class Signal:
    """Per-element moments of one tensor (shape: the tensor's without the batch axis).

    Attributes:
        means: the mean of every element.
        variances: the variance of every element (over samples).
        source: a ``Source`` when the tensor is an elementwise function of a Gaussian
            pre-activation: activations and max pooling integrate over that (the maximum of
            a nondecreasing function is the function of the maximum).
        value: for an integer or boolean tensor (a mask, positions), its value, batch
            axis included, where the walk computes it (None: not known); such a tensor
            carries no activation (its moments are zeros).
        blend: a ``Blend`` when the tensor is a function of a Gaussian plus an independent
            Gaussian (a residual sum on a rectified stream); None with a ``source``.
        correlated_steps: whether the steps along the first axis are correlated with one
            another (a recurrent layer's sequence, a repeated vector, and what is computed
            from one): a recurrent layer, whose rule takes its input's steps as
            independent, cannot read it (the walk carries the flag to every output of an
            operation that reads such a tensor).
        pooled: on a max pool's output, ``(window, draws, root)``: each element is
            ``window`` (a ``Source`` per element: the activation, its pre-activation's
            moments, scale and shift) of the maximum of ``draws`` iid pre-activations, and
            ``root`` the activation's own ``Source`` (None: inputs taken as Gaussian), so
            that a max pool of it (a global max pool after a pool) takes the maximum of
            ``draws`` times its window and sets the derivative there.
        correlation: ``[R]`` where an attention layer's averages made the fluctuations of
            the positions along the first axis correlated (`_positions`): ``R`` is
            ``(n, n)``, shared by the elements of the other axes; empty: independent (read
            it as `positions`). Each tensor's own (``dataclasses.replace`` does not copy
            it): set on a new tensor by `with_positions` or by appending.
    """

    means: np.ndarray
    variances: np.ndarray
    source: Source | None = None
    value: np.ndarray | None = None
    blend: Blend | None = None
    correlated_steps: bool = False
    pooled: tuple[Source, int, Source | None] | None = None
    correlation: list[np.ndarray] = field(default_factory=list, init=False, repr=False)

    @staticmethod
    def uniform(mean: float, var: float, shape: tuple[int | None, ...]) -> Signal:
        dims = tuple(max(int(d or 1), 1) for d in shape) or (1,)
        return Signal(np.full(dims, float(mean)), np.full(dims, float(var)))

    @property
    def positions(self) -> np.ndarray | None:
        """The correlation between positions (`correlation`), or None: independent."""
        return self.correlation[0] if self.correlation else None

    def with_positions(self, r: np.ndarray | None) -> Signal:
        """A copy of this tensor whose positions have the correlation ``r`` (None:
        independent)."""
        copy = dataclasses.replace(self)
        if r is not None:
            copy.correlation.append(r)
        return copy

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.means.shape)

    @property
    def channels(self) -> int:
        return int(self.means.shape[-1])

    @property
    def mean(self) -> float:
        return float(self.means.mean())

    @property
    def between(self) -> float:
        """Variance over channels of the per-channel means (positions averaged)."""
        return float(self.means.reshape(-1, self.channels).mean(axis=0).var())

    @property
    def var(self) -> float:
        return float(self.means.var() + self.variances.mean())

    @property
    def second(self) -> float:
        """E[x^2] over all elements."""
        return float(np.mean(self.means**2 + self.variances))

    @property
    def seconds(self) -> np.ndarray:
        """Per-element E[x^2]."""
        return self.means**2 + self.variances

    def plain(self) -> Signal:
        """The same moments without a source or a blend."""
        return Signal(self.means, self.variances)

    @property
    def gaussian(self) -> bool:
        """Whether the tensor is read as a Gaussian: no source or blend, or a source that
        is an affine map of one."""
        signal = self
        while signal.blend is None:
            if signal.source is None:
                return True
            if signal.source.activation.closed != "linear":
                return False
            signal = signal.source.pre
        return False


def require_independent_steps(x: Signal, what: str) -> None:
    """Raise NotImplementedError (the layer is then assumed, with the reason) where the
    steps of ``x`` are correlated (`Signal.correlated_steps`): a rule that ``what`` (pools,
    or recurs over, the positions) takes them as independent, and a recurrent state's
    persistence makes the fluctuations of one unit alike from step to step (a bidirectional
    LSTM's sequence averaged over 12 steps measures several times the variance of 12
    independent steps)."""
    if x.correlated_steps:
        raise NotImplementedError(
            f"it {what} a tensor whose steps are correlated with one another (a recurrent "
            "layer's sequence, a repeated vector): the rule takes them as independent"
        )


def make(means: Any, variances: Any, source: Any = None) -> Signal:
    """A ``Signal`` from array-likes (variances clipped at 0, shapes broadcast)."""
    m = np.atleast_1d(np.asarray(means, dtype=np.float64))
    v = np.maximum(np.atleast_1d(np.asarray(variances, dtype=np.float64)), 0.0)
    m, v = np.broadcast_arrays(m, v)
    return Signal(np.array(m), np.array(v), source)


def index_signal(spec: Any, value: np.ndarray | None) -> Signal:
    """An integer or boolean tensor like ``spec`` (a KerasTensor): zero moments (it carries
    no activation) and its ``value`` where known (batch axis first)."""
    shape = value.shape[1:] if value is not None else tuple(spec.shape)[1:]
    return dataclasses.replace(Signal.uniform(0.0, 0.0, shape), value=value)


def input_signal(tensor: Any, shape: tuple, mean: float, var: float, batch: int | None) -> Signal:
    """A model input's moments; an integer or boolean input (token ids, a padding mask)
    also gets a value of ones (every position visible), which masks built from it read."""
    signal = Signal.uniform(mean, var, shape)
    if keras.backend.is_float_dtype(tensor.dtype):
        return signal
    value = np.ones(
        (batch or 1, *signal.shape), dtype=keras.backend.standardize_dtype(tensor.dtype)
    )
    return dataclasses.replace(signal, value=value)


def shapes_fit(inputs: Any, shapes: Any) -> bool:
    """Whether ``shapes`` give one shape per tensor of ``inputs``, without the batch axis: of
    its rank, positive sizes, equal to its known ones (`propagate`'s ``input_shapes``)."""
    own = [tuple(t.shape)[1:] for t in inputs]
    given = [tuple(shape) for shape in shapes] if isinstance(shapes, list | tuple) else []
    return len(given) == len(own) and all(
        len(shape) == len(known)
        and all(
            isinstance(d, int | np.integer) and not isinstance(d, bool) and d > 0 for d in shape
        )
        and all(k is None or k == d for k, d in zip(known, shape, strict=True))
        for shape, known in zip(given, own, strict=True)
    )
