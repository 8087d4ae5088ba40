"""Deterministic schemes equal their closed form exactly, on every device and dtype."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keras_initlab import testing as kt

EXACT_RTOL = 1e-12


@pytest.mark.parametrize("scheme", ["Constant", "Zeros", "ScaledIdentity"])
@given(data=st.data(), dtype=kt.float_dtypes())
def test_deterministic_values(scheme, data, dtype):
    case = data.draw(kt.initializers(schemes=[scheme]), label="case")
    assert math.isclose(
        case.initializer.variance(case.shape), case.variance, rel_tol=EXACT_RTOL, abs_tol=1e-300
    )
    for device in kt.each_device():
        w = case.initializer(case.shape, dtype=dtype)
        assert kt.on_device(w, device)
        assert tuple(w.shape) == case.shape
        assert keras.backend.standardize_dtype(w.dtype) == dtype
        reference = keras.ops.cast(case.expected.astype(np.float32), dtype)
        np.testing.assert_array_equal(kt.to_numpy(w), kt.to_numpy(reference))
