"""``propagate()`` against measurement (``keras_initlab.measure``).

* Exact cases: linear layers on a *designed* input whose sample mean and covariance are
  exactly the stated ones (centred orthonormal columns), so the measured statistics equal
  their expectations up to float32 rounding: prediction and measurement agree to 1e-3 (a deep
  orthogonal Dense stack with nonzero input mean, and Dense + Add of two independent inputs).
* Each layer type after a Gaussian input, against a sampled measurement: the measurement is
  repeated on ``CHUNKS`` independent batches and its standard error taken from their spread;
  a prediction must lie within ``t * SE`` (Student's t at the suite's per-check alpha), plus a
  stated model error where the rule is an approximation (``MODEL_ERROR``).
* Layers no rule covers: listed, marked assumed, the prediction continues past them.
* Real architectures on small inputs: median |log(predicted / measured)| <= log 1.25 and the
  90th percentile <= log 2 for the activation and the gradient variance.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from scipy import stats

import keras_initlab
from keras_initlab._keras import seed_generators
from keras_initlab.measurement import Measurement
from keras_initlab.testing import budget, prediction_agreement
from tests.model_reading.blocks import ResidualBlock
from tests.tied_embedding import TOKENS, VOCAB, WIDTH, TiedEmbedding

_spec = importlib.util.spec_from_file_location(
    "propagate_measurement", Path(__file__).with_name("measurement.py")
)
assert _spec is not None
assert _spec.loader is not None
M = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(M)

L = keras.layers
KEYS = ("activation_mean", "activation_var", "gradient_var")
CHUNKS, CHUNK = 64, 32  # independent measurements of CHUNK samples each
T = float(stats.t.ppf(1.0 - budget().alpha / 2.0, CHUNKS - 1))


# ------------------------------------------------------------------------ exact cases
def _design(n: int, d: int, mean: float, var: float, seed: int) -> np.ndarray:
    """n rows whose sample mean is ``mean`` and sample covariance ``var * I`` exactly."""
    a = np.random.default_rng(seed).standard_normal((n, d))
    q, _ = np.linalg.qr(a - a.mean(axis=0))  # orthonormal columns orthogonal to ones
    return mean + math.sqrt(n * var) * q


def _relative(model: Any, x: Any, u: np.ndarray) -> dict[str, dict]:
    """Measured statistics, the gradient relative to Var(u) / N^2 (u designed: Var 1)."""
    records = keras_initlab.measure(model, (x, u.astype("float32")), loss=M.surrogate)
    scale = float(np.var(u)) / u.shape[0] ** 2
    return {r["layer"]: {**r, "gradient_var": r["gradient_var"] / scale} for r in records}


def test_a_deep_orthogonal_linear_stack_is_exact():
    width, depth, n = 64, 6, 512
    gains = [0.5, 1.0, 1.5, 2.0, 0.8, 1.2]
    model = keras.Sequential(
        [keras.Input((width,))]
        + [
            L.Dense(
                width,
                kernel_initializer=keras_initlab.Orthogonal(gain=g, seed=i),
                use_bias=False,
                name=f"d{i}",
            )
            for i, g in enumerate(gains[:depth])
        ]
    )
    x = _design(n, width, 0.7, 2.0, seed=0).astype("float32")
    u = _design(n, width, 0.0, 1.0, seed=1)
    report = keras_initlab.propagate(model, input_mean=0.7, input_var=2.0)
    measured = _relative(model, x, u)
    scale = 1.0
    for row, g in zip(report, gains, strict=True):
        scale *= g * g
        got = measured[row.layer]
        # the variance: 2 * prod(g^2) from the covariance, plus the spread of unit means
        for key in KEYS:
            np.testing.assert_allclose(
                getattr(row, key), got[key], rtol=1e-3, atol=1e-6, err_msg=f"{row.layer}.{key}"
            )
    assert report[0].activation_var > 2.0 * 0.25 * 0.999  # the covariance part alone
    np.testing.assert_allclose(report[-1].gradient_var, 1.0)
    np.testing.assert_allclose(report[0].gradient_var, scale / gains[0] ** 2, rtol=1e-4)


def test_dense_plus_add_of_independent_inputs_is_exact():
    n, d = 512, 32
    both = _design(n, 2 * d, 0.0, 1.5, seed=2)  # the two halves: exactly uncorrelated
    x1, x2 = both[:, :d].astype("float32"), both[:, d:].astype("float32")
    i1, i2 = keras.Input((d,)), keras.Input((d,))
    init = keras.initializers.RandomNormal(0.05, 0.2, seed=3)  # nonzero-mean weights
    a = L.Dense(48, kernel_initializer=init, bias_initializer="ones", name="a")(i1)
    b = L.Dense(48, kernel_initializer=init, name="b")(i2)
    model = keras.Model([i1, i2], L.Add(name="add")([a, b]))
    u = _design(n, 48, 0.0, 1.0, seed=4)
    report = keras_initlab.propagate(model, input_var=1.5)
    measured = _relative(model, [x1, x2], u)
    for row in report:
        for key in KEYS:
            np.testing.assert_allclose(
                getattr(row, key),
                measured[row.layer][key],
                rtol=1e-3,
                atol=1e-6,
                err_msg=f"{row.layer}.{key}",
            )


# ------------------------------------------------------------------------ each layer type
def _conv_stack(layer: Any) -> list[Any]:
    return [layer]


class LearnedScale(keras.layers.Layer):
    """``x * alpha`` with a learned scalar (read by tracing: a multiply by a variable)."""

    def build(self, shape):
        self.alpha = self.add_weight(shape=(), initializer=keras.initializers.Constant(0.3))

    def call(self, x):
        return x * self.alpha


class BackendScale(keras.layers.Layer):
    """A per-channel scale written with a backend op: no trace reads it; registered."""

    def build(self, shape):
        self.gamma = self.add_weight(
            shape=(shape[-1],), initializer=keras.initializers.RandomUniform(0.2, 2.0)
        )

    def call(self, x):
        import tensorflow as tf

        return tf.math.multiply(x, self.gamma)

    def compute_output_shape(self, shape):
        return shape


keras_initlab.register_layer(BackendScale, "scale", weight="gamma")

# name -> (input shape, layers after the input, relative model error, why)
CASES: dict[str, tuple[tuple[int, ...], Any, float]] = {
    "dense_relu": ((64,), lambda: [L.Dense(48, activation="relu", bias_initializer="ones")], 0),
    "dense_gelu": ((64,), lambda: [L.Dense(48, activation="gelu")], 0),
    "einsum": ((6, 16), lambda: [L.EinsumDense("abc,cd->abd", (6, 24), bias_axes="d")], 0),
    "conv_same_small_map": ((4, 4, 8), lambda: [L.Conv2D(16, 3, padding="same")], 0),
    "conv_groups_strides": ((9, 9, 8), lambda: [L.Conv2D(8, 3, strides=2, groups=4)], 0),
    "conv1d_causal": ((10, 6), lambda: [L.Conv1D(12, 3, padding="causal", dilation_rate=2)], 0),
    "depthwise": ((6, 6, 8), lambda: [L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)], 0),
    "separable": ((6, 6, 8), lambda: [L.SeparableConv2D(12, 3, padding="same")], 0),
    "transpose_strided": (
        (5, 5, 8),
        lambda: [L.Conv2DTranspose(6, 3, strides=2, padding="same")],
        0,
    ),
    "activation_tanh": ((64,), lambda: [L.Activation("tanh")], 0),
    "activation_hard_silu": ((64,), lambda: [L.Activation("hard_silu")], 0),
    "relu6": ((64,), lambda: [L.ReLU(6.0)], 0),
    "leaky_relu": ((64,), lambda: [L.LeakyReLU(0.2)], 0),
    "elu": ((64,), lambda: [L.ELU()], 0),
    "batchnorm_inference": ((6, 6, 8), lambda: [L.BatchNormalization()], 0),
    "layernorm": ((5, 32), lambda: [L.LayerNormalization()], 0),
    # epsilon as large as the input's variance (an N(0, 0.02) stream into Keras' default
    # epsilon 1e-3 is 0.4 of it): the output's mean square E[s^2 / (s^2 + eps)] is taken
    # as 1 / (1 + eps E[1/s^2]), 1.8% below it at d = 32, eps / S = 1 (Jensen's gap)
    "layernorm_large_epsilon": ((5, 32), lambda: [L.LayerNormalization(epsilon=1.0)], 0.03),
    "maxpool_same": ((7, 7, 4), lambda: [L.ReLU(), L.MaxPooling2D(3, 2, padding="same")], 0),
    "avgpool_same": ((7, 7, 4), lambda: [L.AveragePooling2D(3, 2, padding="same")], 0),
    "global_average": ((5, 5, 8), lambda: [L.GlobalAveragePooling2D()], 0),
    "global_max": ((6, 8), lambda: [L.GlobalMaxPooling1D()], 0),
    # a pool of a pool: the tanh's derivative where its gradient lands is at the maximum of
    # 2 x 8 = 16 pre-activations, not of the first pool's 2
    "tanh_pool_global_max": (
        (16, 4),
        lambda: [L.Activation("tanh"), L.MaxPooling1D(2), L.GlobalMaxPooling1D()],
        0,
    ),
    "zero_padding": ((4, 4, 3), lambda: [L.ZeroPadding2D(((1, 2), (0, 1)))], 0),
    "upsampling": ((3, 3, 4), lambda: [L.UpSampling2D(2)], 0),
    "cropping": ((6, 6, 2), lambda: [L.Cropping2D(((1, 0), (2, 1)))], 0),
    "flatten_dense": ((3, 3, 4), lambda: [L.Flatten(), L.Dense(8)], 0),
    "permute_dense": ((4, 6), lambda: [L.Permute((2, 1)), L.Dense(5)], 0),
    "reshape": ((4, 6), lambda: [L.Reshape((8, 3))], 0),
    "repeat_vector": ((6,), lambda: [L.RepeatVector(3)], 0),
    # its layer called on each step: a row per call, td/conv, td/conv@2, ...
    "time_distributed": (
        (3, 5, 5, 4),
        lambda: [L.TimeDistributed(L.Conv2D(6, 3, activation="tanh", name="conv"), name="td")],
        0,
    ),
    "rescaling": ((8,), lambda: [L.Rescaling(0.5, offset=1.0)], 0),
    # finite width: gates share x, their pre-activations correlate ~ 1/sqrt(fan_in)
    "lstm_step0": ((1, 256), lambda: [L.LSTM(32)], 3.0 / math.sqrt(256)),
    "gru_step0": ((1, 256), lambda: [L.GRU(32)], 3.0 / math.sqrt(256)),
    "simple_rnn_step0": ((1, 64), lambda: [L.SimpleRNN(32, return_sequences=True)], 0),
    # every step: the mean field leaves out each gate's correlation with the state it
    # multiplies (both read h_{t-1}), ~ 1/sqrt(units)
    "lstm_steps": ((8, 64), lambda: [L.LSTM(128, return_sequences=True)], 1 / math.sqrt(128)),
    "gru_steps_last": ((8, 64), lambda: [L.GRU(128)], 1 / math.sqrt(128)),
    "gru_steps_reset_before": (
        (8, 64),
        lambda: [L.GRU(128, reset_after=False, return_sequences=True)],
        1 / math.sqrt(128),
    ),
    "simple_rnn_steps": (
        (8, 64),
        lambda: [L.SimpleRNN(128, return_sequences=True)],
        1 / math.sqrt(128),
    ),
    "bidirectional_steps": (
        (8, 64),
        lambda: [L.Bidirectional(L.LSTM(64, return_sequences=True, go_backwards=False))],
        1 / math.sqrt(64),
    ),
    # a softmax output: its backward factor is an average over SOFTMAX_DRAWS fixed draws
    "dense_softmax": ((64,), lambda: [L.Dense(10, activation="softmax")], 3.0 / math.sqrt(4096)),
    # custom layers: traced (the block's second Dense reads the first's correlated units:
    # finite width, as the recurrent gates) and registered
    "custom_residual_block": ((256,), lambda: [ResidualBlock(256)], 3.0 / math.sqrt(256)),
    "custom_learned_scale": ((64,), lambda: [LearnedScale()], 0),
    "registered_backend_scale": ((6, 16), lambda: [BackendScale()], 0),
}


def _before(shape: tuple[int, ...]) -> Any:
    """An identity Dense layer: its output gradient is the next layer's input gradient."""
    return L.Dense(shape[-1], kernel_initializer="identity", use_bias=False, name="before")


