"""Bad arguments: every one raises at construction (or call) naming argument, value, allowed."""

from __future__ import annotations

import keras
import pytest

import keras_initlab as ki

NAN = float("nan")

BAD_CONSTRUCTION = [
    (lambda: ki.VarianceScaling(-1.0), ValueError, r"`scale` must be a positive.*scale=-1.0"),
    (lambda: ki.VarianceScaling(0), ValueError, r"`scale` must be a positive.*scale=0"),
    (lambda: ki.VarianceScaling(NAN), ValueError, r"`scale` must be a positive.*scale=nan"),
    (lambda: ki.VarianceScaling("2"), TypeError, r"`scale` must be a positive.*scale='2'"),
    (
        lambda: ki.VarianceScaling(mode="fan_inn"),
        ValueError,
        r"`mode` must be one of \['fan_avg', 'fan_geo_avg', 'fan_in', 'fan_out'\].*"
        r"Did you mean 'fan_in'",
    ),
    (
        lambda: ki.VarianceScaling(distribution="untruncated_normal"),
        ValueError,
        r"`distribution` must be one of.*Did you mean 'truncated_normal'",
    ),
    (lambda: ki.VarianceScaling(gain=-2.0), ValueError, r"`gain` must be a positive.*gain=-2.0"),
    (lambda: ki.VarianceScaling(gain=NAN), ValueError, r"`gain` must be a positive.*gain=nan"),
    (
        lambda: ki.VarianceScaling(gain="rellu"),
        ValueError,
        r"`activation` must be one of.*Did you mean 'relu'",
    ),
    (
        lambda: ki.HeNormal(layout="depthwse"),
        ValueError,
        r"`layout` must be one of.*Did you mean 'depthwise'",
    ),
    (
        lambda: ki.HeNormal(layout="conv", layout_args={"gates": 4}),
        ValueError,
        r"`layout_args` for layout 'conv' accepts the keys \['groups'\]",
    ),
    (lambda: ki.HeNormal(layout_args=[1]), TypeError, r"`layout_args` must be a dict"),
    (lambda: ki.HeNormal(seed="1"), TypeError, r"`seed` must be an int.*seed='1'"),
    (lambda: ki.HeNormal(seed=1.5), TypeError, r"`seed` must be an int.*seed=1.5"),
    (lambda: ki.Orthogonal(gain=0.0), ValueError, r"`gain` must be a positive.*gain=0.0"),
    (
        lambda: ki.Orthogonal(layout="depthwise"),
        ValueError,
        r"`layout` must be one of \['auto', 'recurrent'\]",
    ),
    (
        lambda: ki.Orthogonal(layout_args={"gates": 4}),
        ValueError,
        r"`layout_args` must be empty for layout 'auto'",
    ),
    (lambda: ki.DeltaOrthogonal(gain=-1), ValueError, r"`gain` must be a positive.*gain=-1"),
    (lambda: ki.ScaledIdentity(-1.5), ValueError, r"`scale` must be a positive.*scale=-1.5"),
    (lambda: ki.ScaledIdentity(NAN), ValueError, r"`scale` must be a positive.*scale=nan"),
    (lambda: ki.Constant(NAN), ValueError, r"`value` must be a finite number.*value=nan"),
    (lambda: ki.RandomNormal(stddev=0.0), ValueError, r"`stddev` must be a positive"),
    (lambda: ki.RandomNormal(mean=float("inf")), ValueError, r"`mean` must be a finite"),
    (lambda: ki.RandomUniform(minval=NAN), ValueError, r"Argument `minval` must be a finite"),
    (lambda: ki.RandomUniform(minval="0"), TypeError, r"Argument `minval` must be a finite"),
    (
        lambda: ki.RandomUniform(maxval=float("inf")),
        ValueError,
        r"Argument `maxval` must be a finite.*maxval=inf",
    ),
    (
        lambda: ki.RandomUniform(0.1, 0.1),
        ValueError,
        r"`maxval` must be greater than `minval`.*minval=0.1, maxval=0.1",
    ),
]


@pytest.mark.parametrize(("make", "error", "message"), BAD_CONSTRUCTION)
def test_bad_constructor_arguments(make, error, message):
    with pytest.raises(error, match=message) as caught:
        make()
    assert str(caught.value).startswith("Argument `")  # one error shape everywhere


BAD_CALLS = [
    (ki.Orthogonal(seed=0), (5,), ValueError, r"Orthogonal needs a kernel of rank >= 2"),
    (ki.DeltaOrthogonal(seed=0), (3, 3), ValueError, r"DeltaOrthogonal needs a conv kernel"),
    (ki.ScaledIdentity(), (4,), ValueError, r"ScaledIdentity needs a kernel of rank >= 2"),
    (
        ki.HeNormal(layout="depthwise"),
        (4, 4),
        ValueError,
        r"Layout 'depthwise' needs a kernel of rank >= 3.*shape=\(4, 4\)",
    ),
    (
        ki.Orthogonal(layout="recurrent", layout_args={"gates": 4}),
        (4, 6),
        ValueError,
        r"`gates` must divide",
    ),
    (ki.HeNormal(seed=0), "abc", TypeError, r"`shape` must be a sequence of ints"),
    (ki.HeNormal(seed=0), (2, -1), ValueError, r"`shape` must have non-negative dims"),
]


@pytest.mark.parametrize(
    "call",
    [
        ki.get_scheme,
        lambda name: ki.audit(keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)]), name),
    ],
    ids=["get_scheme", "audit"],
)
@pytest.mark.parametrize("name", ["auto", "lsuv", "he_nromal"])
def test_unknown_scheme_lists_only_what_is_taken(call, name):
    """`get_scheme` and `audit` take the initializer schemes: not AutoInit's "auto", nor
    "lsuv" (`initialize` takes those, and lists them: tests/test_initialize.py)."""
    with pytest.raises(
        ValueError, match=rf"Argument `scheme` must be one of.*scheme='{name}'"
    ) as caught:
        call(name)
    allowed = str(caught.value).split("must be one of", 1)[1].split("Received:", 1)[0]
    assert "'he_normal'" in allowed
    assert "'auto'" not in allowed
    assert "'lsuv'" not in allowed


@pytest.mark.parametrize(("init", "shape", "error", "message"), BAD_CALLS)
def test_bad_shapes(init, shape, error, message):
    with pytest.raises(error, match=message):
        init(shape)


def test_a_bad_initializer_never_reaches_a_layer():
    with pytest.raises(ValueError, match="scale"):
        keras.layers.Dense(3, kernel_initializer=ki.VarianceScaling(-1.0))
