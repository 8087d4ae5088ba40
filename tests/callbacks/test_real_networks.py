"""VarianceMonitor on real architectures: keras.applications models (weights=None, 32x32),
a Transformer encoder and a saturated softmax classifier.

Checked against `reference_by_calls` (an eager GradientTape of Keras' own `compute_loss`):
step-0 records before any fit moves BatchNorm statistics, epoch-end records after it, both to
1e-4 relative, on a spread of about ten layers per model (few layers keep the trace cheap);
no NaN in a layer that ran, no record of one that did not; in-step taps train as a plain fit.
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import pytest

from keras_initlab import _keras
from keras_initlab.callbacks import VarianceMonitor
from keras_initlab.measurement._selection import monitored_layers

pytestmark = pytest.mark.slow
L = keras.layers
A = keras.applications
SIZE, CLASSES, N = 32, 10, 16
KEYS = ("activation_mean", "activation_var", "gradient_var")


def _encoder(attention_dropout: float = 0.1) -> keras.Model:
    inputs = keras.Input((12, 16))
    h = inputs
    for b in range(2):
        mha = L.MultiHeadAttention(4, 8, dropout=attention_dropout, seed=b, name=f"mha{b}")
        attention = mha(h, h)
        h = L.LayerNormalization(name=f"ln{b}a")(h + attention)
        f = L.Dense(32, activation="relu", name=f"ff{b}")(h)
        f = L.Dropout(0.1, seed=b, name=f"drop{b}")(L.Dense(16, name=f"fo{b}")(f))
        h = L.LayerNormalization(name=f"ln{b}b")(h + f)
    pooled = L.GlobalAveragePooling1D()(h)
    return keras.Model(inputs, L.Dense(CLASSES, activation="softmax", name="out")(pooled))


def _saturated() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((20,)),
            L.Dense(32, activation="relu", name="h0"),
            L.Dense(32, activation="relu", name="h1"),
            L.Dense(CLASSES, activation="softmax", name="out"),
        ]
    )
    kernel = model.get_layer("out").kernel
    kernel.assign(kernel * 60.0)
    return model


def _bn_cnn() -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    h = inputs
    for i in range(3):
        h = L.Conv2D(8, 3, padding="same", use_bias=False, name=f"conv{i}")(h)
        h = L.BatchNormalization(name=f"bn{i}")(h)
        h = L.ReLU(name=f"relu{i}")(h)
    h = L.Dropout(0.2, seed=1, name="drop")(L.GlobalAveragePooling2D()(h))
    return keras.Model(inputs, L.Dense(CLASSES, activation="softmax", name="out")(h))


def _image(name):
    return lambda: getattr(A, name)(weights=None, input_shape=(SIZE, SIZE, 3), classes=CLASSES)


MODELS = {
    "mobilenetv2": (_image("MobileNetV2"), (SIZE, SIZE, 3)),
    "resnet50": (_image("ResNet50"), (SIZE, SIZE, 3)),
    "efficientnetb0": (_image("EfficientNetB0"), (SIZE, SIZE, 3)),
    "transformer": (_encoder, (12, 16)),
    # Without attention dropout Keras takes its fused attention path, which never calls the
    # layer's own Softmax sublayer.
    "transformer_fused": (lambda: _encoder(0.0), (12, 16)),
    "saturated": (_saturated, (20,)),
    "bn_cnn": (_bn_cnn, (16, 16, 3)),
}


def _setup(name: str):
    build, shape = MODELS[name]
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    # EfficientNet rescales its input by 1/255 itself: feed it pixel values.
    scale = 255.0 if name == "efficientnetb0" else 1.0
    x = (np.abs(rng.normal(size=(N, *shape))) * scale).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, CLASSES, N), CLASSES)
    entries = monitored_layers(model)
    if len(entries) > 24:  # about ten layers spread over depth, and the output layer
        entries = [*entries[:: len(entries) // 10], entries[-1]]
    return model, x, y, dict(entries)


# Up to this condition number kappa = E[y^2] / Var(y), the variance's cancellation
# E[y^2] - E[y]^2 costs at most 3 of float32's ~7 digits, and 1e-4 holds; beyond it (a layer
# whose outputs nearly share one value, e.g. EfficientNet's squeeze-excite gates) two graphs
# that fuse ops differently round y differently, and that error grows kappa-fold.
WELL_CONDITIONED = 1e3


def _assert_close(records, expected):
    by_layer = {r["layer"]: r for r in records}
    assert set(by_layer) == set(expected)
    for layer, row in expected.items():
        got = by_layer[layer]
        second = row["activation_var"] + row["activation_mean"] ** 2
        kappa = second / row["activation_var"] if row["activation_var"] > 0 else math.inf
        np.testing.assert_allclose(
            got["activation_var"] + got["activation_mean"] ** 2, second, rtol=1e-4, err_msg=layer
        )
        np.testing.assert_allclose(
            got["activation_mean"], row["activation_mean"], rtol=0, atol=1e-4 * math.sqrt(second)
        )
        if math.isfinite(kappa):
            np.testing.assert_allclose(
                got["activation_var"],
                row["activation_var"],
                rtol=1e-4 * max(1.0, kappa / WELL_CONDITIONED),
                atol=0,
                err_msg=f"{layer}.activation_var (kappa {kappa:.3g})",
            )
        else:  # a constant output: no variance beyond float32's cancellation floor
            assert got["activation_var"] <= 2.0**-23 * second, layer
        np.testing.assert_allclose(
            got["gradient_var"], row["gradient_var"], rtol=1e-4, atol=0, err_msg=f"{layer}.grad"
        )


@pytest.mark.parametrize("name", [n for n in MODELS if n not in ("transformer_fused", "bn_cnn")])
def test_step0_and_epoch_end_equal_a_gradient_tape_of_the_compiled_loss(ref, name):
    model, x, y, layers = _setup(name)
    reference = ref.reference_function(model, layers)
    before = reference(x, y)  # before fit moves any statistic
    monitor = VarianceMonitor(
        (x, y), layers=list(layers.values()), alert=False, probe_mode="inference"
    )
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[monitor])
    after = reference(x, y)
    ran = {n for n, row in before.items() if row is not None}
    _assert_close([r for r in monitor.records if r["event"] == "train_begin"], before)
    _assert_close([r for r in monitor.records if r["event"] == "epoch_end"], after)
    # No NaN in a layer that ran; a layer that did not run (not in `before`) has no record.
    assert all(math.isfinite(r[k]) for r in monitor.records for k in KEYS)
    assert {r["layer"] for r in monitor.records} == ran
    assert {p for p, _, _ in monitor.skipped} == set(layers) - ran


def test_sublayers_that_do_not_run_are_skipped_not_recorded_as_nan():
    """MultiHeadAttention keeps a Softmax layer that its fused attention path never calls."""
    model, x, y, _ = _setup("transformer_fused")
    monitor = VarianceMonitor((x, y))  # all layers, alerts on: none may be about NaN rows
    with warnings.catch_warnings(record=True):  # (depth alerts: the propagation issue)
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    skipped = {p for p, source, _ in monitor.skipped if source == "probe"}
    assert skipped
    assert all(p.split("/")[-1].startswith("softmax") for p in skipped)
    assert not skipped & {r["layer"] for r in monitor.records}
    assert not [a for a in monitor.alerts if a.kind == "non_finite"]


def _fits(name, steps, epochs):
    """A plain fit and an in-step fit of the same model on the same data."""
    fits = []
    for in_step in (False, True):
        model, x, y, _ = _setup(name)
        start = [np.asarray(v).copy() for v in model.trainable_variables]
        callbacks = [VarianceMonitor((x, y), every_n_batches=1, alert=False)] if in_step else []
        x, y = x[: 8 * steps], y[: 8 * steps]
        history = model.fit(
            x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False, callbacks=callbacks
        )
        fits.append((model, history.history, start))
    return fits


@pytest.mark.parametrize("name", ["transformer", "saturated"])
def test_in_step_taps_train_like_a_plain_fit(name):
    (plain, plain_logs, _), (watched, logs, _) = _fits(name, steps=2, epochs=2)
    np.testing.assert_allclose(logs["loss"], plain_logs["loss"], rtol=1e-6)
    for v, w in zip(watched.variables, plain.variables, strict=True):
        a, b = np.asarray(v), np.asarray(w)
        scale = max(float(np.max(np.abs(b))), 1e-30)
        assert np.max(np.abs(a - b)) <= 1e-6 * scale, v.path


def test_in_step_taps_on_a_batchnorm_network_train_bit_identically_on_the_same_kernels():
    """MobileNetV2, BatchNorm in training mode over 8 samples, two epochs of two steps: the
    taps only read the layer outputs, so when both fits run the same kernels (Grappler off
    in both) every variable and every loss is bit-identical. With Grappler on, reading the
    outputs changes which ops it fuses, so the graphs run different kernels, whose rounding
    BatchNorm's backward pass amplifies (a difference of nearly equal terms): how much is
    the CPU's (measured: first kernel updates 3e-5 relative on one CPU, 9e-4 on another),
    so it is not what this checks."""
    no_grappler = _keras.grappler_call_options({"disable_meta_optimizer": True})
    with _keras.calling_with(no_grappler):
        (plain, plain_logs, _), (watched, logs, _) = _fits("mobilenetv2", steps=2, epochs=2)
    assert logs["loss"] == plain_logs["loss"]
    assert len(plain.variables) > 200
    for v, w in zip(watched.variables, plain.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(v), np.asarray(w), err_msg=v.path)


def test_probe_mode_training_uses_batch_statistics_and_restores_them(ref):
    """In inference mode at initialization BatchNorm is an identity (moving statistics 0, 1);
    in training mode the probe sees the batch statistics training sees, and every moving
    statistic is as before; a fit with such records trains exactly as one without."""
    model, x, y, layers = _setup("bn_cnn")
    expected = ref.reference_by_calls(model, layers, x, y, training=True)
    state = [np.asarray(v).copy() for v in model.non_trainable_variables]
    monitor = VarianceMonitor(
        (x, y), layers=list(layers.values()), probe_mode="training", alert=False
    )
    monitor.set_model(model)
    monitor.on_train_begin()
    monitor.on_train_end()
    _assert_close(monitor.records, expected)
    assert {r["mode"] for r in monitor.records} == {"training"}
    for v, before in zip(model.non_trainable_variables, state, strict=True):
        np.testing.assert_array_equal(np.asarray(v), before, err_msg=v.path)
    inference = ref.reference_by_calls(model, layers, x, y)
    bn = [p for p, layer in layers.items() if isinstance(layer, L.BatchNormalization)]
    assert bn
    assert any(
        not math.isclose(expected[p]["activation_var"], inference[p]["activation_var"], rel_tol=0.1)
        for p in bn
    )
    fits = []
    for monitored in (False, True):
        model, x, y, _ = _setup("bn_cnn")
        callbacks = (
            [
                VarianceMonitor(
                    (x, y), every_n_batches=1, in_step=False, probe_mode="training", alert=False
                )
            ]
            if monitored
            else []
        )
        history = model.fit(
            x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=callbacks
        )
        fits.append((history.history["loss"], [np.asarray(v) for v in model.variables]))
    assert fits[0][0] == fits[1][0]
    for a, b in zip(fits[0][1], fits[1][1], strict=True):
        np.testing.assert_array_equal(a, b)