def _case_model(name: str) -> keras.Model:
    shape, layers, _ = CASES[name]
    keras.utils.set_random_seed(7)
    inputs = keras.Input(shape)
    h = _before(shape)(inputs)  # its gradient: the layer's backward
    for layer in layers():
        h = layer(h)
    return keras.Model(inputs, h)


def _chunked(model: Any, mode: str = "inference", ids: int | None = None) -> dict[str, Any]:
    """Per layer and key: (mean over CHUNKS measurements, standard error)."""
    from keras_initlab.model.tree import leaf_layers

    rng = np.random.default_rng(11)
    measurement = Measurement(
        model, [p for p, _ in leaf_layers(model)], mode=mode, loss=M.surrogate
    )
    in_shape = (CHUNK, *model.inputs[0].shape[1:])
    out_shape = (CHUNK, *model.outputs[0].shape[1:])
    rows: dict[str, dict[str, list[float]]] = {}
    generators = seed_generators(model)
    for _ in range(CHUNKS):
        if ids is None:
            x = rng.standard_normal(in_shape).astype("float32")
        else:
            x = rng.integers(0, ids, in_shape)
        u = rng.standard_normal(out_shape).astype("float32")
        scale = 1.0 / CHUNK**2  # dL/dy = u / CHUNK, Var(u) = 1 in expectation
        for r in measurement((x, u)):
            row = rows.setdefault(r["layer"], {k: [] for k in KEYS})
            for k in KEYS:
                row[k].append(r[k] / scale if k == "gradient_var" else r[k])
        # A probe leaves the dropout seeds as it found them (the fit it watches is
        # unchanged): move them on, so that each chunk draws its own masks.
        for generator in generators:
            generator.next()
    return {
        layer: {
            k: (float(np.mean(v)), float(np.std(v, ddof=1) / math.sqrt(CHUNKS)))
            for k, v in row.items()
        }
        for layer, row in rows.items()
    }


