"""lsuv(): unit variance per layer, every model kind, failure paths, seeds, cost, integration.

Variances are checked against a reference computed here, outside ``lsuv``: in NumPy for the
MLPs, by calling the layers one by one (or through a Functional probe model) otherwise.
"""

from __future__ import annotations

import gc
import importlib
import math
import weakref

import keras
import numpy as np
import pytest

from keras_initlab.initialize import initialize
from keras_initlab.lsuv import LSUV, LSUVReport, LSUVWarning, lsuv
from keras_initlab.testing import budget

# The package itself (keras_initlab.lsuv may be re-exported as the function of that name) and
# the module of the algorithm, whose names the tests replace.
lsuv_module = importlib.import_module("keras_initlab.lsuv")
lsuv_algorithm = importlib.import_module("keras_initlab.lsuv._algorithm")

L = keras.layers
TOL = 0.1
# lsuv measures in float32 and the references here in float64 or float32 in another order:
# sums of up to ~1e5 float32 terms differ by a few eps32 * sqrt(n) ~ 1e-4 relative.
FLOAT32_SLACK = 1e-4


def _normal(n, *shape, seed):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def _host(tensor):
    """A tensor as float64 NumPy (detached on PyTorch, where model outputs require grad)."""
    return keras.ops.convert_to_numpy(tensor).astype(np.float64)


def _weights(model):
    return [v.numpy().copy() for v in model.weights]


def _assert_same(before, after):
    assert len(before) == len(after)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def _mlp(activations=("relu", "tanh", "relu"), width=64):
    layers = [keras.Input((32,))]
    layers += [L.Dense(width, activation=a) for a in activations]
    return keras.Sequential([*layers, L.Dense(10)])


def _mlp_pre_activations(model, x):
    """Each Dense layer's pre-activation output, in NumPy float64."""
    acts = {
        "relu": lambda z: np.maximum(z, 0),
        "tanh": np.tanh,
        "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
        "linear": lambda z: z,
    }
    h, out = x.astype(np.float64), []
    for layer in model.layers:
        z = h @ layer.kernel.numpy().astype(np.float64) + layer.bias.numpy()
        out.append(z)
        h = acts[layer.activation.__name__](z)
    return out


# --- unit variance on the batch seen and on a fresh batch ---------------------------------
def test_unit_variance_on_the_batch_seen_and_close_to_one_on_a_fresh_batch():
    n = 4096  # samples: enough for the fresh-batch check to resolve an error of tol
    seen, fresh = _normal(n, 32, seed=1), _normal(n, 32, seed=2)
    # ReLU and zero biases: each layer's output is c_L * g_L(x), with g_L fixed by the seed
    # and c_L > 0 the product of the scales LSUV fitted on the seen batch. So the seen and the
    # fresh variance are c_L**2 times two independent estimates of one population variance.
    model = _mlp(("relu", "relu", "relu"))
    report = lsuv(model, seen, seed=0)
    assert report.converged
    assert len(report) == 4
    z_star = budget().z
    for row, z_seen, z_fresh in zip(
        report, _mlp_pre_activations(model, seen), _mlp_pre_activations(model, fresh), strict=True
    ):
        v_seen = z_seen.var()
        assert abs(v_seen - 1) <= TOL + FLOAT32_SLACK
        assert row.variance == pytest.approx(v_seen, rel=FLOAT32_SLACK)
        # Var over all elements = mean over samples of d_n, a sample's mean squared
        # deviation from the batch mean; the d_n of a batch are i.i.d., so the difference of
        # the two variances is approximately normal with the standard error se below
        # (CLT over n samples; the O(1/n) effect of the estimated mean is negligible).
        d_seen = ((z_seen - z_seen.mean()) ** 2).mean(axis=1)
        d_fresh = ((z_fresh - z_fresh.mean()) ** 2).mean(axis=1)
        se = math.sqrt(d_seen.var(ddof=1) / n + d_fresh.var(ddof=1) / n)
        assert abs(d_fresh.mean() - d_seen.mean()) <= z_star * se, (row.layer, se)
        assert z_star * se <= TOL  # the check resolves a fresh-batch error of tol


