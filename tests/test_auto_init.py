"""``initialize(model, "auto")``: AutoInit against measurement (``keras_initlab.measure``).

Every check measures on unit-variance Gaussian input (``PROBE`` samples; a layer's variance
is then estimated over ``PROBE x units`` elements, a relative standard error below 2% for
every layer here, far inside the bounds). The bounds are the issue's: every residual sum of
the 32-block unnormalized residual MLP within [1/3, 3] of the stem's variance, >= 90% of the
measured layers of MobileNetV2, a Transformer encoder and a U-Net within [0.25, 4] of the
input's, and the same MLP trained to >= 0.9 test accuracy on the embedded digits.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab.compare.datasets import load_dataset
from keras_initlab.propagate import _graph

L = keras.layers
# The module (keras_initlab.autoinit is also the function's name at the package level).
ALGORITHM = importlib.import_module("keras_initlab.autoinit._algorithm")
SOLVE = importlib.import_module("keras_initlab.autoinit._solve")
PROBE = 256
BLOCKS, WIDTH = 32, 64
SUM_BOUNDS = (1 / 3, 3.0)
LAYER_BOUNDS, LAYER_SHARE = (0.25, 4.0), 0.9

_aspec = importlib.util.spec_from_file_location(
    "auto_architectures", Path(__file__).parent / "propagate" / "architectures.py"
)
assert _aspec is not None
assert _aspec.loader is not None
A = importlib.util.module_from_spec(_aspec)
_aspec.loader.exec_module(A)


def residual_mlp(blocks: int = BLOCKS, width: int = WIDTH, features: int = 64) -> keras.Model:
    """``x + Dense(Dense(relu(x)))`` per block, no normalization, a stem and a linear head."""
    inputs = keras.Input((features,))
    h = L.Dense(width, name="stem")(inputs)
    for b in range(blocks):
        r = L.Dense(width, name=f"fc{b}b")(L.Dense(width, name=f"fc{b}a")(L.ReLU(name=f"r{b}")(h)))
        h = L.Add(name=f"add{b}")([h, r])
    return keras.Model(inputs, L.Dense(10, name="head")(L.ReLU(name="r_head")(h)))


def gaussian(model: keras.Model, n: int = PROBE, seed: int = 0) -> np.ndarray:
    shape = (n, *(int(d) for d in model.inputs[0].shape[1:]))
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def measured(model: keras.Model) -> dict[str, float]:
    return {r["layer"]: r["activation_var"] for r in keras_initlab.measure(model, gaussian(model))}


def share_within(variances: dict[str, float], bounds: tuple[float, float]) -> float:
    v = np.array(list(variances.values()))
    return float(np.mean((v >= bounds[0]) & (v <= bounds[1])))


# ------------------------------------------------------------------------ residual streams
def test_residual_mlp_sums_stay_bounded_under_auto_and_explode_under_he():
    model = residual_mlp()
    keras_initlab.initialize(model, "auto", seed=0)
    auto_vars = measured(model)
    ratios = [auto_vars[f"add{b}"] / auto_vars["stem"] for b in range(BLOCKS)]
    assert min(ratios) >= SUM_BOUNDS[0], ratios
    assert max(ratios) <= SUM_BOUNDS[1], ratios
    keras_initlab.initialize(model, "he_normal", seed=0)
    he_vars = measured(model)
    growth = he_vars[f"add{BLOCKS - 1}"] / he_vars["stem"]
    assert growth >= 100.0, growth


def test_the_branch_share_balances_the_branch_ends_against_the_streams_end():
    """Four sums: each branch gets ``f = (sqrt(17) - 1) / 8 = 0.39`` of the target, so the
    stream ends near ``1 + 4 f = 1 / f = 2.56`` times it (the walk's prediction on the drawn
    weights, whose branches are independent of the stream only up to finite width): branch
    ends and sums within [1/4, 4]."""
    model = residual_mlp(blocks=4, width=32)
    rows = keras_initlab.initialize(model, "auto", seed=1, report=True).by_layer()
    sums = [rows[f"add{b}"].activation_var for b in range(4)]
    f = (17**0.5 - 1.0) / 8.0
    for b in range(4):
        assert rows[f"fc{b}b"].target == pytest.approx(f)
        assert "0.39 of the target (a stream of 4 sums)" in rows[f"fc{b}b"].note
        assert rows[f"fc{b}b"].activation_var == pytest.approx(f, rel=1e-6)
    assert rows["stem"].activation_var == pytest.approx(1.0, rel=1e-6)
    assert sums == sorted(sums)
    assert all(LAYER_BOUNDS[0] <= v <= LAYER_BOUNDS[1] for v in [f, *sums]), sums


def test_a_stream_longer_than_the_band_allows_gets_one_over_n():
    """32 sums cannot keep both branch ends >= T/4 and the stream <= 4 T: each branch gets
    1/32 of the target, GPT-2's rule, and the stream ends near twice the target."""
    rows = keras_initlab.initialize(residual_mlp(), "auto", seed=1, report=True).by_layer()
    assert rows["fc0b"].target == pytest.approx(1.0 / BLOCKS)
    sums = [rows[f"add{b}"].activation_var for b in range(BLOCKS)]
    assert min(sums) >= SUM_BOUNDS[0], sums
    assert max(sums) <= SUM_BOUNDS[1], sums


