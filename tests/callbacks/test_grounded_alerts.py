"""Alerts on real networks: the depth rule, its causes and its checked fixes.

Healthy real networks (their variance changes across depth by design: pooling, BatchNorm,
residual sums) give no alert at step 0; planted faults are found, named by their cause,
and given a fix that the prediction checked on a copy of the model.
"""

from __future__ import annotations

import math
import re
import warnings

import keras
import numpy as np
import pytest

from keras_initlab import initialize, measure, propagate
from keras_initlab.callbacks import VarianceMonitor
from keras_initlab.healthy import healthy_weights

pytestmark = pytest.mark.slow
L = keras.layers
N = 32


def _step0_alerts(model, x, y, **kwargs):
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    monitor = VarianceMonitor((x, y), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, epochs=0, batch_size=len(x), verbose=0, callbacks=[monitor])
    return monitor


def _data(shape, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, *shape)).astype("float32")
    return x, keras.utils.to_categorical(rng.integers(0, classes, N), classes)


def _mobilenet():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10)
    initialize(model, "he_normal", seed=0)
    return model, (32, 32, 3)


def _encoder():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 16))
    h = inputs
    for b in range(2):
        attention = L.MultiHeadAttention(4, 8, name=f"mha{b}")(h, h)
        h = L.LayerNormalization(name=f"ln{b}a")(h + attention)
        f = L.Dense(16, name=f"fo{b}")(L.Dense(32, activation="relu", name=f"ff{b}")(h))
        h = L.LayerNormalization(name=f"ln{b}b")(h + f)
    out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling1D()(h))
    model = keras.Model(inputs, out)
    # True fans for the attention kernels (Keras before 3.13 reads an EinsumDense kernel's
    # fans off its shape: 4x too small a variance for these heads).
    initialize(model, "glorot_normal", seed=0)
    return model, (12, 16)


def _tanh_mlp():
    layers = [L.Dense(128, activation="tanh", name=f"h{i}") for i in range(12)]
    model = keras.Sequential([keras.Input((128,)), *layers, L.Dense(10, activation="softmax")])
    initialize(model, "glorot_normal", seed=0)
    return model, (128,)


def _unet(classes=4):
    """A small U-Net: Conv/BN/ReLU pairs, MaxPool down, UpSampling and Conv2DTranspose up,
    Concatenate skips, a per-pixel softmax."""
    keras.utils.set_random_seed(0)

    def pair(h, filters, name):
        for j in range(2):
            h = L.Conv2D(filters, 3, padding="same", name=f"{name}_conv{j}")(h)
            h = L.ReLU(name=f"{name}_relu{j}")(L.BatchNormalization(name=f"{name}_bn{j}")(h))
        return h

    inputs = keras.Input((32, 32, 3))
    e1 = pair(inputs, 8, "enc1")
    e2 = pair(L.MaxPooling2D(name="down1")(e1), 16, "enc2")
    mid = pair(L.MaxPooling2D(name="down2")(e2), 32, "mid")
    up2 = L.UpSampling2D(name="up2")(mid)
    d2 = pair(L.Concatenate(name="skip2")([up2, e2]), 16, "dec2")
    up1 = L.Conv2DTranspose(8, 2, strides=2, name="up1")(d2)
    d1 = pair(L.Concatenate(name="skip1")([up1, e1]), 8, "dec1")
    out = L.Conv2D(classes, 1, activation="softmax", name="out")(d1)
    model = keras.Model(inputs, out)
    initialize(model, "he_normal", seed=0)
    return model, (32, 32, 3)


def _pixel_data(shape, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, *shape)).astype("float32")
    labels = rng.integers(0, classes, (N, *shape[:-1]))
    return x, keras.utils.to_categorical(labels, classes)


@pytest.mark.parametrize("probe_mode", ["inference", "training"])
def test_no_alert_at_step0_on_a_healthy_unet(probe_mode):
    model, shape = _unet()
    x, y = _pixel_data(shape)
    monitor = _step0_alerts(model, x, y, probe_mode=probe_mode)
    assert [a.message for a in monitor.alerts] == []
    # The prediction follows the measurement (median |log(predicted / measured)| <= log 1.25,
    # 90th percentile <= log 2), the 4-class softmax head included (E[p^2] <= 1/4; the
    # large-n form predicted 7x the measured variance).
    assert [r for r in healthy_weights(model) if r.flagged] == []
    first = np.asarray(x, np.float64)
    predicted = {
        r.layer: r.activation_var
        for r in propagate(
            model, input_mean=float(first.mean()), input_var=float(first.var()), mode=probe_mode
        )
    }
    step0 = {r["layer"]: r for r in monitor.records if r["event"] == "train_begin"}
    errors = {
        name: abs(math.log(r["activation_var"] / predicted[name])) for name, r in step0.items()
    }
    assert np.median(list(errors.values())) <= math.log(1.25), errors
    assert np.quantile(list(errors.values()), 0.9) <= math.log(2.0), errors
    assert errors["out"] <= math.log(2.0)


