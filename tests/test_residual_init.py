"""``initialize(model, scheme, residual=...)``: the residual rules, checked by measurement.

* ``"zero"``: the branch's last layer is 0, so each residual Add outputs its skip input
  exactly (``x + 0 == x`` in float32) and ``measure()`` gives the Add the variance of its skip
  input up to the float64 summation order of the two reductions, on a 32-block unnormalized
  residual MLP and on ResNet50 (inference mode: the zeroed ``_3_bn`` outputs its beta, 0).
* ``"scaled"``: exact in expectation. In the block ``y = x + W2 relu(W1 x)`` with zero
  biases and iid symmetric weights of variances ``s1, s2`` on fan-in ``d``,
  ``E[|y|^2 | x] = (1 + g) |x|^2`` with ``g = (d s1)(d s2) / 2`` (the cross term has mean 0,
  ``E relu(z)^2 = E z^2 / 2`` for symmetric ``z``), for any width. Scaling ``W2`` by
  ``1/sqrt(L)`` gives ``1 + g/L`` per block, and by the tower rule
  ``E|x_L|^2 = (1 + g/L)^L E|x_0|^2``. The mean square of the last sum over independent
  seeds (fresh weights and input each) must match it within Student's ``t * SE`` at the
  suite's per-check alpha (the convention of tests/propagate).
* ``"fixup"``: each weight equals the plain draw (same seed) times the formula's factor.
* ``"skipinit"``: gates (``ResidualGate``, a BatchNormalization or ConvNeXt's LayerScale
  ending a branch) set to 0; a branch with none is an error that changes nothing.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from scipy import stats

import keras_initlab
from keras_initlab import ResidualGate, _keras, initialize
from keras_initlab.measurement import Measurement
from keras_initlab.measurement._statistics import variance_bound
from keras_initlab.testing import budget

L = keras.layers
BLOCKS, WIDTH = 32, 64
# x + 0 == x exactly; the two variances differ by the order of their float64 sums only
SUM_RTOL = 1e-9


def _mlp(blocks=BLOCKS, width=WIDTH, end=None):
    """``x + Dense(Dense(x, relu))`` per block, no normalization; ``end(b)`` ends branch b."""
    x = keras.Input((width,), name="x")
    h = x
    for b in range(blocks):
        f = L.Dense(width, activation="relu", name=f"b{b}_in")(h)
        f = L.Dense(width, name=f"b{b}_out")(f)
        layer = end(b) if end is not None else None
        f = layer(f) if layer is not None else f
        h = L.Add(name=f"b{b}_add")([h, f])
    return keras.Model(x, h)


def _snapshot(model):
    return [np.array(w.numpy()) for w in model.weights]


def _unchanged(model, before):
    return all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights, strict=True))


def _skip_inputs(model, blocks):
    """Per block: the name of the layer (or model input) whose output is the Add's skip."""
    calls = _keras.functional_calls(model)
    producer = {id(t): c.operation.name for c in calls for t in c.outputs}
    producer.update({id(t): t.name for t in model.inputs})
    skips = {}
    for block in blocks:
        (call,) = [c for c in calls if c.operation.name == block.add]
        names = [producer[id(t)] for t in call.inputs]
        (skips[block.add],) = [n for n in names if n != block.branch_output]
    return skips


def _assert_sums_equal_skips(model, x, blocks):
    skips = _skip_inputs(model, blocks)
    measured = [b.add for b in blocks] + [s for s in skips.values() if s != model.inputs[0].name]
    records = {r["layer"]: r for r in keras_initlab.measure(model, x, layers=set(measured))}
    x64 = np.asarray(x, np.float64)
    for block in blocks:
        skip = skips[block.add]
        expected = (
            float(np.mean(x64**2) - np.mean(x64) ** 2)
            if skip == model.inputs[0].name
            else records[skip]["activation_var"]
        )
        got = records[block.add]["activation_var"]
        # Both sides carry the measurement's rounding: float64 sums on TensorFlow, the
        # float32 statistics' stated bound elsewhere (kappa = 1: centred Gaussian data).
        rel = max(SUM_RTOL, 2 * variance_bound(x64.size, 1.0 + np.mean(x64) ** 2 / x64.var()))
        assert got == pytest.approx(expected, rel=rel), (block.add, skip, got, expected)


