"""Calibrated statistical assertions: every bound derived from n, the family and alpha.

Each assertion makes one statistical check that fails a correct sampler with probability at
most ``alpha`` (by default the suite budget's, ``keras_initlab.testing.budget().alpha``), and
raises ``AssertionError`` stating the observed value, the expected value, the bound, ``n`` and
``alpha``. Statistics are computed in NumPy float64.

* ``assert_variance``: ``r = mean((w - mean)^2) / variance`` has ``E r = 1`` and
  ``Var r = (k - 1) / n`` (kurtosis ``k``). Normal draws use the exact interval
  ``n r ~ chi2_n``; bounded families use Bernstein's inequality, valid for every ``n``.
* ``assert_mean``: ``|mean(w) - mean| <= z sqrt(var / n)`` (normal, exact) or Bernstein.
* ``assert_support``: every ``|w - mean| <= limit``, and ``max |w - mean| >= F^-1(alpha^(1/n))``
  (``F`` the CDF of ``|w - mean|``): a scale error of a few percent fails at a few thousand
  draws, both ways.
* ``assert_distribution``: Kolmogorov-Smirnov distance to the family's CDF within the DKWM
  envelope ``sqrt(ln(2 / alpha) / (2 n))``; it tells the families apart (not the scale).
* ``assert_orthogonal``: ``W^T W = gain^2 I`` (or ``W W^T``) within rounding scaled by the
  dimension; with ``haar=True`` also a mean trace and determinant of 0 over a stack of square
  draws, which a QR factor without its sign fix does not have.
* ``detectable_variance_error``: the smallest relative variance error ``assert_variance``
  catches with a given power at ``n`` draws, so that a test can assert it has power.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import keras
import numpy as np
from scipy import stats

from keras_initlab._validation import check_positive, check_positive_int
from keras_initlab.testing._budget import count_check, resolve_alpha
from keras_initlab.testing._families import (
    BOUNDED_FAMILIES,
    EDGE,
    KURTOSIS,
    abs_quantile,
    check_family,
    standard_cdf,
)

DEFAULT_POWER = 0.999  # the power the property suite demands against a 5% variance error
EDGE_ULPS = 4.0  # rounding allowance at a support edge, in units of the values' dtype eps
ORTHOGONAL_ULPS = 8.0  # allowance of W^T W - gain^2 I per unit of dimension, in eps
_MIN_PRECISION_BITS = 23  # KS needs float32 or better: coarser rounding shifts the CDF


def _as_array(values: Any) -> tuple[np.ndarray, float]:
    """``values`` as a float64 NumPy array, and the machine epsilon of their dtype."""
    array = np.asarray(keras.ops.convert_to_numpy(values))
    try:
        eps = float(np.finfo(array.dtype).eps)
    except ValueError:  # bfloat16 and other ml_dtypes types
        import ml_dtypes

        eps = float(ml_dtypes.finfo(array.dtype).eps)
    return array.astype(np.float64).ravel(), eps


def _check_finite(name: str, x: np.ndarray) -> None:
    if x.size == 0:
        raise ValueError(
            f"Argument `values` must not be empty. Received: values of size 0 in {name}"
        )
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise AssertionError(f"{name} failed: {bad} of n={x.size} values are not finite.")


def _start_check(name: str, x: np.ndarray, alpha: float | None) -> float:
    """Validate the draws, count the check against the budget if it uses the budget's
    alpha (a check given its own alpha does not count against K), and return its alpha."""
    budgeted = alpha is None
    alpha = resolve_alpha(alpha)
    _check_finite(name, x)
    count_check(budgeted)
    return alpha


def _bernstein(n: int, sigma2: float, bound: float, alpha: float) -> float:
    """Half-width ``t`` with ``P(|mean - mu| >= t) <= alpha`` for n i.i.d. draws.

    Bernstein: ``P(|mean - mu| >= t) <= 2 exp(-n t^2 / (2 sigma2 + 2 bound t / 3))`` when
    every ``|x - mu| <= bound``; solved for ``t`` at ``alpha``.
    """
    log_term = math.log(2.0 / alpha)
    linear = bound * log_term / 3.0
    return (linear + math.sqrt(linear**2 + 2.0 * n * sigma2 * log_term)) / n


@functools.lru_cache(maxsize=1024)
def variance_interval(n: int, family: str, alpha: float) -> tuple[float, float]:
    """The acceptance interval of ``r = mean(x^2) / variance`` at ``n`` draws.

    Example:
    >>> lo, hi = variance_interval(74_000, "normal", 2e-10)
    >>> round(lo, 4), round(hi, 4)
    (0.9673, 1.0334)
    """
    if family == "normal":
        return (float(stats.chi2.ppf(alpha / 2, n)) / n, float(stats.chi2.isf(alpha / 2, n)) / n)
    edge2 = EDGE[family] ** 2  # x^2 lies in [0, edge^2] and has mean 1
    t = _bernstein(n, KURTOSIS[family] - 1.0, max(1.0, edge2 - 1.0), alpha)
    return max(0.0, 1.0 - t), 1.0 + t


def assert_variance(
    values: Any,
    variance: float,
    *,
    family: str = "normal",
    mean: float = 0.0,
    alpha: float | None = None,
) -> None:
    """Assert that i.i.d. draws from ``family`` about a known ``mean`` have ``variance``.

    ``r = mean((w - mean)^2) / variance`` in float64 must lie in the interval that a correct
    sampler leaves with probability ``alpha``: ``[chi2_n(alpha/2), chi2_n(1 - alpha/2)] / n``
    for the normal (exact), ``1 +- t`` with Bernstein's ``t`` for bounded families (using
    ``Var r = (k - 1) / n`` and the support edge).

    Args:
        values: the draws (any shape; a tensor or an array).
        variance: the target population variance, positive.
        family: ``"normal"``, ``"truncated_normal"`` or ``"uniform"``.
        mean: the known population mean.
        alpha: false-alarm probability of this check; default ``budget().alpha``.

    Raises:
        AssertionError: ``r`` outside the interval, or non-finite values.
        ValueError: a bad argument.

    Example:
    >>> rng = np.random.default_rng(0)
    >>> assert_variance(rng.normal(0.0, 0.1, 10_000), 0.01)
    >>> assert_variance(rng.uniform(-1.0, 1.0, 10_000), 1.0 / 3.0, family="uniform")
    """
    family = check_family(family)
    variance = check_positive("variance", variance)
    x, _ = _as_array(values)
    alpha = _start_check("assert_variance", x, alpha)
    n = x.size
    ratio = float(np.mean((x - mean) ** 2)) / variance
    lo, hi = variance_interval(n, family, alpha)
    if not lo <= ratio <= hi:
        raise AssertionError(
            f"assert_variance failed: observed variance {ratio * variance:.6g}, expected "
            f"{variance:.6g} (ratio {ratio:.5f}, bound [{lo:.5f}, {hi:.5f}]) at n={n}, "
            f"alpha={alpha:.3g}, family={family!r} (kurtosis {KURTOSIS[family]:.4g})."
        )


def assert_mean(
    values: Any,
    mean: float,
    *,
    variance: float,
    family: str = "normal",
    alpha: float | None = None,
) -> None:
    """Assert that i.i.d. draws from ``family`` with a known ``variance`` have ``mean``.

    ``|mean(w) - mean| <= z* sqrt(variance / n)`` for the normal (exact, ``z*`` the two-sided
    quantile of ``alpha``), Bernstein's bound with the support edge for bounded families.

    Args:
        values: the draws.
        mean: the target population mean.
        variance: the population variance, positive.
        family: ``"normal"``, ``"truncated_normal"`` or ``"uniform"``.
        alpha: false-alarm probability of this check; default ``budget().alpha``.

    Raises:
        AssertionError: the sample mean outside the bound, or non-finite values.

    Example:
    >>> assert_mean(np.random.default_rng(0).normal(1.0, 2.0, 1_000), 1.0, variance=4.0)
    """
    family = check_family(family)
    variance = check_positive("variance", variance)
    x, _ = _as_array(values)
    alpha = _start_check("assert_mean", x, alpha)
    n = x.size
    observed = float(np.mean(x))
    if family == "normal":
        half = float(stats.norm.isf(alpha / 2)) / math.sqrt(n)
    else:
        half = _bernstein(n, 1.0, EDGE[family], alpha)
    bound = half * math.sqrt(variance)
    if not abs(observed - mean) <= bound:
        raise AssertionError(
            f"assert_mean failed: observed mean {observed:.6g}, expected {mean:.6g} "
            f"(|difference| {abs(observed - mean):.4g} > bound {bound:.4g}) at n={n}, "
            f"alpha={alpha:.3g}, family={family!r}, variance={variance:.6g}."
        )


def assert_support(
    values: Any,
    *,
    variance: float,
    family: str,
    mean: float = 0.0,
    alpha: float | None = None,
) -> None:
    """Assert both edges of a bounded family: nothing beyond the limit, and the limit reached.

    With ``limit = edge * sqrt(variance)`` (``sqrt(3 var)`` uniform, ``2 sd / 0.8796``
    truncated normal): every ``|w - mean| <= limit`` (up to the rounding of the values'
    dtype), and ``max |w - mean| >= limit * q`` where ``q = F^-1(alpha^(1/n))`` for ``F`` the CDF
    of ``|w - mean| / limit``: a correct sampler falls short with probability ``alpha``.

    Args:
        values: the draws.
        variance: the target population variance, positive.
        family: ``"truncated_normal"`` or ``"uniform"``.
        mean: the population mean (the centre of the support).
        alpha: false-alarm probability of this check; default ``budget().alpha``.

    Raises:
        AssertionError: a value beyond the limit, or the largest one short of the edge.

    Example:
    >>> w = np.random.default_rng(0).uniform(-1.0, 1.0, 4_096)
    >>> assert_support(w, variance=1.0 / 3.0, family="uniform")
    """
    family = check_family(family)
    if family not in BOUNDED_FAMILIES:
        raise ValueError(
            f"Argument `family` must be a bounded family, one of {list(BOUNDED_FAMILIES)}. "
            f"Received: family={family!r}"
        )
    variance = check_positive("variance", variance)
    x, eps = _as_array(values)
    alpha = _start_check("assert_support", x, alpha)
    n = x.size
    limit = EDGE[family] * math.sqrt(variance)
    observed = float(np.max(np.abs(x - mean)))
    slack = EDGE_ULPS * eps * (abs(mean) + limit)
    if observed > limit + slack:
        raise AssertionError(
            f"assert_support failed: observed max |w - mean| = {observed:.6g} beyond the "
            f"expected limit {limit:.6g} (bound {limit + slack:.6g}) at n={n}, "
            f"family={family!r}, variance={variance:.6g}."
        )
    edge = math.sqrt(variance) * abs_quantile(math.exp(math.log(alpha) / n), family) - slack
    if observed < edge:
        raise AssertionError(
            f"assert_support failed: observed max |w - mean| = {observed:.6g} short of the "
            f"expected limit {limit:.6g} (bound: at least {edge:.6g}) at n={n}, "
            f"alpha={alpha:.3g}, family={family!r}, variance={variance:.6g}."
        )


def ks_distance(values: Any, family: str, *, variance: float = 1.0, mean: float = 0.0) -> float:
    """The Kolmogorov-Smirnov distance of the draws to the ``family`` CDF.

    Example:
    >>> round(ks_distance([0.0], "uniform"), 3)
    0.5
    """
    x, _ = _as_array(values)
    family = check_family(family)
    z = np.sort((x - mean) / math.sqrt(variance))
    cdf = standard_cdf(z, family)
    n = z.size
    above = np.arange(1, n + 1) / n - cdf
    below = cdf - np.arange(n) / n
    return float(max(above.max(), below.max()))


def dkwm_epsilon(n: int, alpha: float) -> float:
    """The DKWM envelope: ``P(sup |F_n - F| > eps) <= alpha`` for ``eps = sqrt(ln(2/alpha)/(2n))``.

    Example:
    >>> round(dkwm_epsilon(100_000, 2e-10), 4)
    0.0107
    """
    return math.sqrt(math.log(2.0 / alpha) / (2.0 * n))


def assert_distribution(
    values: Any,
    *,
    family: str,
    variance: float,
    mean: float = 0.0,
    alpha: float | None = None,
) -> None:
    """Assert the draws come from ``family`` (KS distance within the DKWM envelope).

    ``D = sup |F_n(w) - F(w)| <= sqrt(ln(2 / alpha) / (2 n))`` where ``F`` is the CDF of the
    family with the given mean and variance (Massart's constant: valid for every ``n``). KS is
    weak against scale errors; use ``assert_variance`` / ``assert_support`` for the scale.

    Args:
        values: the draws, float32 or float64 (coarser dtypes round the CDF off).
        family: ``"normal"``, ``"truncated_normal"`` or ``"uniform"``.
        variance: the population variance, positive.
        mean: the population mean.
        alpha: false-alarm probability of this check; default ``budget().alpha``.

    Raises:
        AssertionError: ``D`` beyond the envelope.

    Example:
    >>> w = np.random.default_rng(0).normal(0.0, 1.0, 10_000)
    >>> assert_distribution(w, family="normal", variance=1.0)
    """
    family = check_family(family)
    variance = check_positive("variance", variance)
    x, eps = _as_array(values)
    if eps > 2.0**-_MIN_PRECISION_BITS:
        raise ValueError(
            "Argument `values` must be float32 or float64 for a KS test; cast coarser draws "
            f"only after testing them. Received: values with machine epsilon {eps:.3g}"
        )
    alpha = _start_check("assert_distribution", x, alpha)
    n = x.size
    distance = ks_distance(x, family, variance=variance, mean=mean)
    bound = dkwm_epsilon(n, alpha)
    if distance > bound:
        raise AssertionError(
            f"assert_distribution failed: observed KS distance {distance:.5f} to the "
            f"{family!r} CDF, expected 0 (bound {bound:.5f}) at n={n}, alpha={alpha:.3g}, "
            f"variance={variance:.6g}, mean={mean:.6g}."
        )


def assert_orthogonal(
    matrices: Any,
    *,
    gain: float = 1.0,
    haar: bool = False,
    alpha: float | None = None,
) -> None:
    """Assert ``W^T W = gain^2 I`` (tall ``W``) or ``W W^T = gain^2 I`` (wide ``W``).

    Each entry of the Gram matrix may differ from ``gain^2 I`` by ``gain^2 * 8 eps d``
    (``eps`` of the dtype, ``d`` the larger dimension): rounding in a QR grows with ``d``.
    With ``haar=True`` and a stack of ``m`` square ``d x d`` matrices (``d >= 2``), also checks
    that they are spread uniformly (Haar) over the orthogonal group: ``tr(W / gain)`` has mean
    0 and variance 1 and lies in ``[-d, d]``, ``det(W / gain) = +-1`` has mean 0, and both
    means must be within Bernstein's bound (two checks). A QR factor used without the sign
    fix of ``diag(R)`` has a biased trace and a constant determinant ``(-1)^(d-1)``.

    Args:
        matrices: one ``(rows, cols)`` matrix or a stack ``(m, rows, cols)``.
        gain: the expected scale, positive.
        haar: also check the mean trace of the stack (a statistical check).
        alpha: false-alarm probability of the Haar check; default ``budget().alpha``.

    Raises:
        AssertionError: a Gram matrix off ``gain^2 I`` or a biased trace.

    Example:
    >>> q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 4)))
    >>> assert_orthogonal(2.0 * q, gain=2.0)
    """
    gain = check_positive("gain", gain)
    w, eps = _as_array(matrices)
    shape = np.shape(keras.ops.convert_to_numpy(matrices))
    if len(shape) not in (2, 3):
        raise ValueError(
            f"Argument `matrices` must have rank 2 or 3. Received: matrices of shape {shape}"
        )
    w = w.reshape((1, *shape) if len(shape) == 2 else shape)
    _check_finite("assert_orthogonal", w.ravel())
    m, rows, cols = w.shape
    tall = w if rows >= cols else np.transpose(w, (0, 2, 1))
    gram = np.einsum("bij,bik->bjk", tall, tall)
    error = float(np.max(np.abs(gram - gain**2 * np.eye(min(rows, cols)))))
    bound = gain**2 * ORTHOGONAL_ULPS * eps * max(rows, cols)
    if error > bound:
        raise AssertionError(
            f"assert_orthogonal failed: observed max |W^T W - gain^2 I| = {error:.3g}, "
            f"expected 0 (bound {bound:.3g}) for {m} matrices of shape ({rows}, {cols}), "
            f"gain={gain}."
        )
    if not haar:
        return
    if rows != cols or rows < 2:
        raise ValueError(
            "Argument `haar=True` needs square matrices of size >= 2. "
            f"Received: matrices of shape {shape}"
        )
    budgeted = alpha is None  # only checks at the budget's alpha count against its K
    alpha = resolve_alpha(alpha)
    unit = w / gain
    # Haar: tr(W) has mean 0, variance 1 and |tr| <= d; det(W) is +-1 with mean 0.
    statistics = [
        ("trace", np.trace(unit, axis1=1, axis2=2), float(rows)),
        ("determinant", np.linalg.det(unit), 1.0),
    ]
    for label, values, bound in statistics:
        count_check(budgeted)
        observed = float(np.mean(values))
        half = _bernstein(m, 1.0, bound, alpha)
        if abs(observed) > half:
            raise AssertionError(
                f"assert_orthogonal failed: observed mean {label} {observed:.4f} of W / gain, "
                f"expected 0 for Haar-distributed matrices (bound {half:.4f}) at n={m} "
                f"matrices of size {rows}, alpha={alpha:.3g}."
            )


def detectable_variance_error(
    n: int,
    *,
    family: str = "normal",
    alpha: float | None = None,
    power: float = DEFAULT_POWER,
) -> float:
    """The smallest relative variance error ``assert_variance`` catches with ``power`` at n.

    With the acceptance interval ``[lo, hi]`` of ``r`` and ``r`` approximately normal with
    standard deviation ``(1 + d) sqrt((k - 1) / n)`` under a true variance ``(1 + d)`` times the
    target, an error ``d`` is caught with probability ``power`` when
    ``(1 + d) (1 - z_p s) >= hi`` and ``(1 - d) (1 + z_p s) <= lo`` (``s = sqrt((k-1)/n)``,
    ``z_p`` the ``power`` quantile). For ``[lo, hi] = 1 +- z* s`` this gives
    ``n >= (k - 1) (z* + z_p (1 + d))^2 / d^2`` (``required_sample_size``).
    Returns ``inf`` when no error is detectable.

    Args:
        n: the number of draws.
        family: ``"normal"``, ``"truncated_normal"`` or ``"uniform"``.
        alpha: the check's false-alarm probability; default ``budget().alpha``.
        power: the probability of catching the error, in (0, 1).

    Example:
    >>> round(detectable_variance_error(74_000, alpha=2e-10), 3)
    0.05
    """
    family = check_family(family)
    alpha = resolve_alpha(alpha)
    n = check_positive_int("n", n)
    if not 0 < power < 1:
        raise ValueError(f"Argument `power` must be in (0, 1). Received: power={power!r}")
    lo, hi = variance_interval(int(n), family, alpha)
    spread = float(stats.norm.isf(1.0 - power)) * math.sqrt((KURTOSIS[family] - 1.0) / n)
    if spread >= 1.0:
        return math.inf
    up = hi / (1.0 - spread) - 1.0
    down = 1.0 - lo / (1.0 + spread)
    return max(up, down)


def required_sample_size(
    error: float,
    *,
    family: str = "normal",
    alpha: float | None = None,
    power: float = DEFAULT_POWER,
) -> int:
    """The smallest ``n`` at which ``detectable_variance_error(n) <= error``.

    Example:
    >>> required_sample_size(0.05, alpha=2e-10)
    74873
    """
    error = check_positive("error", error)
    alpha = resolve_alpha(alpha)

    def ok(n: int) -> bool:
        return detectable_variance_error(n, family=family, alpha=alpha, power=power) <= error

    hi = 16
    while not ok(hi):
        hi *= 2
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi
