"""``prediction_agreement``: propagate against measurement, on models where the numbers are known.

* The arithmetic, on a hand-made report and measurement: each error is |log(p / m)|, the
  summaries are NumPy's median, 90th percentile and max of them, a 0 or NaN value is
  skipped and counted, rows that are not predicted (or have no row) are listed apart.
* A 4-layer He MLP of width 512 on 1024 Gaussian samples: every row is predicted, and the
  prediction is within 10% everywhere: one ReLU layer on independent inputs is exact for its
  actual weights, and the finite-width error of the mean field is about sqrt(2 / 512) = 6%
  per layer in the worst case (`keras_initlab.propagate`), the sampling error of a variance
  over 1024 x 512 correlated elements well below that. The output's gradient is 1 exactly,
  the reference every gradient is relative to.
* A custom layer no rule or trace reads (a TensorFlow op): its row is recorded but not
  predicted, it is listed with its status and note, and the errors are taken over the
  predicted rows only.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_initlab import testing as kt
from keras_initlab.propagate import PropagateRow

L = keras.layers


def _row(layer: str, act: float, grad: float, status: str = "predicted") -> PropagateRow:
    return PropagateRow(layer, "Dense", 0.0, act, grad, 0.0, status=status, note=f"{status} note")


def test_the_arithmetic_on_known_numbers():
    report = [
        _row("a", 2.0, 1.0),  # activation 2x off, gradient exact
        _row("b", 1.0, 4.0),  # gradient 4x off
        _row("c", 1.0, 1.0),  # measured activation 0: skipped; gradient e x off
        _row("d", 1.0, 1.0, status="assumed"),
    ]
    measured: dict[str, dict[str, Any]] = {
        "a": {"activation_var": 1.0, "gradient_var": 1.0},
        "b": {"activation_var": 1.0, "gradient_var": 1.0},
        "c": {"activation_var": 0.0, "gradient_var": math.e},
        "d": {"activation_var": 5.0, "gradient_var": 5.0},
        "e": {"activation_var": 1.0, "gradient_var": None, "layer_class": "Flatten"},
    }
    agreement = kt.compare_prediction(report, measured)
    assert (agreement.recorded, agreement.predicted) == (5, 3)
    assert agreement.share == pytest.approx(0.6)
    act, grad = [math.log(2.0), 0.0], [0.0, math.log(4.0), 1.0]
    for summary, values, skipped in (
        (agreement.activation, act, 1),
        (agreement.gradient, grad, 0),
        (agreement.both, act + grad, 1),
    ):
        assert (summary.count, summary.skipped) == (len(values), skipped)
        assert summary.median == pytest.approx(float(np.median(values)))
        assert summary.p90 == pytest.approx(float(np.quantile(values, 0.9)))
        assert summary.max == pytest.approx(max(values))
    assert [r.layer for r in agreement.worst] == ["b", "c", "a"]  # by the larger error
    assert [(r.layer, r.status) for r in agreement.not_predicted] == [
        ("d", "assumed"),
        ("e", "no row"),
    ]
    assert agreement.not_predicted[0].note == "assumed note"
    assert agreement.not_predicted[1].class_name == "Flatten"
    assert math.isnan(agreement.not_predicted[0].activation_error)  # not compared
    text = str(agreement)
    assert "3 of 5 recorded rows predicted (60%)" in text
    assert "1.41x" in text  # the activation median, sqrt(2), as a ratio
    assert "d (assumed)" in text


def test_no_predicted_row_gives_nan_summaries():
    agreement = kt.compare_prediction(
        [_row("a", 1.0, 1.0, status="assumed")], {"a": {"activation_var": 1.0}}
    )
    assert agreement.predicted == 0
    assert agreement.activation.count == 0
    assert math.isnan(agreement.activation.median)
    assert agreement.worst == ()
    assert "-" in str(agreement)


def _he_mlp(depth: int = 4, width: int = 512) -> keras.Model:
    layers = [
        L.Dense(
            width,
            activation="relu",
            kernel_initializer=keras.initializers.HeNormal(seed=i),
            name=f"d{i}",
        )
        for i in range(depth)
    ]
    return keras.Sequential([keras.Input((width,)), *layers])


def test_a_he_mlp_is_predicted_everywhere_and_closely():
    model = _he_mlp()
    x = np.random.default_rng(0).standard_normal((1024, 512)).astype("float32")
    agreement = kt.prediction_agreement(model, x)
    assert agreement.mode == "inference"
    assert [r.layer for r in agreement.rows] == ["d0", "d1", "d2", "d3"]
    assert (agreement.recorded, agreement.predicted) == (4, 4)
    assert agreement.not_predicted == ()
    assert agreement.both.count == 8
    assert agreement.both.skipped == 0
    assert agreement.both.max < math.log(1.1)
    assert agreement.activation.median < math.log(1.05)
    assert agreement.gradient.median < math.log(1.05)
    # the reference: the output's gradient relative to itself
    assert agreement.rows[-1].measured_gradient_var == pytest.approx(1.0, rel=1e-5)
    assert agreement.rows[-1].predicted_gradient_var == pytest.approx(1.0)


def test_training_mode_is_measured_and_predicted_in_training_mode():
    inputs = keras.Input((256,))
    h = L.Dense(256, kernel_initializer=keras.initializers.HeNormal(seed=0), name="d0")(inputs)
    h = L.BatchNormalization(name="bn")(h)
    model = keras.Model(inputs, L.Dense(8, name="out")(L.ReLU(name="relu")(h)))
    x = np.random.default_rng(1).standard_normal((512, 256)).astype("float32")
    inference = kt.prediction_agreement(model, x)
    training = kt.prediction_agreement(model, x, mode="training")
    assert training.mode == "training"
    rows = {r.layer: r for r in training.rows}
    # batch statistics: the normalized output has variance 1 (less BN's epsilon)
    assert rows["bn"].measured_activation_var == pytest.approx(1.0, rel=1e-2)
    assert rows["bn"].predicted_activation_var == pytest.approx(1.0, rel=1e-2)
    # moving statistics (mean 0, variance 1 at creation): the input's variance passes
    assert {r.layer: r for r in inference.rows}["bn"].measured_activation_var > 1.5
    with pytest.raises(ValueError, match="mode"):
        kt.prediction_agreement(model, x, mode="eval")


class TfScale(keras.layers.Layer):
    """``y = s * x`` through a TensorFlow op: no rule covers it and a trace on KerasTensors
    cannot read it, yet it runs (and has a weight, so `measure` records it)."""

    def build(self, input_shape):
        self.s = self.add_weight(shape=(), initializer="ones", name="s")

    def call(self, x):
        return tf.multiply(x, self.s)

    def compute_output_shape(self, input_shape):
        return input_shape


def test_a_layer_no_rule_reads_is_recorded_and_listed_not_predicted():
    inputs = keras.Input((128,))
    h = L.Dense(128, activation="relu", name="d0")(inputs)
    h = TfScale(name="scale")(h)
    model = keras.Model(inputs, L.Dense(16, name="d1")(h))
    x = np.random.default_rng(2).standard_normal((256, 128)).astype("float32")
    agreement = kt.prediction_agreement(model, x)
    assert [r.layer for r in agreement.rows] == ["d0", "scale", "d1"]
    listed = {r.layer: r for r in agreement.not_predicted}
    assert "scale" in listed
    assert listed["scale"].status != "predicted"
    assert listed["scale"].note  # the reason is kept
    assert agreement.predicted == agreement.recorded - len(agreement.not_predicted)
    # d0 is upstream of the assumed layer: its activation rests on rules only and is
    # compared, its gradient (through "scale") is not
    assert listed["d0"].status == "upstream"
    assert math.isfinite(listed["d0"].activation_error)
    assert math.isnan(listed["d0"].gradient_error)
    assert agreement.activation.count == agreement.predicted + 1
    assert agreement.both.count == 2 * agreement.predicted + 1
    assert "scale" in str(agreement)


def test_pooled_agreement_compares_the_geometric_mean_of_the_probes():
    """Each row's measured variance is the geometric mean of the probes' (each probe
    measured as `prediction_agreement` measures it, targets seeded seed + k); one probe
    gives `prediction_agreement` itself; probes of different batch sizes are refused."""
    model = keras.Sequential(
        [keras.Input((32,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(8)]
    )
    rng = np.random.default_rng(0)
    probes = [rng.standard_normal((64, 32)).astype("float32") for _ in range(3)]
    pooled = kt.pooled_agreement(model, probes, seed=5)
    ones = [kt.prediction_agreement(model, x, seed=5 + k) for k, x in enumerate(probes)]
    for i, row in enumerate(pooled.rows):
        for key in ("measured_activation_var", "measured_gradient_var"):
            logs = [math.log(getattr(one.rows[i], key)) for one in ones]
            assert getattr(row, key) == pytest.approx(math.exp(sum(logs) / 3), rel=1e-12)
    single = kt.pooled_agreement(model, probes[:1], seed=5)
    assert single.rows == ones[0].rows
    with pytest.raises(ValueError, match="one batch size"):
        kt.pooled_agreement(model, [probes[0], probes[1][:16]])
    with pytest.raises(ValueError, match="at least one probe"):
        kt.pooled_agreement(model, [])


def test_pooled_probes_in_training_mode_each_draw_their_own_dropout():
    """A measurement leaves the seed generators as it found them; pooled probes move them on
    between probes, so that K copies of one probe average K masks (the geometric mean of
    K equal measurements would be one of them), and set them back after the last."""
    model = keras.Sequential(
        [
            keras.Input((32,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.5, seed=1),
            keras.layers.Dense(8, name="after_dropout"),
        ]
    )
    x = np.random.default_rng(0).standard_normal((16, 32)).astype("float32")
    generator = model.layers[1].seed_generator
    state = np.array(keras.ops.convert_to_numpy(generator.state.value))

    def dropped(probes: list[np.ndarray]) -> float:
        agreement = kt.pooled_agreement(model, probes, mode="training", seed=5)
        row = next(r for r in agreement.rows if r.layer == "after_dropout")
        return row.measured_activation_var

    one = dropped([x])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(generator.state.value), state)
    assert dropped([x]) == one  # (the states were set back)
    assert dropped([x, x, x]) != one
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(generator.state.value), state)