def test_a_branch_through_a_learned_scale_gets_what_the_scale_lets_into_the_stream():
    """ConvNeXt's blocks end in ``LayerScale`` (gamma 1e-6, kept by `auto`): 32 such
    branches add ``1e-12`` of their variance to the stream each, so a branch end is drawn at
    the target, not at 1/32 of it (ConvNeXtSmall's 27-block stage was left at 0.037); a
    scale of 0.5 lets in a quarter, so the branch gets ``min(1, 4 / 32)`` of it. Measured:
    every branch end within [1/4, 4] at gamma 1e-6, and the stream unchanged."""
    from keras_initlab import _keras

    layer_scale = _keras.application_layers()["LayerScale"]
    for gamma, share in ((1e-6, 1.0), (0.5, 4.0 / BLOCKS)):
        inputs = keras.Input((WIDTH,))
        h = L.Dense(WIDTH, name="stem")(inputs)
        for b in range(BLOCKS):
            r = L.Dense(WIDTH, name=f"fc{b}b")(L.Dense(WIDTH, name=f"fc{b}a")(L.ReLU()(h)))
            h = L.Add(name=f"add{b}")([h, layer_scale(gamma, WIDTH, name=f"ls{b}")(r)])
        model = keras.Model(inputs, L.Dense(10, name="head")(h))
        rows = keras_initlab.initialize(model, "auto", seed=0, report=True).by_layer()
        assert rows["fc0b"].target == pytest.approx(share)
        assert f"learned scales of mean square {gamma * gamma:.3g}, kept" in rows["fc0b"].note
        if gamma == 1e-6:
            found = measured(model)
            ends = [found[f"fc{b}b"] for b in range(BLOCKS)]
            assert all(LAYER_BOUNDS[0] <= v <= LAYER_BOUNDS[1] for v in ends), ends
            assert found[f"add{BLOCKS - 1}"] == pytest.approx(found["stem"], rel=1e-6)


def test_a_projection_shortcut_starts_a_stream_of_its_own():
    """A kernel on the skip path (scaled to the target) resets the stream: a projection
    block followed by two identity blocks is one stream of 3 sums, not 4 with the block
    before the projection."""
    inputs = keras.Input((32,))
    h = L.Dense(32, name="stem")(inputs)
    for b in range(4):
        skip = L.Dense(32, name=f"proj{b}")(h) if b == 1 else h
        r = L.Dense(32, name=f"fc{b}b")(L.Dense(32, name=f"fc{b}a")(L.ReLU()(h)))
        h = L.Add(name=f"add{b}")([skip, r])
    model = keras.Model(inputs, L.Dense(10, name="head")(h))
    rows = keras_initlab.initialize(model, "auto", seed=0, report=True).by_layer()
    assert "(a stream of 1 sum)" in rows["fc0b"].note
    for b in (1, 2, 3):
        assert "(a stream of 3 sums)" in rows[f"fc{b}b"].note
    assert rows["proj1"].activation_var == pytest.approx(1.0, rel=1e-6)


# ------------------------------------------------------------------------ real architectures
@pytest.mark.parametrize("name", ["mobilenetv2", "transformer", "unet"])
def test_real_architectures_stay_near_the_input_variance(name):
    keras.utils.set_random_seed(0)
    model = A.MODELS[name](32)
    keras_initlab.initialize(model, "auto", seed=0)
    variances = measured(model)
    assert share_within(variances, LAYER_BOUNDS) >= LAYER_SHARE, variances