def _gaussian(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


@pytest.fixture(scope="module")
def resnet50():
    return keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)


# ------------------------------------------------------------------------------- zero
def test_zero_starts_every_block_of_a_deep_mlp_as_its_skip():
    model = _mlp()
    report = initialize(model, "he_normal", seed=0, residual="zero", report=True)
    blocks = report.residual.blocks
    assert report.residual.adds == [f"b{b}_add" for b in range(BLOCKS)]
    assert [(r.layer, r.weight, r.factor) for r in report.residual][:2] == [
        ("b0_out", "b0_out/kernel", 0.0),
        ("b0_out", "b0_out/bias", 0.0),
    ]
    for b in range(BLOCKS):
        assert not np.any(model.get_layer(f"b{b}_out").kernel.numpy())
        assert np.any(model.get_layer(f"b{b}_in").kernel.numpy())  # drawn as usual
    _assert_sums_equal_skips(model, _gaussian((512, WIDTH), 1), blocks)


def test_zero_on_resnet50_zeroes_the_last_batchnorm_of_each_branch(resnet50):
    report = initialize(resnet50, "he_normal", seed=0, residual="zero", report=True)
    rows = report.residual.rows
    assert len(rows) == len(report.residual.blocks) == 16
    for row, block in zip(rows, report.residual.blocks, strict=True):
        assert (row.layer, row.weight, row.factor) == (
            block.last_norm,
            f"{block.last_norm}/gamma",
            0.0,
        )
        assert not np.any(resnet50.get_layer(block.last_norm).gamma.numpy())
    _assert_sums_equal_skips(resnet50, _gaussian((16, 32, 32, 3), 2), report.residual.blocks)


# ----------------------------------------------------------------------------- fixup
def test_fixup_scales_the_other_layers_by_the_formula():
    # blocks with m = 2, 3, 1, 3 weighted layers, L = 4
    x = keras.Input((16,), name="x")
    h, depths = x, (2, 3, 1, 3)
    for b, m in enumerate(depths):
        f = h
        for k in range(m):
            f = L.Dense(16, activation="relu" if k < m - 1 else None, name=f"b{b}_{k}")(f)
        h = L.Add(name=f"b{b}_add")([h, f])
    model = keras.Model(x, L.Dense(3, name="head")(h))
    initialize(model, "he_normal", seed=5)
    plain = {w.path: np.array(w.numpy()) for w in model.weights}
    report = initialize(model, "he_normal", seed=5, residual="fixup", report=True)
    n = len(depths)
    expected = {"head/kernel": 1.0, "head/bias": 1.0}
    for b, m in enumerate(depths):
        expected[f"b{b}_{m - 1}/kernel"] = expected[f"b{b}_{m - 1}/bias"] = 0.0
        for k in range(m - 1):
            expected[f"b{b}_{k}/kernel"] = n ** (-1.0 / (2 * m - 2))
            expected[f"b{b}_{k}/bias"] = 1.0
    for w in model.weights:
        factor = expected[w.path]
        np.testing.assert_array_equal(w.numpy(), plain[w.path] * np.float32(factor), w.path)
    changed = {r.weight: r.factor for r in report.residual}
    assert changed == {k: v for k, v in expected.items() if v != 1.0}
    assert changed["b1_0/kernel"] == pytest.approx(4 ** (-1 / 4))  # 0.7071
    assert changed["b0_0/kernel"] == pytest.approx(0.5)  # 4^(-1/2)


