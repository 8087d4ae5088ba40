"""BatchNormalization, LayerNormalization (RMS, Group), Normalization and Rescaling.

* Per-channel affine maps ``y = s_c x + t_c`` are exact element by element: ``means' = s
  means + t``, ``variances' = s^2 variances``, ``Var(dx) = s_c^2 Var(dy)``.
  BatchNormalization in inference mode is one, with ``s = gamma / sqrt(moving_var + eps)``,
  ``t = beta - s moving_mean`` (at initialization the identity: nothing resets the scale);
  so are Normalization and Rescaling.
* BatchNormalization in training mode standardizes each channel with its batch statistics
  (mean ``mu_c`` and variance ``v_c`` over samples and positions, fixed pattern included):
  ``means' = gamma (means - mu_c) / sqrt(v_c + eps) + beta``, ``variances' = gamma^2
  variances / (v_c + eps)``, the same factor backward times `small_batch_factor` (the
  spread of the batch variance and the two projections, for a known batch size).
* LayerNormalization standardizes each position over its ``d`` features, whose spread
  there is ``S = var_c(means) + mean_c(variances)``: ``means' = gamma (means - mean) /
  sqrt(S) + beta``, ``variances' = gamma^2 variances / S * (1 - eps d / ((d - 3) S))`` (the
  mean of ``1/sigma^2`` over ``d`` iid features is ``d / ((d - 3) S)``). Backward the two
  projections (mean, direction) remove 2 of ``d`` degrees of freedom: ``Var(dx) = gamma^2
  (d - 2) / ((d - 3) S) Var(dy)`` (Ba et al. 2016); exact for Gaussian features. Both modes
  are the same. RMS scaling divides by ``sqrt(E[x^2] + eps)`` and keeps the mean.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

from keras_initlab.model.layers import RMS_NORMALIZATION
from keras_initlab.propagate._kernels import kernel
from keras_initlab.propagate._signal import Signal, make
from keras_initlab.propagate._step import Call, Step


def _values(variable: Any, default: float, channels: int) -> np.ndarray:
    if variable is None:
        return np.full(channels, default)
    v = kernel(variable).ravel()
    if v.size in (1, channels):
        return np.broadcast_to(v, (channels,))
    return np.full(channels, float(v.mean()))


def channel_affine(x: Signal, scale: np.ndarray, shift: np.ndarray) -> Step:
    """``scale_c x + shift_c`` and its backward ``scale_c^2``."""
    s2 = scale * scale
    source = None if x.source is None else x.source.affine(scale, shift)
    out = make(scale * x.means + shift, s2 * x.variances, source)
    if x.blend is not None:
        out = dataclasses.replace(out, blend=x.blend.affine(scale, shift))
    return Step([out], lambda g: [g[0] * s2])


def _channel_stats(x: Signal) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance over samples and positions."""
    m = x.means.reshape(-1, x.channels)
    v = x.variances.reshape(-1, x.channels)
    return m.mean(axis=0), v.mean(axis=0) + m.var(axis=0)


def small_batch_factor(batch: int | None, positions: int) -> float:
    """Training-mode BatchNormalization's backward factor beyond ``gamma^2 / sigma^2``.

    Each channel is standardized over its ``n = batch * positions`` values with their own
    mean and biased variance ``v``; for Gaussian values ``E[1 / v] = n / ((n - 3) sigma^2)``,
    and the backward ``dx = (g - mean(g) - x_hat mean(g x_hat)) / sqrt(v)`` removes 2 of the
    ``n`` directions of the gradient ``g``, a share ``(n - 2) / n`` left for ``g`` isotropic
    over the channel's values. Together: ``(n - 2) / (n - 3)``, 1.08 at ``n = 16`` (a 1x1
    map, batch 16) and 1 in the limit (``batch`` None). Raises NotImplementedError for
    ``n <= 3`` (the expectation diverges).

    Example:
    >>> round(small_batch_factor(16, 1), 4), small_batch_factor(None, 1)
    (1.0769, 1.0)
    """
    if batch is None:
        return 1.0
    n = batch * positions
    if n <= 3:
        raise NotImplementedError(f"batch statistics over {n} values per channel")
    return (n - 2) / (n - 3)


