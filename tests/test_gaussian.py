"""`keras_initlab.gaussian.erf`: ``math.erf`` of every element, the tails included."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_initlab.gaussian import erf

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0), elements=FLOATS)
)
def test_erf_is_math_erf_elementwise(x: np.ndarray) -> None:
    got = erf(x)
    assert got.shape == x.shape
    assert got.dtype == np.float64
    expected = np.array([math.erf(v) for v in x.ravel().tolist()]).reshape(x.shape)
    assert np.array_equal(got, expected, equal_nan=True)


@given(st.floats(min_value=6.0, allow_infinity=True))
def test_math_erf_is_one_from_six_on(x: float) -> None:
    """What `erf` returns without calling ``math.erf`` beyond ``|x| >= 6``."""
    assert math.erf(x) == 1.0
    assert math.erf(-x) == -1.0