def _dropout_mlp():
    """He with Dropout(0.3) after every layer: in training mode each dropout inflates the
    second moment 1/(1 - 0.3) = 1.43-fold (noise inference removes), 12-fold over 7."""
    keras.utils.set_random_seed(0)
    layers = []
    for i in range(8):
        layers += [L.Dense(128, activation="relu", kernel_initializer="he_normal", name=f"h{i}")]
        layers += [L.Dropout(0.3, name=f"drop{i}")]
    return keras.Sequential([keras.Input((128,)), *layers, L.Dense(10, activation="softmax")]), (
        128,
    )


def _batchnorm_cnn_with_large_weights():
    """Conv weights 10x He's, each followed by BatchNorm: in training mode the BatchNorm
    divides every scale out (the weights below it are scale-invariant)."""
    keras.utils.set_random_seed(0)
    layers = [keras.Input((16, 16, 3))]
    for i in range(8):
        init = keras.initializers.RandomNormal(stddev=10 * (2 / (9 * (3 if i == 0 else 16))) ** 0.5)
        layers += [L.Conv2D(16, 3, padding="same", kernel_initializer=init, name=f"c{i}")]
        layers += [L.BatchNormalization(name=f"bn{i}"), L.ReLU(name=f"r{i}")]
    layers += [L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax")]
    return keras.Sequential(layers), (16, 16, 3)


@pytest.mark.parametrize(
    "build", [_mobilenet, _encoder, _tanh_mlp, _dropout_mlp, _batchnorm_cnn_with_large_weights]
)
def test_no_alert_at_step0_on_healthy_networks(build):
    model, shape = build()
    x, y = _data(shape)
    monitor = _step0_alerts(model, x, y)
    assert [a.message for a in monitor.alerts] == []


def test_the_prediction_follows_the_measurement_on_mobilenet():
    model, shape = _mobilenet()
    x, y = _data(shape)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    records = measure(model, (x, y))
    assert [r for r in healthy_weights(model) if r.flagged] == []  # nothing to fix
    first = np.asarray(x, np.float64)
    predicted = {
        r.layer: r.activation_var
        for r in propagate(model, input_mean=float(first.mean()), input_var=float(first.var()))
    }
    ratios = [
        r["activation_var"] / predicted[r["layer"]]
        for r in records[:-1]
        if predicted.get(r["layer"], 0) > 0
    ]
    assert len(ratios) > 0.9 * (len(records) - 1)
    assert max(ratios) / min(ratios) <= 10.0  # the monitor's default alert factor


def _separable_stack():
    """Depthwise + pointwise blocks without BatchNorm, depthwise kernels on Keras' own fans."""
    keras.utils.set_random_seed(0)
    layers = [keras.Input((16, 16, 8))]
    for i in range(6):
        layers += [
            L.DepthwiseConv2D(3, padding="same", name=f"dw{i}"),  # glorot_uniform, Keras' fans
            L.Conv2D(8, 1, activation="relu", kernel_initializer="he_normal", name=f"pw{i}"),
        ]
    layers += [L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax", name="out")]
    return keras.Sequential(layers), (16, 16, 8)


def _relu_mlp(kernel_initializer):
    keras.utils.set_random_seed(0)
    layers = [
        L.Dense(128, activation="relu", kernel_initializer=kernel_initializer, name=f"h{i}")
        for i in range(14)
    ]
    return keras.Sequential([keras.Input((128,)), *layers, L.Dense(10, activation="softmax")])


PLANTED = {
    # (model, input shape), the cause, the fix, and what the alert's why must name
    "keras_depthwise_fans": (
        _separable_stack,
        "weights",
        "fan_in = 72 instead of the true 9",  # Keras' shape rule on a (3, 3, 8, 1) kernel
    ),
    "too_large_weights": (
        lambda: (_relu_mlp(keras.initializers.RandomNormal(stddev=2 * (2 / 128) ** 0.5)), (128,)),
        "weights",
        "'h0' (std x",  # 2x, its sampling error checked below
    ),
    "xavier_under_relu": (lambda: (_relu_mlp("glorot_normal"), (128,)), "weights", "he_normal"),
}


@pytest.mark.parametrize("fault", sorted(PLANTED))
def test_a_planted_fault_is_named_by_its_cause_with_a_checked_fix(fault):
    build, cause, named = PLANTED[fault]
    model, shape = build()
    x, y = _data(shape)
    monitor = _step0_alerts(model, x, y)
    depth = [a for a in monitor.alerts if a.kind in ("activation_var", "gradient_var")]
    assert depth, [a.message for a in monitor.alerts]
    for alert in depth:
        assert alert.cause == cause
        assert named in alert.why
        if fault == "too_large_weights":
            # std twice He's; the std of n = 128 * 128 normal draws errs by about
            # 1/sqrt(2n) relative: 6 standard errors of slack.
            ratio = float(re.search(r"'h0' \(std x([0-9.]+)", alert.why)[1])
            assert abs(ratio - 2.0) <= 6 * 2.0 / math.sqrt(2 * 128 * 128) + 0.005  # 3 digits
        assert alert.checked
        assert alert.fix is not None
        assert "seed" not in alert.fix
        assert alert.layer in {r["layer"] for r in monitor.records}
    # The fix, applied literally, leaves no step-0 alert.
    initialize(model, **depth[0].fix, seed=1)
    assert [a.message for a in _step0_alerts(model, x, y).alerts] == []


def test_diagnosis_leaves_the_model_and_every_random_state_alone():
    import random

    from keras_initlab.diagnosis import diagnose

    model, shape = _separable_stack()
    x, _ = _data(shape)
    before = [w.numpy().copy() for w in model.weights]
    keras.random.normal((1,))  # the global SeedGenerator exists
    from keras.src.backend.common import global_state

    # The legacy global NumPy state is what must stay as it was.
    numpy_state = np.random.get_state()[1].copy()  # noqa: NPY002
    python_state = random.getstate()
    seed_state = global_state.get_global_attribute("global_seed_generator").state.numpy()
    found = diagnose(model, x)
    assert found.cause == "weights"
    assert found.fix is not None
    for w, b in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)
    assert random.getstate() == python_state
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)  # noqa: NPY002
    np.testing.assert_array_equal(
        global_state.get_global_attribute("global_seed_generator").state.numpy(), seed_state
    )


