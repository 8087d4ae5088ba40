"""The attention rule: an attention layer whose softmax starts collapsed.

Each query of an attention layer weighs the ``n`` keys its mask shows by the softmax of its
scores ``z_j = q . k_j / sqrt(d)``. At initialization the scores of one query are close to
iid over its keys, with variance ``s^2`` across them, and the softmax is the logits rule's
(`keras_initlab.logits_rule`, the random energy model's transition at ``s^2 = 2 ln n``):
below it the weights spread over the keys (``sum_j p_j^2`` near ``1/n``); beyond it a few
keys take them all, the query attends to about one key, and the softmax's Jacobian
``diag(p) - p p^T`` is near 0, so the gradients that reach the query and key projections
through it vanish. A lost ``1/sqrt(d_head)`` scale multiplies ``s^2`` by ``d_head``.

The rule finds a collapse where ``s^2``, the scores' variance across the keys each query
sees (unbiased, averaged over the queries that see at least two), exceeds `MARGIN` (2, the
logits rule's) times the transition of the longest rows, ``4 ln n_max``: a score std beyond
3.3 for 16 keys, 4.3 for 100, 5.3 for 1000. A He-initialized GPT-2 block has ``s^2`` near 4
(q and k of variance 2 per element); the same model with its query and key kernels drawn
``sqrt(d_head)`` larger, as a lost scale makes them, has about ``4 d_head``.

The scores are read where a softmax layer held by an attention layer computes them
(`attention_softmaxes`: Keras' ``MultiHeadAttention`` and its keras_hub subclasses,
keras_hub's own attention layers, a user's attention layer with a ``keras.layers.Softmax``),
with the mask it is called with; a ``MultiHeadAttention`` that takes the fused
``keras.ops.dot_product_attention`` (Keras does without dropout) is made to take its
softmax layer for the read (`keras_initlab._keras.explicit_attention`). Any other call of
the fused ``keras.ops.dot_product_attention`` (keras_hub's decoders on JAX and PyTorch,
flash attention included) is read from its query, key, scale and mask, the scores computed
as the operation computes them, in a model that holds an attention softmax (keras_hub's
attention layers keep theirs for the path they do not take) or the operation at its own
level; a user's layer that calls it inside and holds no softmax is not read. A softmax
written as ``keras.ops.softmax`` and a softmax layer at a model's own level (a classifier's
output: the logits rule's) are not read.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from keras_initlab import _keras
from keras_initlab.logits_rule import MARGIN
from keras_initlab.model.layers import ATTENTION, activation_kind
from keras_initlab.model.tree import walk

__all__ = ["ScoresFinding", "attention_scores", "attention_softmaxes", "judge_scores"]


@dataclass(frozen=True)
class ScoresFinding:
    """What the attention rule finds in one softmax's scores.

    Attributes:
        variance: ``s^2``, the scores' variance across the keys a query sees, averaged over
            the queries that see at least two (NaN where none does).
        keys: ``n_max``, the most keys a query sees.
        participation: the mean over those queries of ``sum_j p_j^2`` (1 when each attends
            to one key).
        uniform: the same mean for weights spread evenly over the visible keys,
            ``mean(1 / n_i)``.
    """

    variance: float
    keys: int
    participation: float
    uniform: float

    @property
    def limit(self) -> float:
        """``MARGIN * 2 ln n_max``: the variance beyond which the softmax starts collapsed."""
        return MARGIN * 2.0 * math.log(self.keys) if self.keys >= 2 else math.inf

    @property
    def exceeds(self) -> bool:
        """Whether ``s^2`` is beyond `limit` (non-finite scores have their own alert)."""
        return math.isfinite(self.variance) and self.variance > self.limit

    def describe(self) -> str:
        """One sentence: the variance against its limit, and how concentrated the weights
        are."""
        return (
            f"the attention scores' variance across the keys a query sees is "
            f"{self.variance:.3g}, above {self.limit:.3g} ({MARGIN:g} x 2 ln n, n = "
            f"{self.keys} keys): the softmax starts collapsed, each query's weights "
            f"concentrated (mean sum of squared weights {self.participation:.3g}, against "
            f"{self.uniform:.3g} spread evenly; 1 on a single key), and the gradients to the "
            "query and key projections vanish through it"
        )


def judge_scores(scores: Any, mask: Any = None, weights: Any = None) -> ScoresFinding:
    """The attention rule (module doc) on one softmax's scores, keys on the last axis.

    Args:
        scores: array ``(..., n)``, ``n >= 1``.
        mask: None (every key visible) or an array broadcastable to ``scores``, true (or
            above 0.5) where a key is visible.
        weights: the softmax of ``scores`` under ``mask`` (computed when None).

    Returns:
        A `ScoresFinding`.

    Example:
    >>> z = np.random.default_rng(0).standard_normal((512, 16))
    >>> causal = np.tri(16, 16, dtype=bool)
    >>> judge_scores(z, np.broadcast_to(causal, (32, 16, 16)).reshape(512, 16)).exceeds
    False
    >>> finding = judge_scores(8.0 * z)
    >>> finding.exceeds, round(finding.limit, 2), finding.participation > 0.5
    (True, 11.09, True)
    """
    z = np.asarray(scores, np.float64)
    visible = (
        np.ones(z.shape, bool)
        if mask is None
        else np.broadcast_to(np.asarray(mask, np.float64) > 0.5, z.shape)
    )
    z, visible = z.reshape(-1, z.shape[-1]), visible.reshape(-1, z.shape[-1])
    counts = visible.sum(axis=-1)
    rows = counts >= 2
    if weights is None:
        shifted = np.where(visible, z - np.where(visible, z, -np.inf).max(-1, keepdims=True), 0)
        e = np.where(visible, np.exp(shifted), 0.0)
        p = e / np.maximum(e.sum(-1, keepdims=True), np.finfo(np.float64).tiny)
    else:
        p = np.where(visible, np.asarray(weights, np.float64).reshape(z.shape), 0.0)
    if not rows.any():
        return ScoresFinding(math.nan, int(counts.max(initial=0)), math.nan, math.nan)
    zv = np.where(visible, z, 0.0)[rows]
    n = counts[rows].astype(np.float64)
    mean = zv.sum(-1) / n
    variance = float(
        (np.where(visible[rows], (zv - mean[:, None]) ** 2, 0.0).sum(-1) / (n - 1)).mean()
    )
    participation = float((p[rows] ** 2).sum(-1).mean())
    return ScoresFinding(variance, int(counts.max()), participation, float((1.0 / n).mean()))


def attention_softmaxes(model: Any) -> list[tuple[str, Any]]:
    """``(path, layer)`` of every softmax layer that a layer (not a model) of ``model``
    holds: the attention softmaxes the rule reads (module doc).

    Example:
    >>> x = keras.Input((4, 8))
    >>> model = keras.Model(x, keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x))
    >>> [(path.split("/")[0], type(layer).__name__) for path, layer in attention_softmaxes(model)]
    [('mha', 'Softmax')]
    """
    return [(path, layer) for path, layer, _ in _held_softmaxes(dict(walk(model)))]


def _held_softmaxes(layers: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(path, softmax layer, the layer holding it)`` for `attention_softmaxes`, from a
    model's layers by path (`keras_initlab.model.tree.walk`)."""
    found = []
    for path, layer in layers.items():
        parent = layers.get(path.rpartition("/")[0])
        if (
            activation_kind(layer) == "softmax"
            and parent is not None
            and not isinstance(parent, keras.Model)
        ):
            found.append((path, layer, parent))
    return found


