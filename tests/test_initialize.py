"""initialize(): every model kind, every layer type, true fans, seeds, all-or-nothing."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

import keras_initlab as ki
from keras_initlab.model.weights import weight_specs

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


def test_every_kernel_gets_the_scheme_on_its_true_fans_and_biases_their_initializer():
    model = _every_layer_model()
    ki.initialize(model, "he_normal", seed=0)
    report = ki.audit(model, "he_normal")
    paths = [r.path for r in report]
    assert any("depthwise" in p for p in paths)
    assert any("recurrent_kernel" in p for p in paths)
    assert any("query" in p for p in paths)
    # He on true fans, recurrent kernels orthogonal per gate: audit reads the same rule.
    assert report.flagged == []
    for spec in weight_specs(model):
        if spec.is_bias:
            value = spec.variable.numpy()
            if isinstance(spec.layer, L.LSTMCell):  # unit_forget_bias: forget gate 1
                units = spec.layer.units
                np.testing.assert_array_equal(value[units : 2 * units], 1.0)
                value = np.delete(value, np.s_[units : 2 * units])
            assert not value.any()
    bn = model.get_layer(index=5)
    np.testing.assert_array_equal(bn.gamma.numpy(), 1.0)  # untouched


class _OwnKernels(L.Layer):
    """Kernels a custom layer creates itself, read by traced contractions: ``x @ a + b``,
    then ``einsum("bi,ihd->bhd", ., c)`` (fans 32 and 4 x 8), then ``d @ x^T``-wise
    (``matmul(d, .)`` on the transposed heads: fans 8 and 6); ``s`` only multiplies."""

    def build(self, shape):
        self.a = self.add_weight(shape=(shape[-1], 32), name="a")
        self.b = self.add_weight(shape=(32,), initializer="ones", name="b")
        self.c = self.add_weight(shape=(32, 4, 8), name="c")
        self.d = self.add_weight(shape=(6, 8), name="d")
        self.s = self.add_weight(shape=(8,), initializer="ones", name="s")

    def call(self, x):
        h = keras.ops.einsum("bi,ihd->bhd", keras.ops.matmul(x, self.a) + self.b, self.c)
        h = keras.ops.matmul(self.d, keras.ops.transpose(h * self.s, (0, 2, 1)))
        return keras.ops.reshape(h, (-1, 24))


def test_a_custom_layers_own_kernels_are_drawn_on_the_fans_their_contractions_read():
    x = keras.Input((16,))
    model = keras.Model(x, _OwnKernels(name="own")(x))
    layer = model.get_layer("own")
    report = ki.initialize(model, "he_normal", seed=0, report=True)
    actions = {r.path.split("/", 1)[1]: r.action for r in report}
    assert actions == {
        "a": "re-drawn",
        "b": "re-drawn",
        "c": "re-drawn",
        "d": "re-drawn",
        "s": "not handled",
    }
    assert not layer.b.numpy().any()  # a bias: zeros
    for variable, fan_in in ((layer.a, 16), (layer.c, 32), (layer.d, 8)):
        ki.testing.assert_variance(variable, 2.0 / fan_in, family="truncated_normal")
    np.testing.assert_array_equal(layer.s.numpy(), 1.0)  # not a kernel: kept


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


def _two_dense():
    return keras.Sequential([keras.Input((8,)), L.Dense(16), L.Dense(4)])


@pytest.mark.parametrize(
    "scheme",
    [
        keras.initializers.HeNormal(seed=3),
        keras.initializers.GlorotUniform(seed=3),
        keras.initializers.RandomNormal(stddev=0.1, seed=3),
        keras.initializers.Orthogonal(seed=3),
    ],
    ids=["he_normal", "glorot_uniform", "random_normal", "orthogonal"],
)
def test_a_keras_initializers_seed_is_kept(scheme):
    a, b = _two_dense(), _two_dense()
    ki.initialize(a, scheme)
    ki.initialize(b, scheme)
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(x, y)
    other = _two_dense()
    reseeded = type(scheme).from_config(scheme.get_config() | {"seed": 4})
    ki.initialize(other, reseeded)
    assert not np.array_equal(_weights(a)[0], _weights(other)[0])


def test_lstm_forget_bias_embeddings_and_normalization_are_kept_and_reported():
    inputs = keras.Input((5,), dtype="int32")
    h = L.Embedding(50, 8, name="emb")(inputs)
    h = L.LSTM(6, name="lstm")(h)
    h = L.BatchNormalization(name="bn")(h)
    model = keras.Model(inputs, _Scale(name="scale")(L.Dense(3, name="head")(h)))
    lstm = model.get_layer("lstm").cell
    lstm.bias.assign(np.full((24,), 0.3, "float32"))  # as after training
    emb = model.get_layer("emb").embeddings.numpy().copy()
    report = ki.initialize(model, "he_normal", seed=0, report=True)
    np.testing.assert_array_equal(lstm.bias.numpy()[6:12], 1.0)
    np.testing.assert_array_equal(np.delete(lstm.bias.numpy(), np.s_[6:12]), 0.0)
    np.testing.assert_array_equal(model.get_layer("emb").embeddings.numpy(), emb)
    np.testing.assert_array_equal(model.get_layer("scale").w.numpy(), 1.0)
    actions = {r.path: r.action for r in report}
    assert actions == {
        "emb/embeddings": "kept",
        "lstm/lstm_cell/kernel": "re-drawn",
        "lstm/lstm_cell/recurrent_kernel": "re-drawn",
        "lstm/lstm_cell/bias": "re-drawn",
        "head/kernel": "re-drawn",
        "head/bias": "re-drawn",
        "bn/gamma": "kept",
        "bn/beta": "kept",
        "bn/moving_mean": "kept",
        "bn/moving_variance": "kept",
        "scale/w": "not handled",
    }
    assert len(report) == len(model.weights)
    reasons = {r.path: r.reason for r in report}
    assert "fan-in" in reasons["emb/embeddings"]
    assert "unit_forget_bias" in reasons["lstm/lstm_cell/bias"]
    assert "orthogonal per gate" in reasons["lstm/lstm_cell/recurrent_kernel"]
    assert "normalization" in reasons["bn/gamma"]
    assert "custom" in reasons["scale/w"]
    assert repr(report) == "InitializeReport(11 weights: 5 re-drawn, 5 kept, 1 not handled)"
    lines = str(report).splitlines()
    assert lines[0].split() == ["layer", "path", "shape", "action", "initializer", "reason"]
    assert len(lines) == 1 + len(report)
    assert [r.path for r in report.not_handled] == [model.get_layer("scale").w.path]
    assert report.to_dicts()[0]["action"] == "kept"


def test_numpy_integer_seeds_are_the_same_as_python_ints():
    a, b = _two_dense(), _two_dense()
    ki.initialize(a, "he_normal", seed=np.int64(7))
    ki.initialize(b, "he_normal", seed=7)
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_initialize_returns_the_model_unless_a_report_is_asked_for():
    model = _two_dense()
    assert ki.initialize(model, "he_normal", seed=0) is model
    assert isinstance(ki.initialize(model, "he_normal", report=True), ki.InitializeReport)


class _Scale(L.Layer):
    """A custom layer with its own weight, as ConvNeXt's LayerScale."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x):
        return x * self.w


