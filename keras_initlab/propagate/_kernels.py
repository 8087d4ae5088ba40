"""Layers with a kernel: Dense, EinsumDense, ConvND (groups), DepthwiseConvND,
SeparableConvND, ConvNDTranspose and Embedding.

Per output channel, with the actual kernel ``W`` and inputs independent across channels
(Glorot and Bengio 2010; He et al. 2015):

    means'_c     = sum_i W_ic means_i + b_c
    variances'_c = sum_i W_ic^2 variances_i

so a nonzero input mean (a ReLU's) and a nonzero kernel mean both enter through the first
line; the variance over all elements of the output is ``var_c(means') + mean_c(
variances')``, which for iid inputs is ``Var(W) fan_in E[x^2]`` in expectation. For a conv
the sum runs over input channels and taps, tap ``t`` weighted by the fraction of output
positions where it is inside the map (``_geometry``: ``same`` padding on small maps reads
zeros). Backward, ``Var(dx_i) = sum_c sum_t W_tic^2 n_t Var(dy_c)`` with ``n_t`` the
outputs reading an input through tap ``t`` (strides included). One Dense layer on iid
zero-mean inputs is exact: ``Var(y_c) = ||W_c||^2 Var(x)``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_initlab.propagate import _activations
from keras_initlab.propagate._geometry import taps
from keras_initlab.propagate._signal import Signal, Source, collapse, make
from keras_initlab.propagate._step import Call, Step

L = keras.layers
CONVS = (L.Conv1D, L.Conv2D, L.Conv3D)
TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)


def values(variable: Any) -> np.ndarray | None:
    """A weight's current values in float64 (None stays None)."""
    if variable is None:
        return None
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)


def kernel(variable: Any) -> np.ndarray:
    """A kernel's current values in float64."""
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)


def _fit(x: Signal, channels: int) -> Signal:
    """``x`` with ``channels`` channels (a broadcast or unknown layout: the average)."""
    if x.channels == channels:
        return x
    return Signal.uniform(x.mean, x.var, channels)


def matrix(x: Signal, w: np.ndarray, bias: np.ndarray | None) -> Signal:
    """``x @ w + b`` for ``w`` of shape ``(in, out)``."""
    x = _fit(x, w.shape[0])
    means = x.means @ w + (0.0 if bias is None else bias.reshape(-1))
    return make(means, x.variances @ (w * w))


def _finish(call: Call, pre: Signal, backward: Any, note: str = "") -> Step:
    """Apply the layer's own activation; backward through it, then ``backward``."""
    activation = _activations.from_function(getattr(call.layer, "activation", None))
    out, d2 = _activations.apply(activation, pre, call.out_shapes[0][-1])
    return Step(
        [out], lambda g: [backward(g[0] * _activations.backward_factor(out, d2))], note=note
    )


def dense(call: Call) -> Step:
    w = kernel(call.layer.kernel)
    pre = matrix(call.x, w, values(call.layer.bias))
    w2 = w * w
    return _finish(call, pre, lambda g: w2 @ g)


def _einsum_parts(equation: str) -> tuple[str, str, str]:
    inputs, output = equation.split("->")
    x, kernel = inputs.split(",")
    return x, kernel, output