def test_fixup_on_resnet50_keeps_the_shortcuts_and_zeroes_the_last_bn(resnet50):
    initialize(resnet50, "he_normal", seed=1)
    plain = {w.path: np.array(w.numpy()) for w in resnet50.weights}
    report = initialize(resnet50, "he_normal", seed=1, residual="fixup", report=True)
    factors = {r.weight: r.factor for r in report.residual}
    assert len(factors) == 16 * 3  # per block: _3_bn gamma, _1_conv and _2_conv kernels
    for w in resnet50.weights:
        if w.path.endswith(("_1_conv/kernel", "_2_conv/kernel")) and "block" in w.path:
            assert factors[w.path] == 16 ** (-1 / 4) == 0.5  # L = 16, m = 3
            np.testing.assert_array_equal(w.numpy(), plain[w.path] * np.float32(0.5))
        elif w.path.endswith("_3_bn/gamma"):
            assert factors[w.path] == 0.0
            assert not np.any(w.numpy())
        else:  # _3_conv, the shortcuts' _0_conv, the stem, biases, other BN weights
            assert w.path not in factors
            np.testing.assert_array_equal(w.numpy(), plain[w.path], w.path)


# ---------------------------------------------------------------------------- scaled
CASES = {  # scheme, branch gain g = (d s1)(d s2) / 2
    "he_normal": ("he_normal", 2.0),
    "variance_preserving": (
        keras_initlab.VarianceScaling(math.sqrt(2.0), "fan_in", "normal"),
        1.0,
    ),
}
SEEDS = 16
SCALED_WIDTH = 256  # the spread over seeds shrinks with the width (finite-width correlations)


@pytest.mark.parametrize("case", list(CASES))
def test_scaled_keeps_the_deep_mlp_stream_at_the_predicted_growth(case):
    scheme, g = CASES[case]
    model = _mlp(width=SCALED_WIDTH)
    last = f"b{BLOCKS - 1}_add"
    measurement = Measurement(model, [last])
    ratios = []
    for seed in range(SEEDS):
        report = initialize(model, scheme, seed=seed, residual="scaled", report=True)
        x = _gaussian((256, SCALED_WIDTH), 100 + seed)
        (record,) = measurement(x)
        mean_square = record["activation_var"] + record["activation_mean"] ** 2
        ratios.append(mean_square / float(np.mean(np.asarray(x, np.float64) ** 2)))
    assert {r.factor for r in report.residual} == {1.0 / math.sqrt(BLOCKS)}
    predicted = (1.0 + g / BLOCKS) ** BLOCKS  # 6.96 for He (g = 2), 2.69 for g = 1
    assert predicted < math.exp(g)
    mean = float(np.mean(ratios))
    se = float(np.std(ratios, ddof=1)) / math.sqrt(SEEDS)
    t = float(stats.t.ppf(1.0 - budget().alpha / 2.0, SEEDS - 1))
    assert abs(mean - predicted) <= t * se, (mean, predicted, se, t)


def test_scaled_with_a_closing_batchnorm_scales_its_gamma_once():
    x = keras.Input((8,), name="x")
    h = x
    for b in range(4):
        f = L.BatchNormalization(name=f"b{b}_bn")(L.Dense(8, name=f"b{b}_d")(h))
        h = L.Add(name=f"b{b}_add")([h, f])
    model = keras.Model(x, h)
    initialize(model, "he_normal", seed=2)
    kernel = np.array(model.get_layer("b0_d").kernel.numpy())
    for _ in range(2):  # the gamma is drawn from its initializer first: no compounding
        report = initialize(model, "he_normal", seed=2, residual="scaled", report=True)
    for b in range(4):
        np.testing.assert_array_equal(model.get_layer(f"b{b}_bn").gamma.numpy(), 0.5)
    np.testing.assert_array_equal(model.get_layer("b0_d").kernel.numpy(), kernel)
    assert [r.weight for r in report.residual] == [f"b{b}_bn/gamma" for b in range(4)]


# -------------------------------------------------------------------------- skipinit
def _gated(b):
    if b == 1:
        return L.BatchNormalization(name=f"b{b}_bn")
    return ResidualGate(1.0, name=f"b{b}_gate")  # a gate opened by hand