def test_batch_norm_in_both_modes_keeps_the_scale():
    """Inference mode (the target): BN is the identity at init, the kernel scale carries
    through; training mode: BN standardizes, the same weights stay bounded."""
    inputs = keras.Input((16, 16, 3))
    h = inputs
    for i in range(6):
        h = L.Conv2D(16, 3, padding="same", use_bias=False, name=f"c{i}")(h)
        h = L.ReLU(name=f"r{i}")(L.BatchNormalization(name=f"bn{i}")(h))
    model = keras.Model(inputs, L.Conv2D(4, 1, name="head")(h))
    rows = keras_initlab.initialize(model, "auto", seed=0, report=True).by_layer()
    assert "variance after relu" in rows["c0"].note  # through the BN, to the ReLU
    for mode in ("inference", "training"):
        records = keras_initlab.measure(model, gaussian(model, 64), mode=mode)
        variances = {r["layer"]: r["activation_var"] for r in records}
        assert share_within(variances, LAYER_BOUNDS) >= LAYER_SHARE, (mode, variances)


def test_nested_and_sequential_models_with_bounded_activation():
    inner = keras.Sequential(
        [keras.Input((32,)), *(L.Dense(32, activation="tanh", name=f"t{i}") for i in range(4))],
        name="enc",
    )
    inputs = keras.Input((32,))
    model = keras.Model(inputs, L.Dense(8, activation="gelu", name="g")(inner(inputs)))
    rows = keras_initlab.initialize(model, "auto", seed=0, report=True).by_layer()
    assert "tanh cannot reach the target" in rows["enc/t0"].note
    assert rows["g"].activation_var == pytest.approx(1.0, rel=1e-6)  # gelu reaches it
    variances = measured(model)
    assert variances.keys() >= {"enc/t0", "g"}
    assert share_within(variances, LAYER_BOUNDS) == 1.0, variances


def test_a_subclassed_model_gets_the_scales_of_its_functional_twin():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = [L.Dense(32, activation="tanh", name=f"t{i}") for i in range(3)]
            self.skip = L.Dense(32, activation="relu", name="r")

        def call(self, x):
            for dense in self.hidden:
                x = dense(x)
            return x + self.skip(x)

    sub = Net()
    sub(np.zeros((2, 32), "float32"))
    inputs = keras.Input((32,))
    twin = keras.Model(inputs, sub.call(inputs))  # the same layers as a graph
    rows = keras_initlab.initialize(sub, "auto", seed=0, report=True).by_layer()
    expected = keras_initlab.initialize(twin, "auto", seed=0, report=True).by_layer()
    for name in ("t0", "t1", "t2", "r"):
        assert rows[name].kernel == "scaled"
        assert rows[name].scale == expected[name].scale, name


class _OwnKernel(L.Layer):
    """``x @ w + b`` with its own ``add_weight`` kernel (no known layer type)."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], 64), initializer="glorot_uniform", name="w")
        self.b = self.add_weight(shape=(64,), initializer="zeros", name="b")

    def call(self, x):
        return keras.ops.matmul(x, self.w) + self.b


def test_a_custom_layers_own_kernel_read_by_a_matmul_is_scaled():
    """Glorot kernels before ReLUs halve the variance at every layer; `auto` scales the
    kernel each traced ``matmul`` reads, so every custom layer's output has the target."""
    x = inputs = keras.Input((64,))
    for i in range(6):
        x = keras.ops.relu(_OwnKernel(name=f"own{i}")(x))
    model = keras.Model(inputs, x)
    before = measured(model)
    assert before["own5"] < 0.1  # halved five times: 1/32 of the input's
    rows = keras_initlab.initialize(model, "auto", seed=0, report=True).by_layer()
    assert all(rows[f"own{i}/matmul"].kernel == "scaled" for i in range(6))
    variances = {k: v for k, v in measured(model).items() if k.startswith("own")}
    assert len(variances) == 6
    assert share_within(variances, LAYER_BOUNDS) == 1.0, variances