def test_fused_activation_is_normalized_before_the_activation():
    x = _normal(512, 32, seed=3)
    fused = _mlp(("relu", "sigmoid"))
    separate = keras.Sequential(
        [
            keras.Input((32,)),
            L.Dense(64),
            L.Activation("relu"),
            L.Dense(64),
            L.Activation("sigmoid"),
            L.Dense(10),
        ]
    )
    lsuv(fused, x, seed=5)
    lsuv(separate, x, seed=5)
    _assert_same(_weights(fused), _weights(separate))
    # The sigmoid layer's pre-activation has unit variance; its output could not (<= 1/4).
    pre = _mlp_pre_activations(fused, x)[1]
    assert abs(pre.var() - 1) <= TOL + FLOAT32_SLACK
    assert (1 / (1 + np.exp(-pre))).var() <= 0.25


# --- every model kind, every layer type -----------------------------------------------------
def _eager_sequential_variances(model, x):
    """Call a Sequential's layers one by one (recursing into nested Sequentials)."""
    out = []

    def run(seq, h):
        for layer in seq.layers:
            if isinstance(layer, keras.Sequential):
                h = run(layer, h)
                continue
            h = layer(h)
            if isinstance(layer, lsuv_module.LSUV_LAYERS):
                out.append(float(np.var(_host(h))))
        return h

    run(model, keras.ops.convert_to_tensor(x))
    return out


def _conv_zoo():
    return keras.Sequential(
        [
            keras.Input((12, 12, 4)),
            L.Conv2D(8, 3, padding="same", groups=2),
            L.ReLU(),
            L.DepthwiseConv2D(3, depth_multiplier=2),
            L.ReLU(),
            L.SeparableConv2D(8, 3, padding="same"),
            L.ReLU(),
            L.Conv2DTranspose(6, 3, strides=2),
            L.ReLU(),
            L.Reshape((21 * 21, 6)),
            L.Conv1D(4, 3),
            L.ReLU(),
            L.EinsumDense("abc,cd->abd", output_shape=(439, 5), bias_axes="d"),
            L.Flatten(),
            L.Dense(3),
        ]
    )


def _nested():
    block = keras.Sequential([L.Dense(24), L.ReLU(), L.Dense(24)])
    return keras.Sequential(
        [keras.Input((16,)), L.Dense(24), L.ReLU(), block, L.ReLU(), L.Dense(4)]
    )


def _unbuilt_sequential():
    model = keras.Sequential([L.Dense(24), L.ReLU(), L.Dense(8)])
    model(np.zeros((2, 16), "float32"))  # built by a call, no Input
    return model


@pytest.mark.parametrize(
    ("build", "shape", "count"),
    [(_conv_zoo, (12, 12, 4), 7), (_nested, (16,), 4), (_unbuilt_sequential, (16,), 2)],
    ids=["conv_zoo", "nested", "sequential_without_input"],
)
def test_sequential_models_get_unit_variance_in_every_layer(build, shape, count):
    model = build()
    x = _normal(256, *shape, seed=4)
    report = lsuv(model, x, seed=0)
    assert report.converged
    assert len(report) == count
    variances = _eager_sequential_variances(model, x)
    assert len(variances) == count
    for row, v in zip(report, variances, strict=True):
        assert abs(v - 1) <= TOL + FLOAT32_SLACK
        assert row.variance == pytest.approx(v, rel=FLOAT32_SLACK)


def test_a_sequential_model_never_built_is_built_from_x():
    model = keras.Sequential([L.Dense(24), L.ReLU(), L.Dense(8)])
    assert not model.built
    x = _normal(256, 16, seed=4)
    report = lsuv(model, x, seed=0)
    assert report.converged
    assert [tuple(w.shape) for w in model.weights] == [(16, 24), (24,), (24, 8), (8,)]
    variances = _eager_sequential_variances(model, x)
    assert len(variances) == 2
    assert all(abs(v - 1) <= TOL + FLOAT32_SLACK for v in variances)