def _tied_lm():
    """keras_hub's causal LMs in small: the token embedding lives in a nested backbone and
    the outer graph calls it again, reversed, for the logits (one table, two calls)."""
    from tests.tied_embedding import VOCAB, WIDTH, TiedEmbedding

    tokens = keras.Input((6,), dtype="int32")
    embed = TiedEmbedding(VOCAB, WIDTH, name="embed")
    h = embed(tokens)
    for i in range(12):
        h = L.Dense(WIDTH, activation="tanh", kernel_initializer="he_normal", name=f"d{i}")(h)
    backbone = keras.Model(tokens, h, name="backbone")
    outer_tokens = keras.Input((6,), dtype="int32")
    model = keras.Model(outer_tokens, embed(backbone(outer_tokens), reverse=True))
    x = np.random.default_rng(0).integers(0, VOCAB, (N, 6)).astype("int32")
    return model, x


def test_a_fix_is_tried_on_a_model_whose_layer_a_nested_model_shares():
    """A clone of this model unties the embedding (``keras.models.clone_model`` re-creates
    the backbone with its own table: one weight more; with the class unregistered it cannot
    clone at all), so a fix tried on a clone could not take the model's weights and was
    never tried. Tried on the model itself, it is judged,
    and every weight is set back bit for bit, also when the try fails."""
    from keras_initlab import diagnosis

    model, x = _tied_lm()
    assert len(keras.models.clone_model(model).weights) == len(model.weights) + 1
    before = [w.numpy().copy() for w in model.weights]
    candidate = diagnosis.predict_fix(model, {"scheme": "lecun_normal"}, x)
    assert candidate.error == ""
    assert candidate.judgement is not None
    for w, b in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)


