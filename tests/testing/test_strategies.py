"""Strategies in Hypothesis' house style: valid draws, bounds respected, InvalidArgument."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from keras_initlab import compute_fans
from keras_initlab import initializers as ini
from keras_initlab import testing as kt


@given(
    kernel=kt.kernels(min_fan_in=3, max_fan_in=40, min_fan_out=2, max_fan_out=30, max_size=5_000)
)
def test_kernels_respect_the_bounds(kernel):
    assert kernel.layout in kt.KERNEL_LAYOUTS
    assert 3 <= kernel.fan_in <= 40
    assert 2 <= kernel.fan_out <= 30
    assert kernel.size <= 5_000
    assert kernel.layout != "embedding"  # its fan-in is 1, below min_fan_in
    assert compute_fans(kernel.shape, kernel.layout, **kernel.layout_args) == (
        kernel.fan_in,
        kernel.fan_out,
    )


@pytest.mark.parametrize("layout", kt.KERNEL_LAYOUTS)
def test_kernel_shapes_of_each_layout(layout):
    @given(shape=kt.kernel_shapes(layout=layout, max_fan_in=64, max_fan_out=64))
    def check(shape):
        assert all(isinstance(d, int) and d >= 1 for d in shape)
        assert len(shape) >= (0 if layout == "auto" else 2)

    check()


@given(kt.float_dtypes(sizes=(16,)))
def test_float_dtypes_sizes(dtype):
    assert dtype in ("float16", "bfloat16")


@given(kt.seeds())
def test_seeds_fit_int32(seed):
    assert 0 <= seed <= 2**31 - 1


@given(kt.fan_modes(), kt.distributions())
def test_modes_and_distributions_are_accepted(mode, distribution):
    ini.VarianceScaling(1.0, mode, distribution)


@pytest.mark.parametrize("scheme", kt.SCHEME_NAMES)
def test_initializers_draw_each_scheme(scheme):
    @given(case=kt.initializers(schemes=[scheme]))
    def check(case):
        assert type(case.initializer).__name__ == scheme
        assert case.variance >= 0
        assert math.isfinite(case.mean)

    check()


@given(case=kt.initializers(schemes=["xavier_uniform", "orthogonal"]))
def test_initializers_accept_registry_names(case):
    assert isinstance(case.initializer, ini.GlorotUniform | ini.Orthogonal)


def test_initializers_accept_classes_and_a_kernel_strategy():
    @given(case=kt.initializers(schemes=[ini.HeUniform], kernels=kt.kernels(layouts=["dense"])))
    def check(case):
        assert isinstance(case.initializer, ini.HeUniform)
        assert case.kernel.layout == "dense"

    check()


@pytest.mark.parametrize(
    "make",
    [
        lambda: kt.kernels(min_fan_in=0),
        lambda: kt.kernels(max_fan_in=1.5),
        lambda: kt.kernels(min_fan_in=5, max_fan_in=4),
        lambda: kt.kernels(min_fan_out=9, max_fan_out=2),
        lambda: kt.kernels(max_size=0),
        lambda: kt.kernels(min_fan_in=100, min_fan_out=100, max_size=50),
        lambda: kt.kernels(layouts=[]),
        lambda: kt.kernels(layouts=["dense", "dnse"]),
        lambda: kt.kernels(layouts=3),
        lambda: kt.kernels(layouts=["embedding"], min_fan_in=2),
        lambda: kt.kernel_shapes(layout=None),
        lambda: kt.kernel_shapes(layout="dens"),
        lambda: kt.float_dtypes(sizes=(8,)),
        lambda: kt.float_dtypes(sizes=()),
        lambda: kt.float_dtypes(sizes=None),
        lambda: kt.initializers(schemes=["HeNormall"]),
        lambda: kt.initializers(schemes=[]),
        lambda: kt.initializers(kernels=[(3, 3)]),
    ],
)
def test_bad_arguments_raise_invalid_argument(make):
    with pytest.raises(InvalidArgument):
        make()


def test_invalid_argument_inside_given():
    @given(st.data())
    def check(data):
        data.draw(kt.kernels(max_fan_out=0))

    with pytest.raises(InvalidArgument):
        check()


def test_identity_kernel():
    values = kt.identity_kernel((3, 2, 2), 1.5)
    assert values[1].tolist() == [[1.5, 0.0], [0.0, 1.5]]
    assert not values[0].any()
    assert not values[2].any()