def test_an_embedding_is_scaled_to_the_target_unless_it_can_be_the_output_projection():
    from tests.tied_embedding import tied_model

    tokens = keras.Input((12,), dtype="int32")
    h = L.GlobalAveragePooling1D(name="pool")(L.Embedding(100, 32, name="embed")(tokens))
    model = keras.Model(tokens, L.Dense(10, name="head")(L.Dense(32, name="d")(h)))
    rows = keras_initlab.initialize(model, "auto", seed=0, report=True).by_layer()
    assert rows["embed"].kernel == "scaled"
    ids = np.random.default_rng(0).integers(0, 100, (PROBE, 12))
    measured = {r["layer"]: r["activation_var"] for r in keras_initlab.measure(model, ids)}
    # Keras' uniform(-0.05, 0.05) table: 8.3e-4; scaled, the lookup has the target
    assert share_within({"embed": measured["embed"]}, LAYER_BOUNDS) == 1.0, measured
    tied = tied_model()[0]  # the table is also the output projection: its draw is kept
    table = tied.get_layer("embed").embeddings.numpy().copy()
    rows = keras_initlab.initialize(tied, "auto", seed=0, report=True).by_layer()
    assert rows["embed"].kernel == "kept"
    np.testing.assert_array_equal(tied.get_layer("embed").embeddings.numpy(), table)


def test_an_own_activation_ends_the_chain_and_a_softmax_sets_the_logits():
    model = keras.Sequential(
        [
            keras.Input((16,)),
            L.Dense(16, name="d"),
            L.Dropout(0.5, name="drop"),
            L.ReLU(name="r"),
            L.Dense(4, activation="softmax", name="soft"),
            L.ReLU(name="after"),
        ]
    )
    rows = keras_initlab.initialize(model, "auto", seed=0, report=True).by_layer()
    assert rows["d"].note == "variance after relu"  # through the dropout, to the ReLU
    assert rows["r"].activation_var == pytest.approx(1.0, rel=1e-6)
    assert rows["soft"].note == "output variance"  # its logits; the ReLU after is not its own


# ------------------------------------------------------------------------ the one pass
def test_one_walk_whose_rows_are_the_final_prediction(monkeypatch):
    calls = []
    original = _graph.predict

    def counted(call):
        calls.append(call.layer.name)
        return original(call)

    monkeypatch.setattr(_graph, "predict", counted)
    monkeypatch.setattr(ALGORITHM, "predict", counted)
    model = residual_mlp(blocks=8, width=16)
    report = keras_initlab.initialize(model, "auto", seed=0, report=True)
    assert len(calls) <= 2 * len(report)  # each layer once, each kernel layer once more
    monkeypatch.undo()
    predicted = keras_initlab.propagate(model)
    assert [r.layer for r in predicted] == [r.layer for r in report]
    for row, after in zip(report, predicted, strict=True):
        assert row.activation_var == pytest.approx(after.activation_var, rel=1e-9)
    scaled = {r.layer for r in report.scaled}
    assert scaled == {layer.name for layer in model.layers if isinstance(layer, L.Dense)}


@pytest.mark.tensorflow
def test_every_kernel_is_in_the_report_with_what_was_done_to_it():
    """A block the walk can trace has its kernels scaled; one it cannot (a backend op) is
    read as a whole, and its kernels, drawn LeCun normal and not scaled, each get a row
    after the block's, with the std they were drawn with and no moments."""
    from tests.model_reading.blocks import BackendBlock, ResidualBlock

    inputs = keras.Input((WIDTH,))
    h = L.Dense(WIDTH, activation="relu", name="stem")(inputs)
    h = BackendBlock(WIDTH, name="opaque")(h)
    h = ResidualBlock(WIDTH, name="traced")(h)
    model = keras.Model(inputs, L.Dense(10, name="head")(h))
    report = keras_initlab.initialize(model, "auto", seed=0, report=True)
    rows = report.by_layer()
    kernels = {path.rsplit("/", 1)[0] for path in (w.path for w in model.weights)}
    assert kernels <= set(rows)
    assert {n for n, r in rows.items() if r.kernel == "scaled"} == {
        "stem",
        "traced/d1",
        "traced/d2",
        "head",
    }
    names = [r.layer for r in report]
    assert names.index("opaque/d1") == names.index("opaque") + 1
    for name in ("opaque/d1", "opaque/d2"):
        row = rows[name]
        assert row.kernel == "drawn"
        assert row.scale is None
        assert "inside opaque" in row.note
        assert "not scaled" in row.note
        assert np.isnan(row.activation_var)
        variable = getattr(model.get_layer("opaque"), name.split("/")[1]).kernel
        assert row.kernel_std == np.std(keras.ops.convert_to_numpy(variable).astype(np.float64))
    assert report.unscaled == [rows["opaque/d1"], rows["opaque/d2"]]
    assert "4 scaled, 2 drawn and not scaled" in repr(report)


