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
softmax layer for the read (`keras_initlab._keras.explicit_attention`). A softmax written
as ``keras.ops.softmax``, flash attention (it keeps no scores) and a softmax layer at a
model's own level (a classifier's output: the logits rule's) are not read.
"""

from __future__ import annotations

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
    return [(path, layer) for path, layer, _ in _held_softmaxes(model)]


def _held_softmaxes(model: Any) -> list[tuple[str, Any, Any]]:
    """``(path, softmax layer, the layer holding it)`` for `attention_softmaxes`."""
    layers = dict(walk(model))
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
) -> dict[str, list[tuple[np.ndarray, np.ndarray | None, np.ndarray]]]:
    """The scores, mask and weights of every call of each attention softmax of ``model``
    on ``x`` (`attention_softmaxes`), by the softmax's path.

    Args:
        model: a built Keras model.
        x: its inputs.
        mode: ``"inference"`` or ``"training"``; the model is left as it was (its
            non-trainable variables and every global random state put back).

    Returns:
        ``{path: [(scores, mask or None, weights), ...]}``, one entry per call, as NumPy
        arrays; the softmaxes that were not called are left out (a model without attention
        softmaxes is not called at all).
    """
    found = _held_softmaxes(model)
    captured: dict[str, list[tuple[np.ndarray, np.ndarray | None, np.ndarray]]] = {}
    if not found:  # nothing to read: the model is not called
        return captured
    attentions = [parent for _, _, parent in found if isinstance(parent, ATTENTION)]
    recorder = _recorder({id(layer): path for path, layer, _ in found}, captured)
    with (
        _keras.kept_state(model),
        _keras.explicit_attention(attentions),
        _keras.wrapped_methods([layer for _, layer, _ in found], "call", recorder),
    ):
        model(x, training=mode == "training")
    return captured


def _recorder(
    paths: dict[int, str],
    captured: dict[str, list[tuple[np.ndarray, np.ndarray | None, np.ndarray]]],
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
