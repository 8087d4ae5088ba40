"""Power: a sampler 5% off fails, at the sample size ``required_sample_size`` gives.

At ``n = required_sample_size(0.05)`` a variance 5% too large or too small must fail with
probability at least 0.999. For the normal family the power is computed exactly from the
chi-square distribution; for bounded families it is measured over ``DRAWS`` NumPy draws,
where at most the budget-alpha quantile of ``Binomial(DRAWS, 0.001)`` may pass.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from keras_initlab import testing as kt

ERROR = 0.05
POWER = 0.999
DRAWS = 20
SEED = 7
SUPPORT_N = 4_096  # the support edge catches a 5% scale error at 4,096 draws


def _truncated_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    z = rng.standard_normal(2 * n)
    return z[np.abs(z) < kt.TRUNCATION][:n] / kt.TRUNCATED_STD


def _sample(family: str, rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    if family == "normal":
        return scale * rng.standard_normal(n)
    if family == "uniform":
        return scale * rng.uniform(-math.sqrt(3.0), math.sqrt(3.0), n)
    return scale * _truncated_normal(rng, n)


@pytest.mark.parametrize("family", kt.FAMILIES)
def test_detectable_error_at_required_n(family):
    n = kt.required_sample_size(ERROR, family=family, power=POWER)
    assert kt.detectable_variance_error(n, family=family, power=POWER) <= ERROR
    assert kt.detectable_variance_error(n - 1, family=family, power=POWER) > ERROR


def test_formula_of_the_design():
    """With a z-interval the detectable error solves n = (k-1)(z* + z_p (1+d))^2 / d^2."""
    n = kt.required_sample_size(ERROR)
    z_star = kt.budget().z
    z_power = stats.norm.isf(1 - POWER)
    formula = 2.0 * (z_star + z_power * (1 + ERROR)) ** 2 / ERROR**2
    assert abs(n - formula) / formula < 0.02  # chi-square vs normal interval: ~1%


@pytest.mark.parametrize("direction", [1.0 + ERROR, 1.0 - ERROR])
def test_normal_power_is_exact(direction):
    n = kt.required_sample_size(ERROR)
    lo, hi = kt.variance_interval(n, "normal", kt.budget().alpha)
    # n r / direction ~ chi2_n when the true variance is `direction` times the target
    accept = stats.chi2.cdf(hi * n / direction, n) - stats.chi2.cdf(lo * n / direction, n)
    assert accept <= 1 - POWER


@pytest.mark.parametrize("family", ["truncated_normal", "uniform"])
@pytest.mark.parametrize("direction", [1.0 + ERROR, 1.0 - ERROR])
def test_bounded_sampler_off_by_five_percent_fails(family, direction):
    rng = np.random.default_rng(SEED)
    n = kt.required_sample_size(ERROR, family=family)
    passed = 0
    for _ in range(DRAWS):
        try:
            kt.assert_variance(_sample(family, rng, n, math.sqrt(direction)), 1.0, family=family)
            passed += 1
        except AssertionError:
            pass
    assert passed <= stats.binom.isf(kt.budget().alpha, DRAWS, 1 - POWER)


@pytest.mark.parametrize("family", ["truncated_normal", "uniform"])
@pytest.mark.parametrize("direction", [1.0 + ERROR, 1.0 - ERROR])
def test_support_catches_a_five_percent_scale_error(family, direction):
    rng = np.random.default_rng(SEED)
    w = _sample(family, rng, SUPPORT_N, direction)
    with pytest.raises(AssertionError, match="assert_support failed"):
        kt.assert_support(w, variance=1.0, family=family)


def test_distribution_tells_normal_from_truncated():
    """A truncated normal where a normal is claimed (and vice versa) fails the KS check."""
    rng = np.random.default_rng(SEED)
    n = kt.required_sample_size(ERROR)
    with pytest.raises(AssertionError, match="KS distance"):
        kt.assert_distribution(_truncated_normal(rng, n), family="normal", variance=1.0)
    with pytest.raises(AssertionError, match="KS distance"):
        kt.assert_distribution(rng.standard_normal(n), family="truncated_normal", variance=1.0)


def test_missing_sign_fix_fails_the_haar_check():
    rng = np.random.default_rng(SEED)
    for size in (2, 3, 4):
        q, _ = np.linalg.qr(rng.standard_normal((2_000, size, size)))
        with pytest.raises(AssertionError, match="Haar"):
            kt.assert_orthogonal(q, haar=True)
