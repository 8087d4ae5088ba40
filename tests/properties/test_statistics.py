"""Every random scheme draws the variance, mean, support and family it claims.

For each random scheme and random kernels of every layout (keras_initlab.testing.kernels),
on every logical device: the target computed by the initializer equals the documented
formula on the kernel's true fans; the kernel itself has the target variance (and support);
a stacked draw with the same fans, large enough to catch a 5% variance error with
probability 0.999, has the target variance, mean, support edges and distribution family.
Every check runs at the budget's alpha (keras_initlab.testing.budget()).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keras_initlab import testing as kt

RANDOM_SCHEMES = [
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "LecunNormal",
    "LecunUniform",
    "RandomNormal",
    "RandomUniform",
    "SmallInit",
    "VarianceScaling",
]
BOUNDED = ("truncated_normal", "uniform")
EXACT_RTOL = 1e-12  # the target variance is a closed form: equal up to float64 rounding


def test_every_random_scheme_is_covered():
    families = {"normal", "truncated_normal", "uniform"}
    random_schemes = {
        name
        for name in kt.SCHEME_NAMES
        if name not in ("Constant", "Zeros", "ScaledIdentity", "Orthogonal", "DeltaOrthogonal")
    }
    assert random_schemes == set(RANDOM_SCHEMES)
    assert families == set(kt.FAMILIES)


def _check_iid(values, case: kt.InitializerCase) -> None:
    kt.assert_variance(values, case.variance, family=case.family, mean=case.mean)
    if case.family in BOUNDED:
        kt.assert_support(values, variance=case.variance, family=case.family, mean=case.mean)


@pytest.mark.parametrize("scheme", RANDOM_SCHEMES)
@given(data=st.data())
def test_random_scheme_statistics(scheme, data):
    case = data.draw(kt.initializers(schemes=[scheme]), label="case")
    assert math.isclose(case.initializer.variance(case.shape), case.variance, rel_tol=EXACT_RTOL)
    n = kt.power_sample_size(case.family)
    assert kt.detectable_variance_error(n, family=case.family) <= 0.05
    for device in kt.each_device():
        kernel = case.initializer(case.shape)
        assert kt.on_device(kernel, device)
        _check_iid(kt.to_numpy(kernel), case)
        values = kt.stacked_draws(case, n)
        assert kt.on_device(values, device)
        values = kt.to_numpy(values)
        _check_iid(values, case)
        kt.assert_mean(values, case.mean, variance=case.variance, family=case.family)
        kt.assert_distribution(values, family=case.family, variance=case.variance, mean=case.mean)