def test_functional_model_with_branches_and_two_inputs():
    a, b = keras.Input((8,), name="a"), keras.Input((6,), name="b")
    h = L.Dense(16, name="da")(a)
    g = L.Dense(16, name="db")(b)
    s = L.Add()([L.ReLU()(h), L.ReLU()(g)])
    left, right = L.Dense(8, name="left")(s), L.Dense(8, name="right")(s)
    out = L.Dense(2, name="out")(L.Concatenate()([left, right]))
    model = keras.Model({"a": a, "b": b}, out)
    x = {"a": _normal(256, 8, seed=5), "b": _normal(256, 6, seed=6)}
    report = lsuv(model, x, seed=1)
    assert report.converged
    names = ["da", "db", "left", "right", "out"]
    assert sorted(r.layer for r in report) == sorted(names)
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    for name, y in zip(names, probe(x), strict=True):
        assert abs(float(np.var(_host(y))) - 1) <= TOL + FLOAT32_SLACK, name


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.conv = L.Conv2D(6, 3, activation="relu")
        self.shared = L.Dense(8)  # called twice
        self.head = L.Dense(3, activation="softmax")
        self.unused = L.Dense(5)
        self.unused.build((None, 4))
        self.calls = 0

    def call(self, x):
        self.calls += 1  # counts Python executions: traces, not compiled runs
        h = keras.ops.mean(self.conv(x), axis=(1, 2))
        h = self.shared(keras.ops.relu(self.shared(keras.ops.pad(h, [(0, 0), (0, 2)]))))
        return self.head(h)


def test_subclassed_model_is_traced_once_and_unused_layers_are_reported():
    model = _Subclassed()
    x = _normal(256, 8, 8, 3, seed=7)
    model(x[:2])
    unused_before = _weights(model.unused)
    model.calls = 0
    # The shared layer converges slowly: up to 18 rescalings (seeds 0-4, TensorFlow and
    # PyTorch), more than the default max_iter=10 on some seeds of each backend's stream.
    with pytest.warns(LSUVWarning, match="never calls"):
        report = lsuv(model, x, seed=0, max_iter=40)
    # TensorFlow: one trace, then compiled passes only; other backends run the call eagerly.
    assert model.calls == (1 if keras.backend.backend() == "tensorflow" else report.passes)
    assert report.passes > 1
    rows = {r.layer: r for r in report}
    assert rows[model.unused.name].status == "not_called"
    _assert_same(unused_before, _weights(model.unused))
    # The shared layer is nonlinear in its own scale (its second call sees its first).
    assert rows[model.shared.name].iterations > 1
    assert all(rows[layer.name].converged for layer in (model.conv, model.shared, model.head))
    # Independent check: conv pre-activation and head pre-activation (fused activations).
    pre_conv = keras.ops.conv(x, model.conv.kernel) + model.conv.bias
    assert abs(float(np.var(_host(pre_conv))) - 1) <= TOL + FLOAT32_SLACK
    # Nothing of lsuv is left on the layers.
    for layer in (model.conv, model.shared, model.head, model.unused):
        assert "call" not in layer.__dict__
    assert model.conv.activation is keras.activations.relu


# --- failure paths ----------------------------------------------------------------------
def test_dead_relu_is_reported_with_a_warning_and_finite_weights():
    model = keras.Sequential(
        [keras.Input((8,)), L.Dense(16), L.ReLU(threshold=1e3), L.Dense(4), L.Dense(4)]
    )
    with pytest.warns(LSUVWarning, match="dead ReLU"):
        report = lsuv(model, _normal(128, 8, seed=8), seed=0)
    assert [r.status for r in report] == ["converged", "zero_output", "zero_output"]
    assert not report.converged
    assert len(report.failed) == 2
    assert all(np.isfinite(w).all() for w in _weights(model))


def test_all_zero_input_leaves_every_layer_unconverged_and_finite():
    model = _mlp(("relu",))
    with pytest.warns(LSUVWarning, match="all zeros"):
        report = lsuv(model, np.zeros((64, 32), "float32"), seed=0)
    assert {r.status for r in report} == {"zero_output"}
    assert all(np.isfinite(w).all() for w in _weights(model))


