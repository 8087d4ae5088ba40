"""`measure` on every backend against an independent float64 computation, at a derived bound.

Runs on TensorFlow, JAX and PyTorch alike (the suite's backend). A two-layer MLP gets the
same weights on every backend (drawn with NumPy); its records are checked against NumPy
float64: the forward statistics on the backend's own layer outputs (a sub-model's
``predict``) at `variance_bound`, the gradients against a float64 backward pass written out
here, at a bound derived from float32 rounding (each gradient element a dot product of
``k`` float32 terms: ``|g32 - g| <= gamma_k |W| |d|``, elementwise, so the variance is off by
at most ``mean(2 |g| e + e^2)`` relative to ``mean(g^2)``, plus the statistics' own bound).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_initlab
from keras_initlab.measurement._statistics import block_terms, gamma, moments, variance_bound
from keras_initlab.measurement._twins import distinct_count

IN, HIDDEN, CLASSES, BATCH = 24, 32, 10, 64


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 200_000),
    offset=st.sampled_from([0.0, 1.0, 10.0, 300.0]),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_float32_moments_within_the_stated_bound(n, offset, scale, seed):
    """`moments` in float32 against NumPy float64 on the same float32 values: the variance
    within ``variance_bound(n, kappa)`` relative, kappa = E[y^2] / Var(y) of the values; the
    mean within ``gamma_k E|y| + u |mean|``."""
    rng = np.random.default_rng(seed)
    y = (offset + rng.standard_normal(n)) * scale
    y32 = y.astype("float32")
    exact = y32.astype(np.float64)
    var = exact.var()
    mean, got = (float(keras.ops.convert_to_numpy(t)) for t in moments(y32))
    if var == 0:
        return
    kappa = float(np.mean(exact**2) / var)
    assert abs(got - var) <= variance_bound(n, kappa) * var
    k = block_terms(n)
    assert abs(mean - exact.mean()) <= gamma(k) * np.mean(np.abs(exact)) + 2**-24 * abs(
        exact.mean()
    )


def test_the_bound_is_tight_enough_to_matter():
    """The bound of a million float32 values is below 2e-4 relative, centred or with a mean
    of 10 standard deviations (kappa = 101: the mean's error enters squared)."""
    assert variance_bound(10**6, 1.0) < 2e-4
    assert variance_bound(10**6, 101.0) < 2e-4


def _model():
    rng = np.random.default_rng(0)
    model = keras.Sequential(
        [
            keras.Input((IN,)),
            keras.layers.Dense(HIDDEN, activation="relu", name="hidden"),
            keras.layers.Dense(CLASSES, activation="softmax", name="out"),
        ]
    )
    model.set_weights(
        [
            rng.standard_normal((IN, HIDDEN)) * math.sqrt(2 / IN),
            rng.standard_normal(HIDDEN) * 0.1,
            rng.standard_normal((HIDDEN, CLASSES)) * math.sqrt(1 / HIDDEN),
            rng.standard_normal(CLASSES) * 0.1,
        ]
    )
    model.compile(loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((BATCH, IN)).astype("float32")
    labels = rng.integers(0, CLASSES, BATCH)
    return model, x, labels


def _within(got, exact, bound):
    assert abs(got - exact) <= bound * abs(exact), (got, exact, bound)


def test_records_match_a_float64_computation():
    model, x, labels = _model()
    records = {r["layer"]: r for r in keras_initlab.measure(model, (x, labels))}
    w1, _, w2, _ = (np.asarray(w, np.float64) for w in model.get_weights())
    outputs = keras.Model(model.inputs[0], [layer.output for layer in model.layers])
    h, p = (np.asarray(keras.ops.convert_to_numpy(t), np.float64) for t in outputs(x))
    for name, y in (("hidden", h), ("out", p)):
        r = records[name]
        kappa = float(np.mean(y**2) / y.var())
        _within(r["activation_var"], y.var(), variance_bound(y.size, kappa))
        rows = BATCH
        unit_bound = variance_bound(rows, float(np.max(np.mean(y**2, 0) / y.var(0))))
        _within(r["channel_var"], y.var(0).mean(), unit_bound)
        assert r["distinct_units"] == distinct_count(y, 1e-3)
        assert r["dead_fraction"] == float(np.mean(np.all(y == 0, axis=0)))
    # The backward pass in float64 from the backend's own outputs: dL/dz of the softmax's
    # logits, dL/dp of its probabilities (what JAX and PyTorch record: no logits shortcut).
    onehot = np.eye(CLASSES)[labels]
    dz = (p - onehot) / BATCH
    dh = dz @ w2.T
    e_h = gamma(CLASSES) * (np.abs(dz) @ np.abs(w2).T)
    g_out = dz if records["out"]["gradient_of"] == "logits" else -onehot / (BATCH * p)
    for name, g, e in (("hidden", dh, e_h), ("out", g_out, np.zeros_like(g_out))):
        exact = g.var()
        rounding = float(np.mean(2 * np.abs(g) * e + e * e)) / exact
        kappa = float(np.mean(g**2) / exact)
        _within(records[name]["gradient_var"], exact, variance_bound(g.size, kappa) + rounding)
    for name, w in (("hidden", w1), ("out", w2)):
        kappa = float(np.mean(w**2) / w.var())
        _within(records[name]["weight_var"], w.var(), variance_bound(w.size, kappa) + 2**-23)
    dw2 = h.T @ dz
    dw1 = x.astype(np.float64).T @ (dh * (h > 0))
    e_w2 = gamma(BATCH) * (np.abs(h).T @ np.abs(dz))
    for name, g, e in (("out", dw2, e_w2),):
        exact = g.var()
        rounding = float(np.mean(2 * np.abs(g) * e + e * e)) / exact
        kappa = float(np.mean(g**2) / exact)
        _within(records[name]["weight_grad_var"], exact, variance_bound(g.size, kappa) + rounding)
    assert records["hidden"]["weight_grad_var"] == pytest.approx(dw1.var(), rel=1e-3)


def test_training_mode_measurement_changes_nothing():
    """A training-mode probe (batch statistics, dropout) leaves every variable as it was."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(2),
        ]
    )
    model.compile(loss="mse")
    before = [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.variables]
    x = np.random.default_rng(0).standard_normal((32, 8)).astype("float32")
    records = keras_initlab.measure(model, (x, np.zeros((32, 2), "float32")), mode="training")
    after = [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    bn = next(r for r in records if r["layer_class"] == "BatchNormalization")
    assert bn["activation_var"] == pytest.approx(1.0, abs=0.01)  # batch statistics


def test_a_constant_initialization_leaves_one_distinct_unit():
    """The seed's symmetry claim on every backend: constant weights make every unit of a
    layer the same (one distinct unit), a zero layer included (variance 0, still counted)."""
    model = keras.Sequential(
        [
            keras.Input((IN,)),
            keras.layers.Dense(HIDDEN, activation="tanh", kernel_initializer="ones", name="a"),
            keras.layers.Dense(HIDDEN, kernel_initializer="zeros", name="b"),
        ]
    )
    x = np.random.default_rng(0).standard_normal((BATCH, IN)).astype("float32")
    records = {r["layer"]: r for r in keras_initlab.measure(model, x)}
    assert records["a"]["distinct_units"] == 1
    assert records["b"]["distinct_units"] == 1
    assert records["b"]["activation_var"] == 0.0