def einsum_dense(call: Call) -> Step:
    """Contracted axes ending at the input's last axis; the output channel is a kernel axis.

    The input's per-channel moments are broadcast over its other contracted axes; the
    output's non-channel kernel axes become positions (``collapse``)."""
    layer = call.layer
    x_sub, k_sub, out_sub = _einsum_parts(layer.equation)
    w = kernel(layer.kernel)
    contracted = "".join(a for a in k_sub if a in x_sub)
    produced = "".join(a for a in out_sub if a in k_sub)
    if not contracted or x_sub[-1] != contracted[-1] or out_sub[-1] not in k_sub:
        raise NotImplementedError(f"equation {layer.equation!r}")
    dims = {a: w.shape[i] for i, a in enumerate(k_sub)}
    in_shape = tuple(dims[a] for a in contracted)
    x = _fit(call.x, in_shape[-1])
    spec = f"{contracted},{k_sub}->{produced}"
    means = np.einsum(spec, np.broadcast_to(x.means, in_shape), w)
    variances = np.einsum(spec, np.broadcast_to(x.variances, in_shape), w * w)
    bias = values(getattr(layer, "bias", None))
    if bias is not None:  # bias_axes name output axes, in the output's order
        axes = layer.bias_axes or ""
        means = means + bias.reshape([dims[a] if a in axes else 1 for a in produced])
    pre = collapse(means, variances)
    w2 = w * w

    def backward(g: np.ndarray) -> np.ndarray:
        out_shape = tuple(dims[a] for a in produced)
        full = np.einsum(f"{produced},{k_sub}->{contracted}", np.broadcast_to(g, out_shape), w2)
        return full.reshape(-1, in_shape[-1]).mean(axis=0)

    return _finish(call, pre, backward)