def test_input_var_is_the_target_and_seed_reproduces():
    model = residual_mlp(blocks=2, width=16)
    rows = keras_initlab.initialize(model, "auto", input_var=4.0, seed=3, report=True)
    assert rows.by_layer()["stem"].activation_var == pytest.approx(4.0, rel=1e-6)
    first = [w.numpy().copy() for w in model.weights]
    keras_initlab.initialize(model, "auto", input_var=4.0, seed=3)
    for a, b in zip(first, model.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())


# ------------------------------------------------------------------------ training
@pytest.mark.slow
def test_residual_mlp_trains_on_digits():
    """10 epochs of SGD with momentum (about 40 s on 2 busy CPU cores)."""
    data = load_dataset("digits", seed=0)
    keras.utils.set_random_seed(0)
    model = residual_mlp()
    keras_initlab.initialize(model, "auto", seed=0)
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(data.x_train, data.y_train, epochs=10, batch_size=64, verbose=0)
    _, accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
    assert accuracy >= 0.9, accuracy


# ------------------------------------------------------------------------ bad input
def test_bad_input_errors_leave_the_model_untouched():
    model = residual_mlp(blocks=1, width=8)
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(ValueError, match=r"`input_var` must be a positive finite number"):
        keras_initlab.initialize(model, "auto", input_var=-1.0)
    with pytest.raises(TypeError, match=r"`input_var` must be .* Received: input_var='1'"):
        keras_initlab.initialize(model, "auto", input_var="1")
    with pytest.raises(ValueError, match=r"`input_var` applies to scheme 'auto' only"):
        keras_initlab.initialize(model, "he_normal", input_var=2.0)
    with pytest.raises(ValueError, match=r"`model` must be built .* \(unbuilt\)"):
        keras_initlab.initialize(keras.Sequential([L.Dense(3)]), "auto")

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(4)

        def call(self, x):
            return self.d(x)

    with pytest.raises(ValueError, match=r"`model` must be built .* \(unbuilt\)"):
        keras_initlab.initialize(Sub(), "auto")  # a subclassed model never called on data
    with pytest.raises(TypeError, match=r"`model` must be a Keras model.* Received: model=Dense"):
        keras_initlab.autoinit(L.Dense(3), seed=0)
    for a, b in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())


def test_a_failing_walk_restores_every_weight(monkeypatch):
    model = residual_mlp(blocks=1, width=8)
    before = [w.numpy().copy() for w in model.weights]

    def broken(call):
        raise RuntimeError("boom")

    monkeypatch.setattr(ALGORITHM, "predict", broken)
    with pytest.raises(RuntimeError, match="boom"):
        keras_initlab.autoinit(model)
    for a, b in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())


# ------------------------------------------------------------------------ compare and inspect
def test_auto_is_a_compare_scheme():
    from keras_initlab.compare.config import check_scheme_names
    from keras_initlab.compare.models import build_mlp
    from keras_initlab.compare.setups import apply_scheme, describe_schemes

    assert check_scheme_names(["auto"]) == ["auto"]
    assert "autoinit" in describe_schemes(64, "relu")["auto"]
    model = apply_scheme(
        build_mlp(64, 10, depth=6, width=32), "auto", seed=0, width=32, activation="relu"
    )
    variances = measured(model)
    assert share_within(variances, LAYER_BOUNDS) == 1.0, variances


