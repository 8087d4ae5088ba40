"""Gains: PyTorch's values where it defines one, derived values against a numerical integral."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from scipy import integrate, special

from keras_initlab import gain


@pytest.mark.parametrize(
    ("name", "param", "value"),
    [
        ("linear", None, 1.0),
        ("conv2d", None, 1.0),
        ("conv_transpose3d", None, 1.0),
        ("sigmoid", None, 1.0),
        ("tanh", None, 5 / 3),
        ("relu", None, math.sqrt(2)),
        ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
        ("leaky_relu", 0.2, math.sqrt(2 / 1.04)),
        ("selu", None, 0.75),
    ],
)
def test_pytorch_compatible_values(name, param, value):
    assert gain(name, param) == pytest.approx(value, rel=1e-15)


def _reference(f):
    """1 / sqrt(E[f(z)^2]), z ~ N(0, 1), by adaptive quadrature (scipy), split at 0."""
    density = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    moment = sum(
        integrate.quad(lambda z: f(z) ** 2 * density(z), a, b, epsabs=1e-13)[0]
        for a, b in ((-np.inf, 0), (0, np.inf))
    )
    return 1 / math.sqrt(moment)


def _softplus(z):
    return math.log1p(math.exp(-abs(z))) + max(z, 0.0)


DERIVED = {
    "gelu": lambda z: z * special.ndtr(z),
    "silu": lambda z: z * special.expit(z),
    "swish": lambda z: z * special.expit(z),
    "softplus": _softplus,
    "mish": lambda z: z * math.tanh(_softplus(z)),
    "elu": lambda z: z if z > 0 else math.expm1(z),
}


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_derived_gains_match_a_numerical_integral(name):
    assert gain(name) == pytest.approx(_reference(DERIVED[name]), rel=1e-7)


def test_elu_alpha_and_second_moment_rule_agree_with_relu():
    assert gain("elu", 0.5) == pytest.approx(
        _reference(lambda z: z if z > 0 else 0.5 * math.expm1(z)), rel=1e-7
    )
    # The derived rule reproduces the closed forms where they exist.
    assert _reference(lambda z: max(z, 0.0)) == pytest.approx(gain("relu"), rel=1e-9)


def test_keras_activation_functions_are_accepted():
    assert gain(keras.activations.relu) == gain("relu")
    assert gain("ReLU") == gain("relu")


def test_unknown_names_suggest_close_matches():
    with pytest.raises(ValueError, match=r"Received: activation='rleu'.*Did you mean 'relu'"):
        gain("rleu")
    with pytest.raises(TypeError, match=r"Argument `activation` must be"):
        gain(3)
    with pytest.raises(ValueError, match=r"Argument `param` must be a finite number"):
        gain("leaky_relu", float("nan"))
