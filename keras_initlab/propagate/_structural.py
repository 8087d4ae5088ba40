"""Layers that move, copy, pad or randomly drop elements.

* Flatten, Reshape, Permute: each element keeps its moments; the per-channel moments of the
  new last axis are those of the elements that land on it (``collapse``: their spread of
  means becomes variance), and the gradient maps back the same way. RepeatVector,
  Cropping, Identity, Masking, ActivityRegularization: unchanged.
* Dropout (rate ``p``) in training mode: ``E[y^2] = E[x^2] / (1 - p)`` per channel, the mean
  kept, ``Var(dx) = Var(dy) / (1 - p)``; GaussianDropout the same; GaussianNoise adds
  ``stddev^2``. All are the identity in inference.
* ZeroPadding: a fraction ``f = N_in / N_out`` of the output is the input, the rest zeros:
  ``means' = f means``, ``E'[y^2] = f E[x^2]``; gradients unchanged.
* UpSampling (nearest) copies each element ``r`` times: moments unchanged, ``Var(dx) = r
  Var(dy)``; bilinear UpSampling2D averages two neighbours per axis with weights
  ``(1 - t, t)``: the variances times ``q = prod mean((1 - t)^2 + t^2)``, the gradient
  times ``r q``.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_initlab.propagate._signal import Padded, Signal, collapse, make
from keras_initlab.propagate._step import Call, Step, elements, passthrough

L = keras.layers
UNCHANGED = (
    L.RepeatVector,
    L.Cropping1D,
    L.Cropping2D,
    L.Cropping3D,
    L.Identity,
    L.Masking,
    L.ActivityRegularization,
    L.InputLayer,
)
RELAYOUT = (L.Flatten, L.Reshape, L.Permute)
DROPOUT = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D)
PADDING = (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D)
UPSAMPLING = (L.UpSampling1D, L.UpSampling2D, L.UpSampling3D)
_MAX_ELEMENTS = 2**22  # per-sample elements above which a relayout averages channels


def unchanged(call: Call) -> Step:
    return passthrough(call.x)


def _move(array: np.ndarray, in_shape: tuple, out_shape: tuple, perm) -> np.ndarray:
    full = np.broadcast_to(array, in_shape)
    moved = np.transpose(full, perm) if perm is not None else full
    return moved.reshape(out_shape)


def relayout(call: Call) -> Step:
    layer, x = call.layer, call.x
    in_shape, out_shape = tuple(call.in_shapes[0][1:]), tuple(call.out_shapes[0][1:])
    known = all(d is not None for d in (*in_shape, *out_shape))
    if not known or math.prod(in_shape) > _MAX_ELEMENTS or in_shape[-1] != x.channels:
        out = Signal.uniform(x.mean, x.var, out_shape[-1])
        return Step([out], lambda g: [np.full(x.channels, float(np.mean(g[0])))])
    perm = None
    if isinstance(layer, L.Permute):
        perm = tuple(d - 1 for d in layer.dims)
    out = collapse(
        _move(x.means, in_shape, out_shape, perm),
        _move(x.variances, in_shape, out_shape, perm),
    )
    inverse = None if perm is None else tuple(np.argsort(perm))
    moved_shape = out_shape if perm is None else tuple(in_shape[p] for p in perm)

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        full = np.broadcast_to(g[0], out_shape).reshape(moved_shape)
        back = np.transpose(full, inverse) if inverse is not None else full
        return [back.reshape(-1, in_shape[-1]).mean(axis=0)]

    return Step([out], backward)


def dropout(call: Call) -> Step:
    x, rate = call.x, float(call.layer.rate)
    if not call.training or rate == 0.0:
        return passthrough(x)
    keep = 1.0 - rate
    out = make(x.means, x.seconds / keep - x.means**2)
    return Step([out], lambda g: [g[0] / keep])


def gaussian_dropout(call: Call) -> Step:
    return dropout(call)


def gaussian_noise(call: Call) -> Step:
    x = call.x
    if not call.training:
        return passthrough(x)
    stddev = float(call.layer.stddev)
    return passthrough(make(x.means, x.variances + stddev * stddev))


def zero_padding(call: Call) -> Step:
    x = call.x
    f = elements(call.in_shapes[0]) / elements(call.out_shapes[0])
    means = f * x.means
    padding = call.layer.padding
    pads = tuple(tuple(int(v) for v in p) for p in padding)
    if getattr(call.layer, "data_format", "channels_last") == "channels_first":
        sizes = tuple(call.in_shapes[0][2:])
    else:
        sizes = tuple(call.in_shapes[0][1:-1])
    padded = Padded(x, sizes, pads) if x.padded is None else None
    out = Signal(*_moments(means, f * x.seconds - means * means), padded=padded)
    return passthrough(out)


def _moments(means: np.ndarray, variances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = make(means, variances)
    return s.means, s.variances


def _bilinear_axis(factor: int) -> float:
    t = (np.arange(factor) + 0.5) / factor - 0.5
    t = t - np.floor(t)
    return float(np.mean((1.0 - t) ** 2 + t * t))


def upsampling(call: Call) -> Step:
    layer, x = call.layer, call.x
    copies = elements(call.out_shapes[0]) / elements(call.in_shapes[0])
    interpolation = getattr(layer, "interpolation", "nearest")
    if interpolation == "nearest":
        return passthrough(x, copies)
    if interpolation != "bilinear":
        raise NotImplementedError(f"interpolation {interpolation!r}")
    size = layer.size if isinstance(layer.size, tuple | list) else (layer.size,)
    q = math.prod(_bilinear_axis(int(s)) for s in size)
    return passthrough(make(x.means, x.variances * q), copies * q)