def test_inspect_scheme_auto_prints_the_scales_and_the_profile_after(capsys, tmp_path):
    from keras_initlab.cli import main

    model = residual_mlp(blocks=3, width=16)
    path = tmp_path / "model.keras"
    model.save(path)
    assert main(["inspect", str(path), "--scheme", "auto", "--samples", "64"]) == 0
    out = capsys.readouterr().out
    assert "AutoInit of" in out
    assert "the file is not changed" in out
    assert "residual branch into add2: 0.434 of the target (a stream of 3 sums)" in out
    summary = re.search(r"activation variance last/first: (\S+);.*verdict: (\w+)", out)
    assert summary is not None, out
    assert summary[2] == "ok"
    reloaded = keras.saving.load_model(path, compile=False)
    for a, b in zip(model.weights, reloaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_an_activation_unbounded_above_that_cannot_reach_the_target_gets_the_cap():
    """SiLU after a bias of -4: no pre-activation variance within MAX_PRE times the target
    gives it unit variance, so the kernel gets the cap (the closest it comes), not the
    target's pre-activation variance: on unit-variance input, ``sum_i W_ij^2`` averaged
    over the units (the pre-activation's variance) is MAX_PRE; a tanh in its place, which
    saturates, gets the target's."""
    from keras_initlab.autoinit import MAX_PRE

    for activation, expected, note in (
        ("silu", MAX_PRE, f"pre-activation capped at {MAX_PRE:g}x the target"),
        ("tanh", 1.0, "tanh cannot reach the target"),
    ):
        inputs = keras.Input((64,))
        dense = L.Dense(
            64, activation=activation, bias_initializer=keras.initializers.Constant(-4.0)
        )
        model = keras.Model(inputs, L.Dense(4, name="head")(dense(inputs)))
        rows = keras_initlab.initialize(model, "auto", seed=0, report=True).by_layer()
        assert note in rows[dense.name].note, rows[dense.name].note
        kernel = keras.ops.convert_to_numpy(dense.kernel).astype(np.float64)
        assert (kernel**2).sum(axis=0).mean() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "recurrent",
    [lambda: L.GRU(32, name="rnn"), lambda: L.Bidirectional(L.LSTM(16), name="rnn")],
    ids=["GRU", "Bidirectional LSTM"],
)
def test_a_recurrent_layers_input_kernel_gives_its_gates_unit_pre_activations(recurrent):
    """On an input of second moment 0.01, `auto` scales a recurrent layer's input kernel
    ``W`` so that ``x_t W`` has unit second moment over the steps and gate units (a
    sampled check at t * SE, the second moment's standard error over the samples), and
    keeps its recurrent kernel; the report says both."""
    from scipy import stats

    from keras_initlab.testing import budget

    model = keras.Sequential(
        [keras.Input((12, 8)), L.Rescaling(0.1), recurrent(), L.Dense(4, name="head")]
    )
    layer = model.get_layer("rnn")
    cells = (
        [layer.forward_layer.cell, layer.backward_layer.cell]
        if isinstance(layer, L.Bidirectional)
        else [layer.cell]
    )
    keras_initlab.initialize(model, "he_normal", seed=0)
    recurrent_before = [keras.ops.convert_to_numpy(c.recurrent_kernel) for c in cells]
    report = keras_initlab.initialize(model, "auto", seed=0, report=True)
    x = 0.1 * np.random.default_rng(0).standard_normal((2048 * 12, 8))
    t = float(stats.norm.ppf(1.0 - budget().alpha / 2.0))
    for cell, before in zip(cells, recurrent_before, strict=True):
        w = keras.ops.convert_to_numpy(cell.kernel).astype(np.float64)
        per_sample = np.mean((x @ w) ** 2, axis=1)  # mean over the gate units
        se = np.std(per_sample, ddof=1) / np.sqrt(len(per_sample))
        assert abs(per_sample.mean() - 1.0) <= t * se, (per_sample.mean(), se)
        recurrent_after = keras.ops.convert_to_numpy(cell.recurrent_kernel)
        np.testing.assert_array_equal(recurrent_after, before)
    scaled = [r for r in report if r.layer.startswith("rnn") and r.kernel == "scaled"]
    assert len(scaled) == len(cells)
    assert all("recurrent kernel kept" in r.note for r in scaled)


