"""VarianceMonitor records equal an independent eager GradientTape computation (1e-4 rel)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_initlab.callbacks import VarianceMonitor

L = keras.layers
N, D = 32, 6


def _data(seed: int = 0, n: int = N, d: int = D, out: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype("float32"), rng.normal(size=(n, out)).astype("float32")


def _fit(model, x, y, monitor, **kwargs):
    kwargs = {"batch_size": 8, "epochs": 1, "verbose": 0, "shuffle": False, **kwargs}
    model.fit(x, y, callbacks=[monitor], **kwargs)


def _at(records, event):
    return [r for r in records if r["event"] == event]


def _mlp(with_input: bool) -> keras.Model:
    layers = [
        L.Dense(8, activation="relu", name="d0"),
        L.BatchNormalization(name="bn"),
        L.Dropout(0.5),
        L.Dense(8, activation="tanh", name="d1"),
        L.Dense(8, name="d2"),
        L.Activation("sigmoid", name="act"),
        L.Dense(1, name="out"),
    ]
    return keras.Sequential(([keras.Input((D,))] if with_input else []) + layers)


def _mlp_forward(model):
    def forward(x, tap):
        h = x
        for layer in model.layers:
            h = layer(h, training=False)
            if layer.weights or isinstance(layer, L.Activation):
                h = tap(layer.name, h)
        return h

    return forward


@pytest.mark.parametrize("with_input", [True, False])
def test_sequential_step0_and_epoch_end_match_reference(ref, with_input):
    x, y = _data()
    model = _mlp(with_input)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model(x[:1])  # build so that the step-0 reference sees the same weights
    kernels = {layer.name: getattr(layer, "kernel", None) for layer in model.layers}
    mse = keras.losses.MeanSquaredError()
    before = ref.reference(_mlp_forward(model), mse, x, y, kernels)
    monitor = VarianceMonitor((x, y), alert=False, probe_mode="inference")
    _fit(model, x, y, monitor)
    after = ref.reference(_mlp_forward(model), mse, x, y, kernels)
    ref.assert_matches(_at(monitor.records, "train_begin"), before)
    ref.assert_matches(_at(monitor.records, "epoch_end"), after)
    assert [r["step"] for r in _at(monitor.records, "epoch_end")] == [N // 8] * 6
    bn = next(r for r in monitor.records if r["layer"] == "bn")
    assert bn["weight_var"] is None
    assert bn["weight_grad_var"] is None
    saturations = {r["layer"]: r["saturation_fraction"] for r in monitor.records}
    assert saturations["d0"] is None
    assert saturations["d1"] is not None
    assert saturations["act"] is not None


def test_unbuilt_sequential_step0_is_before_any_update(ref):
    x, y = _data(1)
    model = _mlp(with_input=False)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    weights = []

    class Snapshot(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not weights:
                weights.extend(v.numpy() for v in self.model.weights)

    monitor = VarianceMonitor((x, y), alert=False, probe_mode="inference")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor, Snapshot()])
    for v, w in zip(model.weights, weights, strict=False):
        v.assign(w)
    kernels = {layer.name: getattr(layer, "kernel", None) for layer in model.layers}
    expected = ref.reference(_mlp_forward(model), keras.losses.MeanSquaredError(), x, y, kernels)
    ref.assert_matches(_at(monitor.records, "train_begin"), expected)


def _two_towers():
    """A functional model with two inputs, two outputs and a layer shared by both towers.

    Returns the model, its data ``(x, y)`` and the ``forward``/``loss`` of the reference.
    """
    rng = np.random.default_rng(2)
    x1, x2 = (rng.normal(size=(N, 4)).astype("float32") for _ in range(2))
    y1 = rng.normal(size=(N, 2)).astype("float32")
    y2 = rng.integers(0, 2, size=(N, 1)).astype("float32")
    a, b = L.Dense(5, activation="relu", name="a"), L.Dense(5, activation="tanh", name="b")
    shared = L.Dense(3, name="shared")  # called twice: a record per call
    h1, h2 = L.Dense(2, name="h1"), L.Dense(1, activation="sigmoid", name="h2")
    i1, i2 = keras.Input((4,), name="i1"), keras.Input((4,), name="i2")
    c = L.Concatenate()([shared(a(i1)), shared(b(i2))])
    model = keras.Model([i1, i2], [h1(c), h2(c)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=["mse", "binary_crossentropy"],
        loss_weights=[1.0, 0.5],
    )
    mse, bce = keras.losses.MeanSquaredError(), keras.losses.BinaryCrossentropy()

    def forward(x, tap):
        sa = tap("shared", shared(tap("a", a(x[0]))))
        sb = tap("shared@2", shared(tap("b", b(x[1]))))
        c = L.Concatenate()([sa, sb])
        return tap("h1", h1(c)), tap("h2", h2(c))

    def loss(y, p):
        return mse(y[0], p[0]) + 0.5 * bce(y[1], p[1])

    return model, ([x1, x2], [y1, y2]), forward, loss


def test_functional_multi_input_output_matches_reference(ref):
    model, (x, y), forward, loss = _two_towers()
    kernels = {n: model.get_layer(n).kernel for n in ("a", "b", "shared", "h1", "h2")}
    kernels["shared@2"] = kernels["shared"]  # (each call's record reports the kernel)
    before = ref.reference(forward, loss, x, y, kernels)
    monitor = VarianceMonitor((x, y), alert=False, probe_mode="inference")
    _fit(model, x, y, monitor)
    ref.assert_matches(_at(monitor.records, "train_begin"), before)
    after = ref.reference(forward, loss, x, y, kernels)
    ref.assert_matches(_at(monitor.records, "epoch_end"), after)


def test_in_step_records_of_a_shared_layer_are_per_call(ref):
    model, (x, y), forward, loss = _two_towers()
    model(x)  # build: the reference of step 1 needs the initial weights
    first = [t[:8] for t in x], [t[:8] for t in y]
    expected = ref.reference(forward, loss, *first, {})
    monitor = VarianceMonitor((x, y), every_n_batches=1, alert=False, probe_mode="inference")
    _fit(model, x, y, monitor)  # batch_size 8, no shuffle: step 1 trains on `first`
    rows = [r for r in monitor.records if r["event"] == "batch" and r["step"] == 1]
    assert {r["source"] for r in rows} == {"in_step"}
    keys = ("activation_mean", "activation_var", "gradient_var")
    ref.assert_matches(rows, {n: {k: v[k] for k in keys} for n, v in expected.items()})


class _Block(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = L.Dense(6, activation="relu", name="inner")
        self.act = L.ReLU(name="act")

    def call(self, x):
        return self.act(self.inner(x) + x[..., :6])


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.block = _Block(name="block")
        self.head = L.Dense(1, name="head")

    def call(self, x, training=False):
        return self.head(self.block(x))


def test_nested_and_subclassed_models_match_reference(ref):
    x, y = _data(3)
    inner = keras.Sequential(
        [keras.Input((D,)), L.Dense(6, activation="tanh", name="t")], name="enc"
    )
    sub = _Subclassed()
    i = keras.Input((D,))
    model = keras.Model(i, sub(inner(i)))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")

    def forward(x, tap):
        h = tap("enc/t", inner.layers[0](x))
        b = sub.block
        h = tap(
            "sub/block/act",
            b.act(tap("sub/block/add", tap("sub/block/inner", b.inner(h)) + h[..., :6])),
        )
        h = tap("sub/block", h)  # a custom block holding weighted layers: its output too
        return tap("sub", tap("sub/head", sub.head(h)))

    kernels = {
        "enc/t": inner.layers[0].kernel,
        "sub/block/inner": sub.block.inner.kernel,
        "sub/head": sub.head.kernel,
    }
    mse = keras.losses.MeanSquaredError()
    before = ref.reference(forward, mse, x, y, kernels)
    monitor = VarianceMonitor((x, y), alert=False, probe_mode="inference")
    _fit(model, x, y, monitor)
    # model order: a block's own record before its sub-layers'
    layers = [r["layer"] for r in _at(monitor.records, "train_begin")]
    assert layers == [
        "enc/t",
        "sub",
        "sub/block",
        "sub/block/inner",
        "sub/block/add",  # the sum inside the block's call (replayed), after its branch
        "sub/block/act",
        "sub/head",
    ]
    assert sorted(layers) == sorted(before)
    ref.assert_matches(_at(monitor.records, "train_begin"), before)
    ref.assert_matches(
        _at(monitor.records, "epoch_end"), ref.reference(forward, mse, x, y, kernels)
    )


def test_subclassed_model_without_build_and_default_probe(ref):
    x, y = _data(4)
    model = _Subclassed()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    monitor = VarianceMonitor(
        alert=False, probe_mode="inference"
    )  # probe: a batch of the training data
    _fit(model, x, y, monitor)
    begin = _at(monitor.records, "train_begin")
    # the sum inside the block's call is recorded too: the model's call is traced at the
    # shapes its first call (the fit's) built it with, and residual_blocks reads it there
    assert [r["layer"] for r in begin] == ["block", "block/inner", "block/add", "block/act", "head"]
    assert all(np.isfinite(r["activation_var"]) and r["gradient_var"] > 0 for r in begin)


@pytest.mark.parametrize(
    "compile_kwargs", [{"steps_per_execution": 2}, {"jit_compile": True}], ids=["spe2", "jit"]
)
def test_every_n_batches_steps_and_numbers(ref, compile_kwargs):
    x, y = _data(5, n=48)
    model = keras.Sequential(
        [keras.Input((D,)), L.Dense(8, activation="relu", name="d"), L.Dense(1, name="o")]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", **compile_kwargs)
    monitor = VarianceMonitor((x, y), every_n_batches=2, alert=False, probe_mode="inference")
    _fit(model, x, y, monitor, epochs=2)  # 6 steps per epoch
    steps = sorted({(r["step"], r["event"]) for r in monitor.records})
    expected_steps = [
        (0, "train_begin"),
        (2, "batch"),
        (4, "batch"),
        (6, "epoch_end"),
        (8, "batch"),
        (10, "batch"),
        (12, "epoch_end"),
    ]
    assert steps == expected_steps
    kernels = {"d": model.layers[0].kernel, "o": model.layers[1].kernel}

    def forward(x, tap):
        return tap("o", model.layers[1](tap("d", model.layers[0](x))))

    expected = ref.reference(forward, keras.losses.MeanSquaredError(), x, y, kernels)
    ref.assert_matches([r for r in monitor.records if r["step"] == 12], expected)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_in_step_fast_path_matches_the_training_batch(ref, jit_compile):
    x, y = _data(6, n=32)
    model = keras.Sequential(
        [keras.Input((D,)), L.Dense(8, activation="tanh", name="d"), L.Dense(1, name="o")]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=jit_compile)
    mse = keras.losses.MeanSquaredError()
    expected = {}

    def forward(x, tap):
        return tap("o", model.layers[1](tap("d", model.layers[0](x))))

    class Reference(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            sl = slice(8 * batch, 8 * batch + 8)
            expected[batch + 1] = ref.reference(forward, mse, x[sl], y[sl], {})

    monitor = VarianceMonitor((x, y), every_n_batches=1, alert=False, probe_mode="inference")
    model.fit(
        x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[Reference(), monitor]
    )
    batch_records = [r for r in monitor.records if r["event"] == "batch"]
    assert sorted({r["step"] for r in batch_records}) == [1, 2, 3]
    for step in (1, 2, 3):
        rows = [r for r in batch_records if r["step"] == step]
        assert all(r["source"] == "in_step" and r["distinct_units"] is None for r in rows)
        assert all(r["channel_mean_sq"] is None and r["channel_var"] is None for r in rows)
        want = {
            k: {s: v[s] for s in ("activation_mean", "activation_var", "gradient_var")}
            for k, v in expected[step].items()
        }
        ref.assert_matches(rows, want)


def test_in_step_float32_records_are_within_their_stated_bound_of_float64():
    """Outputs on a large mean (bias 1000, unit spread: ``kappa = E[y^2] / Var(y)`` about
    1e6), where a one-pass float32 variance keeps nothing (its error is about ``u kappa``,
    0.06): the in-step taps' blocked two-pass sums (`_statistics.flat_moments`) are within
    `variance_bound` of NumPy float64 on the step's own outputs, in a step traced for its
    batch size and in one traced for any size (batches of 8 and 4 rows from one dataset:
    blocks of `WHOLE` terms)."""
    import tensorflow as tf

    from keras_initlab.measurement._statistics import WHOLE, gamma, variance_bound

    x, y = _data(3, n=20)
    starts, sizes = [0, 8, 12], [8, 4, 8]
    uneven = tf.data.Dataset.from_tensor_slices((x[:8], y[:8])).batch(8)
    for start, size in zip(starts[1:], sizes[1:], strict=True):
        part = slice(start, start + size)
        uneven = uneven.concatenate(tf.data.Dataset.from_tensor_slices((x[part], y[part])).batch(8))
    for data, dynamic, rows_of in (((x, y), False, [0, 8, 16]), (uneven, True, starts)):
        model = keras.Sequential(
            [
                keras.Input((D,)),
                L.Dense(64, name="d", bias_initializer=keras.initializers.Constant(1000.0)),
                L.Dense(1, name="o"),
            ]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        ends = [*rows_of[1:], len(x)]
        outputs = {
            k + 1: np.asarray(model.get_layer("d")(x[a:b]), np.float64)
            for k, (a, b) in enumerate(zip(rows_of, ends, strict=True))
        }
        monitor = VarianceMonitor((x, y), every_n_batches=1, alert=False, probe_mode="inference")
        fit_data = {"x": data} if dynamic else {"x": x, "y": y, "batch_size": 8}
        model.fit(**fit_data, verbose=0, shuffle=False, callbacks=[monitor])
        batch = [r for r in monitor.records if r["event"] == "batch" and r["layer"] == "d"]
        records = {r["step"]: r for r in batch}
        assert sorted(records) == [1, 2]  # (step 3 ends the epoch: a probe record)
        assert {r["source"] for r in batch} == {"in_step"}
        for step, record in records.items():
            out = outputs[step]
            kappa = float(np.mean(out * out) / out.var())
            assert kappa > 1e5
            k = WHOLE + 1 if dynamic else out.size
            bound = gamma(k + 4) + 2.0 * gamma(k) ** 2 * kappa
            assert bound >= variance_bound(out.size, kappa)
            assert 4 * bound < 2.0**-24 * kappa  # (a one-pass float32 sum's error scale)
            assert abs(record["activation_var"] / out.var() - 1.0) <= bound
            assert abs(record["activation_mean"] - out.mean()) <= gamma(k + 2) * np.abs(out).mean()
