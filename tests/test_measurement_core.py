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

import json
import math
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_initlab
from keras_initlab.callbacks import VarianceMonitor
from keras_initlab.measurement._statistics import block_terms, gamma, moments, variance_bound
from keras_initlab.measurement._twins import distinct_count
from tests.float32_bounds import channel_bounds, mean_error, variance_rtol
from tests.tied_embedding import BATCH as TIED_BATCH
from tests.tied_embedding import check_records, tied_model

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


# TensorFlow's records of `_model()`'s probe, saved once (`python -m
# tests.test_measurement_core --write` in the TensorFlow environment writes them again):
# the other environments have no TensorFlow to compute them.
SAVED = Path(__file__).parent / "data" / "core_records_tensorflow.json"
FORWARD_COLUMNS = ("activation_mean", "activation_var", "channel_mean_sq", "channel_var")


def _forward_errors(x, weights):
    """The exact float64 forward pass of `_model()` and, per layer, an elementwise bound of
    any float32 computation's distance from it: a dot product of ``k`` terms plus a bias is
    within ``gamma_{k+1} (|x| |W| + |b|)`` whatever the summation order (FMA and blocking
    included); ReLU is 1-Lipschitz; the softmax moves ``p_i`` by at most ``p_i (2 max_j |dz_j|
    + gamma_{C+4})`` for a logit error ``dz`` (its exp, sum and division add the last term;
    first order, the errors being about 1e-6)."""
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in weights)
    x = np.asarray(x, np.float64)
    z1 = x @ w1 + b1
    h = np.maximum(z1, 0.0)
    e_h = gamma(IN + 1) * (np.abs(x) @ np.abs(w1) + np.abs(b1))
    z2 = h @ w2 + b2
    e_z = gamma(HIDDEN + 1) * ((np.abs(h) + e_h) @ np.abs(w2) + np.abs(b2)) + e_h @ np.abs(w2)
    p = np.exp(z2 - z2.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    e_p = p * (2.0 * e_z.max(1, keepdims=True) + gamma(CLASSES + 4))
    return {"hidden": (h, e_h), "out": (p, e_p)}


def _forward_spread(y, e):
    """How far each of `FORWARD_COLUMNS` of ``y`` can move when every element moves by at
    most ``e``: the mean by ``mean(e)``; a variance about any centre by ``2 mean(|y - m| e) +
    mean(e^2)`` (``var(y + d) = var(y) + 2 cov(y, d) + var(d)``); per unit alike."""
    m, mc = y.mean(), y.mean(0)
    ec = e.mean(0)
    return {
        "activation_mean": float(e.mean()),
        "activation_var": float(2 * np.mean(np.abs(y - m) * e) + np.mean(e * e)),
        "channel_mean_sq": float(np.mean(2 * np.abs(mc) * ec + ec * ec)),
        "channel_var": float(np.mean(2 * np.mean(np.abs(y - mc) * e, 0) + np.mean(e * e, 0))),
    }


def _statistics_error(y, column):
    """The float32 statistics' own bound on one of `FORWARD_COLUMNS` (absolute)."""
    if column == "activation_mean":
        return mean_error(y)
    if column == "activation_var":
        return variance_rtol(y) * float(y.var())
    _, channel_var, mean_sq_tol, var_rtol = channel_bounds(y)
    return mean_sq_tol if column == "channel_mean_sq" else var_rtol * channel_var


def _saved_records():
    model, x, labels = _model()
    return {r["layer"]: r for r in keras_initlab.measure(model, (x, labels))}


def test_records_match_tensorflows_saved_records():
    """The same weights and probe on this backend and on TensorFlow (records saved there):
    the forward columns within twice the derived distance of a float32 forward pass from
    the exact one plus both sides' statistics bounds; the counts and the weights' variances
    (the same float32 weights) alike. The gradient columns are checked per backend against
    float64 above (TensorFlow records the softmax's logits, the others its output)."""
    saved = json.loads(SAVED.read_text())
    records = _saved_records()
    model, x, _ = _model()
    exact = _forward_errors(x, model.get_weights())
    for name, (y, e) in exact.items():
        spread = _forward_spread(y, e)
        for column in FORWARD_COLUMNS:
            bound = 2 * (spread[column] + _statistics_error(y, column))
            got, theirs = records[name][column], saved[name][column]
            assert abs(got - theirs) <= bound, (name, column, got, theirs, bound)
        for column in ("dead_fraction", "distinct_units", "non_finite_weights"):
            assert records[name][column] == saved[name][column], (name, column)
        w = np.asarray(model.get_layer(name).kernel.numpy(), np.float64)
        bound = 2 * variance_bound(w.size, float(np.mean(w**2) / w.var())) * w.var()
        assert abs(records[name]["weight_var"] - saved[name]["weight_var"]) <= bound, name


def test_float64_precision_where_the_backend_has_it():
    """``precision="float64"``: the forward statistics of the backend's own float32 outputs
    within the float64 bound; JAX without x64 refuses it, naming the argument and the fix."""
    model, x, labels = _model()
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.read("jax_enable_x64"):
            with pytest.raises(ValueError, match=r"precision.*jax_enable_x64"):
                keras_initlab.measure(model, (x, labels), precision="float64")
            return
    with pytest.raises(ValueError, match="precision"):
        keras_initlab.measure(model, (x, labels), precision="float16")
    records = {
        r["layer"]: r for r in keras_initlab.measure(model, (x, labels), precision="float64")
    }
    outputs = keras.Model(model.inputs[0], [layer.output for layer in model.layers])
    for name, t in zip(("hidden", "out"), outputs(x), strict=True):
        y = np.asarray(keras.ops.convert_to_numpy(t), np.float64)
        kappa = float(np.mean(y**2) / y.var())
        bound = variance_bound(BATCH, kappa, "float64", units=y.shape[1])
        _within(records[name]["activation_var"], y.var(), bound)
        assert bound < 1e-12  # (a float32 computation would be off by far more)


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


def test_a_record_without_distinct_units_is_the_same_record_from_the_same_trace():
    """``distinct=False`` (the monitor's records between its ends) leaves only
    ``distinct_units`` out, on every backend: the other columns are bit-identical, and a
    pass with it after one without still counts it (one traced pass holds both)."""
    model = keras.Sequential(
        [
            keras.Input((IN,)),
            keras.layers.Dense(HIDDEN, activation="relu", kernel_initializer="ones", name="a"),
            keras.layers.Dense(CLASSES, name="b"),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    data = (
        rng.standard_normal((BATCH, IN)).astype("float32"),
        rng.standard_normal((BATCH, CLASSES)).astype("float32"),
    )
    measurement = keras_initlab.measurement.Measurement(model)
    first, without, again = (measurement(data, distinct=d) for d in (True, False, True))
    assert [r["distinct_units"] for r in without] == [None, None]
    assert [r["distinct_units"] for r in first] == [r["distinct_units"] for r in again] == [1, 10]
    for a, b in zip(without, again, strict=True):
        assert {k: v for k, v in a.items() if k != "distinct_units"} == {
            k: v for k, v in b.items() if k != "distinct_units"
        }


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:  # (TensorFlow only)
    assert keras.backend.backend() == "tensorflow", "the saved records are TensorFlow's"
    columns = (*FORWARD_COLUMNS, "dead_fraction", "distinct_units", "non_finite_weights")
    found = {
        name: {c: r[c] for c in (*columns, "weight_var")} for name, r in _saved_records().items()
    }
    SAVED.parent.mkdir(exist_ok=True)
    SAVED.write_text(json.dumps(found, indent=1) + "\n")


def test_each_call_of_a_tied_embedding_gets_its_own_record():
    """The lookup (``embed``: (batch, tokens, width)) and the reversed call that makes the
    logits (``embed@2``: (batch, tokens, vocabulary)) of one layer are two records, each
    against NumPy float64 from the weights (`tests.tied_embedding.check_records`)."""
    model, x, labels = tied_model()
    records = keras_initlab.measure(model, (x, labels))
    check_records(records, model.get_weights()[0], x, labels)


def test_the_monitor_records_each_call_in_every_source():
    """A fit with batch records names both calls in the probe's and the step's records."""
    model, x, labels = tied_model()
    monitor = VarianceMonitor((x, labels), every_n_batches=1, alert=False)
    model.fit(
        np.tile(x, (3, 1)),
        np.tile(labels, (3, 1)),
        batch_size=TIED_BATCH,
        verbose=0,
        callbacks=[monitor],
    )
    for source in ("probe", "in_step"):
        names = [r["layer"] for r in monitor.records if r["source"] == source]
        assert set(names) == {"embed", "embed@2"}, source


def test_wide_offset_layers_pool_their_units_within_the_bound():
    """Layers wider than `WHOLE` units (their per-layer sums over units blocked too) whose
    units carry large, unequal means (kappa in the hundreds: the pooled variance adds each
    unit's residual and its mean's offset): three outputs of two widths (two of one shape,
    finished together), against NumPy float64 on the backend's own outputs, at
    `variance_bound` with those units; the mean square of the unit means and the mean unit
    variance alike."""
    from keras_initlab.measurement._statistics import WHOLE

    rng = np.random.default_rng(4)
    inputs = keras.Input((IN,))
    widths = {"wide": 3 * WHOLE + 5, "wider": 2 * WHOLE}
    outs = {}
    for name, width in widths.items():
        layer = keras.layers.Dense(width, name=name)
        outs[name] = layer(inputs)
        layer.set_weights([0.3 * rng.standard_normal((IN, width)), 30.0 + 2.0 * rng.random(width)])
    twin = keras.layers.Dense(widths["wide"], name="twin")
    outs["twin"] = twin(inputs)
    twin.set_weights(
        [0.3 * rng.standard_normal((IN, widths["wide"])), 35.0 + 3.0 * rng.random(widths["wide"])]
    )
    model = keras.Model(inputs, list(outs.values()))
    x = rng.standard_normal((BATCH, IN)).astype("float32")
    records = {r["layer"]: r for r in keras_initlab.measure(model, x, layers=list(outs))}
    for name, t in zip(outs, model(x), strict=True):
        y = np.asarray(keras.ops.convert_to_numpy(t), np.float64)
        kappa = float(np.mean(y**2) / y.var())
        assert kappa > 100
        bound = variance_bound(BATCH, kappa, "float32", units=y.shape[1])
        _within(records[name]["activation_var"], y.var(), bound)
        _within(records[name]["channel_var"], y.var(axis=0).mean(), bound)
        _within(records[name]["channel_mean_sq"], np.mean(y.mean(axis=0) ** 2), bound)


class _Holder(keras.layers.Layer):
    """Holds a sublayer its call never uses."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.used = keras.layers.Dense(4, name="used")
        self.unused = keras.layers.Dense(4, name="unused")

    def build(self, shape):
        self.used.build(shape)
        self.unused.build(shape)

    def call(self, x):
        return self.used(x)


def test_a_measurement_whose_layers_all_did_not_run_has_no_record():
    """Every measured layer skipped (a sublayer its parent never calls): no record, no
    error, on every backend."""
    model = keras.Sequential([keras.Input((IN,)), _Holder(name="holder")])
    x = np.random.default_rng(0).standard_normal((BATCH, IN)).astype("float32")
    assert keras_initlab.measure(model, x, layers=["holder/unused"]) == []
    assert [r["layer"] for r in keras_initlab.measure(model, x, layers=["holder/used"])] == [
        "holder/used"
    ]
