"""The attention rule (`keras_initlab.attention_rule`): the scores a softmax layer inside an
attention layer computes, read on the probe, and judged against ``2 x 2 ln n``.

References: a plain loop over the rows for the rule's statistics; the scores of a Keras
``MultiHeadAttention`` recomputed in NumPy from its kernels (``q k^T / sqrt(d)`` per head);
the monitor's step-0 alert on a causal Transformer stack built from Keras layers, with and
without its query and key kernels drawn ``d_head^(1/4)`` larger (a lost ``1/sqrt(d_head)``).
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab.attention_rule import attention_scores, attention_softmaxes, judge_scores
from keras_initlab.logits_rule import MARGIN
from tests.model_reading.judge import step0_alerts

L = keras.layers
T, WIDTH, HEADS = 12, 32, 2


def _reference(z, visible):
    """The rule's statistics row by row: a query that sees fewer than two keys is left out."""
    variances, squares, inverse = [], [], []
    for row, seen in zip(z.reshape(-1, z.shape[-1]), visible.reshape(-1, z.shape[-1]), strict=True):
        keys = row[seen]
        if keys.size < 2:
            continue
        variances.append(np.var(keys, ddof=1))
        p = np.exp(keys - keys.max())
        squares.append(np.sum((p / p.sum()) ** 2))
        inverse.append(1.0 / keys.size)
    return np.mean(variances), np.mean(squares), np.mean(inverse)


@pytest.mark.parametrize("scale", [0.5, 1.0, 6.0])
def test_judge_scores_matches_a_row_by_row_computation(scale):
    rng = np.random.default_rng(0)
    z = scale * rng.standard_normal((3, 2, T, T))
    visible = np.tri(T, T, dtype=bool) & (rng.random((3, 1, 1, T)) < 0.8)
    finding = judge_scores(z, visible)
    variance, square, uniform = _reference(z, np.broadcast_to(visible, z.shape))
    assert finding.variance == pytest.approx(variance, rel=1e-12)
    assert finding.participation == pytest.approx(square, rel=1e-12)
    assert finding.uniform == pytest.approx(uniform, rel=1e-12)
    assert finding.keys == int(np.broadcast_to(visible, z.shape).sum(-1).max())
    assert finding.limit == pytest.approx(MARGIN * 2 * math.log(finding.keys), rel=1e-15)
    assert finding.exceeds == (variance > finding.limit)


def test_rows_with_fewer_than_two_keys_carry_no_variance():
    finding = judge_scores(np.zeros((4, 3)), np.array([1, 0, 0]))
    assert math.isnan(finding.variance)
    assert not finding.exceeds
    assert math.isinf(judge_scores(np.zeros((2, 1))).limit)


def _stack(blocks=2, lost=False, dropout=0.0):
    x = keras.Input((T, WIDTH), name="x")
    h = x
    for b in range(blocks):
        a = L.MultiHeadAttention(HEADS, WIDTH // HEADS, dropout=dropout, name=f"mha{b}")(
            L.LayerNormalization(name=f"ln{b}")(h),
            L.LayerNormalization(name=f"lnk{b}")(h),
            use_causal_mask=True,
        )
        h = L.Add(name=f"add{b}")([h, a])
    y = L.Dense(5, name="head")(L.GlobalAveragePooling1D(name="gap")(h))
    model = keras.Model(x, L.Softmax(name="probabilities")(y))
    keras_initlab.initialize(model, "he_normal", seed=1)
    if lost:
        for variable in model.weights:
            if variable.path.endswith(("query/kernel", "key/kernel")):
                variable.assign(variable.numpy() * variable.shape[-1] ** 0.25)
    return model


def test_the_scores_read_are_multi_head_attentions_own():
    model = _stack(blocks=1)
    x = np.random.default_rng(2).standard_normal((3, T, WIDTH)).astype("float32")
    before = [w.numpy().copy() for w in model.weights]
    attention = model.get_layer("mha0")
    ((scores, mask, weights),) = attention_scores(model, x)[f"mha0/{attention._softmax.name}"]
    q_in = keras.ops.convert_to_numpy(model.get_layer("ln0")(x))
    k_in = keras.ops.convert_to_numpy(model.get_layer("lnk0")(x))
    q = np.einsum("btd,dhk->bhtk", q_in, attention.query_dense.kernel.numpy())
    k = np.einsum("btd,dhk->bhtk", k_in, attention.key_dense.kernel.numpy())
    expected = np.einsum("bhtk,bhsk->bhts", q, k) / math.sqrt(WIDTH // HEADS)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(mask > 0.5, np.broadcast_to(np.tri(T, T, dtype=bool), mask.shape))
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert "call" not in vars(attention._softmax)  # the layer's own call is back
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights, strict=True))


def test_only_the_softmaxes_inside_attention_layers_are_read():
    """The classifier's output Softmax sits at the model's level: the logits rule's."""
    model = _stack()
    assert [path for path, _ in attention_softmaxes(model)] == [
        f"mha{b}/{model.get_layer(f'mha{b}')._softmax.name}" for b in range(2)
    ]