def _spatial(layer: Any, shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return tuple(shape[2:])
    return tuple(shape[1:-1])


def _window(call: Call, *, transposed: bool = False) -> tuple[Any, ...]:
    """``(input, forward, backward, mask)``: the input to read (a ZeroPadding's real inputs,
    its zeros then outside the window), the per-tap forward and backward weights
    (kernel-shaped) and the per-position tap mask of the outputs."""
    layer, x = call.layer, call.x
    n_in, n_out = _spatial(layer, call.in_shapes[0]), _spatial(layer, call.out_shapes[0])
    pads = None
    if x.padded is not None and not transposed:
        x, n_in, pads = x.padded.original, x.padded.sizes, x.padded.pads
    if transposed:  # a transposed conv is the backward pass of the conv from out to in
        n_in, n_out = n_out, n_in
    w = taps(
        n_in, n_out, layer.kernel_size, layer.strides, layer.dilation_rate, layer.padding, pads
    )
    if transposed:
        return x, w.backward, w.forward, w.reverse_mask
    return x, w.forward, w.backward, w.mask


def _taps_matrix(w: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_t weights_t W_t``: kernel (taps..., in, out) -> (in, out)."""
    rank = weights.ndim
    return np.tensordot(weights, w, axes=(list(range(rank)), list(range(rank))))


def _positional(mask: np.ndarray, per_tap: np.ndarray) -> np.ndarray:
    """Per output channel, the variance over positions of the mean ``mask @ per_tap``:
    on a small padded map each position sums a different set of taps."""
    if mask.shape[0] <= 1 or bool(np.all(mask == mask[:1])):
        return np.zeros(per_tap.shape[-1])
    return (mask @ per_tap.reshape(mask.shape[1], -1)).var(axis=0)


def _grouped(
    x: Signal, w: np.ndarray, fw: np.ndarray, mask: np.ndarray, groups: int, bias: Any
) -> Signal:
    c_in = w.shape[-2] * groups
    x = _fit(x, c_in)
    a2 = _taps_matrix(w * w, fw)
    per_in, per_out = w.shape[-2], w.shape[-1] // groups
    taps_ = w.reshape(-1, per_in, w.shape[-1])
    means, variances = [], []
    for g in range(groups):
        sl = slice(g * per_in, (g + 1) * per_in)
        cols = slice(g * per_out, (g + 1) * per_out)
        per_tap = np.einsum("i,tio->to", x.means[sl], taps_[:, :, cols])  # (taps, out)
        means.append(fw.reshape(-1) @ per_tap)
        variances.append(x.variances[sl] @ a2[:, cols] + _positional(mask, per_tap))
    means_ = np.concatenate(means) + (0.0 if bias is None else bias)
    return make(means_, np.concatenate(variances))


def _grouped_backward(w: np.ndarray, bw: np.ndarray, groups: int):
    a2 = _taps_matrix(w * w, bw)
    per_out = w.shape[-1] // groups

    def backward(g: np.ndarray) -> np.ndarray:
        blocks = [a2[:, k * per_out : (k + 1) * per_out] for k in range(groups)]
        return np.concatenate(
            [b @ g[k * per_out : (k + 1) * per_out] for k, b in enumerate(blocks)]
        )

    return backward


def conv(call: Call) -> Step:
    layer = call.layer
    x, fw, bw, mask = _window(call)
    w = kernel(layer.kernel)
    groups = int(getattr(layer, "groups", 1))
    pre = _grouped(x, w, fw, mask, groups, values(layer.bias))
    return _finish(call, pre, _grouped_backward(w, bw, groups))


def transposed_conv(call: Call) -> Step:
    layer = call.layer
    x, fw, bw, mask = _window(call, transposed=True)
    w = np.swapaxes(kernel(layer.kernel), -1, -2)  # Keras: (taps..., out, in)
    pre = _grouped(x, w, fw, mask, 1, values(layer.bias))
    return _finish(call, pre, _grouped_backward(w, bw, 1))


def _depthwise(x: Signal, w: np.ndarray, fw: np.ndarray, mask: np.ndarray) -> Signal:
    """Kernel (taps..., C, multiplier): output channel ``c * multiplier + m``."""
    x = _fit(x, w.shape[-2])
    a, a2 = _taps_matrix(w, fw), _taps_matrix(w * w, fw)  # (C, multiplier)
    per_tap = w.reshape(-1, w.shape[-2], w.shape[-1]) * x.means[None, :, None]
    positional = _positional(mask, per_tap.reshape(per_tap.shape[0], -1))
    source = None
    if x.source is not None and np.count_nonzero(fw) == 1 and float(fw.max()) == 1.0:
        # one valid tap (a 1x1 map): an elementwise scale of the previous activation
        multiplier = w.shape[-1]
        src = x.source
        pre = make(np.repeat(src.pre.means, multiplier), np.repeat(src.pre.variances, multiplier))
        rep = Source(
            src.activation,
            pre,
            None if src.scale is None else np.repeat(src.scale, multiplier),
            None if src.shift is None else np.repeat(src.shift, multiplier),
        )
        source = rep.affine(a.ravel(), np.zeros(a.size))
    variances = (x.variances[:, None] * a2).ravel() + positional
    return make((x.means[:, None] * a).ravel(), variances, source)


def _depthwise_backward(w: np.ndarray, bw: np.ndarray):
    a2 = _taps_matrix(w * w, bw)
    return lambda g: (a2 * g.reshape(a2.shape)).sum(axis=1)


def depthwise_conv(call: Call) -> Step:
    layer = call.layer
    x, fw, bw, mask = _window(call)
    w = kernel(layer.kernel)
    pre = _depthwise(x, w, fw, mask)
    bias = values(layer.bias)
    if bias is not None:
        source = None if pre.source is None else pre.source.affine(np.ones(bias.size), bias)
        pre = make(pre.means + bias, pre.variances, source)
    return _finish(call, pre, _depthwise_backward(w, bw))


def separable_conv(call: Call) -> Step:
    """Depthwise (no bias), then the pointwise kernel as a dense layer, then the bias."""
    layer = call.layer
    x, fw, bw, mask = _window(call)
    dw, pw = kernel(layer.depthwise_kernel), kernel(layer.pointwise_kernel)
    point = pw.reshape(pw.shape[-2], pw.shape[-1])
    pre = matrix(_depthwise(x, dw, fw, mask), point, values(layer.bias))
    depth_back, p2 = _depthwise_backward(dw, bw), point * point
    return _finish(call, pre, lambda g: depth_back(p2 @ g))


def embedding(call: Call) -> Step:
    """Token ids assumed uniform over the vocabulary: a row of the table at random."""
    table = kernel(call.layer.embeddings)
    out = make(table.mean(axis=0), table.var(axis=0))
    n = call.x.channels
    return Step([out], lambda g: [np.zeros(n)], note="token ids uniform over the vocabulary")
