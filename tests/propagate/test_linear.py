"""Projections of one tensor and their covariance (`keras_initlab.propagate._linear`): a
query's score for its own key.

References: the trace of the two kernels (``E[x^T A^T B x] = tr(A^T B)`` for ``x`` of unit
variance, independent features); `measure` on causal self-attention whose query and key
kernels share their draws, in the three forms attention takes; the same stacks with the
covariance dropped, which the bounds refuse (the test can fail).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab.propagate import _linear
from keras_initlab.testing import prediction_agreement
from tests.propagate.test_positions import BOUNDS, WIDTH, T, _attention

L = keras.layers


def _scores(shared: bool) -> keras.Model:
    keras.utils.set_random_seed(1)
    x = keras.Input((T, WIDTH))
    q = L.Dense(8, use_bias=False, name="q")(x)
    k = L.Dense(8, use_bias=False, name="k")(x)
    model = keras.Model(x, keras.ops.einsum("btd,bsd->bts", q, k))
    if shared:
        model.get_layer("k").kernel.assign(model.get_layer("q").kernel)
    return model


@pytest.mark.parametrize("shared", [True, False])
def test_a_score_of_two_projections_has_their_kernels_trace_as_mean(shared):
    """Over the ``T x T`` scores only the ``T`` diagonal ones read one position twice:
    the mean over all of them is ``tr(W_q^T W_k) / T`` (large where the kernels share
    draws, the size of one draw's chance where they do not), exactly."""
    model = _scores(shared)
    report = keras_initlab.propagate(model, batch_size=16)
    w_q, w_k = (np.asarray(model.get_layer(n).kernel, dtype=np.float64) for n in "qk")
    expected = np.trace(w_q.T @ w_k) / T
    assert report.rows[-1].activation_mean == pytest.approx(expected, rel=1e-9)
    assert (abs(expected) > 0.4) == shared


def _shared_stack(form: str) -> keras.Model:
    """Two pre-norm causal self-attention blocks whose key kernels are their query
    kernels (Keras draws the same numbers at each call of one unseeded initializer
    instance: keras_hub's Llama and Gemma attentions pass one to all four projections)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((T, WIDTH))
    h = x
    for i in range(2):
        branch = _attention(form, L.LayerNormalization(name=f"ln{i}")(h), i)
        h = L.Add(name=f"add{i}")([h, branch])
    model = keras.Model(x, L.Dense(WIDTH, name="head")(h))
    rng = np.random.default_rng(0)
    for i in range(2):
        if form == "layer":
            att = model.get_layer(f"att{i}")
            q, k = att.query_dense, att.key_dense
        elif form == "fused":
            q, k = model.get_layer(f"q{i}"), model.get_layer(f"k{i}")
        else:
            att = model.get_layer(f"att{i}")
            q, k = att.q, att.k
        # one draw of variance 1/WIDTH for both (each Keras release draws its own scale)
        kernel = rng.normal(0.0, np.sqrt(1.0 / WIDTH), q.kernel.shape).astype("float32")
        q.kernel.assign(kernel)
        k.kernel.assign(kernel)
    return model


@pytest.mark.parametrize("form", ["layer", "fused", "explicit"])
def test_attention_whose_query_and_key_share_draws_is_predicted(form, monkeypatch):
    """Each query scores its own key about 4 above the others (``scale ||W||^2``: 32 x 16
    draws of variance 1/32 per head, over ``sqrt(16)``): the softmax of those logits keeps the
    prediction within the bounds; read as independent, the attention and the rows after
    it are not."""
    model = _shared_stack(form)
    probe = np.random.default_rng(0).standard_normal((256, T, WIDTH)).astype("float32")
    agreement = prediction_agreement(model, probe)
    assert agreement.share == 1.0, [r.layer for r in agreement.not_predicted]
    for summary in (agreement.activation, agreement.gradient):
        assert summary.median <= BOUNDS[0], str(agreement)
        assert summary.p90 <= BOUNDS[1], str(agreement)
    monkeypatch.setattr(_linear, "contracted", lambda *args: None)
    independent = prediction_agreement(model, probe)
    assert max(independent.activation.p90, independent.gradient.p90) > BOUNDS[1]
