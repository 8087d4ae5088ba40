"""``keras_initlab.register_layer``: what a custom layer is, read by every feature.

The layers here are written with a backend op (``tf.math``), which no trace on KerasTensors
can read, so without a registration they are opaque; registered, `propagate` predicts them
(checked against `measure` on a designed input whose moments are exact), `measure` records
them by default and the main path reads normalizations and dropout from the registry.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab import _keras
from keras_initlab.model.path import model_path
from keras_initlab.model.registry import registered

pytestmark = pytest.mark.tensorflow  # the layers call tf.math: TensorFlow only

L = keras.layers


class _Affine(L.Layer):
    """``y = 2 x + 1``, written with backend ops."""

    def call(self, x):
        import tensorflow as tf

        return tf.math.add(tf.math.multiply(x, 2.0), 1.0)

    def compute_output_shape(self, shape):
        return shape


class _Norm(_Affine):
    def call(self, x):
        import tensorflow as tf

        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return tf.math.divide(x - mean, tf.math.sqrt(var + 1e-6))


class _Drop(_Affine):
    rate = 0.25

    def call(self, x, training=None):
        return x


def _affine_rule(layer, mean, var, training):
    return 2.0 * mean + 1.0, 4.0 * var, 4.0


@pytest.fixture
def affine():
    keras_initlab.register_layer(_Affine, rule=_affine_rule)
    yield _Affine
    keras_initlab.unregister_layer(_Affine)


def _model(layer):
    inputs = keras.Input((64,))
    h = L.Dense(64, kernel_initializer="identity", use_bias=False, name="before")(inputs)
    return keras.Model(inputs, L.Dense(8, name="after")(layer(h)))


def test_an_unregistered_backend_layer_is_opaque_and_named():
    report = keras_initlab.propagate(_model(_Affine(name="affine")))
    rows = report.by_layer()
    assert rows["affine"].status == "assumed"
    assert "could not be traced" in rows["affine"].note
    assert rows["after"].status == "downstream"


def test_a_user_rule_is_used_and_agrees_with_measurement(affine):
    model = _model(affine(name="affine"))
    report = keras_initlab.propagate(model, input_mean=0.5, input_var=2.0)
    assert all(r.predicted for r in report), report
    # a designed input: sample mean 0.5 and covariance 2 I exactly
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 64))
    q, _ = np.linalg.qr(a - a.mean(axis=0))
    x = (0.5 + np.sqrt(256 * 2.0) * q).astype("float32")
    (record,) = keras_initlab.measure(model, x, layers=["affine"])
    row = report.by_layer()["affine"]
    np.testing.assert_allclose(record["activation_mean"], row.activation_mean, rtol=1e-4)
    np.testing.assert_allclose(record["activation_var"], row.activation_var, rtol=1e-4)
    # the gain: the gradient at `before` is 4x the one at `affine`
    rows = report.by_layer()
    np.testing.assert_allclose(rows["before"].gradient_var, 4.0 * row.gradient_var)


def test_registered_layers_are_measured_by_default(affine):
    model = _model(affine(name="affine"))
    layers = [r["layer"] for r in keras_initlab.measure(model, np.ones((4, 64), "float32"))]
    assert "affine" in layers


def test_normalization_and_dropout_kinds_are_read_by_the_main_path():
    keras_initlab.register_layer(_Norm, "normalization")
    keras_initlab.register_layer(_Drop, "dropout", rate="rate")
    try:
        inputs = keras.Input((16,))
        h = L.Dense(16, name="d0")(inputs)
        h = _Norm(name="norm")(h)
        h = _Drop(name="drop")(L.Dense(16, name="d1")(h))
        model = keras.Model(inputs, L.Dense(4, name="d2")(h))
        path = model_path(model, "inference")
        assert "norm" in path.resets
        assert "d0" in path.normalized
        assert "drop" in path.one_off
        rows = keras_initlab.propagate(model, mode="training").by_layer()
        assert rows["norm"].activation_var == pytest.approx(1.0)
        # dropout at 0.25 in training: E[y^2] = E[x^2] / 0.75
        assert rows["drop"].activation_var == pytest.approx(rows["d1"].activation_var / 0.75)
    finally:
        keras_initlab.unregister_layer(_Norm)
        keras_initlab.unregister_layer(_Drop)


def test_keras_application_layers_are_built_in():
    found = _keras.application_layers()
    scale = found["LayerScale"](init_values=1e-6, projection_dim=4)
    assert registered(scale).kind == "scale"
    assert registered(scale).weight == "gamma"
    assert registered(found["StochasticDepth"](0.1)).kind == "dropout"


def test_a_subclass_inherits_a_registration(affine):
    class Child(affine):
        pass

    assert registered(Child()).kind == "rule"


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((int, "identity"), {}, TypeError, "`layer_class`"),
        ((_Affine,), {}, ValueError, "exactly one of `kind`"),
        ((_Affine, "identity"), {"rule": _affine_rule}, ValueError, "exactly one of `kind`"),
        ((_Affine, "squash"), {}, ValueError, "`kind` must be one of"),
        ((_Affine, "scale"), {}, ValueError, "needs `weight`"),
        ((_Affine, "dropout"), {"rate": ""}, ValueError, "needs `rate`"),
        ((_Affine, "identity"), {"weight": "w"}, ValueError, "takes no `weight`"),
        ((_Affine,), {"rule": 3}, TypeError, "`rule` must be callable"),
        ((_Affine,), {"rule": _affine_rule, "rate": "r"}, ValueError, "go with a kind"),
    ],
)
def test_bad_registrations_name_the_argument(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        keras_initlab.register_layer(*args, **kwargs)
    assert registered(_Affine()) is None  # nothing half-registered


def test_unregistering_an_unknown_class_is_refused():
    with pytest.raises(ValueError, match="not registered"):
        keras_initlab.unregister_layer(_Affine)