def test_a_failed_try_leaves_the_weights_as_they_were(monkeypatch):
    import sys

    from keras_initlab import diagnosis

    model, x = _tied_lm()
    before = [w.numpy().copy() for w in model.weights]

    def fails(*args, **kwargs):
        raise ValueError("propagate failed")

    monkeypatch.setattr(sys.modules["keras_initlab.propagate"], "propagate", fails)
    candidate = diagnosis.predict_fix(model, {"scheme": "lecun_normal"}, x)
    assert candidate.error == "propagate failed"
    for w, b in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)


def test_a_stream_inside_custom_blocks_is_alerted_with_a_checked_fix():
    """16 custom residual blocks (``x + d2(d1(x))`` inside a layer's ``call``), He: the
    stream grows about 3x per block. The blocks are read through their traced ``call``: the
    sums are on the path (each block's output, recorded as the block), so the rule allows
    linear growth over them, and `propagate` predicts the inside, so the fix is checked;
    applied literally, it leaves no alert."""

    class Block(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.d1 = L.Dense(32, activation="relu", kernel_initializer="he_normal")
            self.d2 = L.Dense(32, kernel_initializer="he_normal")

        def call(self, x):
            return x + self.d2(self.d1(x))

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32,))
    h = inputs
    for i in range(16):
        h = Block(name=f"block{i}")(h)
    model = keras.Model(inputs, L.Dense(10, activation="softmax")(h))
    x, y = _data((32,))
    alerts = [a for a in _step0_alerts(model, x, y).alerts if a.kind == "activation_var"]
    assert len(alerts) == 1
    assert "grows" in alerts[0].what
    assert "'block15'" in alerts[0].what
    assert "sum(s)" in alerts[0].what  # the allowance counts the sums inside the blocks
    assert alerts[0].checked
    assert alerts[0].fix is not None
    initialize(model, **alerts[0].fix)
    assert [a.message for a in _step0_alerts(model, x, y).alerts] == []


def _transformer_stack(blocks, pre_norm, width=32):
    """``blocks`` Transformer blocks (attention, then a ReLU feed-forward pair, each added
    to the stream), pre-norm with a final LayerNorm (as GPT-2's and Llama's: without it the
    head reads a stream grown linearly to about 140 and the logits rule alerts), or with no
    normalization at all."""
    inputs = keras.Input((8, width))
    h = inputs
    for b in range(blocks):
        a = L.LayerNormalization(name=f"ln{b}a")(h) if pre_norm else h
        h = L.Add(name=f"add{b}a")([h, L.MultiHeadAttention(2, width // 2, name=f"mha{b}")(a, a)])
        f = L.LayerNormalization(name=f"ln{b}b")(h) if pre_norm else h
        f = L.Dense(width, name=f"fo{b}")(L.Dense(2 * width, activation="relu", name=f"ff{b}")(f))
        h = L.Add(name=f"add{b}b")([h, f])
    if pre_norm:
        h = L.LayerNormalization(name="final_ln")(h)
    out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling1D()(h))
    return keras.Model(inputs, out)


def test_a_transformer_stack_without_normalization_explodes_and_a_pre_norm_one_does_not():
    """The transformer issue's planted fault: 24 blocks with no normalization under He
    normal. Each sum adds a branch as large as the stream, which compounds (about x3.8 per
    sum, 1e26 over 46, against the linear allowance of 4,610): an alert that the
    activation grows, with the architecture as its cause and a fix checked on the
    prediction; applied literally, it leaves no alert. The same stack pre-norm grows
    linearly (its sums add what normalized branches give): no alert."""
    keras.utils.set_random_seed(0)
    x, y = _data((8, 32))
    model = _transformer_stack(24, pre_norm=False)
    initialize(model, "he_normal", seed=0)
    alerts = {a.kind: a for a in _step0_alerts(model, x, y).alerts}
    growth = alerts["activation_var"]
    assert "grows" in growth.what
    assert "'add23b'" in growth.what
    assert growth.cause == "architecture"
    assert growth.checked
    assert growth.fix is not None
    initialize(model, **growth.fix, seed=1)
    assert [a.message for a in _step0_alerts(model, x, y).alerts] == []
    keras.utils.set_random_seed(0)
    pre_norm = _transformer_stack(24, pre_norm=True)
    initialize(pre_norm, "he_normal", seed=0)
    assert [a.message for a in _step0_alerts(pre_norm, x, y).alerts] == []
