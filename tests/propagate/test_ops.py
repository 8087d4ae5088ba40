"""``propagate()`` through the ``keras.ops`` calls of Functional graphs (the rules of
``propagate/_ops.py``, the classes classified by ``keras_initlab.model.operations``).

* Every ``Operation`` class a public ``keras.ops`` function creates has a rule or a reason
  in ``NOT_COVERED``, never both; what ``NOT_COVERED`` lists, and what a rule cannot read,
  is marked assumed with its reason.
* An activation written as an op is predicted exactly as the activation layer.
* Each op after a Gaussian input against a sampled measurement, as ``test_propagate.py``
  checks each layer type: the measurement repeated on independent batches, a prediction
  within ``t * SE`` of it; the elements an op reads are independent (one Gaussian input
  whose halves feed the two operands), so the rules are exact and no model error is
  allowed.
* An 8-layer hard-swish MLP written with ops: equal to the same MLP with
  ``Activation("hard_swish")`` layers (Simpson's rule on both sides), and within the
  finite-width departure ``propagate`` states of the measurement.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from keras import ops

import keras_initlab
from keras_initlab._keras import public_operations
from keras_initlab.model import operations as table
from keras_initlab.propagate import _ops

# The sampled measurement and its check are test_propagate.py's (loaded by path, as it
# loads measurement.py), so both files judge a prediction the same way.
_spec = importlib.util.spec_from_file_location(
    "propagate_layer_tests", Path(__file__).with_name("test_propagate.py")
)
assert _spec is not None
assert _spec.loader is not None
P = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(P)

L = keras.layers
WIDTH = 256


# ------------------------------------------------------------------------ the table
def test_every_public_operation_has_a_rule_or_a_reason():
    classes = public_operations()
    assert set(table.OPERATIONS).isdisjoint(table.NOT_COVERED)
    unlisted = sorted(set(classes) - set(table.OPERATIONS) - set(table.NOT_COVERED))
    assert not unlisted, unlisted
    for name, cls in classes.items():
        rule = _ops.rule_for(object.__new__(cls))
        assert rule is not None, name
        if name in table.NOT_COVERED:
            reason = table.NOT_COVERED[name]
            assert reason.strip()
            assert "\n" not in reason
            with pytest.raises(NotImplementedError, match=re.escape(reason)):
                rule(None)
    for name, kind in table.OPERATIONS.items():
        assert type(kind) in _ops.RULES, name
        if name not in classes:  # a class of another Keras release
            continue
        if isinstance(kind, table.Activation):
            assert hasattr(keras.activations, kind.function), name
        elif isinstance(kind, table.Function | table.Arithmetic):
            assert hasattr(keras.ops, kind.function), name
        options = getattr(kind, "options", {})
        if options:  # the attributes the options are read from
            parameters = inspect.signature(classes[name].__init__).parameters
            required = [p for p, v in parameters.items() if v.default is v.empty]
            operation = classes[name](**{p: 0.5 for p in required if p != "self"})
            assert all(hasattr(operation, a) for a in options.values()), name


def test_an_operation_not_covered_or_not_read_is_assumed_with_its_reason():
    inputs = keras.Input((16,))
    h = L.Dense(16, name="d0")(inputs)
    h = ops.sort(h, axis=-1)
    h = ops.sum(h, axis=0, keepdims=True)  # over the batch axis: no rule reads it
    model = keras.Model(inputs, L.Dense(4, name="d1")(h))
    rows = {r.class_name: r for r in keras_initlab.propagate(model)}
    assert rows["Sort"].status == "assumed"
    assert table.NOT_COVERED["Sort"] in rows["Sort"].note
    assert rows["Sum"].status == "assumed"
    assert "batch axis" in rows["Sum"].note
    assert "variance taken as unchanged" in rows["Sum"].note


# ------------------------------------------------------------------------ ops as activations
ACTIVATIONS = {
    "relu6": (lambda h: ops.relu6(h), lambda: L.ReLU(6.0)),
    "sigmoid": (lambda h: ops.sigmoid(h), lambda: L.Activation("sigmoid")),
    "hard_sigmoid": (lambda h: ops.hard_sigmoid(h), lambda: L.Activation("hard_sigmoid")),
    "silu": (lambda h: ops.silu(h), lambda: L.Activation("silu")),
    "gelu_erf": (
        lambda h: ops.gelu(h, approximate=False),
        lambda: L.Activation(keras.activations.gelu),  # gelu's default: exact
    ),
    "tanh": (lambda h: ops.tanh(h), lambda: L.Activation("tanh")),
    "softplus": (lambda h: ops.softplus(h), lambda: L.Activation("softplus")),
    "leaky_relu": (lambda h: ops.leaky_relu(h, 0.3), lambda: L.LeakyReLU(0.3)),
    "elu": (lambda h: ops.elu(h, 0.7), lambda: L.ELU(0.7)),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_an_activation_op_is_predicted_as_the_activation_layer(name):
    """The op and the layer reach the same quadrature (or closed form) of the same function:
    equal up to rounding, the gradient included."""
    op, layer = ACTIVATIONS[name]
    keras.utils.set_random_seed(2)
    inputs = keras.Input((WIDTH,))
    pre = L.Dense(WIDTH, kernel_initializer="he_normal", bias_initializer="ones", name="pre")
    by_op, by_layer = (
        list(keras_initlab.propagate(keras.Model(inputs, f(pre(inputs)))))
        for f in (op, lambda h: layer()(h))
    )
    assert [r.status for r in by_op] == ["predicted", "predicted"]
    for ours, theirs in zip(by_op, by_layer, strict=True):
        for key in ("activation_mean", "activation_var", "gradient_var"):
            assert getattr(ours, key) == pytest.approx(getattr(theirs, key), rel=1e-9), key


# ------------------------------------------------------------------------ sampled measurement
def _halves(h: Any) -> tuple[Any, Any]:
    """Two independent operands: the halves of one Gaussian input's features."""
    n = h.shape[-1] // 2
    return h[..., :n], h[..., n:]


