"""The assertions' messages, argument checks and exact (non-statistical) behaviour."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from keras_initlab import testing as kt

RNG_SEED = 3


@pytest.fixture
def rng():
    return np.random.default_rng(RNG_SEED)


def test_variance_message_states_observed_expected_bound_n_alpha(rng):
    w = rng.normal(0.0, 2.0, 10_000)
    with pytest.raises(AssertionError) as info:
        kt.assert_variance(w, 1.0)
    message = str(info.value)
    for part in ("observed variance", "expected 1", "bound [", "n=10000", "alpha=2e-10"):
        assert part in message


@pytest.mark.parametrize(
    ("call", "parts"),
    [
        (lambda w: kt.assert_mean(w + 1.0, 0.0, variance=1.0), ["observed mean", "bound"]),
        (lambda w: kt.assert_distribution(w, family="uniform", variance=1.0), ["KS distance"]),
        (
            lambda w: kt.assert_support(2.0 * w, variance=1.0, family="uniform"),
            ["beyond the expected limit"],
        ),
        (
            lambda w: kt.assert_support(0.5 * w, variance=1.0, family="uniform"),
            ["short of the expected limit"],
        ),
    ],
)
def test_messages(call, parts):
    w = np.random.default_rng(RNG_SEED).uniform(-math.sqrt(3.0), math.sqrt(3.0), 10_000)
    if "KS distance" in parts:
        w = np.random.default_rng(RNG_SEED).standard_normal(10_000)
    with pytest.raises(AssertionError) as info:
        call(w)
    for part in [*parts, "n=10000"]:
        assert part in str(info.value)


def test_non_finite_values_fail(rng):
    w = rng.standard_normal(100)
    w[3] = np.nan
    with pytest.raises(AssertionError, match="not finite"):
        kt.assert_variance(w, 1.0)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: kt.assert_variance([1.0], 0.0), ValueError),
        (lambda: kt.assert_variance([1.0], 1.0, family="gauss"), ValueError),
        (lambda: kt.assert_variance([1.0], 1.0, alpha=0.0), ValueError),
        (lambda: kt.assert_variance([1.0], 1.0, alpha=1.5), ValueError),
        (lambda: kt.assert_variance([], 1.0), ValueError),
        (lambda: kt.assert_mean([1.0], 0.0, variance=-1.0), ValueError),
        (lambda: kt.assert_support([1.0], variance=1.0, family="normal"), ValueError),
        (
            lambda: kt.assert_distribution(np.zeros(4, np.float16), family="normal", variance=1.0),
            ValueError,
        ),
        (lambda: kt.assert_orthogonal(np.eye(2), gain=0.0), ValueError),
        (lambda: kt.assert_orthogonal(np.ones(3)), ValueError),
        (lambda: kt.assert_orthogonal(np.eye(3)[None, :, :2], haar=True), ValueError),
        (lambda: kt.detectable_variance_error(0), ValueError),
        (lambda: kt.detectable_variance_error(100, power=1.0), ValueError),
        (lambda: kt.required_sample_size(-0.1), ValueError),
    ],
)
def test_bad_arguments(call, error):
    with pytest.raises(error, match="Argument"):
        call()


def test_family_suggests_close_match():
    with pytest.raises(ValueError, match="Did you mean 'uniform'"):
        kt.assert_variance([1.0], 1.0, family="unifrom")


def test_support_allows_rounding_of_the_dtype():
    limit = math.sqrt(3.0)
    w = np.array([limit, -limit], dtype=np.float32)  # rounded: may exceed limit by one ulp
    kt.assert_support(np.repeat(w, 8), variance=1.0, family="uniform")
    bf = keras.ops.cast(np.repeat(w, 8), "bfloat16")
    kt.assert_support(kt.to_numpy(bf), variance=1.0, family="uniform")


def test_orthogonal_accepts_tall_wide_and_stacks(rng):
    q, _ = np.linalg.qr(rng.standard_normal((7, 3)))
    kt.assert_orthogonal(q.astype(np.float32))
    kt.assert_orthogonal(3.0 * q.T, gain=3.0)
    kt.assert_orthogonal(np.stack([q, -q]))
    with pytest.raises(AssertionError, match="W\\^T W"):
        kt.assert_orthogonal(1.01 * q)
    with pytest.raises(AssertionError, match="W\\^T W"):
        kt.assert_orthogonal(q, gain=1.01)


def test_ks_distance_is_the_sup_distance():
    assert kt.ks_distance([0.0], "uniform") == pytest.approx(0.5)
    assert kt.ks_distance(np.array([-10.0, 10.0]), "normal") == pytest.approx(0.5)


def test_dkwm_epsilon_formula():
    assert kt.dkwm_epsilon(1000, 0.05) == pytest.approx(math.sqrt(math.log(40) / 2000))


def test_variance_interval_normal_is_chi_square():
    lo, hi = kt.variance_interval(50, "normal", 0.01)
    from scipy import stats

    assert lo == pytest.approx(stats.chi2.ppf(0.005, 50) / 50)
    assert hi == pytest.approx(stats.chi2.isf(0.005, 50) / 50)


def test_only_budgeted_checks_count(rng):
    before = kt.checks_made()
    kt.assert_variance(rng.standard_normal(100), 1.0, alpha=0.01)
    assert kt.checks_made() == before
    kt.assert_variance(rng.standard_normal(100), 1.0)
    assert kt.checks_made() == before + 1
