"""Fans through the layouts: compute_fans and every fan-reading scheme agree with the kernel.

``keras_initlab.testing.kernels`` builds each kernel from its parts and knows its true fans
independently of ``keras_initlab.fans``; the variance of every variance-scaling scheme is
its documented formula on those fans (the statistical suite then checks the draws).
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from keras_initlab import compute_fans
from keras_initlab import initializers as ini
from keras_initlab import testing as kt

EXACT_RTOL = 1e-12


@given(kernel=kt.kernels())
def test_compute_fans_matches_the_layout(kernel):
    fan_in, fan_out = compute_fans(kernel.shape, kernel.layout, **kernel.layout_args)
    assert (fan_in, fan_out) == (kernel.fan_in, kernel.fan_out)


@given(kernel=kt.kernels(layouts=["auto"]))
def test_auto_layout_is_the_shape_rule(kernel):
    shape = kernel.shape
    if len(shape) < 2:
        expected = (shape[0], shape[0]) if shape else (1, 1)
    else:
        receptive = math.prod(shape[:-2])
        expected = (receptive * shape[-2], receptive * shape[-1])
    assert compute_fans(shape) == expected


@given(kernel=kt.kernels(), mode=kt.fan_modes(), scale=st.floats(0.1, 10.0))
def test_variance_scaling_reads_the_true_fans(kernel, mode, scale):
    init = ini.VarianceScaling(scale, mode, layout=kernel.layout, layout_args=kernel.layout_args)
    assert init.fans(kernel.shape) == (kernel.fan_in, kernel.fan_out)
    fan = {
        "fan_in": kernel.fan_in,
        "fan_out": kernel.fan_out,
        "fan_avg": (kernel.fan_in + kernel.fan_out) / 2,
        "fan_geo_avg": math.sqrt(kernel.fan_in * kernel.fan_out),
    }[mode]
    assert math.isclose(init.variance(kernel.shape), scale / fan, rel_tol=EXACT_RTOL)
