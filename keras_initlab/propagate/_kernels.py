"""Layers with a kernel: Dense, EinsumDense, ConvND (groups), DepthwiseConvND,
SeparableConvND, ConvNDTranspose and Embedding.

Per output element, with the actual kernel ``W`` and inputs independent of each other
(Glorot and Bengio 2010; He et al. 2015):

    means'_c     = sum_i W_ic means_i + b_c
    variances'_c = sum_i W_ic^2 variances_i

so a nonzero input mean (a ReLU's) and a nonzero kernel mean both enter through the first
line; over all elements this is ``Var(W) fan_in E[x^2]`` in expectation. A conv sums over
the taps valid at each output position (``_geometry``: ``same`` padding reads zeros at the
border of a small map). Backward, ``Var(dx_i) = sum_c W_ic^2 Var(dy_c)`` summed over every
(output, tap) pair that reads ``x_i`` (strides included). One Dense layer on independent
inputs is exact: ``Var(y_c) = sum_i W_ic^2 Var(x_i)``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import keras
import numpy as np

from keras_initlab.model.layers import EINSUM_DENSE
from keras_initlab.propagate import _activations, _linear
from keras_initlab.propagate._geometry import gather, scatter, window_index
from keras_initlab.propagate._signal import Signal, Source, make
from keras_initlab.propagate._step import Call, Step

# Values read instead of some variables' own (`substituted`), keyed by ``id(variable)``.
_SUBSTITUTES: contextvars.ContextVar[Mapping[int, Any]] = contextvars.ContextVar(
    "substitutes", default=MappingProxyType({})
)


@contextlib.contextmanager
def substituted(values: Mapping[int, Any]) -> Iterator[None]:
    """Within the block, `kernel` reads ``values[id(variable)]`` instead of the variable.

    Propagates the model as if those weights held these values, leaving the model itself
    untouched (the monitor's healthy reference: re-drawn kernels, no copy of the model).
    """
    token = _SUBSTITUTES.set({**_SUBSTITUTES.get(), **values})
    try:
        yield
    finally:
        _SUBSTITUTES.reset(token)


def kernel(variable: Any) -> np.ndarray:
    """A kernel's current values in float64 (``.numpy()``: NumPy's ``__array__`` of a
    TensorFlow variable warns under NumPy 2 inside a distribution scope, as in `fit`; a
    PyTorch parameter is detached first), or its value under `substituted`."""
    value = _SUBSTITUTES.get().get(id(variable), variable)
    if isinstance(value, keras.Variable):
        value = value.value
    if hasattr(value, "detach"):  # a torch tensor that requires grad has no .numpy()
        value = value.detach()
    value = value.numpy() if hasattr(value, "numpy") else value
    return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)


def values(variable: Any) -> np.ndarray | None:
    """A weight's current values in float64 (None stays None)."""
    return None if variable is None else kernel(variable)


def matrix(x: Signal, w: np.ndarray, bias: np.ndarray | None) -> Signal:
    """``x @ w + b`` for ``w`` of shape ``(in, out)`` on the last axis."""
    means = x.means @ w + (0.0 if bias is None else bias.reshape(-1))
    return make(means, x.variances @ (w * w))


def _finish(call: Call, pre: Signal, backward: Any, note: str = "") -> Step:
    """Apply the layer's own activation; backward through it, then ``backward``."""
    activation = _activations.from_function(getattr(call.layer, "activation", None))
    out, d2, spread = _activations.apply(activation, pre, call.batch)
    return Step(
        [out],
        lambda g: [backward(g[0] * _activations.backward_factor(out, d2))],
        note=note,
        pre=pre,
        gradient_assumed=_activations.saturation(activation, d2, call.layer, spread),
    )


