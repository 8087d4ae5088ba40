"""A claim an experiment checks, and how claims and spreads over seeds are written.

Every experiment of the harness judges its claims into `Claim` objects: the command prints
them with `format_claims`, ``results.json`` holds them as `claims_as_dicts`, and
``summary.md`` lists them. `fmt_spread` writes a number measured over several seeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from keras_initlab.compare.spread import Spread

__all__ = ["Claim", "claims_as_dicts", "fmt", "fmt_spread", "format_claims"]


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of an experiment and what the run measured.

    Attributes:
        claim: the statement.
        holds: True / False as measured, None when the run lacks what it needs.
        evidence: the numbers behind the answer.

    Example:
    >>> Claim("He keeps the variance", True, "ratio 1.02").mark
    'yes'
    """

    claim: str
    holds: bool | None
    evidence: str

    @property
    def mark(self) -> str:
        return {True: "yes", False: "NO", None: "n/a"}[self.holds]


def fmt(value: float) -> str:
    """A number with 3 significant digits, ``nan`` for NaN.

    Example:
    >>> fmt(0.123456), fmt(float("nan"))
    ('0.123', 'nan')
    """
    return "nan" if math.isnan(value) else f"{value:.3g}"


def fmt_spread(s: Spread) -> str:
    """``median [min..max]`` (one value when the seeds agree), with non-finite seeds counted.

    Example:
    >>> from keras_initlab.compare.spread import spread
    >>> fmt_spread(spread([0.2, 0.5, 1.7]))
    '0.5 [0.2..1.7]'
    """
    text = fmt(s.median)
    if s.n_finite > 1 and s.low != s.high:
        text += f" [{fmt(s.low)}..{fmt(s.high)}]"
    if not s.all_finite:
        text += f" ({s.n - s.n_finite}/{s.n} seeds not finite)"
    return text


def format_claims(claims: Sequence[Claim]) -> str:
    """One line per claim: yes / NO / n/a, the claim, the evidence.

    Example:
    >>> print(format_claims([Claim("He keeps the variance", False, "ratio 9.1")]))
    [ NO] He keeps the variance: ratio 9.1
    """
    return "\n".join(f"[{c.mark:>3}] {c.claim}: {c.evidence}" for c in claims)


def claims_as_dicts(claims: Sequence[Claim]) -> list[dict[str, Any]]:
    """JSON-ready claims: ``{"claim", "holds", "evidence"}`` each."""
    return [dataclasses.asdict(c) for c in claims]