def _attention_alerts(model):
    """The step-0 alerts on 8 probe sequences, and those of kind "attention"."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, T, WIDTH)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alerts, _, _ = step0_alerts(model, x, rng.integers(0, 5, 8))
    return alerts, [a for a in alerts if a.kind == "attention"]


@pytest.mark.parametrize("lost", [False, True])
def test_a_lost_scale_draws_the_attention_alert_at_step_0(lost):
    """He: the scores' variance is about 2 x 2 (q and k of variance 2 per element after a
    LayerNorm) = 4 < 2 x 2 ln 12 = 9.9. Lost ``1/sqrt(d_head)``: about 4 x 16 = 64."""
    alerts, attention = _attention_alerts(_stack(lost=lost, dropout=0.1))
    if not lost:
        assert [a.message for a in alerts] == []
        return
    (alert,) = attention
    assert alert.layer.startswith("mha0/softmax")
    assert "in 2 of 2 attention softmaxes" in alert.what
    assert alert.factor > 2 * 2 * math.log(T)


def test_a_model_without_attention_is_not_called():
    calls = []

    class Counted(L.Layer):
        def call(self, x):
            calls.append(1)
            return x

    x = keras.Input((4,))
    model = keras.Model(x, L.Softmax()(Counted()(L.Dense(3)(x))))
    calls.clear()  # the symbolic call that built the graph
    assert attention_scores(model, np.zeros((2, 4), "float32")) == {}
    assert calls == []


def _fused(groups=2, causal=True, scale=None, lost=False):
    """A classifier whose attention is ``keras.ops.dot_product_attention`` at its own level:
    EinsumDense projections, 4 query heads of 8 sharing ``4 // groups`` key and value heads,
    He-initialized (query and key kernels ``8^(1/4)`` larger where ``lost``)."""
    x = keras.Input((T, WIDTH), name="x")
    heads, dim = 4, 8

    def project(name, count):
        return L.EinsumDense("btd,dnh->btnh", (T, count, dim), name=name)(x)

    q, k, v = (
        project("query", heads),
        project("key", heads // groups),
        project("value", heads // groups),
    )
    a = keras.ops.dot_product_attention(q, k, v, scale=scale, is_causal=causal)
    h = L.Reshape((T, heads * dim), name="heads")(a)
    y = L.Dense(5, name="head")(L.GlobalAveragePooling1D(name="gap")(h))
    model = keras.Model(x, L.Softmax(name="probabilities")(y), name="fused")
    keras_initlab.initialize(model, "he_normal", seed=1)
    if lost:
        for name in ("query", "key"):
            kernel = model.get_layer(name).kernel
            kernel.assign(keras.ops.convert_to_numpy(kernel) * dim**0.25)
    return model


@pytest.mark.parametrize(("groups", "causal", "scale"), [(1, False, None), (2, True, 0.5)])
def test_the_scores_of_a_fused_attention_give_back_its_output(groups, causal, scale):
    """The scores read from a ``dot_product_attention`` node (its query and key, key heads
    repeated for their group, times ``scale``, masked) are the operation's own: their
    softmax averages the values into its output (to float32 rounding)."""
    model = _fused(groups, causal, scale)
    x = np.random.default_rng(2).standard_normal((3, T, WIDTH)).astype("float32")
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    (node,) = [op.name for op in model.operations if type(op).__name__ == "DotProductAttention"]
    ((scores, mask, weights),) = attention_scores(model, x)[node]
    parts = keras.Model(
        model.input, [model.get_layer("value").output, model.get_layer("heads").input]
    )
    v, out = (keras.ops.convert_to_numpy(t) for t in parts(x))
    visible = np.ones(scores.shape, bool) if mask is None else mask
    if causal:
        np.testing.assert_array_equal(visible, np.broadcast_to(np.tri(T, T) > 0, scores.shape))
    assert weights is None
    e = np.where(visible, np.exp(scores - scores.max(-1, keepdims=True)), 0.0)
    p = e / e.sum(-1, keepdims=True)
    expected = np.einsum("bnts,bsnh->btnh", p, np.repeat(v, groups, axis=-2))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    after = [keras.ops.convert_to_numpy(w) for w in model.weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("lost", [False, True])
def test_a_lost_scale_in_a_fused_attention_draws_the_alert(lost):
    """He: q and k of variance 2 per element (fan-in 32), scores ``q.k / sqrt(8)`` of
    variance 2 x 2 = 4; a lost ``1/sqrt(d_head)``: 8 x 4 = 32, beyond 2 x 2 ln 12 = 9.9
    for the 12 keys of the last query."""
    model = _fused(lost=lost)
    _, attention = _attention_alerts(model)
    if not lost:
        assert attention == []
        return
    (alert,) = attention
    assert [alert.layer] == [
        op.name for op in model.operations if type(op).__name__ == "DotProductAttention"
    ]
    assert alert.factor > 2 * 2 * math.log(T)