def test_max_iter_when_the_bias_alone_exceeds_unit_variance():
    model = keras.Sequential([keras.Input((8,)), L.Dense(6)])
    model.layers[0].bias.assign(np.array([-3, 3] * 3, "float32"))  # variance 9 from bias
    with pytest.warns(LSUVWarning, match="max_iter"):
        report = lsuv(model, _normal(128, 8, seed=9), seed=0, orthonormal=False, max_iter=3)
    assert report[0].status == "max_iter"
    assert report[0].iterations == 3
    assert report[0].variance > 1 + TOL
    assert np.isfinite(model.layers[0].kernel.numpy()).all()


def _subclassed_built():
    model = _Subclassed()
    model(np.zeros((1, 8, 8, 3), "float32"))
    return model


@pytest.mark.parametrize(
    ("build", "x", "error", "match"),
    [
        (_nested, np.zeros((16, 15), "float32"), ValueError, r"must have shape \('batch', 16\)"),
        (_subclassed_built, np.zeros((4, 8, 8, 5), "float32"), ValueError, "must fit model"),
        (_nested, np.zeros((0, 16), "float32"), ValueError, "at least one sample"),
        (_nested, np.full((4, 16), np.nan, "float32"), ValueError, "finite"),
        (_nested, None, ValueError, "Received: x=None"),
        (
            lambda: keras.Sequential([L.Conv2D(3, 3)]),
            np.zeros((4, 16), "float32"),
            ValueError,
            "must fit model .*to build it",
        ),
        (
            lambda: keras.Sequential([keras.Input((3,), dtype="int32"), L.Embedding(5, 4)]),
            np.zeros((4, 3), "int32"),
            ValueError,
            "must contain a layer LSUV can normalize",
        ),
    ],
    ids=[
        "wrong_shape",
        "wrong_shape_subclassed",
        "empty",
        "nan",
        "none",
        "unbuilt_and_x_does_not_fit",
        "no_lsuv_layer",
    ],
)
def test_bad_input_raises_a_clear_error_and_leaves_the_model_untouched(build, x, error, match):
    model = build()
    before = _weights(model)
    with pytest.raises(error, match=match):
        lsuv(model, x, seed=0)
    _assert_same(before, _weights(model))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tol": -1.0}, ValueError, "tol"),
        ({"tol": "a"}, TypeError, "tol"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"max_iter": 2.5}, TypeError, "max_iter"),
        ({"seed": "s"}, TypeError, "seed"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    model = _nested()
    with pytest.raises(error, match=f"Argument `{match}`"):
        lsuv(model, _normal(8, 16, seed=0), **kwargs)


def test_an_error_during_the_iterations_restores_every_weight(monkeypatch):
    model = _nested()
    before = _weights(model)
    real_step, steps = lsuv_algorithm._step, []

    def failing_step(*args, **kwargs):
        steps.append(1)
        if len(steps) == 2:
            raise RuntimeError("interrupted")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(lsuv_algorithm, "_step", failing_step)
    with pytest.raises(RuntimeError, match="interrupted"):
        lsuv(model, _normal(64, 16, seed=1), seed=0)
    _assert_same(before, _weights(model))
    assert all("call" not in layer.__dict__ for layer in model._flatten_layers())


# --- seeds, centring, cost, report, integration ---------------------------------------------
def test_seeds_determine_the_result():
    x = _normal(128, 16, seed=2)
    model = _nested()
    lsuv(model, x, seed=11)
    first = _weights(model)
    lsuv(model, x, seed=11)
    _assert_same(first, _weights(model))
    lsuv(model, x, seed=12)
    assert not np.array_equal(first[0], _weights(model)[0])
    keras.utils.set_random_seed(3)
    lsuv(model, x)
    unseeded = _weights(model)
    keras.utils.set_random_seed(3)
    lsuv(model, x)
    _assert_same(unseeded, _weights(model))


def test_center_gives_zero_channel_means_and_unit_variance():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.Conv2D(5, 3, activation="relu"),
            L.Flatten(),
            L.EinsumDense("ab,bc->ac", output_shape=4, bias_axes="c"),
        ]
    )
    x = _normal(256, 8, 8, 3, seed=3) + 2.0  # inputs with a mean: outputs need the bias
    report = lsuv(model, x, seed=0, center=True)
    assert report.converged
    assert all(r.iterations >= 1 for r in report)
    pre_conv = _host(keras.ops.conv(x, model.layers[0].kernel) + model.layers[0].bias)
    out = _host(model(x))
    for y in (pre_conv, out):
        np.testing.assert_allclose(
            y.reshape(-1, y.shape[-1]).mean(axis=0), 0, atol=FLOAT32_SLACK * 10
        )
        assert abs(y.var() - 1) <= FLOAT32_SLACK * 10


