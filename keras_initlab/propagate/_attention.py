"""Attention: ``MultiHeadAttention`` (projections, the softmax over keys, the value average,
the output) and the fused ``keras.ops.dot_product_attention`` (the same without projections).

With ``q, k, v`` the projected query, key and value (the EinsumDense rule, per head) and
``T`` keys, the attention logits ``c q.k`` (``c = 1/sqrt(key_dim)`` in ``MultiHeadAttention``;
``dot_product_attention``'s ``scale``) vary across keys with variance ``s2 = c^2 key_dim
E[q^2] within_k`` (the keys' fixed offsets are common to all keys and cancel in the
softmax). The weights' ``E[p^2]`` is integrated over the keys' iid Gaussian logits
(``softmax_square``, a Laplace-transform integral; ``1/T^2`` for uniform attention, Noci et
al. 2022 on attention at initialization). The attended values keep the values' mean (the
weights sum to 1) and their fluctuations shrink to ``T E[p^2]``. Backward, for a gradient
independent across query tokens: ``Var(dv) = Var(do) Tq E[p^2]``; through the softmax
``Var(dq) = Var(do) T E[p^2] value_dim within_v within_k c^2`` and ``Var(dk) = Var(do)
Tq E[p^2] value_dim within_v E[q^2] c^2`` (leading order in the logits; ``E[p^2]``
there is the softmax's backward factor with its projection, `softmax_sums`, 0 for a query
that sees one key). A gradient common to all query tokens (the walk marks it: a global
average pool downstream through per-position layers) reaches the values coherently:
``Var(dv) = Var(do) (Tq / T)^2``.

With a mask (``attention_mask``/``mask`` whose value the walk knows, ``use_causal_mask``,
``is_causal``)
query ``i`` sees ``n_i`` keys: each sum above runs over them (``T -> n_i`` for the query,
``Tq -> `` the queries that see a key for the key and value); causal attention keeps
``(i + 1) E[p^2]`` of the values' fluctuations at position ``i``, far more than ``T E[p^2]``
near the start. Grouped-query attention (fewer key and value heads than query heads,
keras_hub's Llama, Mistral, Gemma) reads each key and value head from the query heads of its
group: forward the heads are repeated, backward their gradients add.

Where the query and key are projections of one tensor (`_linear`: self-attention), the logit
of a query for the key at its own position has the mean ``c C`` per head (``C`` the two
projections' covariance there: ``sum_f Var(x_f) (A_q A_k^T)_ff``, far from 0 where the two
kernels share their draws), and the weights are a softmax of logits with those means over
fixed normal draws (`softmax_moments`): ``E[p]``, ``E[p^2]`` and the backward factor per
query and key replace the uniform share, ``E[p^2]`` and factor above, head by head.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from keras_initlab._keras import attention_softmax
from keras_initlab.propagate import _activations, _linear, _positions
from keras_initlab.propagate._kernels import einsum_dense
from keras_initlab.propagate._moments import softmax_moments, softmax_square, softmax_sums
from keras_initlab.propagate._signal import Signal, make
from keras_initlab.propagate._step import Arg, Call, Part, Step

# The mean logit of a query's own key (`_linear`) below which the iid rule is kept.
SELF_SCORE_IGNORED = 0.1


def _argument(call: Call, position: int, name: str, default: int) -> int:
    value: Any = call.kwargs.get(name)
    if value is None and len(call.args) > position:
        value = call.args[position]
    return value.index if isinstance(value, Arg) else default


def _project(dense: Any, x: Signal, call: Call) -> Step:
    return einsum_dense(Call(dense, [x], [], [], call.mode))


def _visible(raw: Any, causal: bool, call: Call, t_q: int, t_k: int) -> tuple[np.ndarray, str]:
    """``(t_q, t_k)`` float: 1 where a query position sees a key position, and the note.

    From a mask argument ``raw`` (its first sample): a constant, or a tensor whose value the
    walk computed (`Signal.value`: the causal mask keras_hub builds from the sequence length
    and a padding mask of ones), the same for every head; a lower triangle where ``causal``
    (``use_causal_mask=True``, ``is_causal=True``); all ones without either. A mask tensor
    of unknown value, or one the rule cannot lay out as queries by keys, raises
    NotImplementedError (assumed).
    """
    mask = np.ones((t_q, t_k))
    if raw is not None:
        first = call.known(raw, 2)
        if first is None:
            raise NotImplementedError("an attention mask whose value the walk does not know")
        first = np.asarray(first, dtype=np.float64)
        heads = first.reshape(-1, *first.shape[-2:]) if first.ndim > 2 else first[None]
        if not np.all(heads == heads[:1]):
            raise NotImplementedError("an attention mask that differs between heads")
        try:
            mask = mask * np.broadcast_to(heads[0], (t_q, t_k))
        except ValueError as error:
            raise NotImplementedError(f"an attention mask of shape {first.shape}") from error
    if causal:
        mask = mask * np.tri(t_q, t_k)  # row >= column, as Keras builds it
    if not mask.any(axis=1).all():
        raise NotImplementedError("an attention mask that hides every key from a query")
    return mask, "no mask" if mask.all() else "each query over the keys its mask shows"


@dataclass(frozen=True)
class _Attended:
    """The attention core's answer: the attended values (before any output projection),
    the weights (heads, queries, keys), and the gradients of the query, key, value and
    weights from the attended values' (``grads(g, coherent)``)."""

    out: Signal
    probs: Signal
    grads: Callable[[np.ndarray, bool], dict[str, np.ndarray]]
    assumed: str = ""  # why the gradient through the softmax is not predicted, or ""


