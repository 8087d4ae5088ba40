"""The distribution families initializers draw from, standardized to mean 0, variance 1.

Everything here is derived independently of ``keras_initlab.initializers`` (from SciPy), so
the assertions do not trust the code they test. For each family: the kurtosis
``k = E x^4 / (E x^2)^2``, the support edge ``a`` (every ``|x| <= a``; ``inf`` if unbounded),
the CDF of ``x`` and the quantile function of ``|x|``.

====================  =====================  ==============================================
family                kurtosis k             edge a (in standard deviations)
====================  =====================  ==============================================
``normal``            3                      unbounded
``truncated_normal``  2.3655 (at +-2 s)      2 / 0.8796 = 2.2737
``uniform``           9/5                    sqrt(3) = 1.7321
====================  =====================  ==============================================

The truncated normal is N(0, s^2) cut at ``+-TRUNCATION s``; ``TRUNCATED_STD`` is the standard
deviation of N(0, 1) cut at +-2, so ``s = sd / TRUNCATED_STD``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from keras_initlab._validation import check_choice

FAMILIES = ("normal", "truncated_normal", "uniform")
BOUNDED_FAMILIES = ("truncated_normal", "uniform")
TRUNCATION = 2.0  # the truncated normal is cut at +-2 of its untruncated standard deviations
_TRUNCATED = stats.truncnorm(-TRUNCATION, TRUNCATION)
TRUNCATED_STD = float(_TRUNCATED.std())  # 0.87962566103423978: std of N(0, 1) cut at +-2
_TRUNCATED_MASS = float(2.0 * special.ndtr(TRUNCATION) - 1.0)  # P(|z| < 2) for z ~ N(0, 1)

KURTOSIS = {
    "normal": 3.0,
    "truncated_normal": float(_TRUNCATED.stats(moments="k")) + 3.0,  # 2.3655
    "uniform": 9.0 / 5.0,
}
EDGE = {
    "normal": math.inf,
    "truncated_normal": TRUNCATION / TRUNCATED_STD,
    "uniform": math.sqrt(3.0),
}


def check_family(family: str) -> str:
    """``family`` if it is one of ``FAMILIES``; else a ValueError naming close matches."""
    return check_choice("family", family, FAMILIES)


def support_limit(variance: float, family: str) -> float:
    """The half-width of the support of a zero-mean ``family`` draw with ``variance``.

    ``sqrt(3 var)`` for the uniform, ``2 sqrt(var) / 0.8796`` for the truncated normal.

    Example:
    >>> round(support_limit(3.0, "uniform"), 12)
    3.0
    """
    return EDGE[check_family(family)] * math.sqrt(variance)


def standard_cdf(x: np.ndarray, family: str) -> np.ndarray:
    """The CDF of the standardized ``family`` (mean 0, variance 1) at ``x``."""
    if family == "normal":
        return special.ndtr(x)
    if family == "uniform":
        edge = EDGE["uniform"]
        return np.clip((x + edge) / (2.0 * edge), 0.0, 1.0)
    z = np.clip(x * TRUNCATED_STD, -TRUNCATION, TRUNCATION)  # back to N(0, 1) units
    return (special.ndtr(z) - special.ndtr(-TRUNCATION)) / _TRUNCATED_MASS


def abs_quantile(p: float, family: str) -> float:
    """The ``p``-quantile of ``|x|`` for the standardized bounded ``family``."""
    if family == "uniform":
        return p * EDGE["uniform"]
    return float(special.ndtri((1.0 + p * _TRUNCATED_MASS) / 2.0)) / TRUNCATED_STD
