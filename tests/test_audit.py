"""audit(): true fans, each weight against what its initializer drew or a scheme, the healthy
reference where Keras' shape rule is wrong, and a printable table."""

from __future__ import annotations

import random

import keras
import numpy as np
import pytest

import keras_initlab as ki
from keras_initlab import testing as kt
from keras_initlab.healthy import healthy_weights

L = keras.layers
FLOAT64_REL = 1e-12  # float64 arithmetic on the same numbers: rounding only


def test_depthwise_with_keras_he_normal_is_what_keras_drew_and_unhealthy():
    """``audit(model)`` holds each weight to what its configured initializer draws as Keras
    calls it (the shape alone), so a stock model is not flagged; Keras' wrong fans show in
    the healthy columns, which read the true ones."""
    model = keras.Sequential(
        [
            keras.Input((16, 16, 64)),
            L.DepthwiseConv2D(3, depthwise_initializer="he_normal", name="dw"),
            L.Conv2D(32, 1, kernel_initializer="he_normal"),
        ]
    )
    report = ki.audit(model)
    assert report.flagged == []
    (row,) = report.unhealthy
    assert row.path.endswith("dw/kernel")
    assert (row.fan_in, row.fan_out) == (9, 9)
    # Keras reads fan_in as 9 * 64: std sqrt(2/576), the expected std, to float64 rounding.
    assert row.expected_std == pytest.approx((2.0 / 576) ** 0.5, rel=FLOAT64_REL)
    # The healthy scheme (the next layer is linear: LeCun) on the true fans: sqrt(1/9).
    # sqrt(2/576) / sqrt(1/9) = 0.177; the std of 576 normal draws errs by 1/sqrt(2 * 576)
    # relative, 3%: 6 standard errors of slack.
    assert row.healthy_scheme == "lecun_normal"
    assert row.healthy_ratio == pytest.approx((18.0 / 576) ** 0.5, rel=6 / (2 * 576) ** 0.5)
    table = str(report)
    assert "dw/kernel" in table
    assert "**" in table
    assert "!!" not in table
    assert table.splitlines()[0].split() == [
        "layer",
        "path",
        "layout",
        "fan_in",
        "fan_out",
        "std",
        "expected_std",
        "ratio",
        "healthy",
        "healthy_ratio",
        "unhealthy",
        "flag",
    ]
    # Against an explicit scheme the healthy columns are left out.
    assert "healthy" not in str(ki.audit(model, "he_normal")).splitlines()[0].split()


def test_initialized_model_passes_its_own_audit_and_fails_another():
    model = keras.Sequential(
        [
            keras.Input((10, 10, 32)),
            L.Conv2DTranspose(16, 3, name="t"),
            L.Flatten(),
            L.Dense(10, name="d"),
        ]
    )
    ki.initialize(model, "he_normal", seed=0)
    assert ki.audit(model, "he_normal").flagged == []
    transposed = ki.audit(model, "lecun_normal").flagged  # var off by 2x
    assert [r.path.split("/")[-2] for r in transposed] == ["t", "d"]


def test_lstm_glorot_is_what_keras_drew_and_unhealthy_on_its_gates_fans():
    model = keras.Sequential([keras.Input((4, 16)), L.LSTM(32)])
    report = ki.audit(model)  # Keras: Glorot with fan_out = 4 * units
    kernel = next(r for r in report if r.path.endswith("lstm_cell/kernel"))
    values = model.layers[0].cell.kernel.numpy().astype(np.float64)
    assert not kernel.flagged
    assert kernel.healthy_flagged  # Glorot on one gate's true fans, 16 and 32
    # The row's numbers against plain NumPy and the closed forms, to float64 rounding.
    assert kernel.std == pytest.approx(values.std(), rel=FLOAT64_REL)
    assert kernel.expected_std == pytest.approx((2.0 / (16 + 128)) ** 0.5, rel=FLOAT64_REL)
    assert kernel.ratio == pytest.approx(kernel.std / kernel.expected_std, rel=FLOAT64_REL)
    # The draw itself is Keras' Glorot uniform on its shape rule (fans 16 and 128).
    kt.assert_variance(values, 2.0 / (16 + 128), family="uniform")