def bias_means(layer: Any, shape: tuple[int, ...]) -> np.ndarray | float:
    """The bias of a kernel layer broadcast to its per-sample output ``shape`` (0: none).

    On the last axis, except an EinsumDense's, whose ``bias_axes`` name output axes of its
    equation in the output's order.
    """
    bias = values(getattr(layer, "bias", None))
    if bias is None:
        return 0.0
    if isinstance(layer, EINSUM_DENSE):
        out_sub = layer.equation.split("->")[1][1:]
        axes = layer.bias_axes or ""
        return bias.reshape([shape[i] if a in axes else 1 for i, a in enumerate(out_sub)])
    return bias.reshape(-1)


def _projection(call: Call, step: Step, jacobian: np.ndarray) -> Step:
    """``step`` with its output recorded as a per-position linear map of the input
    (`_linear`), where the layer has no activation."""
    if _activations.from_function(getattr(call.layer, "activation", None)) is None:
        _linear.projected(step.outputs[0], call.x, jacobian)
    return step


def dense(call: Call) -> Step:
    w = kernel(call.layer.kernel)
    pre = matrix(call.x, w, values(call.layer.bias))
    w2 = w * w
    return _projection(call, _finish(call, pre, lambda g: g @ w2.T), w)


def einsum_dense(call: Call) -> Step:
    """The layer's own equation on the per-sample moments (batch axis dropped)."""
    layer = call.layer
    inputs, out_sub = layer.equation.split("->")
    x_sub, k_sub = inputs.split(",")
    x_sub, out_sub = x_sub[1:], out_sub[1:]
    w = kernel(layer.kernel)
    x = call.x
    if len(x_sub) != len(x.shape):
        raise NotImplementedError(f"equation {layer.equation!r} on shape {x.shape}")
    forward = f"{x_sub},{k_sub}->{out_sub}"
    means = np.einsum(forward, x.means, w)
    means = means + bias_means(layer, means.shape)
    pre = make(means, np.einsum(forward, x.variances, w * w))
    w2, back = w * w, f"{out_sub},{k_sub}->{x_sub}"
    step = _finish(call, pre, lambda g: np.einsum(back, np.broadcast_to(g, pre.shape), w2))
    position, feature = (x_sub[0], x_sub[-1]) if len(x_sub) == 2 else ("", "")
    if out_sub[:1] == position and position not in k_sub and feature not in out_sub:
        # the map of one position: the kernel with the input feature first and the output
        # axes in the output's order (a view; kernel axes in neither are summed)
        return _projection(call, step, np.einsum(f"{k_sub}->{feature}{out_sub[1:]}", w))
    return step


def _spatial(call: Call) -> tuple[tuple[int, ...], tuple[int, ...]]:
    layer = call.layer
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        raise NotImplementedError("channels_first")
    n_in, n_out = tuple(call.in_shapes[0][1:-1]), tuple(call.out_shapes[0][1:-1])
    if any(d is None for d in (*n_in, *n_out)):
        raise NotImplementedError("unknown spatial size")
    return n_in, n_out  # type: ignore[return-value]


def _index(call: Call, *, transposed: bool = False) -> np.ndarray:
    layer = call.layer
    n_in, n_out = _spatial(call)
    if transposed:  # a transposed conv is the backward pass of the conv from out to in
        n_in, n_out = n_out, n_in
    return window_index(
        n_in, n_out, layer.kernel_size, layer.strides, layer.dilation_rate, layer.padding
    )


def _conv(x: np.ndarray, index: np.ndarray, w: np.ndarray, groups: int) -> np.ndarray:
    """Per-sample conv: x (positions, C_in), w (taps..., C_in/groups, C_out) -> (out, C_out)."""
    taps = w.reshape(-1, w.shape[-2], w.shape[-1])
    read = gather(x, index)  # (out, taps, C_in)
    per_in, per_out = taps.shape[1], taps.shape[2] // groups
    parts = [
        np.einsum(
            "otc,tcd->od",
            read[:, :, g * per_in : (g + 1) * per_in],
            taps[:, :, g * per_out : (g + 1) * per_out],
        )
        for g in range(groups)
    ]
    return np.concatenate(parts, axis=-1)


