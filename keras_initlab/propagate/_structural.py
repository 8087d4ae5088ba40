"""Layers that move, copy, pad, crop or randomly drop elements: exact per element.

* Flatten, Reshape, Permute, RepeatVector, Cropping, ZeroPadding (zeros: mean 0, variance
  0), UpSampling (nearest: copies): the per-element moments move with the elements; the
  gradient moves back (a copied element receives the sum of its copies' gradients).
  Identity, Masking, ActivityRegularization: unchanged.
* Bilinear UpSampling2D averages two neighbours per axis with weights ``(1 - t, t)``: the
  variances times ``q = prod mean((1 - t)^2 + t^2)`` (borders as the interior).
* Dropout (rate ``p``) in training mode: ``E[y^2] = E[x^2] / (1 - p)``, the mean kept,
  ``Var(dx) = Var(dy) / (1 - p)``; GaussianDropout the same; GaussianNoise adds
  ``stddev^2``. AlphaDropout (Klambauer et al. 2017) sets a dropped element to SELU's
  saturation value ``alpha' = -scale alpha`` and maps ``a (x m + alpha' (1 - m)) + b``, ``m``
  kept with ``q = 1 - p``, ``a = (q (1 + p alpha'^2))^(-1/2)``, ``b = -a alpha' p``: ``E[y] =
  a (q E[x] + alpha' p) + b``, ``E[y^2] = a^2 (q E[x^2] + alpha'^2 p) + 2 a b (q E[x] +
  alpha' p) + b^2``, ``Var(dx) = a^2 q Var(dy)`` (zero mean, unit variance kept for
  SELU-normalized inputs). All are the identity in inference.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from keras_initlab.model.layers import PERMUTE
from keras_initlab.propagate._signal import Signal, Source, make
from keras_initlab.propagate._step import Call, Step, passthrough


def unchanged(call: Call) -> Step:
    return passthrough(call.x)


def _out_shape(call: Call) -> tuple[int, ...]:
    shape = call.out_shapes[0][1:]
    if any(d is None for d in shape):
        raise NotImplementedError("unknown output shape")
    return tuple(int(d) for d in shape)  # type: ignore[arg-type]


def moved(x: Signal, forward: Any) -> Signal:
    """``x`` with its elements moved by ``forward`` (a map of arrays of ``x``'s shape); the
    elements keep being f(z) of their own z (the source moves with them, and z's own)."""
    source = None
    if x.source is not None:
        src = x.source

        def move(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else forward(np.broadcast_to(a, x.shape))

        pre = moved(src.pre, forward)
        source = Source(src.activation, pre, move(src.scale), move(src.shift), origin=src.root)
    return make(forward(x.means), forward(x.variances), source)


def _moved(call: Call, forward: Any, backward: Any) -> Step:
    """Moments and gradients moved by ``forward`` (arrays of the input shape) and back."""
    return Step([moved(call.x, forward)], lambda g: [backward(g[0])])


def relayout(call: Call) -> Step:
    layer, x = call.layer, call.x
    out_shape = _out_shape(call)
    if isinstance(layer, PERMUTE):
        perm = tuple(d - 1 for d in layer.dims)
        inverse = tuple(int(i) for i in np.argsort(perm))
        return _moved(call, lambda a: np.transpose(a, perm), lambda g: np.transpose(g, inverse))
    return _moved(call, lambda a: a.reshape(out_shape), lambda g: g.reshape(x.shape))


def repeat_vector(call: Call) -> Step:
    n = int(call.layer.n)
    out = moved(call.x, lambda a: np.repeat(a[None, :], n, axis=0))
    # every step the same value: as correlated as steps can be
    return Step([dataclasses.replace(out, correlated_steps=True)], lambda g: [g[0].sum(axis=0)])


def _pairs(value: Any, rank: int) -> list[tuple[int, int]]:
    if isinstance(value, int):
        return [(value, value)] * rank
    pairs = []
    for v in value:
        pairs.append((int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1])))
    return pairs


def _check_last(call: Call) -> None:
    if getattr(call.layer, "data_format", "channels_last") == "channels_first":
        raise NotImplementedError("channels_first")


def zero_padding(call: Call) -> Step:
    _check_last(call)
    x = call.x
    pads = [*_pairs(call.layer.padding, len(x.shape) - 1), (0, 0)]
    crop = tuple(slice(a, n + a) for (a, _), n in zip(pads, x.shape, strict=True))
    return _moved(call, lambda a: np.pad(a, pads), lambda g: g[crop])


def cropping(call: Call) -> Step:
    _check_last(call)
    x = call.x
    cuts = [*_pairs(call.layer.cropping, len(x.shape) - 1), (0, 0)]
    keep = tuple(slice(a, n - b) for (a, b), n in zip(cuts, x.shape, strict=True))
    return _moved(call, lambda a: a[keep], lambda g: np.pad(g, cuts))


def _bilinear_axis(factor: int) -> float:
    t = (np.arange(factor) + 0.5) / factor - 0.5
    t = t - np.floor(t)
    return float(np.mean((1.0 - t) ** 2 + t * t))


def upsampling(call: Call) -> Step:
    _check_last(call)
    layer, x = call.layer, call.x
    size = layer.size if isinstance(layer.size, tuple | list) else (layer.size,)
    size = tuple(int(s) for s in size)
    interpolation = getattr(layer, "interpolation", "nearest")
    if interpolation not in ("nearest", "bilinear"):
        raise NotImplementedError(f"interpolation {interpolation!r}")
    q = 1.0 if interpolation == "nearest" else math.prod(_bilinear_axis(s) for s in size)

    def up(a: np.ndarray) -> np.ndarray:
        for axis, s in enumerate(size):
            a = np.repeat(a, s, axis=axis)
        return a

    def down(g: np.ndarray) -> np.ndarray:
        for axis, s in enumerate(size):
            shape = g.shape
            g = g.reshape(*shape[:axis], shape[axis] // s, s, *shape[axis + 1 :]).sum(axis + 1)
        return g * q

    out = make(up(x.means), up(x.variances) * q)
    return Step([out], lambda g: [down(g[0])])


def dropped(x: Signal, rate: float, training: bool) -> Step:
    """Elements (or samples) dropped at ``rate``, the kept ones divided by ``1 - rate``."""
    if not training or rate == 0.0:
        return passthrough(x)
    keep = 1.0 - rate
    out = make(x.means, x.seconds / keep - x.means**2)
    return Step([out], lambda g: [g[0] / keep])


# SELU's constants, as Keras' AlphaDropout has them
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def alpha_dropout(call: Call) -> Step:
    """AlphaDropout (module docstring): the identity in inference."""
    x, rate = call.x, float(call.layer.rate)
    if not call.training or rate == 0.0:
        return passthrough(x)
    keep, alpha = 1.0 - rate, -_SELU_ALPHA * _SELU_SCALE
    a = (keep * (1.0 + rate * alpha * alpha)) ** -0.5
    b = -a * alpha * rate
    first = keep * x.means + alpha * rate  # E[x m + alpha' (1 - m)]
    second = keep * x.seconds + alpha * alpha * rate
    mean = a * first + b
    out = make(mean, a * a * second + 2.0 * a * b * first + b * b - mean * mean)
    return Step([out], lambda g: [g[0] * (a * a * keep)])


def dropout(call: Call) -> Step:
    return dropped(call.x, float(call.layer.rate), call.training)


def gaussian_dropout(call: Call) -> Step:
    return dropout(call)


def gaussian_noise(call: Call) -> Step:
    x = call.x
    if not call.training:
        return passthrough(x)
    stddev = float(call.layer.stddev)
    return passthrough(make(x.means, x.variances + stddev * stddev))