def _gate(h: Any) -> Any:
    a, stream = _halves(h)
    return ops.relu6(a + 3.0) * (1.0 / 6.0) * stream  # MobileNetV3's hard sigmoid gate


def _scores(h: Any) -> Any:
    q, k = _halves(h)
    return ops.einsum("bqd,bkd->bqk", q, k)  # attention logits of independent q, k


CONSTANT = np.random.default_rng(4).standard_normal((WIDTH, 32)) / math.sqrt(WIDTH)
# name -> (input shape, the ops after the input)
CASES: dict[str, tuple[tuple[int, ...], Any]] = {
    "scale": ((WIDTH,), lambda h: h * 0.5),
    "constant_minus": ((WIDTH,), lambda h: 2.0 - h),
    "mean_keepdims": ((16, 32), lambda h: ops.mean(h, axis=-1, keepdims=True)),
    "sqrt_square_plus_one": ((WIDTH,), lambda h: ops.sqrt(ops.square(h) + 1.0)),
    "reshape_transpose": (
        (8, 32),
        lambda h: ops.transpose(ops.reshape(h, (-1, 16, 16)), (0, 2, 1)),
    ),
    "hard_swish": ((WIDTH,), lambda h: h * ops.relu6(h + 3.0) / 6.0),
    # x and its own mean: Cov(x_i, mean) = Var(x_i) / n, both ways
    "minus_own_mean": ((4, 64), lambda h: h - ops.mean(h, axis=-1, keepdims=True)),
    # a function of a function of h: the derivatives of relu and sin see the same h
    "chained_functions": ((WIDTH,), lambda h: ops.relu(ops.sin(2.0 * h) + 0.5)),
    "split_concatenate_pad": (
        (8, 16),
        lambda h: ops.pad(
            ops.concatenate(ops.split(h, 2, axis=-1)[::-1], axis=-1), ((0, 0), (1, 0), (0, 0))
        ),
    ),
    "hard_sigmoid_gate": ((2 * WIDTH,), _gate),
    "max_over_axis": ((8, 16), lambda h: ops.max(h, axis=1)),
    "matmul_constant": ((WIDTH,), lambda h: ops.matmul(h, CONSTANT)),
    "einsum_scores": ((6, 32), _scores),
}


def _case_model(name: str) -> keras.Model:
    shape, body = CASES[name]
    keras.utils.set_random_seed(7)
    inputs = keras.Input(shape)
    h = P._before(shape)(inputs)  # its gradient: the ops' backward
    return keras.Model(inputs, L.Identity(name="after")(body(h)))  # the ops' output


@pytest.mark.parametrize("name", list(CASES))
def test_each_op_matches_a_sampled_measurement(name):
    model = _case_model(name)
    report = keras_initlab.propagate(model)
    assert [r.status for r in report] == ["predicted"] * len(report), str(report)
    P._check(report, P._chunked(model), 0.0)


# ------------------------------------------------------------------------ a hard-swish MLP
DEPTH = 8


def _mlp(activation: Any) -> keras.Model:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((WIDTH,))
    h = inputs
    for i in range(DEPTH):
        init = keras.initializers.HeNormal(seed=i)  # the same weights in every build
        h = activation(L.Dense(WIDTH, kernel_initializer=init, name=f"d{i}")(h))
    return keras.Model(inputs, L.Identity(name="after")(h))


# TensorFlow only for now: `propagate` evaluates a Keras activation layer's function on the
# backend, and JAX without x64 computes it in float32, which moves the layer's E[f'^2] by
# about 5e-3 relative from the keras.ops path's float64 (seen on JAX: 0.01421 vs 0.01414).
@pytest.mark.tensorflow
def test_a_hard_swish_mlp_written_with_ops():
    model = _mlp(lambda h: h * ops.relu6(h + 3.0) / 6.0)
    report = keras_initlab.propagate(model)
    assert [r.status for r in report] == ["predicted"] * len(report), str(report)
    # The same weights with the activation layer: one Simpson rule (801 nodes over 12
    # standard deviations, the kinks' error O(h^2), h = 0.03) against another, and the
    # gradient through the two paths of h * relu6(h + 3) matched to the layer's E[f'^2].
    layers = _mlp(lambda h: L.Activation("hard_swish")(h))
    by_layer = keras_initlab.propagate(layers).by_layer()
    dense = [f"d{i}" for i in range(DEPTH)] + ["after"]
    for row in (r for r in report if r.layer in dense):
        for key in ("activation_var", "gradient_var"):
            expected = getattr(by_layer[row.layer], key)
            assert getattr(row, key) == pytest.approx(expected, rel=1e-3), (row.layer, key)
    # Measured: propagate's stated finite-width departure, about sqrt(2 / fan_in) relative
    # per layer, compounding over the layers a row's prediction passes through (at most
    # DEPTH, forward then back), plus the measurement's t * SE.
    measured = P._chunked(model)
    departure = DEPTH * math.log1p(math.sqrt(2.0 / WIDTH))
    for row in (r for r in report if r.layer in dense):
        for key in ("activation_var", "gradient_var"):
            value, se = measured[row.layer][key]
            error = abs(math.log(getattr(row, key) / value))
            assert error <= departure + P.T * se / value, (row.layer, key, error)