def _repeat_heads(x: Signal, groups: int) -> Signal:
    """Each key or value head read by ``groups`` query heads (grouped-query attention: query
    head ``n`` reads key head ``n // groups``, as Keras' backends repeat them)."""
    repeated = make(np.repeat(x.means, groups, axis=-2), np.repeat(x.variances, groups, axis=-2))
    return repeated.with_positions(x.positions)


def _sum_heads(g: np.ndarray, groups: int) -> np.ndarray:
    """The gradient of a repeated head: the sum over the query heads that read it."""
    return g.reshape(*g.shape[:-2], g.shape[-2] // groups, groups, g.shape[-1]).sum(axis=-2)


def _weights(
    q: Signal, k: Signal, mask: np.ndarray, scale: float, batch: int | None, s2: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Signal | None, float]:
    """``(E[p], E[p^2], backward factor)`` per query and key ``(t_q, t_k)``, averaged over
    the query heads, the weights per head where they differ from the iid rule (else None),
    and the batch-to-batch spread of the energy they pass back (`softmax_moments`).

    Logits iid ``N(0, s2)`` over the keys each query sees: `softmax_square` and
    `softmax_sums` per number of keys. Where the query and key are projections of one
    tensor (`_linear`), a query's logit for the key at its own position has the mean
    ``scale C`` (``C`` the covariance of the two projections there, per head; the variance
    ``scale^2 C^2`` more): the softmax of logits with those means over fixed normal draws
    (`softmax_moments`), where some mean reaches `SELF_SCORE_IGNORED` (independent kernels
    give means of the order of one draw's chance, which move ``E[p]`` of that one key by
    less than that, and the iid integrals are exact and cheaper)."""
    t_q, t_k = mask.shape
    kv, groups = k.shape[-2], q.shape[-2] // k.shape[-2]
    paired = _linear.contracted(
        "tkgh,skh->kgts", _linear.reshaped(q, (t_q, kv, groups, q.shape[-1])), k
    )
    if paired is None or np.max(np.abs(scale * paired[0])) < SELF_SCORE_IGNORED:
        seen = mask.sum(axis=1)
        counts, where = np.unique(seen, return_inverse=True)
        p2 = softmax_square(s2, counts)[where]
        factor = np.array([softmax_sums(s2, int(n), batch)[1] for n in counts])[where]
        return mask / seen[:, None], mask * p2[:, None], mask * factor[:, None], None, 1.0
    mean, var = (a.reshape(kv * groups, t_q, t_k) for a in paired)
    logits = make(scale * mean, s2 + scale * scale * var)
    probs, factor, spread = softmax_moments(logits, batch, mask)
    second = probs.variances + probs.means**2
    return (
        probs.means.mean(axis=0),
        second.mean(axis=0),
        factor.mean(axis=0),
        probs,
        spread,
    )


def _attend(
    q: Signal,
    k: Signal,
    v: Signal,
    mask: np.ndarray,
    scale: float,
    batch: int | None,
) -> _Attended:
    """Queries ``q`` ``(..., heads, key_dim)`` attend with scores ``scale q.k`` over the
    keys ``mask`` shows, to the values ``v``; key and value heads fewer
    than the query heads are shared (module docstring)."""
    groups = q.shape[-2] // k.shape[-2]
    k_within = float(k.variances.mean() + k.means.var(axis=tuple(range(k.means.ndim - 2))).mean())
    scale2 = scale * scale
    s2 = scale2 * q.shape[-1] * q.second * k_within
    share, p2, factor, per_head, spread = _weights(q, k, mask, scale, batch, s2)
    # values alike across keys pass the softmax a gradient whose common part it removes
    factor = factor * _positions.fluctuation_share(share, v.positions, _positions.fluctuating(v))
    k, v = _repeat_heads(k, groups), _repeat_heads(v, groups)
    value_dim = v.shape[-1]
    t_q, t_k = mask.shape
    weights_shape = (v.shape[-2], t_q, t_k)
    variance = np.maximum(p2 - share**2, 0.0)  # of each weight
    if per_head is None:
        probs = make(
            np.broadcast_to(share, weights_shape), np.broadcast_to(variance, weights_shape)
        )
    else:
        probs = per_head
    keys = tuple(range(v.means.ndim - 2))
    v_mean = v.means.mean(axis=keys)  # (heads, dim): softmax weights sum to 1
    v_var = v.variances.mean(axis=keys) + v.means.var(axis=keys)
    shape = (*q.shape[:-2], *v.shape[-2:])
    query_axes = (*q.shape[:-2], 1, 1)
    kept = np.minimum(p2.sum(axis=1), 1.0).reshape(query_axes)  # the weights' own spread
    fluctuation = v.variances.mean(axis=keys)  # (the rest of v_var: the keys' fixed offsets)
    average = v_var * kept
    positions = None
    if len(shape) == 3 and len(v.shape) == 3:  # one axis of positions: their correlation
        var, positions = _positions.averaged(share, variance, v)
        correlated = var / max(float(np.mean(_positions.spread(v))), np.finfo(float).tiny)
        average = average + fluctuation * (np.minimum(correlated, 1.0).reshape(query_axes) - kept)
    out = make(np.broadcast_to(v_mean, shape), average)
    out = out.with_positions(positions)

    def per_query(a: np.ndarray) -> np.ndarray:
        return a.reshape(t_q, -1).mean(axis=1)

    def to_keys(per_key: np.ndarray, like: Signal) -> np.ndarray:
        return np.broadcast_to(per_key.reshape((*like.shape[:-2], 1, 1)), like.shape)

    def grads(g_att: np.ndarray, coherent: bool) -> dict[str, np.ndarray]:
        g_att = g_att.reshape(shape)  # (Tq, heads, value_dim)
        # each score's gradient: the softmax's backward factor (with its projection: 0 for
        # a query that sees one key) times what the attended values pass back
        g_score = factor * (value_dim * per_query(g_att) * float(np.mean(v_var)))[:, None]
        rows = g_att.reshape(t_q, -1)  # (t_q, heads * value_dim)
        if coherent:  # sum_i E[p_ij]
            g_value = np.outer(share.sum(axis=0) ** 2, rows.mean(axis=0)).reshape(v.shape)
        else:
            g_value = (p2.T @ rows).reshape(v.shape)
        return {
            "value": _sum_heads(g_value, groups),
            "query": to_keys(g_score.sum(axis=1) * k_within * scale2, q),
            "key": _sum_heads(to_keys(g_score.sum(axis=0) * q.second * scale2, k), groups),
            "softmax": np.broadcast_to(
                (value_dim * per_query(g_att) * v.second)[None, :, None], weights_shape
            ),
        }

    assumed = _activations.saturation(_activations.SOFTMAX, factor, None, spread, visible=mask)
    return _Attended(out, probs, grads, assumed)


def multi_head_attention(call: Call) -> Step:
    """Queries attend over the keys their mask shows (``n_i`` keys for query ``i``; all
    ``T`` without a mask): the weights' ``E[p^2]`` over ``n_i`` keys, the attended values'
    fluctuations ``n_i E[p^2]`` of the values', a key's gradient summed over the queries
    that see it (module docstring)."""
    layer = call.layer
    qi = _argument(call, 0, "query", 0)
    vi = _argument(call, 1, "value", qi)
    ki = _argument(call, 2, "key", vi)
    q_step = _project(layer.query_dense, call.inputs[qi], call)
    k_step = _project(layer.key_dense, call.inputs[ki], call)
    v_step = _project(layer.value_dense, call.inputs[vi], call)
    q, k, v = q_step.outputs[0], k_step.outputs[0], v_step.outputs[0]  # (T, heads, dim)
    # A projection keeps each position apart: the values keep their input's correlation.
    v = v.with_positions(call.inputs[vi].positions)
    raw: Any = call.kwargs.get("attention_mask")
    if raw is None and len(call.args) > 6:
        raw = call.args[6]
    t_q, t_k = q.means[..., 0, 0].size, k.means[..., 0, 0].size
    mask, mask_note = _visible(raw, bool(call.kwargs.get("use_causal_mask")), call, t_q, t_k)
    attended = _attend(q, k, v, mask, 1.0 / np.sqrt(int(layer.key_dim)), call.batch)
    o_step = _project(layer.output_dense, attended.out, call)
    out = o_step.outputs[0].with_positions(attended.out.positions)

    def grads(g_out: np.ndarray) -> dict[str, np.ndarray]:
        g_att = o_step.backward([g_out])[0]
        return attended.grads(g_att, step.context.get("coherent", False))

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
        Part(softmax.name, softmax, attended.probs, lambda g: grads(g[0])["softmax"]),
        Part(layer.output_dense.name, layer.output_dense, out, lambda g: g[0]),
    ]
    note = f"attention logits iid Gaussian over keys, {mask_note}"
    step = Step([out], backward, note=note, parts=rows, gradient_assumed=attended.assumed)
    return step