def test_weights_without_a_known_layout_get_rows_marked_not_handled():
    class Scale(L.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

        def call(self, x):
            return x * self.w

    model = keras.Sequential(
        [keras.Input((4,)), L.Dense(3, name="d"), Scale(name="s"), L.LayerNormalization(name="n")]
    )
    report = ki.audit(model, "he_normal")
    assert len(report) == len(model.weights)
    notes = {r.path.split("/", 1)[1]: r.note for r in report.not_handled}
    assert set(notes) == {"s/w", "n/gamma", "n/beta"}
    assert notes["s/w"].startswith("not handled: ")
    assert "custom" in notes["s/w"]
    assert "normalization" in notes["n/gamma"]
    assert all(r.expected_std is None and not r.flagged for r in report.not_handled)
    lines = str(report).splitlines()
    assert lines[0].split()[-2:] == ["flag", "note"]
    assert any("s/w" in line and "not handled" in line for line in lines)


def test_a_subclassed_models_own_weight_gets_a_not_handled_row():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.head = L.Dense(2, name="head")

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

        def call(self, x):
            return self.head(x * self.w)

    model = Net()
    model(np.zeros((1, 3), "float32"))
    report = ki.audit(model)
    assert [r.path for r in report.not_handled] == [model.w.path]
    assert len(report) == len(model.weights) == 3
    init = ki.initialize(model, "he_normal", seed=0, report=True)
    assert [(r.path, r.action) for r in init.not_handled] == [(model.w.path, "not handled")]


def test_report_rows_and_repr():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    report = ki.audit(model)
    assert len(report) == 2
    assert repr(report) == "AuditReport(2 weights, 0 flagged, 0 unhealthy)"
    assert report.to_dicts()[0]["layout"] == "dense"
    with pytest.raises(TypeError, match=r"Argument `scheme` must be"):
        ki.audit(model, scheme=1.0)


def test_unbuilt_model_is_refused():
    with pytest.raises(ValueError, match=r"Argument `model` must be built"):
        ki.audit(keras.Sequential([L.Dense(3)]))


@pytest.mark.parametrize("scheme", [None, "he_normal", "orthogonal", ki.HeNormal()])
def test_audit_leaves_pythons_random_state_as_it_was(scheme):
    # audit() reads variances only: the schemes it builds for that must not draw their
    # default seeds from Python's RNG, which keras.utils.set_random_seed seeds for the user.
    inputs = keras.Input((5, 4))
    h = L.LSTM(3, kernel_initializer=ki.GlorotUniform())(inputs)  # a recurrent kernel too
    model = keras.Model(inputs, L.Dense(2, kernel_initializer="he_normal")(h))
    before = random.getstate()
    ki.audit(model, scheme)
    assert random.getstate() == before


def _relu_stack(stddev=0.1, width=64, depth=3):
    def init(i):  # one instance per layer: one instance draws the same numbers at each call
        return keras.initializers.RandomNormal(stddev=stddev, seed=i)

    return keras.Sequential(
        [keras.Input((width,))]
        + [
            L.Dense(width, activation="relu", kernel_initializer=init(i), name=f"d{i}")
            for i in range(depth)
        ],
        name="stack",
    )


def test_kernels_carry_the_healthy_reference_the_monitor_alerts_use():
    model = _relu_stack()
    report = ki.audit(model)
    assert report.flagged == []  # drawn as configured: the configured-initializer audit passes
    reference = {h.path: h for h in healthy_weights(model)}
    kernels = [r for r in report if r.path.endswith("/kernel")]
    assert len(kernels) == len(reference) == 3
    for row, layer in zip(kernels, model.layers, strict=True):
        assert row.healthy_scheme == "he_normal"
        assert row.healthy_flagged
        assert row.healthy_ratio == reference[row.path].ratio  # the very float an alert shows
        values = layer.kernel.numpy().astype(np.float64)
        expected = values.std() / np.sqrt(2.0 / values.shape[0])  # He on fan_in, in NumPy
        assert row.healthy_ratio == pytest.approx(expected, rel=FLOAT64_REL)
        # 0.1 / sqrt(2 / 64) in expectation; the sample std of 4096 values is off by ~1%.
        assert row.healthy_ratio == pytest.approx(0.1 / (2.0 / 64) ** 0.5, rel=0.05)
    biases = [r for r in report if r.path.endswith("/bias")]
    assert len(biases) == 3
    assert all(
        (r.healthy_scheme, r.healthy_ratio, r.healthy_flagged) == (None, None, False)
        for r in biases
    )
    assert report.unhealthy == kernels
    assert repr(report) == "AuditReport(6 weights, 0 flagged, 3 unhealthy)"


def test_depthwise_kernel_feeding_no_activation_has_lecun_as_healthy_reference():
    model = keras.Sequential(
        [
            keras.Input((16, 16, 64)),
            L.DepthwiseConv2D(3, depthwise_initializer="he_normal", name="dw"),
            L.Conv2D(32, 1, activation="relu", kernel_initializer="he_normal", name="c"),
        ]
    )
    rows = {r.path.split("/", 1)[1]: r for r in ki.audit(model)}
    dw = rows["dw/kernel"]
    assert dw.healthy_scheme == "lecun_normal"
    assert dw.healthy_flagged
    # Keras' shape-rule std sqrt(2 / 576) over LeCun's on the true fan_in 9: sqrt(1/32).
    assert dw.healthy_ratio == pytest.approx(32**-0.5, rel=0.15)
    conv = rows["c/kernel"]
    assert (conv.healthy_scheme, conv.healthy_flagged) == ("he_normal", False)


def test_an_explicit_scheme_leaves_the_healthy_columns_empty():
    model = _relu_stack()
    report = ki.audit(model, "he_normal")
    assert len(report.flagged) == 3  # RandomNormal(0.1) is not He on fan_in 64
    assert all(
        (r.healthy_scheme, r.healthy_ratio, r.healthy_flagged) == (None, None, False)
        for r in report
    )
    assert report.unhealthy == []
    assert repr(report) == "AuditReport(6 weights, 3 flagged)"
    assert "healthy" not in str(report)


def test_table_shows_the_healthy_columns_and_marks_unhealthy_kernels():
    table = str(ki.audit(_relu_stack()))
    header, *lines = table.splitlines()
    assert "healthy_ratio" in table
    assert header.split()[-4:] == ["healthy", "healthy_ratio", "unhealthy", "flag"]
    kernel_lines = [line for line in lines if "/kernel" in line]
    assert len(kernel_lines) == 3
    assert all("he_normal" in line and line.rstrip().endswith("**") for line in kernel_lines)


def _shared_instance_model() -> keras.Model:
    """Two Dense layers and an embedding sharing unseeded initializer instances: Keras
    draws the same numbers at every call of one instance."""
    keras.utils.set_random_seed(0)
    kernels = keras.initializers.GlorotUniform()
    tables = keras.initializers.RandomNormal(stddev=0.05)
    x = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(50, 32, embeddings_initializer=tables, name="lookup")(x)
    h = keras.layers.Embedding(50, 32, embeddings_initializer=tables, name="other")(x) + h
    h = keras.layers.Dense(32, kernel_initializer=kernels, name="a")(h)
    return keras.Model(x, keras.layers.Dense(16, kernel_initializer=kernels, name="b")(h))


def test_weights_that_repeat_another_weights_draws_are_marked_and_initialize_redraws_them():
    model = _shared_instance_model()
    report = ki.audit(model)
    pairs = {frozenset((r.path, r.repeats)) for r in report.repeated}
    assert pairs == {
        frozenset(("other/embeddings", "lookup/embeddings")),
        frozenset(("b/kernel", "a/kernel")),
    }
    assert report.flagged == []  # each is what its initializer drew
    assert "repeats" in str(report)
    assert "2 repeating another's draws" in repr(report)
    ki.initialize(model, "he_normal", seed=0)
    after = ki.audit(model, "he_normal")
    assert after.repeated == []
    assert after.flagged == []  # the table re-drawn from its own RandomNormal(0.05)


def test_independent_draws_are_never_marked_as_repeats():
    """MobileNetV2's 262 weights (34,191 pairs, down to 3x3 depthwise kernels of 32
    channels): a repeat's correlation is 1, independent ones' about N(0, 1/n)."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None)
    assert ki.audit(model).repeated == []