def _check(report: Any, measured: dict[str, Any], model_error: float, skip=()) -> None:
    for row in report:
        if row.layer not in measured:
            continue
        for key in KEYS:
            if (row.layer, key) in skip:
                continue
            value, se = measured[row.layer][key]
            predicted = getattr(row, key)
            # a model error is relative to the value's scale: a mean's is its std
            scale = math.sqrt(row.activation_var) if key == "activation_mean" else predicted
            bound = T * se + model_error * abs(scale) + 1e-9
            assert abs(predicted - value) <= bound, (
                f"{row.layer}.{key}: predicted {predicted:.5g}, measured {value:.5g} "
                f"+- {se:.2g} (bound {bound:.3g})"
            )


TENSORFLOW_CASES = {"registered_backend_scale"}  # its call is written with tf.math


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.tensorflow) if n in TENSORFLOW_CASES else n for n in CASES],
)
def test_each_layer_type_matches_a_sampled_measurement(name):
    model = _case_model(name)
    report = keras_initlab.propagate(model)
    assert not report.assumed, report.assumed
    _check(report, _chunked(model), CASES[name][2])


def test_training_mode_batch_statistics_and_dropout():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 6, 8))
    h = _before(inputs.shape[1:])(inputs)
    h = L.Conv2D(8, 3, padding="same", bias_initializer="ones")(h)
    h = L.BatchNormalization(gamma_initializer="random_normal")(h)
    model = keras.Model(inputs, L.Dropout(0.3)(L.ReLU()(h)))
    report = keras_initlab.propagate(model, mode="training")
    # batch statistics over CHUNK * 36 values per channel: O(1/n) departures (projections)
    _check(report, _chunked(model, mode="training"), 3.0 / (CHUNK * 36))