def _conv_backward(g: np.ndarray, index: np.ndarray, w2: np.ndarray, groups: int, n: int):
    taps = w2.reshape(-1, w2.shape[-2], w2.shape[-1])
    per_out = taps.shape[2] // groups
    parts = [
        np.einsum(
            "od,tcd->otc",
            g[:, g_ * per_out : (g_ + 1) * per_out],
            taps[:, :, g_ * per_out : (g_ + 1) * per_out],
        )
        for g_ in range(groups)
    ]
    return scatter(np.concatenate(parts, axis=-1), index, n)


def conv(call: Call) -> Step:
    layer, x = call.layer, call.x
    index = _index(call)
    w = kernel(layer.kernel)
    groups = int(getattr(layer, "groups", 1))
    c_in = x.channels
    flat_m, flat_v = x.means.reshape(-1, c_in), x.variances.reshape(-1, c_in)
    out_shape = tuple(call.out_shapes[0][1:])
    means = _conv(flat_m, index, w, groups)
    bias = values(layer.bias)
    if bias is not None:
        means = means + bias
    pre = make(means.reshape(out_shape), _conv(flat_v, index, w * w, groups).reshape(out_shape))
    w2, n = w * w, flat_m.shape[0]
    return _finish(
        call,
        pre,
        lambda g: _conv_backward(g.reshape(-1, g.shape[-1]), index, w2, groups, n).reshape(x.shape),
    )


def transposed_conv(call: Call) -> Step:
    """The adjoint of the conv from the output's size to the input's, with the same kernel."""
    layer, x = call.layer, call.x
    index = _index(call, transposed=True)  # (input positions, taps) -> output positions
    w = kernel(layer.kernel)  # Keras: (taps..., out, in)
    taps = np.swapaxes(w.reshape(-1, w.shape[-2], w.shape[-1]), 1, 2)  # (taps, in, out)
    out_shape = tuple(int(d or 1) for d in call.out_shapes[0][1:])
    n_out = int(np.prod(out_shape[:-1]))

    def forward(v: np.ndarray, k: np.ndarray) -> np.ndarray:
        return scatter(np.einsum("pc,tcd->ptd", v, k), index, n_out)

    flat_m, flat_v = x.means.reshape(-1, x.channels), x.variances.reshape(-1, x.channels)
    means = forward(flat_m, taps)
    bias = values(layer.bias)
    if bias is not None:
        means = means + bias
    pre = make(means.reshape(out_shape), forward(flat_v, taps * taps).reshape(out_shape))
    t2 = taps * taps

    def backward(g: np.ndarray) -> np.ndarray:
        read = gather(g.reshape(-1, g.shape[-1]), index)  # (input positions, taps, out)
        return np.einsum("ptd,tcd->pc", read, t2).reshape(x.shape)

    return _finish(call, pre, backward)