def attention_scores(
    model: Any, x: Any, mode: str = "inference"
) -> dict[str, list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]]:
    """The scores, mask and weights of every call of each attention softmax of ``model``
    on ``x`` (`attention_softmaxes`), by the softmax's path, and of every call of the fused
    ``keras.ops.dot_product_attention`` inside it, by the calling layer's path and
    ``/dot_product_attention`` (scores computed from its query and key as the operation
    does: key heads repeated for grouped queries, times ``scale``, soft-capped, masked).

    Args:
        model: a built Keras model.
        x: its inputs.
        mode: ``"inference"`` or ``"training"``; the model is left as it was (its
            non-trainable variables and every global random state put back).

    Returns:
        ``{path: [(scores, mask or None, weights or None), ...]}``, one entry per call, as
        NumPy arrays (the weights None for a fused call: `judge_scores` computes them);
        nothing that was not called. A model that holds no attention softmax and no fused
        attention at its own level is not called at all.
    """
    layers = dict(walk(model))
    found = _held_softmaxes(layers)
    graphs = [("", model)] + [(f"{p}/", m) for p, m in layers.items() if isinstance(m, keras.Model)]
    nodes = {
        id(op): f"{prefix}{op.name}"
        for prefix, graph in graphs
        for op in getattr(graph, "operations", [])
        if type(op).__name__ == "DotProductAttention"
    }
    captured: dict[str, list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]] = {}
    if not found and not nodes:  # nothing to read: the model is not called
        return captured
    attentions = [parent for _, _, parent in found if isinstance(parent, ATTENTION)]
    recorder = _recorder({id(layer): path for path, layer, _ in found}, captured)

    def node_recorder(op: Any, call: Any) -> Any:
        """A graph's own ``DotProductAttention`` node runs its operation's ``call``."""
        signature = inspect.signature(call)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            output = call(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            cap = getattr(op, "attn_logits_soft_cap", None)
            options = {"is_causal": op.is_causal, "attn_logits_soft_cap": cap}
            scores = _fused_scores({**bound.arguments, **options})
            captured.setdefault(nodes[id(op)], []).append(scores)
            return output

        return recorded

    def record_fused(scope: str, arguments: dict[str, Any]) -> None:
        # Keras' name scope of an eager call omits the outer models' names: the walk's path
        # that ends with it names the layer.
        within = [p for p in layers if p == scope or p.endswith(f"/{scope}")] if scope else []
        name = f"{min(within, key=len) if within else scope}/dot_product_attention".lstrip("/")
        captured.setdefault(name, []).append(_fused_scores(arguments))

    with (
        _keras.kept_state(model),
        _keras.explicit_attention(attentions),
        _keras.wrapped_methods([layer for _, layer, _ in found], "call", recorder),
        _keras.recorded_fused_attention(record_fused),
        _keras.wrapped_methods(
            [op for _, g in graphs for op in getattr(g, "operations", []) if id(op) in nodes],
            "call",
            node_recorder,
        ),
    ):
        model(x, training=mode == "training")
    return captured


def _fused_scores(arguments: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None, None]:
    """``(scores, mask or None, None)`` of one ``dot_product_attention`` call, queries by
    keys last: ``scale q.k`` over ``(batch, heads, T, S)`` (``scale`` 1/sqrt(dim) by default;
    each key head read by its group of query heads), plus ``bias``, soft-capped by
    ``attn_logits_soft_cap``; the mask from ``mask`` and ``is_causal`` (lower triangle)."""

    def array(name: str) -> np.ndarray | None:
        value = arguments.get(name)
        return None if value is None else np.asarray(keras.ops.convert_to_numpy(value))

    q, k = (np.asarray(keras.ops.convert_to_numpy(arguments[n])) for n in ("query", "key"))
    k = np.repeat(k, q.shape[-2] // k.shape[-2], axis=-2)
    given = array("scale")
    scale = 1.0 / math.sqrt(q.shape[-1]) if given is None else float(given)
    scores = np.einsum("btnh,bsnh->bnts", q.astype(np.float64), k.astype(np.float64)) * scale
    bias = array("bias")
    if bias is not None:
        scores = scores + bias
    cap = arguments.get("attn_logits_soft_cap")
    if cap is not None:
        scores = float(cap) * np.tanh(scores / float(cap))
    mask = array("mask")
    visible = None if mask is None else np.broadcast_to(mask.astype(bool), scores.shape)
    if arguments.get("is_causal"):
        causal = np.tri(*scores.shape[-2:]) > 0
        visible = causal if visible is None else visible & causal
    if visible is not None:
        visible = np.broadcast_to(visible, scores.shape)
    return scores, visible, None


def _recorder(
    paths: dict[int, str],
    captured: dict[str, list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]],
) -> Any:
    """The ``wrap`` of `keras_initlab._keras.wrapped_methods` that records each softmax's
    inputs, mask and output into ``captured``, by the path ``paths`` gives its layer."""

    def wrap(layer: Any, call: Any) -> Any:
        axis = layer.axis
        axes = tuple(int(a) for a in (axis if isinstance(axis, (tuple, list)) else [axis]))

        def recorded(inputs: Any, mask: Any = None, **kwargs: Any) -> Any:
            outputs = call(inputs, mask=mask, **kwargs)
            captured.setdefault(paths[id(layer)], []).append(
                (
                    _keys_last(inputs, axes),
                    None if mask is None else _keys_last(mask, axes, like=inputs),
                    _keys_last(outputs, axes),
                )
            )
            return outputs

        return recorded

    return wrap


def _keys_last(tensor: Any, axes: tuple[int, ...], like: Any = None) -> np.ndarray:
    """``tensor`` as NumPy with the softmax's axes moved last and flattened into one (a mask
    broadcast to ``like``'s shape first)."""
    array = np.asarray(keras.ops.convert_to_numpy(tensor))
    if like is not None:
        array = np.broadcast_to(array, tuple(like.shape))
    rank = array.ndim
    keys = [a % rank for a in axes]
    moved = np.moveaxis(array, keys, list(range(rank - len(keys), rank)))
    return moved.reshape(*moved.shape[: rank - len(keys)], -1)