def test_no_state_survives_a_call(monkeypatch):
    model, x = _nested(), _normal(64, 16, seed=4)
    probes = []
    real_probe = lsuv_algorithm._Probe

    def recording_probe(*args, **kwargs):
        probe = real_probe(*args, **kwargs)
        probes.append(weakref.ref(probe))
        return probe

    monkeypatch.setattr(lsuv_algorithm, "_Probe", recording_probe)
    for _ in range(2):
        lsuv(model, x, seed=0)
    gc.collect()
    assert len(probes) == 2
    # Each call's probe, and with it its compiled function and graph, is freed.
    assert all(p() is None for p in probes)
    assert all("call" not in layer.__dict__ for layer in model._flatten_layers())


def test_report_reads_as_a_table_and_lists_skipped_layers():
    inputs = keras.Input((6,), dtype="int32")
    h = L.GlobalAveragePooling1D()(L.Embedding(20, 8, name="emb")(inputs))
    model = keras.Model(inputs, L.Dense(4, name="head", activation="relu")(h))
    emb = model.get_layer("emb").embeddings.numpy().copy()
    tokens = np.random.default_rng(0).integers(0, 20, size=(128, 6))
    report = lsuv(model, tokens, seed=0)
    np.testing.assert_array_equal(model.get_layer("emb").embeddings.numpy(), emb)
    assert isinstance(report, LSUVReport)
    assert report.skipped == ["emb"]
    assert repr(report).startswith("LSUVReport(1 layers, 1 converged, ")
    text = str(report)
    assert "head" in text
    assert "Dense" in text
    assert "converged" in text
    assert "emb" in text
    assert report.to_dicts()[0]["status"] == "converged"
    assert report.seed == 0


class _Scale(L.Layer):
    """A custom layer with its own weight (as ConvNeXt's LayerScale)."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x):
        return x * self.w


def test_skipped_lists_every_weighted_layer_lsuv_leaves_with_a_reason():
    inputs = keras.Input((6,), dtype="int32")
    h = L.GlobalAveragePooling1D()(L.Embedding(20, 8, name="emb")(inputs))
    h = L.BatchNormalization(name="bn")(L.Dense(8, name="d")(h))
    h = L.LayerNormalization(name="ln")(_Scale(name="scale")(h))
    model = keras.Model(inputs, L.Dense(4, name="head")(h))
    tokens = np.random.default_rng(0).integers(0, 20, size=(128, 6))
    report = lsuv(model, tokens, seed=0)
    assert sorted(report.skipped) == ["bn", "emb", "ln", "scale"]
    assert set(report.skip_reasons) == set(report.skipped)
    assert "embedding" in report.skip_reasons["emb"]
    assert "normalization" in report.skip_reasons["bn"]
    assert "normalization" in report.skip_reasons["ln"]
    assert "custom" in report.skip_reasons["scale"]
    assert "scale: " in str(report)
    np.testing.assert_array_equal(model.get_layer("scale").w.numpy(), 1.0)


def test_initialize_accepts_lsuv_as_a_scheme():
    x = _normal(128, 16, seed=5)
    via_initialize, direct = _nested(), _nested()
    scheme = LSUV(x, tol=0.05)
    assert initialize(via_initialize, scheme, seed=7) is via_initialize
    assert scheme.report is not None
    assert scheme.report.converged
    lsuv(direct, x, seed=7, tol=0.05)
    _assert_same(_weights(direct), _weights(via_initialize))
    with pytest.raises(ValueError, match=r"LSUV\(x\)"):
        initialize(direct, "lsuv")
