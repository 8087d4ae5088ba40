"""The suite-wide false-alarm budget: the one place that states K and alpha.

A test run makes at most ``K`` statistical checks and may raise a false alarm (fail on a
correct initializer) with probability at most ``FALSE_ALARM_RATE`` in total. By the union
bound each check then gets

    alpha = FALSE_ALARM_RATE / K,

so with the default ``K = 5,000`` every check runs at ``alpha = 2e-10`` (two-sided normal
quantile ``z* = 6.36``). The ``thorough`` Hypothesis profile makes many more checks and
raises ``K`` to match (see ``CHECKS_PER_RUN``). Every assertion of ``keras_initlab.testing``
takes its default ``alpha`` from ``budget()``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from scipy import stats

FALSE_ALARM_RATE = 1e-6  # probability that a whole run fails on correct code
DEFAULT_CHECKS = 5_000  # K: statistical checks one run makes at most (ci, dev, mutation)
# K per Hypothesis profile: thorough runs about 20x the examples of ci, so K grows 40x.
CHECKS_PER_RUN = {
    "ci": DEFAULT_CHECKS,
    "dev": DEFAULT_CHECKS,
    "mutation": DEFAULT_CHECKS,
    "thorough": 200_000,
}
PROFILE_ENV = "HYPOTHESIS_PROFILE"

_active_profile: str | None = None
_checks_made = 0


@dataclass(frozen=True)
class Budget:
    """A false-alarm budget: ``rate`` for the whole run, shared by ``checks`` checks.

    Example:
    >>> b = Budget(rate=1e-6, checks=5000)
    >>> f"{b.alpha:.3g}"
    '2e-10'
    >>> round(b.z, 2)
    6.36
    """

    rate: float = FALSE_ALARM_RATE
    checks: int = DEFAULT_CHECKS

    @property
    def alpha(self) -> float:
        """The false-alarm probability of one check: ``rate / checks``."""
        return self.rate / self.checks

    @property
    def z(self) -> float:
        """The two-sided standard normal quantile of ``alpha``: ``Phi^-1(1 - alpha/2)``."""
        return float(stats.norm.isf(self.alpha / 2))

    def __repr__(self) -> str:
        return f"Budget(rate={self.rate!r}, checks={self.checks!r}, alpha={self.alpha:.3g})"


def set_active_profile(name: str | None) -> None:
    """Record which Hypothesis profile is loaded, so that ``budget()`` can match it."""
    global _active_profile
    _active_profile = name


def active_profile() -> str:
    """The loaded profile: the one recorded by ``load_profile``, else $HYPOTHESIS_PROFILE/ci."""
    return _active_profile or os.environ.get(PROFILE_ENV) or "ci"


def budget() -> Budget:
    """The budget of this run: ``FALSE_ALARM_RATE`` over the active profile's ``K``.

    Example:
    >>> budget().rate
    1e-06
    """
    return Budget(FALSE_ALARM_RATE, CHECKS_PER_RUN.get(active_profile(), DEFAULT_CHECKS))


def default_alpha() -> float:
    """The per-check alpha every assertion uses unless told otherwise."""
    return budget().alpha


def resolve_alpha(alpha: float | None) -> float:
    """``alpha`` checked to lie in (0, 1), or the budget's when None."""
    if alpha is None:
        return default_alpha()
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float))
        or not (math.isfinite(alpha) and 0 < alpha < 1)
    ):
        raise ValueError(f"Argument `alpha` must be in (0, 1). Received: alpha={alpha!r}")
    return float(alpha)


def count_check(budgeted: bool = True) -> None:
    """Count one statistical check made at the budget's alpha (see ``checks_made``).

    Checks at an explicit alpha (calibration tests use a large one on purpose) are not
    part of the suite's budget and are not counted.
    """
    global _checks_made
    if budgeted:
        _checks_made += 1


def checks_made() -> int:
    """How many statistical checks this process has made so far (to compare with ``K``).

    A check at the budget's alpha counts once; one at an explicit ``alpha`` does not.

    Example:
    >>> import numpy as np
    >>> from keras_initlab.testing import assert_variance, checks_made
    >>> x = np.random.default_rng(0).normal(size=10_000)
    >>> before = checks_made()
    >>> assert_variance(x, 1.0)
    >>> checks_made() - before
    1
    >>> assert_variance(x, 1.0, alpha=0.01)
    >>> checks_made() - before
    1
    """
    return _checks_made
