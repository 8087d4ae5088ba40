"""MultiHeadAttention: projections, the softmax over keys, the value average, the output.

With ``q, k, v`` the projected query, key and value (the EinsumDense rule, per head) and
``T`` keys, the attention logits ``q.k / sqrt(key_dim)`` vary across keys with variance
``s2 = E[q^2] within_k`` (the keys' fixed offsets are common to all keys and cancel in the
softmax). The weights' ``E[p^2]`` comes from the log-normal sum of the other keys' terms
(``softmax_square``; ``1/T^2`` for uniform attention, Noci et al. 2022 on attention at
initialization). The attended values keep the values' mean (the weights sum to 1) and
their fluctuations shrink to ``T E[p^2]``. Backward, for a gradient independent across
query tokens: ``Var(dv) = Var(do) Tq E[p^2]``; through the softmax ``Var(dq) = Var(do) T
E[p^2] value_dim within_v within_k / key_dim`` and ``Var(dk) = Var(do) Tq E[p^2] value_dim
within_v E[q^2] / key_dim`` (leading order in the logits). Masks are not read (no mask
assumed). A gradient common to all query tokens (the walk marks it: a global average pool
downstream through per-position layers) reaches the values coherently: ``Var(dv) = Var(do)
(Tq / T)^2``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_initlab._keras import attention_softmax
from keras_initlab.propagate._kernels import einsum_dense
from keras_initlab.propagate._moments import softmax_square
from keras_initlab.propagate._signal import Signal, make
from keras_initlab.propagate._step import Arg, Call, Part, Step


def _argument(call: Call, position: int, name: str, default: int) -> int:
    value: Any = call.kwargs.get(name)
    if value is None and len(call.args) > position:
        value = call.args[position]
    return value.index if isinstance(value, Arg) else default


def _project(dense: Any, x: Signal, call: Call) -> Step:
    return einsum_dense(Call(dense, [x], [], [], call.mode))


def multi_head_attention(call: Call) -> Step:
    layer = call.layer
    qi = _argument(call, 0, "query", 0)
    vi = _argument(call, 1, "value", qi)
    ki = _argument(call, 2, "key", vi)
    key_dim = int(layer.key_dim)
    value_dim = int(layer.value_dim or key_dim)
    q_step = _project(layer.query_dense, call.inputs[qi], call)
    k_step = _project(layer.key_dense, call.inputs[ki], call)
    v_step = _project(layer.value_dense, call.inputs[vi], call)
    q, k, v = q_step.outputs[0], k_step.outputs[0], v_step.outputs[0]  # (T, heads, dim)
    t_q, t_k = q.means[..., 0, 0].size, k.means[..., 0, 0].size
    k_within = float(k.variances.mean() + k.means.var(axis=tuple(range(k.means.ndim - 2))).mean())
    s2 = q.second * k_within
    p2 = softmax_square(s2, t_k)
    weights_shape = (v.shape[-2], t_q, t_k)
    probs = Signal.uniform(1.0 / t_k, max(p2 - 1.0 / t_k**2, 0.0), weights_shape)
    keys = tuple(range(v.means.ndim - 2))
    v_mean = v.means.mean(axis=keys)  # (heads, dim): softmax weights sum to 1
    v_var = v.variances.mean(axis=keys) + v.means.var(axis=keys)
    shape = (*q.shape[:-2], *v.shape[-2:])
    attended = make(
        np.broadcast_to(v_mean, shape), np.broadcast_to(v_var * min(p2 * t_k, 1.0), shape)
    )
    o_step = _project(layer.output_dense, attended, call)
    out = o_step.outputs[0]

    def grads(g_out: np.ndarray) -> dict[str, np.ndarray]:
        g_att = o_step.backward([g_out])[0]  # (Tq, heads, value_dim)
        g_score = p2 * value_dim * float(np.mean(g_att) * np.mean(v_var))
        if step.context.get("coherent", False):  # sum_t p_ts = Tq / T of a common gradient
            g_value = np.broadcast_to(g_att.mean(axis=keys) * (t_q / t_k) ** 2, v.shape)
        else:
            g_value = np.broadcast_to(g_att.mean(axis=keys) * t_q * p2, v.shape)
        return {
            "value": g_value,
            "query": np.full(q.shape, t_k * g_score * k_within / key_dim),
            "key": np.full(k.shape, t_q * g_score * q.second / key_dim),
            "softmax": np.full(weights_shape, value_dim * float(np.mean(g_att) * v.second)),
        }

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        parts = grads(g[0])
        result = [np.zeros(x.shape) for x in call.inputs]
        result[qi] = result[qi] + q_step.backward([parts["query"]])[0]
        result[ki] = result[ki] + k_step.backward([parts["key"]])[0]
        result[vi] = result[vi] + v_step.backward([parts["value"]])[0]
        return result

    softmax = attention_softmax(layer)
    rows = [
        Part(layer.query_dense.name, layer.query_dense, q, lambda g: grads(g[0])["query"]),
        Part(layer.key_dense.name, layer.key_dense, k, lambda g: grads(g[0])["key"]),
        Part(layer.value_dense.name, layer.value_dense, v, lambda g: grads(g[0])["value"]),
        Part(softmax.name, softmax, probs, lambda g: grads(g[0])["softmax"]),
        Part(layer.output_dense.name, layer.output_dense, out, lambda g: g[0]),
    ]
    note = "attention weights log-normal over keys (large T), no mask"
    step = Step([out], backward, note=note, parts=rows)
    return step