def test_skipinit_closes_every_gate():
    model = _mlp(blocks=3, width=16, end=_gated)
    report = initialize(model, "he_normal", seed=0, residual="skipinit", report=True)
    assert [(r.add, r.layer, r.factor) for r in report.residual] == [
        ("b0_add", "b0_gate", 0.0),
        ("b1_add", "b1_bn", 0.0),
        ("b2_add", "b2_gate", 0.0),
    ]
    assert float(model.get_layer("b0_gate").alpha.numpy()) == 0.0
    assert not np.any(model.get_layer("b1_bn").gamma.numpy())
    assert np.any(model.get_layer("b0_out").kernel.numpy())  # the kernels are the scheme's
    _assert_sums_equal_skips(model, _gaussian((256, 16), 3), report.residual.blocks)


def test_skipinit_sets_convnext_layer_scales_to_zero():
    model = keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), classes=10)
    report = initialize(model, "he_normal", seed=0, residual="skipinit", report=True)
    assert len(report.residual) == len(report.residual.blocks) == 18  # 3 + 3 + 9 + 3 blocks
    for row in report.residual:
        layer = model.get_layer(row.layer)
        assert type(layer).__name__ == "LayerScale"
        assert not np.any(layer.gamma.numpy())


def test_skipinit_without_a_gate_names_the_block_and_changes_nothing():
    model = _mlp(blocks=3, width=16, end=lambda b: None if b == 2 else _gated(b))
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"1 block\(s\) have no gate") as error:
        initialize(model, "he_normal", seed=0, residual="skipinit")
    message = str(error.value)
    assert "b2_add (branch ends in b2_out)" in message
    assert "b0_add" not in message
    assert "keras_initlab.ResidualGate()" in message
    assert message.endswith("Received: residual='skipinit'")
    assert _unchanged(model, before)  # gate b0 still open, kernels not re-drawn


def test_residual_gate_round_trips_through_saving(tmp_path):
    model = _mlp(blocks=1, width=4, end=lambda b: ResidualGate(0.5, name="gate"))
    assert ResidualGate.from_config(model.get_layer("gate").get_config()).initial_value == 0.5
    path = tmp_path / "gated.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("gate"), ResidualGate)
    assert float(loaded.get_layer("gate").alpha.numpy()) == 0.5
    x = _gaussian((4, 4), 0)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x))
    )


def test_a_transformer_block_zeroes_and_scales_its_attention_output():
    x = keras.Input((6, 8))
    h = x + L.MultiHeadAttention(2, 4, name="mha")(x, x)
    h = L.LayerNormalization(name="ln")(h)
    f = L.Dense(8, name="ff2")(L.Dense(16, activation="relu", name="ff1")(h))
    model = keras.Model(x, L.Add(name="ff_add")([h, f]))
    initialize(model, "glorot_uniform", seed=0, residual="zero")
    out = keras_initlab.residual_blocks(model)[0].last_kernel_layer  # mha/attention_output
    assert not np.any(out.kernel.numpy())
    assert not np.any(out.bias.numpy())
    assert not np.any(model.get_layer("ff2").kernel.numpy())
    initialize(model, "glorot_uniform", seed=0)
    plain = np.array(out.kernel.numpy())
    report = initialize(model, "glorot_uniform", seed=0, residual="scaled", report=True)
    assert [r.layer for r in report.residual] == ["mha/attention_output"] * 2 + ["ff2"] * 2
    np.testing.assert_array_equal(out.kernel.numpy(), plain * np.float32(1 / math.sqrt(2)))