def batch_normalization(call: Call) -> Step:
    layer, x = call.layer, call.x
    c = x.channels
    gamma, beta = _values(layer.gamma, 1.0, c), _values(layer.beta, 0.0, c)
    if call.training:
        mu, var = _channel_stats(x)
        scale = gamma / np.sqrt(var + layer.epsilon)
        out = make(scale * (x.means - mu) + beta, scale * scale * x.variances)
        if x.blend is not None:
            out = dataclasses.replace(out, blend=x.blend.affine(scale, beta - scale * mu))
        back = scale * scale * small_batch_factor(call.batch, x.means.size // c)
        note = "batch statistics" + ("" if call.batch else " (batch size not given: many)")
        return Step([out], lambda g: [g[0] * back], note=note)
    scale = gamma / np.sqrt(_values(layer.moving_variance, 1.0, c) + layer.epsilon)
    shift = beta - scale * _values(layer.moving_mean, 0.0, c)
    step = channel_affine(x, scale, shift)
    return Step(step.outputs, step.backward, note="moving statistics")


def _standardize(x: Signal, gamma, beta, eps: float, centre: bool) -> Step:
    """Each position standardized over its last axis (``d`` features)."""
    d = x.channels
    if centre:
        spread = x.means.var(axis=-1, keepdims=True) + x.variances.mean(axis=-1, keepdims=True)
        means = gamma * (x.means - x.means.mean(axis=-1, keepdims=True)) / np.sqrt(spread + eps)
    else:
        spread = (x.means**2 + x.variances).mean(axis=-1, keepdims=True)
        means = gamma * x.means / np.sqrt(spread + eps)
    if centre and d > 3:
        # The output's mean square is E[s^2 / (s^2 + eps)] / S per unit of input variance,
        # s^2 the sample variance of d iid features, E[1/s^2] = d / ((d - 3) S); taken as
        # 1 / (1 + eps E[1/s^2]): exact to first order in eps / S and, unlike that first
        # order, never negative, and S / eps-like where eps dominates (a stream of variance
        # 4e-4, an N(0, 0.02) embedding, into Keras' LayerNormalization, epsilon 1e-3).
        safe = np.maximum(spread, 1e-30)
        factor = gamma * gamma * (d - 3) / ((d - 3) * safe + eps * d)
    else:
        factor = gamma * gamma / (spread + eps)
    out = make(means + beta, factor * x.variances)
    back = factor * ((d - 2) / (d - 3) if centre and d > 3 else 1.0)
    return Step([out], lambda g: [g[0] * back])


def layer_normalization(call: Call) -> Step:
    layer, x = call.layer, call.x
    c = x.channels
    axis = getattr(layer, "axis", -1)
    axes = [axis] if isinstance(axis, int) else list(axis)
    if [a % len(call.in_shapes[0]) for a in axes] != [len(call.in_shapes[0]) - 1]:
        raise NotImplementedError(f"axis {axis}")
    gamma = _values(getattr(layer, "gamma", None), 1.0, c)
    beta = _values(getattr(layer, "beta", None), 0.0, c)
    rms = bool(getattr(layer, "rms_scaling", False)) or isinstance(layer, RMS_NORMALIZATION)
    return _standardize(x, gamma, beta, layer.epsilon, centre=not rms)


def group_normalization(call: Call) -> Step:
    """Each group of channels standardized over its positions and channels."""
    layer, x = call.layer, call.x
    c, groups = x.channels, int(layer.groups)
    gamma = _values(getattr(layer, "gamma", None), 1.0, c)
    beta = _values(getattr(layer, "beta", None), 0.0, c)
    size = c // groups
    m = x.means.reshape(-1, groups, size)
    v = x.variances.reshape(-1, groups, size)
    mu = m.mean(axis=(0, 2))
    spread = v.mean(axis=(0, 2)) + m.var(axis=(0, 2)) + layer.epsilon
    scale = np.repeat(1.0 / np.sqrt(spread), size) * gamma
    shift = beta - scale * np.repeat(mu, size)
    return channel_affine(x.plain(), scale, shift)


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