def dot_product_attention(kind: Any, call: Call) -> Step:
    """``keras.ops.dot_product_attention(query, key, value, mask=, scale=, is_causal=)``,
    the fused attention keras_hub's decoders take on JAX and PyTorch (and Keras' own
    ``MultiHeadAttention`` inside its traced call): query, key and value ``(T, heads,
    dim)`` per sample, key and value heads shared by groups of query heads, scores ``scale
    q.k`` (``scale`` 1/sqrt(dim) by default) over the keys ``mask`` and ``is_causal`` show;
    the rule of `multi_head_attention` without its projections. An additive ``bias`` and
    logit soft-capping (``attn_logits_soft_cap``, which Keras runs on JAX on TPU only) are
    not covered."""
    try:
        bound = inspect.signature(call.layer.call).bind(*call.args, **call.kwargs).arguments
    except TypeError as error:
        raise NotImplementedError(f"arguments not read: {error}") from None
    if bound.get("bias") is not None:
        raise NotImplementedError("an additive attention bias")
    if getattr(call.layer, "attn_logits_soft_cap", None) is not None:
        raise NotImplementedError("soft-capped attention logits (no rule in the fused op)")
    operands = [bound[name] for name in ("query", "key", "value")]
    if not all(isinstance(a, Arg) for a in operands):
        raise NotImplementedError("a constant query, key or value")
    q, k, v = (call.inputs[a.index] for a in operands)
    if len(q.shape) != 3 or len(k.shape) != 3 or q.shape[-2] % k.shape[-2]:
        raise NotImplementedError("query, key and value not laid out as (T, heads, dim)")
    scale = bound.get("scale")
    if isinstance(scale, Arg):
        raise NotImplementedError("a scale computed in the graph")
    scale = (
        1.0 / np.sqrt(q.shape[-1]) if scale is None else float(keras.ops.convert_to_numpy(scale))
    )
    causal = bool(getattr(call.layer, "is_causal", False))
    mask, mask_note = _visible(bound.get("mask"), causal, call, q.shape[0], k.shape[0])
    attended = _attend(q, k, v, mask, scale, call.batch)

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        parts = attended.grads(g[0], step.context.get("coherent", False))
        result = [np.zeros(x.shape) for x in call.inputs]
        for name, arg in zip(("query", "key", "value"), operands, strict=True):
            result[arg.index] = result[arg.index] + parts[name]
        return result

    note = f"attention logits iid Gaussian over keys, {mask_note}"
    step = Step([attended.out], backward, note=note, gradient_assumed=attended.assumed)
    return step
