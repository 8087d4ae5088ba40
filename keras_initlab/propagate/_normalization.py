"""BatchNormalization, LayerNormalization (RMS, Group), Normalization and Rescaling.

* Per-channel affine maps ``y_c = s_c x_c + t_c`` are exact per channel: ``means' = s
  means + t``, ``variances' = s^2 variances``, ``Var(dx_c) = s_c^2 Var(dy_c)``.
  BatchNormalization in inference mode is one, with ``s = gamma / sqrt(moving_var + eps)``,
  ``t = beta - s moving_mean``; so are Normalization and Rescaling.
* BatchNormalization in training mode standardizes each channel with its batch statistics:
  ``means' = beta``, ``variances' = gamma^2 v / (v + eps)``, ``Var(dx) = gamma^2 Var(dy) /
  (v + eps)`` (the projections onto the batch mean and direction are O(1/batch)).
* LayerNormalization standardizes each position over its ``d`` features; their spread at a
  position is ``S = var_c(means) + mean_c(variances)`` (the channel offsets vary across
  features and are kept): ``means'_c = gamma_c (means_c - mean) / sqrt(S + eps) + beta_c``,
  ``variances'_c = gamma_c^2 variances_c / (S + eps)``. Backward the two projections (mean,
  direction) remove 2 of ``d`` degrees of freedom and ``1/sigma^2`` of ``d`` iid features
  has mean ``d / ((d - 3) S)``: ``Var(dx_c) = gamma_c^2 (d - 2) / ((d - 3)(S + eps))
  Var(dy_c)`` (Ba et al. 2016). Both modes are the same.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from keras_initlab.propagate._signal import Signal, make
from keras_initlab.propagate._step import Call, Step

L = keras.layers


def _values(variable: Any, default: float, channels: int) -> np.ndarray:
    if variable is None:
        return np.full(channels, default)
    v = np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64).ravel()
    return (
        np.broadcast_to(v, (channels,))
        if v.size in (1, channels)
        else np.full(channels, float(v.mean()))
    )


def channel_affine(x: Signal, scale: np.ndarray, shift: np.ndarray) -> Step:
    """``scale_c x_c + shift_c`` and its backward ``scale_c^2``."""
    s2 = scale * scale
    source = None if x.source is None else x.source.affine(scale, shift)
    out = make(scale * x.means + shift, s2 * x.variances, source)
    return Step([out], lambda g: [g[0] * s2])


def batch_normalization(call: Call) -> Step:
    layer, x = call.layer, call.x
    c = x.channels
    gamma, beta = _values(layer.gamma, 1.0, c), _values(layer.beta, 0.0, c)
    if call.training:
        denominator = x.variances + layer.epsilon
        factor = gamma * gamma / denominator
        out = make(beta, factor * x.variances)
        return Step([out], lambda g: [g[0] * factor], note="batch statistics")
    scale = gamma / np.sqrt(_values(layer.moving_variance, 1.0, c) + layer.epsilon)
    shift = beta - scale * _values(layer.moving_mean, 0.0, c)
    step = channel_affine(x, scale, shift)
    return Step(step.outputs, step.backward, note="moving statistics")


def _normalized_size(call: Call, axes: Any) -> int:
    shape = call.in_shapes[0]
    axes = [axes] if isinstance(axes, int) else list(axes)
    return math.prod(int(shape[a] or 1) for a in axes)


def _standardize(x: Signal, gamma, beta, d: int, eps: float, centre: bool) -> Step:
    if centre:
        spread = x.var + eps
        means = gamma * (x.means - x.mean) / math.sqrt(spread) + beta
    else:
        spread = x.second + eps
        means = gamma * x.means / math.sqrt(spread) + beta
    factor = gamma * gamma / spread
    out = make(means, factor * x.variances)
    back = factor * ((d - 2) / (d - 3) if centre and d > 3 else 1.0)
    return Step([out], lambda g: [g[0] * back])


def layer_normalization(call: Call) -> Step:
    layer, x = call.layer, call.x
    c = x.channels
    gamma = _values(getattr(layer, "gamma", None), 1.0, c)
    beta = _values(getattr(layer, "beta", None), 0.0, c)
    d = _normalized_size(call, getattr(layer, "axis", -1))
    rms = bool(getattr(layer, "rms_scaling", False)) or isinstance(layer, L.RMSNormalization)
    return _standardize(x, gamma, beta, d, layer.epsilon, centre=not rms)


def group_normalization(call: Call) -> Step:
    """Each group of channels standardized over its positions and channels."""
    layer, x = call.layer, call.x
    c, groups = x.channels, int(layer.groups)
    gamma = _values(getattr(layer, "gamma", None), 1.0, c)
    beta = _values(getattr(layer, "beta", None), 0.0, c)
    size = c // groups
    steps = [
        _standardize(
            make(x.means[k * size : (k + 1) * size], x.variances[k * size : (k + 1) * size]),
            gamma[k * size : (k + 1) * size],
            beta[k * size : (k + 1) * size],
            10**9,  # many positions: the projections are negligible
            layer.epsilon,
            centre=True,
        )
        for k in range(groups)
    ]
    out = make(
        np.concatenate([s.outputs[0].means for s in steps]),
        np.concatenate([s.outputs[0].variances for s in steps]),
    )

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        parts = [s.backward([g[0][k * size : (k + 1) * size]])[0] for k, s in enumerate(steps)]
        return [np.concatenate(parts)]

    return Step([out], backward)


def normalization(call: Call) -> Step:
    """keras.layers.Normalization: ``(x - mean) / max(sqrt(variance), eps)`` per channel."""
    layer, c = call.layer, call.x.channels
    mean, var = _values(layer.mean, 0.0, c), _values(layer.variance, 1.0, c)
    if getattr(layer, "invert", False):
        return channel_affine(call.x, np.sqrt(var), mean)
    scale = 1.0 / np.maximum(np.sqrt(var), keras.config.epsilon())
    return channel_affine(call.x, scale, -mean * scale)


def rescaling(call: Call) -> Step:
    c = call.x.channels
    scale = np.broadcast_to(np.asarray(call.layer.scale, dtype=np.float64).ravel(), (c,))
    offset = np.broadcast_to(np.asarray(call.layer.offset, dtype=np.float64).ravel(), (c,))
    return channel_affine(call.x, scale, offset)