def _layer_type_models():
    """One small model per layer type; sizes give each kernel >= 512 entries."""

    def seq(shape, *layers, dtype="float32"):
        return keras.Sequential([keras.Input(shape, dtype=dtype), *layers])

    attention_in = keras.Input((6, 32))
    attention = keras.Model(attention_in, L.MultiHeadAttention(4, 8)(attention_in, attention_in))
    return {
        "dense": seq((32,), L.Dense(48)),
        "conv": seq((8, 8, 16), L.Conv2D(32, 3, groups=2)),
        "depthwise": seq((8, 8, 64), L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")),
        "separable": seq((8, 8, 32), L.SeparableConv2D(32, 3, depth_multiplier=2)),
        "transpose": seq((8, 8, 16), L.Conv2DTranspose(32, 3, strides=2)),
        "lstm": seq((4, 24), L.LSTM(16)),
        "gru": seq((4, 24), L.GRU(16)),
        "simple_rnn": seq((4, 32), L.SimpleRNN(32)),
        "bidirectional": seq((4, 24), L.Bidirectional(L.LSTM(16))),
        "embedding": seq((5,), L.Embedding(100, 16), dtype="int32"),
        "attention": attention,
        "batch_norm": seq((8, 8, 16), L.Conv2D(32, 3), L.BatchNormalization()),
    }


_LAYER_TYPES = [
    "attention",
    "batch_norm",
    "bidirectional",
    "conv",
    "dense",
    "depthwise",
    "embedding",
    "gru",
    "lstm",
    "separable",
    "simple_rnn",
    "transpose",
]
_RANK2 = {"dense", "lstm", "gru", "simple_rnn", "bidirectional"}  # a kernel of rank 2


@functools.cache
def _models():
    """Built once, on first use (not at collection: layer names stay those of a fresh run)."""
    models = _layer_type_models()
    assert sorted(models) == _LAYER_TYPES
    return models


@pytest.mark.parametrize("layer_type", _LAYER_TYPES)
@pytest.mark.parametrize("scheme", sorted(ki.schemes.SCHEMES))
def test_audit_of_the_scheme_flags_nothing_right_after_initialize(scheme, layer_type):
    model = _models()[layer_type]
    if scheme == "delta_orthogonal" and layer_type in _RANK2:
        with pytest.raises(ValueError, match=r"DeltaOrthogonal needs a conv kernel"):
            ki.initialize(model, scheme, seed=0)
        return
    ki.initialize(model, scheme, seed=0)
    report = ki.audit(model, scheme)
    assert report.flagged == []
    weights = [r for r in report if r.handled and r.layout != "bias"]
    assert weights
    for row in weights:
        if row.layout == "embedding":  # kept: Keras' default U(-0.05, 0.05)
            assert row.expected_std == pytest.approx(0.1 / 12**0.5, rel=1e-12)
        elif scheme not in ("constant", "zeros"):  # fixed values: an expected std of 0
            assert row.expected_std > 0


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


def test_an_unknown_scheme_name_lists_auto_and_lsuv():
    model = keras.Sequential([keras.Input((2,)), L.Dense(3)])
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"Argument `scheme` must be one of \[") as caught:
        ki.initialize(model, "he_nromal")
    message = str(caught.value)
    allowed = message.split("must be one of", 1)[1].split("Received:", 1)[0]
    for name in ("'auto'", "'lsuv'", "'he_normal'", "'orthogonal'"):
        assert name in allowed
    assert "Did you mean 'he_normal'" in message
    assert "`keras_initlab.LSUV(x)`" in message
    with pytest.raises(ValueError, match=r"Received: scheme='atuo'.*Did you mean 'auto'"):
        ki.initialize(model, "atuo", input_var=2.0)  # the name first, before `input_var`
    # "lsuv" is a known name, refused with its own message (it needs a batch of data)
    with pytest.raises(ValueError, match=r"LSUV needs a batch of data.*scheme='lsuv'"):
        ki.initialize(model, "lsuv")
    with pytest.raises(TypeError, match=r"'auto'\), `keras_initlab\.LSUV\(x\)` or a keras"):
        ki.initialize(model, 3.0)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