def test_alpha_dropout_in_both_modes():
    """A SELU layer's output, then AlphaDropout: the identity in inference; in training the
    affine map of the dropped elements to SELU's saturation value (exact in expectation)."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((64,))
    h = L.Dense(64, activation="selu", kernel_initializer="lecun_normal", bias_initializer="ones")(
        _before((64,))(inputs)
    )
    model = keras.Model(inputs, L.AlphaDropout(0.2, name="alpha")(h))
    for mode in ("inference", "training"):
        report = keras_initlab.propagate(model, mode=mode)
        assert not report.assumed, mode
        _check(report, _chunked(model, mode=mode), 0.0)


def test_embedding_with_uniform_token_ids():
    keras.utils.set_random_seed(5)
    inputs = keras.Input((4,), dtype="int32")
    h = L.Embedding(50, 16, embeddings_initializer="random_uniform", name="emb")(inputs)
    model = keras.Model(inputs, h)
    report = keras_initlab.propagate(model)
    assert "uniform" in report.by_layer()["emb"].note
    _check(report, _chunked(model, ids=50), 0.0, skip={("emb", "gradient_var")})


def test_a_tied_embeddings_reversed_call_is_the_output_projection():
    """A tied embedding called reversed for the logits (`tests.tied_embedding`'s layer, as
    keras_hub's ``ReversibleEmbedding``) is the output projection ``x @ E^T``: its row
    (``embed@2``, the second call) is predicted as a Dense layer with that kernel, against
    measurement; ``auto`` initializes the model. (A layer between the two calls keeps the
    projection's input independent of the table, as a transformer's blocks do.)"""

    keras.utils.set_random_seed(0)
    tokens = keras.Input((TOKENS,), dtype="int32")
    embed = TiedEmbedding(VOCAB, WIDTH, name="embed")
    h = L.Dense(WIDTH, name="mix")(embed(tokens))
    model = keras.Model(tokens, embed(h, reverse=True))
    x = np.random.default_rng(0).integers(0, VOCAB, (512, TOKENS)).astype("int32")
    rows = keras_initlab.propagate(model).by_layer()
    assert rows["embed@2"].status == "predicted"
    assert "reversed" in rows["embed@2"].note
    agreement = prediction_agreement(model, x)
    assert agreement.share == 1.0
    for row in agreement.rows:  # the bounds, row by row here
        assert row.activation_error <= math.log(1.25), row.describe()
        assert row.gradient_error <= math.log(1.25), row.describe()
    keras_initlab.initialize(model, "auto")


def test_multi_head_attention_near_uniform_attention():
    keras.utils.set_random_seed(9)
    inputs = keras.Input((16, 32))
    h = _before(inputs.shape[1:])(inputs)
    h = L.MultiHeadAttention(4, 8, name="mha")(h, h)
    model = keras.Model(inputs, h)
    report = keras_initlab.propagate(model)
    rows = report.by_layer()
    assert {"mha/query", "mha/key", "mha/value", "mha/attention_output"} <= set(rows)
    measured = _chunked(model)
    # forward, values and output: E[p^2] near 1/T^2 (s2 ~ 0.25, T = 16; softmax_square
    # integrates it); queries and keys are reached only through the softmax's backward
    # (its factor with the projection, second order in the logits, kept to its leading
    # term): judged at the transformer issue's bound for its worst rows, a factor 2 (here
    # the query 1.3x low on Keras 3.15.1, 1.6x on 3.12.0, which draw these weights differently).
    through_softmax = {(f"mha/{n}", "gradient_var") for n in ("query", "key")}
    _check(report, measured, 0.25, skip={("before", "gradient_var"), *through_softmax})
    for layer, key in through_softmax:
        assert abs(math.log(getattr(rows[layer], key) / measured[layer][key][0])) <= math.log(
            2.0
        ), layer


def test_multi_head_attention_with_peaked_attention():
    """He normal projections on their true fans (32 inputs each; Keras 3.12's own He draw
    reads the (32, 4, 8) kernels' fan-in as 128): logits of variance ``s2 = E[q^2] Var(k)
    = 4``, far from uniform attention (a log-normal fit of the other keys' sum overstated
    ``E[p^2]`` 1.8x here). The model error: one query's logits share its ``q``, iid only
    given ``|q|^2``, whose spread over ``key_dim = 8`` (chi-square, relative sd 0.5) moves
    ``E[p^2]`` by 5% at ``s2 = 4`` (0.300 against 0.317, 200,000 sampled softmaxes)."""
    keras.utils.set_random_seed(9)
    inputs = keras.Input((16, 32))
    h = _before(inputs.shape[1:])(inputs)
    attention = L.MultiHeadAttention(4, 8, name="mha")
    model = keras.Model(inputs, attention(h, h))
    rng = np.random.default_rng(9)
    for dense in (attention.query_dense, attention.key_dense, attention.value_dense):
        shape = tuple(dense.kernel.shape)
        dense.kernel.assign(rng.standard_normal(shape) * math.sqrt(2.0 / 32))
    report = keras_initlab.propagate(model)
    rows = report.by_layer()
    q, k = rows["mha/query"].activation_var, rows["mha/key"].activation_var
    assert 3.0 < q * k < 5.0  # the logits' variance: peaked attention
    through_softmax = {(f"mha/{n}", "gradient_var") for n in ("query", "key")}
    _check(report, _chunked(model), 0.1, skip={("before", "gradient_var"), *through_softmax})


def test_monotonicity_does_not_depend_on_the_dtype_an_activation_computes_in():
    """JAX without x64 computes an activation in float32 whatever it is handed, and XLA's
    float32 tanh is not monotone near 1 (its steps fall by up to 1.8e-7), which once made
    a max pool read tanh as non-monotone on JAX only. Here that rounding is one float32
    ulp of 1 alternating in sign; SiLU falls by far more below its minimum."""
    from keras_initlab.propagate._moments import Activation

    def rounded(f):  # f in float32, off by +-1 ulp of 1 at alternate points
        def fn(z):
            wiggle = np.finfo(np.float32).eps * (-1.0) ** np.arange(np.size(z))
            return f(np.asarray(z, np.float32)).astype(np.float64) + wiggle.reshape(np.shape(z))

        return fn

    tanh = Activation("tanh", rounded(np.tanh), None)
    assert np.diff(tanh.fn(np.linspace(-20.0, 20.0, 4001))).min() < 0  # rounding falls
    assert tanh.is_nondecreasing()
    silu = Activation("silu", rounded(lambda z: z / (1.0 + np.exp(-z))), None)
    assert not silu.is_nondecreasing()


def test_softmax_of_few_classes():
    """Two iid N(0, v) logits: ``p_1 = sigmoid(a - b)``, ``a - b ~ N(0, 2v)``, a 1-D integral
    (`softmax_square`'s Laplace-transform integral is exact there); ``E[p^2] <= E[p] = 1/n``
    always (the large-n form ``exp(v) / n^2`` breaks it for a segmentation head's few
    classes)."""
    from keras_initlab.gaussian import normal_nodes
    from keras_initlab.propagate._moments import softmax_square

    for v in (0.25, 1.0, 2.0):
        e, w = normal_nodes(0.0, 2.0 * v, breaks=(), points=4001)
        exact = float(w @ (1.0 / (1.0 + np.exp(-e))) ** 2)
        # Both integrals are converged here (4001 Simpson points for the reference).
        assert softmax_square(v, 2) == pytest.approx(exact, rel=1e-9)
    for n in (2, 3, 4, 10, 100):
        assert all(softmax_square(v, n) <= 1.0 / n for v in (0.5, 2.0, 4.0, 9.0, 25.0, 50.0))
    # A sampled measurement of two classes: the forward moments are exact in theory. The
    # gradient below the softmax is not checked: its rule drops an O(1/n) projection.
    keras.utils.set_random_seed(7)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, L.Activation("softmax", name="p")(_before((2,))(inputs)))
    _check(keras_initlab.propagate(model), _chunked(model), 0.0, skip={("before", "gradient_var")})


def test_softmax_of_exploding_logits_is_one_hot():
    """Beyond ``ONE_HOT_S2`` (an unnormalized 24-block stack's attention logits reach a
    variance of 1e20) the one-hot limit ``1/t``, computed at once (the integral's grid
    would take 9 s / 0.05 steps), and not NaN for a NaN or infinite variance; at the cap the
    integral is below that limit and within the O(1/s) deficit the docstring states
    (``0.56 / s`` for two logits: 1.1% at s = 50)."""
    from keras_initlab.propagate._moments import ONE_HOT_S2, softmax_square

    counts = np.array([2, 16, 128])
    for s2 in (1e20, math.inf, math.nan):
        np.testing.assert_array_equal(softmax_square(s2, counts), 1.0 / counts)
    at_cap = softmax_square(ONE_HOT_S2, counts) * counts
    assert np.all(at_cap < 1.0)
    assert at_cap[0] == pytest.approx(1.0 - 0.564 / math.sqrt(ONE_HOT_S2), abs=3e-3)


# ------------------------------------------------------------------------ unknown layers
class Doubler(keras.layers.Layer):
    """Doubles its input where the batch's mean is positive: Python control flow on a value,
    so no rule and no trace can read it."""

    def call(self, x):
        if bool(keras.ops.convert_to_numpy(keras.ops.mean(x)) > -1e30):
            return 2.0 * x
        return x

    def compute_output_shape(self, input_shape):
        return input_shape


def test_an_unknown_layer_is_listed_and_the_rows_it_touches_are_not_called_predicted():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((32,))
    h = L.Dense(32, name="d0")(inputs)
    h = Doubler(name="double")(h)
    model = keras.Model(inputs, L.Dense(16, name="d1")(h))
    report = keras_initlab.propagate(model)
    rows = report.by_layer()
    assert [r.layer for r in report.assumed] == ["d0", "double", "d1"]
    assert rows["double"].status == "assumed"
    assert "Doubler" in rows["double"].note
    assert "variance taken as unchanged" in rows["double"].note
    assert rows["double"].activation_var == pytest.approx(rows["d0"].activation_var)
    # the prediction continues below it, but is not called predicted there
    assert rows["d1"].status == "downstream"
    assert rows["d1"].assumes == ("double",)
    assert "downstream of assumed double" in rows["d1"].note
    # the gradient above it passed back through it: its activation is still predicted
    assert rows["d0"].status == "upstream"
    assert rows["d0"].activation_predicted
    assert not rows["d0"].predicted
    assert rows["d0"].gradient_assumes == ("double",)
    assert rows["d1"].gradient_assumes == ()
    assert report.counts() == {"predicted": 0, "assumed": 1, "downstream": 1, "upstream": 1}
    text = str(report)
    assert "downstream" in text
    assert "Doubler" in text
    assert repr(report) == "PropagateReport(3 layers: 1 assumed, 1 downstream, 1 upstream)"


def test_arguments_are_checked():
    model = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    with pytest.raises(ValueError, match="`mode`"):
        keras_initlab.propagate(model, mode="train")
    with pytest.raises(ValueError, match="`input_var`"):
        keras_initlab.propagate(model, input_var=-1.0)

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match=r"`model` must be a built model.*call it once"):
        keras_initlab.propagate(Sub())  # never called: no shapes to trace its call at


class _Twin(keras.Model):
    """``out(x + d2(d1(x)))``, subclassed; `functional_twin` is the same layers' graph."""

    def __init__(self):
        super().__init__(name="twin")
        self.d1 = L.Dense(32, activation="relu", name="d1")
        self.d2 = L.Dense(16, name="d2")
        self.out = L.Dense(4, activation="tanh", name="out")

    def call(self, x):
        return self.out(keras.ops.add(x, self.d2(self.d1(x))))


def functional_twin(model: _Twin) -> keras.Model:
    x = keras.Input((16,))
    return keras.Model(x, model.call(x))


def test_a_subclassed_model_is_read_like_its_functional_twin():
    """Built by a call on data, its ``call`` is traced at those shapes: every row predicted,
    named as `measure` names its records, with the values the same layers give as a graph."""
    sub = _Twin()
    sub(np.zeros((2, 16), "float32"))
    report = keras_initlab.propagate(sub, batch_size=16)
    twin = keras_initlab.propagate(functional_twin(sub), batch_size=16).by_layer()
    assert all(row.predicted for row in report)
    recorded = [r["layer"] for r in keras_initlab.measure(sub, np.ones((4, 16), "float32"))]
    assert set(recorded) <= {row.layer for row in report}
    for name in ("d1", "d2", "out"):
        row = report.by_layer()[name]
        assert (row.activation_var, row.gradient_var) == (
            twin[name].activation_var,
            twin[name].gradient_var,
        )


def test_nested_models_are_named_by_path():
    inner = keras.Sequential(
        [keras.Input((8,)), L.Dense(8, activation="relu", name="d")], name="enc"
    )
    inputs = keras.Input((8,))
    model = keras.Model(inputs, L.Dense(2, name="out")(inner(inputs)))
    assert [r.layer for r in keras_initlab.propagate(model)] == ["enc/d", "out"]


# ------------------------------------------------------------------------ real architectures
_aspec = importlib.util.spec_from_file_location(
    "propagate_architectures", Path(__file__).with_name("architectures.py")
)
assert _aspec is not None
assert _aspec.loader is not None
A = importlib.util.module_from_spec(_aspec)
_aspec.loader.exec_module(A)

GOAL_MEDIAN, GOAL_P90 = math.log(1.25), math.log(2.0)
SIZE, BATCH = 32, 16
APPLICATIONS = ("mobilenetv2", "resnet50", "efficientnetb0")


def _errors(name: str) -> dict[str, tuple[float, float]]:
    keras.utils.set_random_seed(0)
    model = A.MODELS[name](SIZE)
    report = keras_initlab.propagate(model)
    assert not report.assumed, [(r.layer, r.note) for r in report.assumed]
    x = np.random.default_rng(0).standard_normal((BATCH, *A.input_shape(model)))
    x = x.astype("float32")
    # measure(): one traced probe pass; for the 150-250-layer applications its eager
    # reference (equal to it to 1e-4, tests/callbacks) saves the tracing time.
    measure = M.measure_eager if name in APPLICATIONS else M.measure
    measured = measure(model, x)
    return {key: M.summary(M.log_errors(report, measured, key)) for key in KEYS[1:]}


@pytest.mark.slow
@pytest.mark.tensorflow  # its bounds were set on TensorFlow's weight draws (other backends
# draw other weights from the same seeds; `prediction_agreement` runs on them all)
@pytest.mark.parametrize("name", list(A.MODELS))
def test_real_architectures_meet_the_goal(name):
    """The issue's goal: median |log(pred / meas)| <= log 1.25, 90th percentile <= log 2,
    for the activation variance and the gradient variance (ResNet50 included: in inference
    mode at initialization its seed-to-seed spread is large, see the benchmark)."""
    for key, (median, p90) in _errors(name).items():
        assert median <= GOAL_MEDIAN, (name, key, median)
        assert p90 <= GOAL_P90, (name, key, p90)


def test_a_layer_called_twice_gets_a_row_per_call_named_by_call():
    a, b = keras.Input((32,)), keras.Input((32,))
    tower = L.Dense(32, activation="relu", name="tower")
    encoder = keras.Sequential([keras.Input((32,)), L.Dense(32, name="e1")], name="enc")
    block = ResidualBlock(32, name="block")
    left, right = block(encoder(tower(a))), block(encoder(tower(b)))
    model = keras.Model([a, b], L.Subtract(name="diff")([left, right]))
    names = [r.layer for r in keras_initlab.propagate(model, input_var=2.0)]
    inner = [f"{block.d1.name}", f"{block.d2.name}", "add"]
    first = ["tower", "enc/e1", "block", *(f"block/{n}" for n in inner)]
    # as measure names its records: the inner rows of the second call end in @2
    second = ["tower@2", "enc/e1@2", "block@2", *(f"block/{n}@2" for n in inner)]
    assert sorted(names) == sorted([*first, *second, "diff"])
    assert names.index("block/add@2") < names.index("diff")
    x = [np.ones((4, 32), "float32")] * 2
    assert {r["layer"] for r in keras_initlab.measure(model, x)} <= set(names)
    rows = keras_initlab.propagate(model, input_var=2.0).by_layer()
    # the two calls see the same input moments here, so their rows agree
    for one, two in zip(first, second, strict=True):
        assert rows[two].activation_var == pytest.approx(rows[one].activation_var)
        assert rows[two].gradient_var == pytest.approx(rows[one].gradient_var)


@pytest.mark.parametrize(
    "before",
    [
        lambda: [L.Bidirectional(L.LSTM(32, return_sequences=True)), L.Dense(32)],
        lambda: [L.GlobalAveragePooling1D(), L.RepeatVector(8)],
    ],
    ids=["a recurrent sequence through a dense", "a repeated vector"],
)
def test_a_recurrent_layer_reading_correlated_steps_is_assumed(before):
    """The recurrent and pooling rules take their input's steps as independent; a sequence
    whose steps are correlated (a GRU reading a bidirectional LSTM's sequence measures 1.8x
    above what the rule gives it) makes the layer assumed, and the rows after it say so."""
    inputs = keras.Input((8, 16))
    h = inputs
    for layer in before():
        h = layer(h)
    gru = L.GRU(32, name="gru")(h)
    pooled = L.GlobalAveragePooling1D(name="pool")(h)
    joined = L.Concatenate(name="join")([gru, pooled])
    model = keras.Model(inputs, L.Dense(4, name="head")(joined))
    rows = keras_initlab.propagate(model).by_layer()
    for name in ("gru", "pool"):  # a recurrence and a pool over the steps
        assert rows[name].status == "assumed"
        assert "correlated" in rows[name].note
    assert rows["head"].status == "downstream"
    # the same GRU on the input itself is predicted
    alone = keras.Sequential([keras.Input((8, 16)), L.GRU(32, name="gru")])
    assert keras_initlab.propagate(alone).by_layer()["gru"].status == "predicted"


def test_a_max_pool_of_unequal_inputs():
    """A window whose inputs differ by a part common to all samples (a fixed offset per
    position, as near a border or on a small map; here written as an add of a constant)
    returns the maximum of independent Gaussians of unequal means, and sends its gradient
    to each input as often as that input wins: mean, variance and gradient within t * SE
    of a sampled measurement. The window-average stand-in (iid inputs of the window's mean
    moments) lies outside that bound: the test can tell the two apart."""
    from keras_initlab.gaussian import max_normal_nodes

    keras.utils.set_random_seed(7)
    offsets = np.random.default_rng(3).normal(0.0, 1.5, (4, 4, 8)).astype("float32")
    inputs = keras.Input((4, 4, 8))
    h = L.ReLU(name="relu")(keras.ops.add(_before((4, 4, 8))(inputs), offsets))
    model = keras.Model(inputs, L.MaxPooling2D(2, name="pool")(h))
    report = keras_initlab.propagate(model)
    assert not report.assumed, report.assumed
    measured = _chunked(model)
    _check(report, measured, 0.0)
    z, w = max_normal_nodes(4)
    windows = offsets.reshape(2, 2, 2, 2, 8).mean(axis=(1, 3)).reshape(-1)
    stand_in = float(np.mean([np.sum(w * np.maximum(m + z, 0.0)) for m in windows]))
    value, se = measured["pool"]["activation_mean"]
    assert abs(stand_in - value) > T * se, (stand_in, value, se)


def _check_relu_after_sum(model: keras.Model, *streams: str) -> None:
    """``model`` ends in a sum ``"sum"`` and a ReLU ``"after"``: every row within t * SE of a
    sampled measurement but the gradient between the stream ReLUs and the sum where the
    stream is a Gaussian stand-in (``streams``: a concatenation of ReLUs, a max pool of
    them): the layer below the stand-in receives the mean over the paths weighted by the
    stand-in's derivatives (`_paths.for_rule`), so that the ReLUs' own factor gives the
    correlated product; that weighted mean lands on those rows, above the ReLU's own mask.
    And the Gaussian stand-in of the sum's moments outside that bound at ``"after"``: the
    test tells the two apart."""
    from keras_initlab.propagate._moments import Activation, activation_moments
    from keras_initlab.propagate._signal import make

    report = keras_initlab.propagate(model)
    assert not report.assumed, report.assumed
    measured = _chunked(model)
    _check(report, measured, 0.0, skip={(name, "gradient_var") for name in streams})
    relu = Activation("relu", lambda z: np.maximum(z, 0.0), "relu")
    total = report.by_layer()["sum"]
    stand_in, _ = activation_moments(relu, make(total.activation_mean, total.activation_var))
    value, se = measured["after"]["activation_var"]
    assert abs(stand_in.var - value) > T * se, (stand_in.var, value, se)


def test_a_relu_of_a_residual_sum_on_a_rectified_stream():
    """``relu(relu(z) + b)``, ``b`` a Dense branch independent of ``z`` (it reads the other
    half of the input): the sum is skewed, and the ReLU of it is integrated over ``z`` and,
    in closed form, over ``b`` (`_signal.Blend`). Mean, variance and gradient of every row
    within t * SE of a sampled measurement, the gradient below the stream's own ReLU
    included: the two ReLUs' masks are correlated (``E[g'^2 f'^2] > E[g'^2] E[f'^2]``;
    with independent masks ``take``'s gradient is 15% low, outside the bound), and the walk
    follows the stream's paths (`propagate._paths`), so the gradient at the stream ReLU's
    own output is right too (the pairwise correction it replaced put the ratio, 1.23 here,
    on that row). The Gaussian stand-in of the sum's moments lies outside the bound (its
    variance is 5% low)."""
    width = 64
    select = np.eye(2 * width, width, dtype="float32")  # the first half, unchanged
    branch = np.zeros((2 * width, width), "float32")
    branch[width:] = np.random.default_rng(5).normal(0.0, 1.0 / math.sqrt(width), (width, width))
    inputs = keras.Input((2 * width,))
    h = _before((2 * width,))(inputs)
    stream = L.ReLU(name="stream")(
        L.Dense(
            width,
            use_bias=False,
            name="take",
            kernel_initializer=keras.initializers.Constant(select),
        )(h)
    )
    b = L.Dense(
        width, use_bias=False, name="branch", kernel_initializer=keras.initializers.Constant(branch)
    )(h)
    model = keras.Model(inputs, L.ReLU(name="after")(L.Add(name="sum")([stream, b])))
    _check_relu_after_sum(model)
    # written with keras.ops (a Functional graph's op nodes): the same prediction
    written = keras.Model(inputs, keras.ops.relu(stream + b))
    for one, two in zip(
        keras_initlab.propagate(model), keras_initlab.propagate(written), strict=True
    ):
        assert (one.activation_var, one.gradient_var) == (two.activation_var, two.gradient_var)


def _pools_of_one_tensor(merge: str) -> keras.Model:
    """Two 3x3 average pools alike of one tensor ``p`` (NASNet's ``normal_add_4``), merged
    by ``merge``; ``p`` is also read on its own beside a difference (identically 0)."""
    inputs = keras.Input((8, 8, 4))
    p = _before((8, 8, 4))(inputs)
    a, b = (L.AveragePooling2D(3, 1, "same", name=f"pool_{i}")(p) for i in (1, 2))
    merged = {
        "Add": lambda: L.Add(name="sum")([a, b]),
        "Subtract": lambda: L.Concatenate(name="sum")([L.Subtract(name="zero")([a, b]), p]),
        "one tensor twice": lambda: L.Add(name="sum")([a, a]),
        "keras.ops": lambda: a + b,
    }[merge]()
    return keras.Model(inputs, L.Dense(4, name="after")(merged))


@pytest.mark.parametrize("merge", ["Add", "Subtract", "one tensor twice", "keras.ops"])
def test_a_sum_of_copies_of_one_value(merge):
    """Summands that are the same value (`propagate._identity`): two pools alike of one
    tensor add to twice one pool, whose variance is 4 times a pool's, not 2 times; their
    difference is 0; backward what they pass to ``p`` adds as amplitudes. Every row within
    t * SE of a sampled measurement, ``p``'s gradient (the ``before`` row) included (each
    case fails without the rule: the sum's variance, or ``before``'s gradient, halved);
    where the sum is a layer, its reading as independent summands (``2 Var(pool)``) lies
    outside the bound."""
    model = _pools_of_one_tensor(merge)
    report = keras_initlab.propagate(model)
    assert not report.assumed, report.assumed
    measured = _chunked(model)
    _check(report, measured, 0.0)
    if merge in ("Add", "one tensor twice"):  # a layer: its own row
        pool = report.by_layer()["pool_1"].activation_var
        value, se = measured["sum"]["activation_var"]
        assert abs(2.0 * pool - value) > T * se, (2.0 * pool, value, se)


def test_value_keys_name_what_computes_a_tensor():
    """Two operations give one value only where they compute one function of one input:
    Keras layers alike without weights (by class and configuration); a layer with weights
    or a user's layer only as itself (its configuration may omit what it holds); a random
    layer in training mode never (each call draws its own)."""
    from keras_initlab.propagate._identity import value_key
    from keras_initlab.propagate._step import Arg

    def key(op, mode="inference", inputs=(0,)):
        return value_key(op, list(inputs), (Arg(0),), {}, mode)

    assert key(L.AveragePooling2D(3)) == key(L.AveragePooling2D(3))
    assert key(L.AveragePooling2D(3)) != key(L.AveragePooling2D(2))
    assert key(L.AveragePooling2D(3)) != key(L.AveragePooling2D(3), inputs=(1,))
    dense = L.Dense(2)
    dense.build((None, 3))
    other = L.Dense(2)
    other.build((None, 3))
    assert key(dense) == key(dense) != key(other)

    class Scale(L.Layer):  # a user's layer: its own value only
        def call(self, x):
            return 2.0 * x

    assert key(Scale()) != key(Scale())
    dropout = L.Dropout(0.5)
    assert key(dropout) == key(L.Dropout(0.5))  # inference: the identity
    assert key(dropout, "training") is None


def _rectified_stream(x: Any, blocks: int, gain: float, rng: np.random.Generator) -> Any:
    """``blocks`` blocks ``x_k = relu(x_{k-1} + W_k x_{k-1})`` on ``x`` (named
    ``branch_k``, ``sum_k``, ``stream_k``), ``W_k`` drawn with std ``gain / sqrt(width)``."""
    width = int(x.shape[-1])
    for k in range(1, blocks + 1):
        kernel = rng.normal(0.0, gain / math.sqrt(width), (width, width)).astype("float32")
        b = L.Dense(
            width,
            use_bias=False,
            name=f"branch_{k}",
            kernel_initializer=keras.initializers.Constant(kernel),
        )(x)
        x = L.ReLU(name=f"stream_{k}")(L.Add(name=f"sum_{k}")([x, b]))
    return x


def test_a_deep_rectified_stream_follows_its_paths(monkeypatch):
    """Six blocks ``x_k = relu(x_{k-1} + W_k x_{k-1})`` (width 256) on a stream that starts
    as two ReLUs concatenated: the gradient reaches the input through the ReLU derivatives
    of every block, and along one element these are dependent (an element the ReLU passes
    at one block it mostly passes again). The walk follows the stream's paths
    (`propagate._paths`) and gives the layers below the concatenation the paths' mean
    weighted by the stand-in's derivatives (`_paths.for_rule`): every row within t * SE
    of a sampled measurement (the input's gradient within 2%), but the gradient at the
    two ReLUs' outputs, which carries that weighting. Outside the bound: the plain mean
    over the paths (the input's gradient 17% low) and the pairwise correction the paths
    replaced (``Blend.selection``, each two consecutive blocks: 6% low)."""
    from keras_initlab.propagate import _paths

    width, blocks, half = 256, 6, 128
    rng = np.random.default_rng(5)
    inputs = keras.Input((width,))
    h = _before((width,))(inputs)
    parts = []
    for name, gain, shift in (("a", 1.0, 0.0), ("b", 2.0, 0.5)):
        kernel = np.zeros((width, half), "float32")
        rows = slice(0, half) if name == "a" else slice(half, width)
        kernel[rows] = gain * np.eye(half)
        dense = L.Dense(
            half,
            name=f"d{name}",
            kernel_initializer=keras.initializers.Constant(kernel),
            bias_initializer=keras.initializers.Constant(shift),
        )
        parts.append(L.ReLU(name=f"r{name}")(dense(h)))
    x = L.Concatenate(name="stream_0")(parts)
    model = keras.Model(inputs, _rectified_stream(x, blocks, 0.7, rng))
    report = keras_initlab.propagate(model)
    assert not report.assumed, report.assumed
    measured = _chunked(model)
    _check(report, measured, 0.0, skip={("ra", "gradient_var"), ("rb", "gradient_var")})
    value, se = measured["before"]["gradient_var"]
    monkeypatch.setattr(_paths, "for_rule", lambda g, out: _paths.averaged(g))
    plain = keras_initlab.propagate(model).by_layer()["before"].gradient_var
    assert abs(plain - value) > T * se, (plain, value, se)
    monkeypatch.setattr(_paths, "read", lambda blend, into: None)
    pairwise = keras_initlab.propagate(model).by_layer()["before"].gradient_var
    assert abs(pairwise - value) > T * se, (pairwise, value, se)


def test_a_relu_of_a_sum_on_concatenated_relu_branches():
    """An Inception-ResNet block: ReLU branches of unequal scale and shift concatenated, a
    branch added, a ReLU. The concatenation is the ReLU of the branches' concatenated
    Gaussians (`_merge`), so the sum is a ``Blend`` as on a single stream: the final ReLU's
    mean and variance within t * SE of a sampled measurement, where the Gaussian stand-in of
    the sum's moments is outside."""
    width = 32

    def part(k: int, gain: float, name: str) -> Any:
        kernel = np.zeros((3 * width, width), "float32")
        kernel[k * width : (k + 1) * width] = gain * np.eye(width)
        if k == 2:  # the added branch: a random Dense on the third part
            rng = np.random.default_rng(5)
            kernel[2 * width :] = rng.normal(0.0, 0.5 / math.sqrt(width), (width, width))
        return L.Dense(
            width,
            name=name,
            kernel_initializer=keras.initializers.Constant(kernel),
            bias_initializer=keras.initializers.Constant(0.5 * k),
        )

    inputs = keras.Input((3 * width,))
    h = _before((3 * width,))(inputs)
    first = L.ReLU(name="first")(part(0, 1.0, "take_first")(h))
    second = L.ReLU(name="second")(part(1, 2.0, "take_second")(h))
    joined = L.Concatenate(name="joined")([first, second])
    branch = L.Concatenate(name="branch")([part(2, 1.0, "b1")(h), part(2, 1.0, "b2")(h)])
    model = keras.Model(inputs, L.ReLU(name="after")(L.Add(name="sum")([joined, branch])))
    _check_relu_after_sum(model, "first", "second")


def test_a_relu_of_a_sum_on_max_pooled_relus():
    """A reduction block's pooled stream (a max pool of ReLUs) with a branch added and a
    ReLU: the pool's output is recorded as a ReLU of the Gaussian alike in mean and second
    moment (`_moments.rectified`), so the sum is a ``Blend``. The fit is not exact (the
    maximum of Gaussians is skewed); the final ReLU's moments are within t * SE of a sampled
    measurement at this size, and the Gaussian stand-in of the sum's moments is outside."""
    width = 16
    inputs = keras.Input((4, 4, 2 * width))
    h = _before((4, 4, 2 * width))(inputs)
    take = np.zeros((1, 1, 2 * width, width), "float32")
    take[0, 0, :width] = np.eye(width)
    branch = np.zeros((1, 1, 2 * width, width), "float32")
    branch[0, 0, width:] = np.random.default_rng(5).normal(
        0.0, 0.3 / math.sqrt(width), (width, width)
    )

    def conv(kernel: np.ndarray, name: str) -> Any:
        return L.Conv2D(
            width,
            1,
            use_bias=False,
            name=name,
            kernel_initializer=keras.initializers.Constant(kernel),
        )

    stream = L.MaxPooling2D(2, name="pool")(L.ReLU(name="relu")(conv(take, "take")(h)))
    b = L.AveragePooling2D(2, name="down")(conv(branch, "branch")(h))
    model = keras.Model(inputs, L.ReLU(name="after")(L.Add(name="sum")([stream, b])))
    _check_relu_after_sum(model, "relu", "pool")


def test_a_long_rectified_stream_takes_its_moments_from_its_paths(monkeypatch):
    """Sixteen blocks ``x_k = relu(x_{k-1} + W_k x_{k-1})`` (width 256) whose branches are
    small beside the stream (gain 0.5): the sum is mostly the stream one block back, itself
    a ReLU of a sum, and so on. The rules integrate the sum as a function of one Gaussian
    one block back; the paths carry the whole history (`_paths.along`): every activation
    row within t * SE of a sampled measurement, where the integrals alone are 2-6% low from
    the second block on, outside the bound (ResNet101 in training mode, whose branches are
    unit-variance BatchNormalization outputs beside a stream that grows: 7.51 against 8.22
    at ``conv4_block22_out``, 8.18 with the paths).

    The gradients are the other test's: here each branch reads the element its skip
    carries (``W_jj x_j``), which one draw of 16 such kernels makes a few percent of the
    input's gradient, with or without the paths' moments (0.944 and 0.951 of measured)."""
    from keras_initlab.propagate import _paths

    width, blocks, gain = 256, 16, 0.5
    rng = np.random.default_rng(5)
    inputs = keras.Input((width,))
    x = L.ReLU(name="stream_0")(_before((width,))(inputs))
    model = keras.Model(inputs, _rectified_stream(x, blocks, gain, rng))
    report = keras_initlab.propagate(model)
    assert not report.assumed, report.assumed
    measured = _chunked(model)
    _check(report, measured, 0.0, skip={(layer, "gradient_var") for layer in measured})

    def integrals_only(blend, out):
        _paths.read(blend, out.source)
        return out

    monkeypatch.setattr(_paths, "along", integrals_only)
    rows = keras_initlab.propagate(model).by_layer()
    outside = []
    for k in range(2, blocks + 1):
        value, se = measured[f"stream_{k}"]["activation_var"]
        if abs(rows[f"stream_{k}"].activation_var - value) > T * se:
            outside.append(k)
    assert len(outside) >= blocks // 2, outside


def test_a_max_pool_of_a_rectified_stream_reads_its_paths(monkeypatch):
    """A 3x3 max pool (stride 2) of a rectified stream of twelve blocks on a 7x7 map (256
    channels, branch gain 0.5): the window's maximum reads the right tail of the stream's
    law, which its whole history makes heavier than a Gaussian's. From the stream's paths
    (`_pooling._along_paths`) the pool's mean is within t * SE of a sampled measurement
    and its variance within t * SE plus `POOL_OF_STREAM` (6% low here: each path carries
    one element's history, not the spread of a position's norm across its channels, which
    makes every branch a scale mixture); from the integrals alone (each input a ReLU of a
    Gaussian of the sum's moments) the variance is 12% low, beyond that bound.
    InceptionResNetV2 in training mode (75x75, batch 16) pools ``block35_10_ac`` at a
    variance of 0.25 by the integrals, 0.49 by the paths, against 0.54 measured."""
    from keras_initlab.propagate import _pooling

    width, blocks, gain = 256, 12, 0.5
    rng = np.random.default_rng(3)
    inputs = keras.Input((7, 7, width))
    x = L.ReLU(name="stream_0")(_before((width,))(inputs))
    x = _rectified_stream(x, blocks, gain, rng)
    model = keras.Model(inputs, L.MaxPooling2D(3, strides=2, name="pool")(x))
    measured = _chunked(model)
    row = keras_initlab.propagate(model).by_layer()["pool"]
    mean, mean_se = measured["pool"]["activation_mean"]
    var, var_se = measured["pool"]["activation_var"]
    assert abs(row.activation_mean - mean) <= T * mean_se, (row, mean, mean_se)
    bound = T * var_se + POOL_OF_STREAM * var
    assert abs(row.activation_var - var) <= bound, (row, var, bound)

    monkeypatch.setattr(_pooling, "_along_paths", lambda source, index, live, m, s: (m, s))
    gaussian = keras_initlab.propagate(model).by_layer()["pool"].activation_var
    assert var - gaussian > bound, (gaussian, var, bound)


# The stated model error of a max pool's variance on a rectified stream (its docstring).
POOL_OF_STREAM = 0.08


def test_logits_beyond_float32s_range_give_a_finite_prediction():
    """An unnormalized deep stream reaches variances of 1e54 (24 He blocks of a transformer
    without normalization): the softmax over such logits is one-hot, predicted in float64
    (the rows a softmax shares were told apart through a float32 cast, which overflowed to
    infinity and gave NaN)."""
    inputs = keras.Input((4, 8))
    h = L.Dense(8, kernel_initializer=keras.initializers.RandomNormal(stddev=1e26))(inputs)
    model = keras.Model(inputs, L.Softmax()(h))
    with np.errstate(over="raise", invalid="raise"):
        rows = keras_initlab.propagate(model).rows
    assert all(math.isfinite(r.activation_var) for r in rows)
    assert all(math.isfinite(r.gradient_var) for r in rows)
    # one-hot rows of 8 (each sums to 1): mean 1/8 and mean square 1/8 exactly
    assert rows[-1].activation_var == pytest.approx(1 / 8 - 1 / 64, rel=1e-9)
