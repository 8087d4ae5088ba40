"""Correlation between positions (`keras_initlab.propagate._positions`): what attention's
averages make of a sequence, carried to the next attention.

References: the closed form of uniform weights over causal prefixes; a bivariate
Gauss-Hermite quadrature for an activation of correlated Gaussians (Mehler's expansion is
cut at order 8: by Parseval, ``sum_k c_k^2 / k! = Var(f)``, so the terms left out change the
correlation by at most ``rho^9``); `measure` on causal self-attention stacks in the three
forms attention takes (``MultiHeadAttention``, the fused ``dot_product_attention``, and
einsums around a masked ``Softmax`` layer).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab.propagate import _positions
from keras_initlab.propagate._signal import make
from keras_initlab.testing import prediction_agreement

L = keras.layers
T, WIDTH, HEADS, DIM = 16, 32, 2, 16
BOUNDS = (np.log(1.25), np.log(2.0))  # median and 90th percentile of |log(pred / meas)|


def test_uniform_weights_over_causal_prefixes_match_the_closed_form():
    """``o_t`` the mean of independent unit values over ``0..t``: ``Var(o_t) = 1/(t+1)``
    and ``Cov(o_t, o_u) = 1/(max(t, u)+1)``, so ``R_tu = sqrt((min + 1) / (max + 1))``; a
    second average of those outputs keeps ``(W R W^T)_tt``, not ``sum_s W_ts^2``."""
    prefix = np.tri(T) / np.arange(1, T + 1)[:, None]
    values = make(np.zeros((T, 4)), np.ones((T, 4)))
    var, r = _positions.averaged(prefix, np.zeros((T, T)), values)
    t = np.arange(T)
    np.testing.assert_allclose(var, 1.0 / (t + 1), rtol=1e-12)
    low, high = np.minimum.outer(t, t), np.maximum.outer(t, t)
    np.testing.assert_allclose(r, np.sqrt((low + 1) / (high + 1)), rtol=1e-12)
    outputs = make(np.zeros((T, 4)), np.broadcast_to(var[:, None], (T, 4)))
    again, _ = _positions.averaged(prefix, np.zeros((T, T)), outputs.with_positions(r))
    c = r * np.sqrt(np.outer(var, var))
    np.testing.assert_allclose(again, np.diag(prefix @ c @ prefix.T), rtol=1e-12)
    assert np.all(again[1:] > (prefix**2 @ var)[1:])


@pytest.mark.parametrize("rho", [0.2, 0.5, -0.4])
def test_an_activation_of_correlated_gaussians_follows_mehlers_expansion(rho):
    mean, std = 0.3, 1.2
    e, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    a = mean + std * e[:, None]
    b = mean + std * (rho * e[:, None] + np.sqrt(1 - rho**2) * e[None, :])
    fa, fb = np.tanh(a), np.tanh(b)
    ma = np.tanh(mean + std * e) @ w
    var = (np.tanh(mean + std * e) ** 2) @ w - ma**2
    expected = (w @ (fa * fb) @ w - ma * ma) / var
    r = np.array([[1.0, rho], [rho, 1.0]])
    got = _positions._mehler(r, np.tanh, mean, std)[0, 1]
    assert abs(got - expected) <= abs(rho) ** 9 + 1e-12


class _Explicit(L.Layer):
    """Causal self-attention written with einsums around a masked ``Softmax`` layer."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.q, self.k, self.v = (
            L.EinsumDense("btd,dnh->btnh", (T, HEADS, DIM), name=n) for n in "qkv"
        )
        self.o = L.EinsumDense("btnh,nhd->btd", (T, WIDTH), name="o")
        self.softmax = L.Softmax(name="softmax")

    def call(self, x):
        s = keras.ops.einsum("btnh,bsnh->bnts", self.q(x), self.k(x)) / np.sqrt(DIM)
        mask = keras.ops.cast(keras.ops.tril(keras.ops.ones((T, T))), "bool")[None, None]
        return self.o(keras.ops.einsum("bnts,bsnh->btnh", self.softmax(s, mask=mask), self.v(x)))


def _attention(form, h, i):
    if form == "layer":
        return L.MultiHeadAttention(HEADS, DIM, name=f"att{i}")(h, h, use_causal_mask=True)
    if form == "fused":
        q, k, v = (
            L.EinsumDense("btd,dnh->btnh", (T, HEADS, DIM), name=f"{n}{i}")(h) for n in "qkv"
        )
        a = keras.ops.dot_product_attention(q, k, v, is_causal=True)
        return L.EinsumDense("btnh,nhd->btd", (T, WIDTH), name=f"o{i}")(a)
    return _Explicit(name=f"att{i}")(h)


def _stack(form: str, depth: int) -> keras.Model:
    """``depth`` pre-norm causal self-attention blocks without a position embedding."""
    keras.utils.set_random_seed(0)
    x = keras.Input((T, WIDTH))
    h = x
    for i in range(depth):
        branch = _attention(form, L.LayerNormalization(name=f"ln{i}")(h), i)
        h = L.Add(name=f"add{i}")([h, branch])
    return keras.Model(x, L.Dense(WIDTH, name="head")(h))


PROBE = np.random.default_rng(0).standard_normal((256, T, WIDTH)).astype("float32")


@pytest.mark.parametrize("form", ["layer", "fused", "explicit"])
def test_a_stack_of_causal_attention_is_predicted_with_correlated_positions(form):
    """Three pre-norm causal self-attention blocks without a position embedding: the
    second and third average outputs of the first, correlated across positions. Every
    activation within 1.25x of the measurement (the positions read as independent: the
    third attention's output 1.45x low); the gradients, read as independent across
    positions, within the issue's bounds."""
    agreement = prediction_agreement(_stack(form, 3), PROBE)
    assert agreement.share == 1.0, [r.layer for r in agreement.not_predicted]
    assert agreement.activation.max <= BOUNDS[0], str(agreement)
    assert agreement.gradient.median <= BOUNDS[0], str(agreement)
    assert agreement.gradient.p90 <= BOUNDS[1], str(agreement)


@pytest.mark.parametrize("form", ["layer", "fused", "explicit"])
def test_a_deep_stacks_queries_and_keys_get_what_the_softmax_projection_leaves(form, monkeypatch):
    """Eight blocks: the later attentions average values nearly alike across positions,
    so the gradient their softmax receives (``g . v_s`` per key) is nearly alike across
    keys, and its projection removes that common part: the query and key gradients were
    predicted up to 5x too large without `projection_share` (gradient 90th percentile
    beyond 2x); with it, within the bounds. Glorot on the true fans (Keras 3.12 draws
    EinsumDense kernels on its shape rule, 3x smaller in std, where the branches barely
    move the stream)."""
    model = _stack(form, 8)
    keras_initlab.initialize(model, "glorot_normal", seed=0)
    agreement = prediction_agreement(model, PROBE)
    assert agreement.gradient.median <= BOUNDS[0], str(agreement)
    assert agreement.gradient.p90 <= BOUNDS[1], str(agreement)
    monkeypatch.setattr(_positions, "projection_share", lambda weights, r: 1.0)
    assert prediction_agreement(model, PROBE).gradient.p90 > BOUNDS[1]
