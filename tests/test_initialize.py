"""initialize(): every model kind, every layer type, true fans, seeds, all-or-nothing."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_initlab as ki

L = keras.layers


def _weights(model):
    return [v.numpy() for v in model.weights]


def _every_layer_model():
    inputs = keras.Input((12, 12, 8))
    x = L.Conv2D(8, 3, padding="same", groups=2)(inputs)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.SeparableConv2D(8, 3, padding="same")(x)
    x = L.Conv2DTranspose(8, 3, strides=2, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Reshape((24, 24 * 8))(x)
    x = L.LSTM(6, return_sequences=True)(x)
    x = L.MultiHeadAttention(2, 4)(x, x)
    x = L.Bidirectional(L.GRU(4))(x)
    return keras.Model(inputs, L.Dense(3)(x))


def test_every_kernel_gets_the_scheme_on_its_true_fans_and_biases_are_zero():
    model = _every_layer_model()
    ki.initialize(model, "he_normal", seed=0)
    report = ki.audit(model, "he_normal")
    paths = [r.path for r in report]
    assert any("depthwise" in p for p in paths)
    assert any("recurrent_kernel" in p for p in paths)
    assert any("query" in p for p in paths)
    # He with true fans everywhere except the recurrent kernels, which are orthogonal.
    assert [r.path for r in report.flagged if "recurrent_kernel" not in r.path] == []
    for spec in ki.layer_weights.weight_specs(model):
        if spec.is_bias:
            assert not spec.variable.numpy().any()
    bn = model.get_layer(index=5)
    np.testing.assert_array_equal(bn.gamma.numpy(), 1.0)  # untouched


def test_recurrent_kernels_are_orthogonal_per_gate():
    model = keras.Sequential([keras.Input((3, 5)), L.LSTM(6)])
    ki.initialize(model, "glorot_uniform", seed=1)
    rec = model.layers[0].cell.recurrent_kernel.numpy().astype(np.float64)
    for g in range(4):
        block = rec[:, 6 * g : 6 * (g + 1)]
        np.testing.assert_allclose(block.T @ block, np.eye(6), atol=1e-5)


class _Sub(keras.Model):
    def __init__(self):
        super().__init__()
        self.inner = keras.Sequential([L.Dense(16, activation="relu"), L.Dense(16)])
        self.head = L.Dense(2)

    def call(self, x):
        return self.head(self.inner(x))


def _kinds():
    seq_no_input = keras.Sequential([L.Dense(16), L.Dense(4)])
    seq_no_input.build((None, 8))
    inner = keras.Sequential([keras.Input((8,)), L.Dense(16)])
    nested = keras.Sequential([keras.Input((8,)), inner, L.Dense(4)])
    inp = keras.Input((8,))
    functional = keras.Model(inp, L.Dense(4)(L.Dense(16)(inp)))
    sub = _Sub()
    sub(np.zeros((1, 8), "float32"))
    return {
        "sequential": seq_no_input,
        "nested": nested,
        "functional": functional,
        "subclassed": sub,
    }


@pytest.mark.parametrize("kind", ["sequential", "nested", "functional", "subclassed"])
def test_model_kinds_are_reinitialized_reproducibly(kind):
    model = _kinds()[kind]
    ki.initialize(model, ki.HeUniform(), seed=7)
    first = _weights(model)
    ki.initialize(model, "zeros")
    assert not any(w.any() for w in _weights(model))
    ki.initialize(model, ki.HeUniform(), seed=7)
    for a, b in zip(first, _weights(model), strict=True):
        np.testing.assert_array_equal(a, b)
    kernels = [w for w in first if w.ndim == 2]
    assert len(kernels) >= 2
    assert all(np.abs(k).max() <= np.sqrt(6 / k.shape[0]) for k in kernels)


def test_layers_of_the_same_shape_get_different_values():
    model = keras.Sequential([keras.Input((8,)), L.Dense(8), L.Dense(8)])
    ki.initialize(model, ki.HeNormal(seed=3))
    a, b = (layer.kernel.numpy() for layer in model.layers)
    assert not np.array_equal(a, b)


def test_keras_builtins_and_user_initializers_are_accepted():
    model = keras.Sequential([keras.Input((8, 8, 64)), L.DepthwiseConv2D(3)])
    ki.initialize(model, keras.initializers.HeNormal(seed=0), seed=1)
    assert ki.audit(model, "he_normal").flagged == []  # true fans, not Keras' shape rule

    class Halves(keras.initializers.Initializer):
        def __call__(self, shape, dtype=None):
            return keras.ops.full(shape, 0.5, dtype=dtype)

    ki.initialize(model, Halves())
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), 0.5)


def test_a_failing_scheme_leaves_every_weight_as_it_was():
    model = keras.Sequential([keras.Input((6, 6, 3)), L.Conv2D(4, 3), L.Flatten(), L.Dense(2)])
    before = _weights(model)
    with pytest.raises(ValueError, match=r"DeltaOrthogonal needs a conv kernel of rank >= 3"):
        ki.initialize(model, "delta_orthogonal", seed=0)  # fails on the Dense kernel
    for a, b in zip(before, _weights(model), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("model", "scheme", "kwargs", "error", "message"),
    [
        (
            lambda: keras.Sequential([L.Dense(3)]),
            "he_normal",
            {},
            ValueError,
            r"Argument `model` must be built",
        ),
        (lambda: "not a model", "he_normal", {}, TypeError, r"Argument `model` must be a Keras"),
        (
            lambda: keras.Sequential([keras.Input((2,)), L.Dense(3)]),
            "he_nromal",
            {},
            ValueError,
            r"Received: scheme='he_nromal'.*Did you mean 'he_normal'",
        ),
        (
            lambda: keras.Sequential([keras.Input((2,)), L.Dense(3)]),
            3.0,
            {},
            TypeError,
            r"Argument `scheme` must be a scheme name",
        ),
        (
            lambda: keras.Sequential([keras.Input((2,)), L.Dense(3)]),
            "he_normal",
            {"seed": 1.5},
            TypeError,
            r"Argument `seed` must be an int",
        ),
    ],
)
def test_bad_arguments_are_named(model, scheme, kwargs, error, message):
    with pytest.raises(error, match=message):
        ki.initialize(model(), scheme, **kwargs)
