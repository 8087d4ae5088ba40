"""`keras_initlab.measure`: the monitor's numbers as a library call, the model untouched.

References: the monitor's own step-0 records (same keys and layer names), a plain NumPy
computation of each layer output from a sub-model, and a GradientTape of the loss.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_initlab import HeNormal, measure, propagate
from keras_initlab.callbacks import RECORD_KEYS, VarianceMonitor
from keras_initlab.measurement import MAX_DISTINCT_UNITS, Measurement
from keras_initlab.measurement._statistics import variance_bound
from tests.float32_bounds import channel_bounds, mean_error, variance_rtol

L = keras.layers
RTOL = 1e-12  # the same float32 statistics of exactly scaled values: no rounding apart


def residual_model(seed: int = 0, compile: bool = True) -> keras.Model:
    """Conv stem, BatchNorm, a residual Add, Concatenate, Multiply, LayerNorm, dropout head."""
    init = [HeNormal(seed=seed + i) for i in range(6)]
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(8, 3, padding="same", kernel_initializer=init[0], name="stem")(x)
    h = L.BatchNormalization(name="bn")(h)
    h = L.ReLU(name="relu")(h)
    b = L.Conv2D(8, 3, padding="same", activation="relu", kernel_initializer=init[1], name="b1")(h)
    b = L.Conv2D(8, 3, padding="same", kernel_initializer=init[2], name="b2")(b)
    h = L.Add(name="add")([h, b])
    h = L.Concatenate(name="cat")([h, L.Conv2D(4, 1, kernel_initializer=init[3], name="side")(h)])
    h = L.Multiply(name="gate")([h, L.Activation("sigmoid", name="sig")(h)])
    h = L.GlobalAveragePooling2D(name="pool")(h)
    h = L.LayerNormalization(name="ln")(h)
    h = L.Dropout(0.5, seed=seed, name="drop")(h)
    out = L.Dense(5, activation="softmax", kernel_initializer=init[4], name="head")(h)
    model = keras.Model(x, out)
    if compile:
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((64, 8, 8, 3)).astype("float32"), rng.integers(0, 5, 64)


def _state(model: keras.Model) -> dict[int, np.ndarray]:
    """Every variable of the model, its optimizer and its metrics, by identity."""
    variables = [*model.variables, *model.optimizer.variables, *model.metrics_variables]
    return {id(v): v.numpy() for v in variables}


def test_records_cover_merge_and_normalization_layers(data):
    model = residual_model()
    names = [r["layer"] for r in measure(model, data)]
    assert names == [
        "stem",
        "bn",
        "relu",
        "b1",
        "b2",
        "add",
        "side",
        "cat",
        "sig",
        "gate",
        "ln",
        "head",
    ]
    # Any leaf layer can be asked for by name: pooling and dropout too.
    asked = measure(model, data, layers=["pool", "drop"])
    assert [r["layer_class"] for r in asked] == ["GlobalAveragePooling2D", "Dropout"]


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_equal_to_the_monitors_step0_records_and_model_untouched(data, mode):
    x, y = data
    model = residual_model()
    measured_model = residual_model()  # the same weights: measured first, then fitted
    model.optimizer.build(model.trainable_variables)
    before = _state(model)
    rng_state = np.random.get_state()[1].copy()  # noqa: NPY002 (the global state itself)
    records = measure(model, data, mode=mode)
    after = _state(model)
    assert all(np.array_equal(value, after[key]) for key, value in before.items())
    # What the measurement built (the compiled loss and metrics) starts at zero.
    assert all(not np.any(after[key]) for key in after.keys() - before.keys())
    assert np.array_equal(np.random.get_state()[1], rng_state)  # noqa: NPY002
    assert model.train_function is None  # no fit, nothing traced for training

    monitor = VarianceMonitor(data, probe_mode=mode, alert=False)
    measured_model.fit(x, y, epochs=0, batch_size=64, verbose=0, callbacks=[monitor])
    step0 = [r for r in monitor.records if r["event"] == "train_begin"]
    assert len(step0) == len(records) == 12
    context = ("epoch", "event")
    for got, want in zip(records, step0, strict=True):
        assert set(got) == set(RECORD_KEYS)
        assert {k: got[k] for k in RECORD_KEYS if k not in context} == {
            k: want[k] for k in RECORD_KEYS if k not in context
        }
    assert {r["event"] for r in records} == {"measure"}
    assert records[0]["epoch"] is None


def test_merge_layer_numbers_match_numpy_and_a_gradient_tape(data):
    x, y = data
    model = residual_model()
    add = model.get_layer("add")
    records = {r["layer"]: r for r in measure(model, data)}
    # Forward: the Add output from a sub-model, statistics in NumPy float64.
    sub = keras.Model(model.input, add.output)
    a = np.asarray(sub(x, training=False), np.float64)
    assert records["add"]["activation_var"] == pytest.approx(a.var(), rel=variance_rtol(a))
    assert records["add"]["activation_mean"] == pytest.approx(a.mean(), abs=mean_error(a))
    # Backward: dL/d(add output) of the compiled loss, by a tape through the rest of the model.
    rest_input = keras.Input(add.output.shape[1:])
    h = rest_input
    for name in ("cat", "gate", "pool", "ln", "drop", "head"):
        layer = model.get_layer(name)
        if name == "cat":
            h = layer([h, model.get_layer("side")(h)])
        elif name == "gate":
            h = layer([h, model.get_layer("sig")(h)])
        else:
            h = layer(h)
    rest = keras.Model(rest_input, h)
    t = tf.constant(a.astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(t)
        loss = keras.losses.SparseCategoricalCrossentropy()(y, rest(t, training=False))
    g = np.asarray(tape.gradient(loss, t), np.float64)
    assert records["add"]["gradient_var"] == pytest.approx(g.var(), rel=1e-4)


def test_channel_statistics_match_numpy(data):
    x, _ = data
    model = residual_model()
    records = {r["layer"]: r for r in measure(model, data)}
    for name in ("stem", "bn", "relu", "add", "cat", "gate", "ln", "head"):
        a = np.asarray(keras.Model(model.input, model.get_layer(name).output)(x), np.float64)
        mean_sq, var, mean_sq_tol, var_rtol = channel_bounds(a)
        assert records[name]["channel_mean_sq"] == pytest.approx(mean_sq, abs=mean_sq_tol), name
        assert records[name]["channel_var"] == pytest.approx(var, rel=var_rtol), name


def test_channel_statistics_of_a_shared_and_a_wide_layer():
    """Each call of a shared layer gets its own record (``shared``, ``shared@2``, in the
    order the model runs them); a layer past `MAX_DISTINCT_UNITS` (no Gram matrix) gets
    them from its own sums of squares."""
    x = keras.Input((6,))
    wide = L.Dense(MAX_DISTINCT_UNITS + 7, activation="relu", name="wide")(x)
    shared = L.Dense(3, name="shared")
    out = L.Add(name="add")([shared(L.Dense(6, name="left")(wide)), shared(x)])
    model = keras.Model(x, out)
    xs = np.random.default_rng(2).standard_normal((16, 6)).astype("float32") + 0.5
    records = {r["layer"]: r for r in measure(model, xs, layers=["wide", "shared"])}
    left = keras.Model(x, model.get_layer("left").output)(xs)
    calls = [shared(left), shared(xs)]
    outputs = {
        "wide": np.asarray(keras.Model(x, wide)(xs), np.float64),
        "shared": np.asarray(calls[0], np.float64),
        "shared@2": np.asarray(calls[1], np.float64),
    }
    for name, a in outputs.items():
        mean_sq, var, mean_sq_tol, var_rtol = channel_bounds(a)
        assert records[name]["channel_mean_sq"] == pytest.approx(mean_sq, abs=mean_sq_tol), name
        assert records[name]["channel_var"] == pytest.approx(var, rel=var_rtol), name
    # Each call's record has the name of its predicted row.
    assert set(records) <= set(propagate(model).by_layer())


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_channel_statistics_add_up_to_the_variance(data, mode):
    """Law of total variance: ``activation_var = channel_var + channel_mean_sq - mean^2``
    (every unit has the same number of rows), to the float32 statistics' bounds: each term
    is off by at most a few ``variance_bound`` of ``E[y^2]``."""
    n = data[0].shape[0] * 8 * 8  # the most rows of a unit
    for r in measure(residual_model(), data, mode=mode):
        total = r["channel_var"] + r["channel_mean_sq"] - r["activation_mean"] ** 2
        moment = r["activation_var"] + r["activation_mean"] ** 2  # E[y^2]
        tol = 4 * variance_bound(n, 1.0, units=12) * moment  # 12 units at most
        assert total == pytest.approx(r["activation_var"], abs=tol), r["layer"]


def test_a_loss_of_ones_own_without_compiling(data):
    x, _ = data
    fresh = residual_model(compile=False)
    noise = np.random.default_rng(1).standard_normal((64, 5)).astype("float32")

    def surrogate(y_true, y_pred):
        return keras.ops.sum(y_true * y_pred, axis=-1)

    records = {r["layer"]: r for r in measure(fresh, (x, noise), loss=surrogate)}
    head_in = keras.Model(fresh.input, fresh.get_layer("head").output)
    out = tf.constant(head_in(x, training=False))
    with tf.GradientTape() as tape:
        tape.watch(out)
        value = tf.reduce_mean(tf.reduce_sum(noise * out, axis=-1))
    g = np.asarray(tape.gradient(value, out), np.float64)
    assert records["head"]["gradient_of"] == "output"
    assert records["head"]["gradient_var"] == pytest.approx(g.var(), rel=1e-5)
    assert getattr(fresh, "optimizer", None) is None  # still not compiled


def test_a_weightless_first_layer_gets_its_gradient():
    """An input Rescaling computes from no watched tensor; its gradient is still dL/dy."""
    x = keras.Input((8,))
    h = L.Rescaling(2.0, name="scale")(x)
    out = L.Dense(4, kernel_initializer=HeNormal(seed=0), name="d")(h)
    model = keras.Model(x, out)
    model.compile(loss="mse")
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((32, 8)).astype("float32"), np.zeros((32, 4), "float32")
    records = {r["layer"]: r for r in measure(model, (xs, ys), layers=["scale", "d"])}
    t = tf.constant(2.0 * xs)
    with tf.GradientTape() as tape:
        tape.watch(t)
        loss = keras.losses.MeanSquaredError()(ys, model.get_layer("d")(t))
    g = np.asarray(tape.gradient(loss, t), np.float64)
    assert records["scale"]["gradient_var"] == pytest.approx(g.var(), rel=1e-5)


def test_forward_only_without_targets(data):
    x, _ = data
    records = measure(residual_model(), x)
    assert all(r["gradient_var"] is None and r["gradient_of"] is None for r in records)
    assert all(r["activation_var"] > 0 for r in records)


def test_a_measurement_traces_once_and_follows_the_weights(data):
    model = residual_model()
    measurement = Measurement(model)
    first = measurement(data)
    model.get_layer("head").kernel.assign(2 * model.get_layer("head").kernel)
    second = measurement(data)
    assert first[-1]["weight_var"] * 4 == pytest.approx(second[-1]["weight_var"], rel=RTOL)
    assert measurement._fn._pass._fn.experimental_get_tracing_count() == 1


def test_non_finite_weights_are_counted_per_layer_and_kernel_statistics_match_numpy():
    """Each layer counts the NaN/Inf among its own weights (kernel, bias, a float64 layer's
    too), whatever the other layers hold; the kernel variances are NumPy's."""
    x = keras.Input((5,))
    a = L.Dense(7, name="a")(x)
    b = L.Dense(6, name="b")(a)
    c = L.Dense(3, name="c", dtype="float64")(b)
    model = keras.Model(x, c)
    kernel_b = model.get_layer("b").kernel.numpy()
    kernel_b[0, :3] = [np.nan, np.inf, -np.inf]
    model.get_layer("b").kernel.assign(kernel_b)
    bias_c = model.get_layer("c").bias.numpy()
    bias_c[1] = np.nan
    model.get_layer("c").bias.assign(bias_c)
    records = {r["layer"]: r for r in measure(model, np.ones((4, 5), "float32"))}
    assert [records[n]["non_finite_weights"] for n in "abc"] == [0, 3, 1]
    kernel_a = np.asarray(model.get_layer("a").kernel.numpy(), np.float64)
    bound = variance_bound(kernel_a.size, float(np.mean(kernel_a**2) / kernel_a.var()))
    assert records["a"]["weight_var"] == pytest.approx(kernel_a.var(), rel=bound)


def test_bad_input_is_named(data):
    x, y = data
    model = residual_model()
    uncompiled = residual_model(compile=False)
    with pytest.raises(ValueError, match=r"compiled with a loss.*`loss`"):
        measure(uncompiled, (x, y))
    with pytest.raises(ValueError, match="mode"):
        measure(model, data, mode="train")
    with pytest.raises(ValueError, match=r"layers.*'nope'"):
        measure(model, data, layers=["nope"])
    with pytest.raises(TypeError, match=r"model.*Dense"):
        measure(L.Dense(2), x)
    with pytest.raises(ValueError, match="finite"):
        measure(model, (np.full_like(x, np.nan), y))
    with pytest.raises(ValueError, match="loss"):
        measure(model, data, loss=3)