# ------------------------------------------------------------------------------ gates
def gated_stack(form: str, blocks: int = 8, width: int = 64) -> keras.Model:
    """``h * gate(pool)`` blocks on ReLU features (squeeze-and-excitation on vectors): the
    gate a sigmoid (``own``: its Dense's own, a ``Multiply`` layer; ``layer``: an
    ``Activation`` layer after the Dense, ``keras.ops.multiply``) or a tanh (``tanh``:
    centred on 0, not a gate that can start neutral)."""
    inputs = keras.Input((width,))
    h = inputs
    for b in range(blocks):
        h = L.Dense(width, activation="relu", name=f"fc{b}")(h)
        r = L.Dense(width // 4, activation="relu", name=f"squeeze{b}")(h)
        if form == "layer":
            u = L.Dense(width, name=f"excite{b}")(r)
            h = keras.ops.multiply(h, L.Activation("hard_sigmoid", name=f"gate{b}")(u))
        else:
            activation = "sigmoid" if form == "own" else "tanh"
            g = L.Dense(width, activation=activation, name=f"excite{b}")(r)
            h = L.Multiply(name=f"gated{b}")([h, g])
    return keras.Model(inputs, L.Dense(10, name="head")(h))


@pytest.mark.parametrize("form", ["own", "layer"])
def test_a_gate_starts_near_its_value_at_zero(form):
    model = gated_stack(form)
    rows = keras_initlab.initialize(model, "auto", seed=0, report=True).by_layer()
    for b in range(8):
        assert rows[f"excite{b}"].note.startswith("gate: pre-activation variance 0.1")
        assert rows[f"excite{b}"].target == SOLVE.GATE_VAR
        assert rows[f"fc{b}"].note.startswith("variance after relu")  # not a gate
    if form == "layer":  # the Dense's own output is the gate's pre-activation
        assert rows["excite3"].activation_var == pytest.approx(SOLVE.GATE_VAR, rel=1e-6)
        x = gaussian(model)
        u = keras.Model(model.inputs[0], model.get_layer("excite3").output)(x)
        per_sample = np.mean(np.square(keras.ops.convert_to_numpy(u).astype(np.float64)), 1)
        second = rows["excite3"].activation_var + rows["excite3"].activation_mean ** 2
        # samples are independent: the mean of their second moments, against t * SE
        keras_initlab.testing.assert_mean(per_sample, second, variance=float(np.var(per_sample)))


def test_a_tanh_gate_is_not_started_neutral():
    rows = keras_initlab.initialize(gated_stack("tanh"), "auto", seed=0, report=True).by_layer()
    assert rows["excite0"].note.startswith("tanh cannot reach the target")


def _log_energy_spread(model: keras.Model) -> float:
    """The standard deviation over samples of the log of each sample's output energy."""
    y = keras.ops.convert_to_numpy(model(gaussian(model), training=False)).astype(np.float64)
    return float(np.std(np.log(np.mean(y * y, axis=1))))


def test_neutral_gates_keep_samples_together(monkeypatch):
    """The reason for GATE_VAR: with unit-variance gates each sample's gain grows with its
    own scale, so the samples' energies spread apart through the stack."""
    model = gated_stack("own", blocks=12)
    keras_initlab.initialize(model, "auto", seed=0)
    neutral = _log_energy_spread(model)
    monkeypatch.setattr(SOLVE, "GATE_VAR", 1.0)
    keras_initlab.initialize(model, "auto", seed=0)
    unit = _log_energy_spread(model)
    # each a standard deviation over PROBE independent samples: standard error about
    # sd / sqrt(2 (n - 1)); the two apart by more than 3 of each (1.2 against 2.4 here)
    se = (neutral + unit) / math.sqrt(2.0 * (PROBE - 1))
    assert neutral + 3.0 * se < unit, (neutral, unit)


@pytest.mark.parametrize("name", ["silu", "gelu", "elu", "tanh", "hard_sigmoid"])
def test_the_slope_is_the_activations_elasticity(name):
    """`_solve.slope` at the pre-activation variance 3 against a Monte Carlo of the same
    central difference (common draws ``z``, ``n`` of them): the log ratio of the two mean
    squares has the standard error ``std(A / E[A] - B / E[B]) / sqrt(n)`` (delta method),
    taken at the budget's two-sided ``t``."""
    from scipy import stats

    from keras_initlab.propagate import _activations
    from keras_initlab.propagate._signal import make
    from keras_initlab.testing import budget

    fn = getattr(keras.activations, name)
    zeros, ones = np.zeros(8), np.ones(8)
    problem = SOLVE.Problem(make(zeros, ones), make(zeros, zeros), _activations.from_function(fn))
    predicted = SOLVE.slope(problem, math.sqrt(3.0))
    step, n = SOLVE._SLOPE_STEP, 1_000_000
    z = np.random.default_rng(0).standard_normal(n)
    up, down = (
        keras.ops.convert_to_numpy(fn(math.sqrt(3.0 * math.exp(s)) * z)).astype(np.float64) ** 2
        for s in (step / 2.0, -step / 2.0)
    )
    estimate = (math.log(up.mean()) - math.log(down.mean())) / step
    se = float(np.std(up / up.mean() - down / down.mean())) / math.sqrt(n) / step
    t = float(stats.norm.ppf(1.0 - budget().alpha / 2.0))
    assert abs(predicted - estimate) <= t * se, (name, predicted, estimate, se)


@pytest.mark.parametrize(
    ("activation", "expansive"), [("silu", True), ("gelu", True), ("relu", False), ("elu", False)]
)
def test_an_expansive_activation_spreads_the_samples_apart(activation, expansive):
    """A 16-layer MLP (width 128) after `auto`: the report calls every kernel expansive
    where the activation's slope exceeds 1 (SiLU, GELU), none for ReLU and ELU; and the
    standard deviation over ``n`` Gaussian samples of the log of each sample's mean square
    grows from the first activation to the last at least by the product of the slopes
    between them. That product is the first-order growth of a deviation of a sample's
    scale; the finite width adds fluctuations of its own at every layer, independent of
    it, so the measured growth is above it (SiLU: 6.8 predicted, 10.6 measured; ReLU: 1,
    2.3; ELU: 0.2, 1.6), up to the sampling error of the two deviations (relative standard
    error ``1 / sqrt(2 (n - 1))`` each), taken at the budget's ``t``."""
    from scipy import stats

    from keras_initlab.testing import budget

    depth, width, n = 16, 128, 1024
    inputs = keras.Input((width,))
    h, ends = inputs, []
    for i in range(depth):
        h = L.Activation(activation, name=f"a{i}")(L.Dense(width, name=f"d{i}")(h))
        ends.append(h)
    model = keras.Model(inputs, h)
    report = keras_initlab.initialize(model, "auto", seed=1, report=True)
    flagged = {r.layer for r in report.expansive}
    assert flagged == ({f"d{i}" for i in range(depth)} if expansive else set())
    assert ("expansive: slope" in report.by_layer()["d0"].note) == expansive
    slopes = [report.by_layer()[f"d{i}"].slope for i in range(1, depth)]
    x = np.random.default_rng(1).standard_normal((n, width)).astype("float32")
    first, last = keras.Model(inputs, [ends[0], ends[-1]]).predict(x, verbose=0)
    spread = [
        float(np.std(np.log(np.mean(a.astype(np.float64) ** 2, axis=1)))) for a in (first, last)
    ]
    t = float(stats.norm.ppf(1.0 - budget().alpha / 2.0))
    relative = t * math.sqrt(2.0) / math.sqrt(2.0 * (n - 1))
    assert spread[1] / spread[0] >= float(np.prod(slopes)) * (1.0 - relative), (spread, slopes)


def test_a_gates_operand_is_balanced_between_the_bands_edges():
    """The other factor of a neutral gate's product (``fc``: a Dense with its own ReLU,
    whose pre-activation no layer outputs) gets the variance ``t`` with ``square t^2 = T^2``
    (``square``: the share a neutral sigmoid passes, `_solve.gate_square`), so the operand
    (about 2) and the product (about 1/2) are equally far inside [1/4, 4]; measured, every
    product lies in the band. A product of two ReLU branches, no gate, keeps the target."""
    from keras_initlab.propagate import _activations

    model = gated_stack("own")
    rows = keras_initlab.initialize(model, "auto", seed=0, report=True).by_layer()
    square = SOLVE.gate_square(_activations.from_function(keras.activations.sigmoid))
    variances = measured(model)
    for b in range(8):
        row = rows[f"fc{b}"]
        assert "operand of a gate's product" in row.note, row.note
        assert square * row.target**2 == pytest.approx(1.0, rel=1e-6)
        assert LAYER_BOUNDS[0] < variances[f"gated{b}"] < LAYER_BOUNDS[1]
    inputs = keras.Input((32,))
    a = L.Dense(32, activation="relu", name="a")(inputs)
    b = L.Dense(32, activation="relu", name="b")(inputs)
    plain = keras.Model(inputs, L.Dense(4)(L.Multiply()([a, b])))
    rows = keras_initlab.initialize(plain, "auto", seed=0, report=True).by_layer()
    assert rows["a"].target == rows["b"].target == 1.0
    assert rows["a"].note == "variance after relu"