def _depthwise(x: Signal, index: np.ndarray, w: np.ndarray, out_spatial) -> Signal:
    """Kernel (taps..., C, multiplier): output channel ``c * multiplier + m``."""
    taps = w.reshape(-1, w.shape[-2], w.shape[-1])
    c = x.channels

    def apply(v: np.ndarray, k: np.ndarray) -> np.ndarray:
        read = gather(v.reshape(-1, c), index)  # (out, taps, C)
        return np.einsum("otc,tcm->ocm", read, k).reshape(*out_spatial, -1)

    source = None
    if x.source is not None and bool(np.all(np.count_nonzero(index >= 0, axis=1) == 1)):
        # one valid tap everywhere (a 1x1 map): an elementwise scale of the activation
        src, multiplier = x.source, w.shape[-1]
        tap = np.argmax(index >= 0, axis=1)
        scale = taps[tap][:, :, :].reshape(len(tap), c * multiplier)  # (out, C * mult)

        def spread(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            full = np.broadcast_to(a, x.shape).reshape(-1, c)
            return np.repeat(gather(full, index).sum(axis=1), multiplier, axis=-1).reshape(
                *out_spatial, -1
            )

        pre = make(spread(src.pre.means), spread(src.pre.variances))
        rep = Source(src.activation, pre, spread(src.scale), spread(src.shift), origin=src.root)
        source = rep.affine(scale.reshape(*out_spatial, -1), np.zeros(1))
    return make(apply(x.means, taps), apply(x.variances, taps * taps), source)


def _depthwise_backward(index: np.ndarray, w: np.ndarray, shape: tuple[int, ...]):
    t2 = (w * w).reshape(-1, w.shape[-2], w.shape[-1])
    c, n = w.shape[-2], int(np.prod(shape[:-1]))

    def backward(g: np.ndarray) -> np.ndarray:
        per = np.einsum("ocm,tcm->otc", g.reshape(-1, c, w.shape[-1]), t2)
        return scatter(per, index, n).reshape(shape)

    return backward


def depthwise_conv(call: Call) -> Step:
    layer, x = call.layer, call.x
    index = _index(call)
    w = kernel(layer.kernel)
    out_spatial = tuple(call.out_shapes[0][1:-1])
    pre = _depthwise(x, index, w, out_spatial)
    bias = values(layer.bias)
    if bias is not None:
        source = None if pre.source is None else pre.source.affine(np.ones(1), bias)
        pre = make(pre.means + bias, pre.variances, source)
    return _finish(call, pre, _depthwise_backward(index, w, x.shape))


def separable_conv(call: Call) -> Step:
    """Depthwise (no bias), then the pointwise kernel as a dense layer, then the bias."""
    layer, x = call.layer, call.x
    index = _index(call)
    dw, pw = kernel(layer.depthwise_kernel), kernel(layer.pointwise_kernel)
    point = pw.reshape(pw.shape[-2], pw.shape[-1])
    mid = _depthwise(x.plain(), index, dw, tuple(call.out_shapes[0][1:-1]))
    pre = matrix(mid, point, values(layer.bias))
    depth_back, p2 = _depthwise_backward(index, dw, x.shape), point * point
    return _finish(call, pre, lambda g: depth_back(g @ p2.T))


def _reversed(call: Call, table: np.ndarray) -> Step:
    """A tied embedding called with ``reverse=True`` as the output projection (keras_hub's
    ``ReversibleEmbedding``: ``x @ E^T``, or ``x @ R`` with its own ``reverse_embeddings``
    when not tied): a Dense layer with that kernel, ``Var(y_v) = sum_d Var(x_d) E_vd^2``."""
    layer = call.layer
    if getattr(layer, "logit_soft_cap", None):
        raise NotImplementedError("logits soft-capped by tanh")
    own = getattr(layer, "reverse_embeddings", None)
    w = table.T if getattr(layer, "tie_weights", True) or own is None else kernel(own)
    if call.x.shape[-1] != w.shape[0]:
        raise NotImplementedError(f"a reversed call on {call.x.shape[-1]} features, {w.shape}")
    w2 = w * w
    pre = matrix(call.x, w, None)
    return Step([pre], lambda g: [g[0] @ w2.T], note="the reversed call: x @ E^T")


def embedding(call: Call) -> Step:
    """Token ids assumed uniform over the vocabulary: a row of the table at random. A call
    with ``reverse=True`` is the tied output projection (`_reversed`); any other call that is
    not a lookup (its output is not ``output_dim`` wide) is not covered."""
    table = kernel(call.layer.embeddings)
    if call.kwargs.get("reverse") is True:
        return _reversed(call, table)
    shape = tuple(int(d or 1) for d in call.out_shapes[0][1:])
    if len(call.x.shape) == len(shape) - 1:  # the ids' sizes as the walk knows them
        shape = (*call.x.shape, shape[-1])
    if shape[-1] != table.shape[-1]:
        raise NotImplementedError(
            f"a call that is not a lookup: output {shape[-1]} wide, the table {table.shape[-1]}"
        )
    out = make(np.broadcast_to(table.mean(axis=0), shape), np.broadcast_to(table.var(0), shape))
    return Step(
        [out], lambda g: [np.zeros(call.x.shape)], note="token ids uniform over the vocabulary"
    )