def test_nested_blocks_are_changed_by_path():
    x = keras.Input((4,))
    inner = L.Dense(4, activation="relu", name="d1")(x)
    block = keras.Model(x, L.Add(name="s")([x, L.Dense(4, name="d2")(inner)]), name="blk")
    model = keras.Sequential([keras.Input((4,)), block, L.Dense(3, name="head")])
    report = initialize(model, "he_normal", seed=0, residual="zero", report=True)
    kernel = block.get_layer("d2").kernel  # weight: Keras' variable path, as in the report
    assert [(r.add, r.layer, r.weight) for r in report.residual] == [
        ("blk/s", "blk/d2", kernel.path),
        ("blk/s", "blk/d2", block.get_layer("d2").bias.path),
    ]
    assert not np.any(kernel.numpy())
    assert np.any(model.get_layer("head").kernel.numpy())


# --------------------------------------------------------------- reports and errors
def test_report_lists_the_residual_adds_and_the_sums_that_are_not():
    x = keras.Input((8,), name="x")
    h = L.Add(name="res")([x, L.Dense(8, name="d")(x)])
    two = L.Add(name="two_paths")([L.Dense(8, name="p")(h), L.Dense(8, name="q")(h)])
    model = keras.Model(x, two)
    report = initialize(model, "glorot_uniform", seed=0, residual="zero", report=True)
    assert report.residual.adds == ["res"]
    (unresolved,) = report.residual.blocks.unresolved
    assert unresolved.name == "two_paths"
    text = str(report)
    assert "residual='zero' on 1 residual blocks (L):" in text
    assert "res  d      d/kernel  0       last kernel: zeroed" in text
    assert "not residual: two_paths: both inputs carry 1 weighted layers" in text
    assert "ResidualInitReport(residual='zero', 1 blocks, 2 weights changed, 1 not" in repr(
        report.residual
    )
    assert initialize(model, "glorot_uniform", report=True).residual is None


@pytest.mark.parametrize("bad", ["zeros", "Fixup", 0, True])
def test_unknown_residual_values_are_refused_before_anything_changes(bad):
    model = _mlp(blocks=1, width=4)
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"Argument `residual` must be one of \[") as error:
        initialize(model, "he_normal", residual=bad)
    assert f"Received: residual={bad!r}" in str(error.value)
    assert _unchanged(model, before)


def test_a_close_name_is_suggested():
    with pytest.raises(ValueError, match="Did you mean 'zero'"):
        initialize(_mlp(blocks=1, width=4), "he_normal", residual="zeros")


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.inner = L.Dense(4, activation="relu")
        self.outer = L.Dense(4)

    def call(self, x):
        return x + self.outer(self.inner(x))


class _Untraceable(_Subclassed):
    def call(self, x):
        h = self.outer(self.inner(x))
        if keras.ops.convert_to_numpy(keras.ops.sum(h)) > 1e9:  # control flow on values
            h = -h
        return x + h


def test_a_subclassed_models_sum_is_found_and_one_that_cannot_be_traced_gets_the_reason():
    sub = _Subclassed()
    sub(keras.ops.zeros((1, 4)))
    initialize(sub, "he_normal", residual="zero")  # read through its traced call
    assert not np.any(sub.outer.kernel.numpy())
    assert np.any(sub.inner.kernel.numpy())
    opaque = _Untraceable()
    opaque(keras.ops.zeros((1, 4)))
    before = _snapshot(opaque)
    with pytest.raises(ValueError, match=r"_Untraceable holds weighted layers.*cannot be found"):
        initialize(opaque, "he_normal", residual="zero")
    assert _unchanged(opaque, before)
    plain = keras.Sequential([keras.Input((4,)), L.Dense(4)])
    with pytest.raises(ValueError, match=r"no residual block.*Received: residual='scaled'"):
        initialize(plain, "he_normal", residual="scaled")


def test_after_lsuv_the_rule_changes_the_weights_lsuv_leaves():
    model = _mlp(blocks=2, width=16)
    x = _gaussian((64, 16), 0)
    initialize(model, keras_initlab.LSUV(x), seed=0, residual="zero")
    for b in range(2):
        assert not np.any(model.get_layer(f"b{b}_out").kernel.numpy())
        assert np.any(model.get_layer(f"b{b}_in").kernel.numpy())
