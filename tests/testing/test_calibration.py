"""Calibration: over many draws of a correct NumPy sampler, each assertion fails at rate alpha.

Each assertion runs ``DRAWS`` times at the test-sized ``TEST_ALPHA`` on a correct sampler.
Exact checks (chi-square variance, normal mean, support edge) must fail ``Binomial(DRAWS,
TEST_ALPHA)`` times: the count must lie in that distribution's two-sided interval at the
suite budget's alpha. Conservative checks (Bernstein, DKWM, Haar) may fail less often, never
more: the count must lie below the upper quantile.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from keras_initlab import testing as kt

TEST_ALPHA = 0.05  # large enough that DRAWS draws measure the false-alarm rate
DRAWS = 2_000
N = 200  # draws per call: small n, where an uncalibrated z bound would be off
SEED = 20260101


def _failures(check, sample) -> int:
    failed = 0
    for _ in range(DRAWS):
        try:
            check(sample())
        except AssertionError:
            failed += 1
    return failed


def _truncated_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    """N(0, 1) cut at +-2 by rejection, rescaled to unit variance."""
    out = np.empty(0)
    while out.size < n:
        z = rng.standard_normal(2 * n)
        out = np.concatenate([out, z[np.abs(z) < kt.TRUNCATION]])
    return out[:n] / kt.TRUNCATED_STD


def _sampler(family: str, rng: np.random.Generator):
    if family == "normal":
        return lambda: rng.standard_normal(N)
    if family == "uniform":
        return lambda: rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), N)
    return lambda: _truncated_normal(rng, N)


def _assert_exact_rate(failed: int) -> None:
    alpha = kt.budget().alpha
    lo = stats.binom.ppf(alpha / 2, DRAWS, TEST_ALPHA)
    hi = stats.binom.isf(alpha / 2, DRAWS, TEST_ALPHA)
    assert lo <= failed <= hi, (failed, lo, hi)


def _assert_at_most_rate(failed: int) -> None:
    hi = stats.binom.isf(kt.budget().alpha, DRAWS, TEST_ALPHA)
    assert failed <= hi, (failed, hi)


def test_normal_variance_is_exact():
    rng = np.random.default_rng(SEED)
    check = lambda w: kt.assert_variance(w, 1.0, alpha=TEST_ALPHA)  # noqa: E731
    _assert_exact_rate(_failures(check, _sampler("normal", rng)))


@pytest.mark.parametrize("family", ["truncated_normal", "uniform"])
def test_bounded_variance_is_conservative(family):
    rng = np.random.default_rng(SEED)
    check = lambda w: kt.assert_variance(w, 1.0, family=family, alpha=TEST_ALPHA)  # noqa: E731
    _assert_at_most_rate(_failures(check, _sampler(family, rng)))


def test_normal_mean_is_exact():
    rng = np.random.default_rng(SEED)
    check = lambda w: kt.assert_mean(w, 0.0, variance=1.0, alpha=TEST_ALPHA)  # noqa: E731
    _assert_exact_rate(_failures(check, _sampler("normal", rng)))


@pytest.mark.parametrize("family", ["truncated_normal", "uniform"])
def test_bounded_mean_is_conservative(family):
    rng = np.random.default_rng(SEED)

    def check(w):
        kt.assert_mean(w, 0.0, variance=1.0, family=family, alpha=TEST_ALPHA)

    _assert_at_most_rate(_failures(check, _sampler(family, rng)))


@pytest.mark.parametrize("family", ["truncated_normal", "uniform"])
def test_support_edge_is_exact(family):
    """P(max |w| < F^-1(alpha^(1/n))) = alpha exactly for float64 draws."""
    rng = np.random.default_rng(SEED)

    def check(w):
        kt.assert_support(w, variance=1.0, family=family, alpha=TEST_ALPHA)

    _assert_exact_rate(_failures(check, _sampler(family, rng)))


@pytest.mark.parametrize("family", ["normal", "truncated_normal", "uniform"])
def test_distribution_is_conservative(family):
    rng = np.random.default_rng(SEED)

    def check(w):
        kt.assert_distribution(w, family=family, variance=1.0, alpha=TEST_ALPHA)

    _assert_at_most_rate(_failures(check, _sampler(family, rng)))


def _haar(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((m, d, d)))
    return q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]


def test_haar_is_conservative():
    rng = np.random.default_rng(SEED)
    stacks = 400  # each call is two checks (trace and determinant)

    failed = 0
    for _ in range(stacks):
        try:
            kt.assert_orthogonal(_haar(rng, 50, 3), haar=True, alpha=TEST_ALPHA)
        except AssertionError:
            failed += 1
    # the union of two checks at alpha each fails with probability <= 2 alpha
    assert failed <= stats.binom.isf(kt.budget().alpha, stacks, 2 * TEST_ALPHA)
