"""The spread of one measured number across the seeds of a scheme: median, min, max.

``keras-initlab compare`` trains every scheme under several seeds; each number of the table
(a variance ratio, a loss, an accuracy) is the median over the seeds with its range. Only
finite values enter the median and the range; ``n_finite`` says how many there were, so a
seed whose loss became NaN is counted, not hidden.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Spread:
    """Median and range of the finite values of a number over seeds.

    Attributes:
        median, low, high: median, minimum and maximum of the finite values (NaN if none).
        n: number of values (seeds).
        n_finite: how many of them are finite.
    """

    median: float
    low: float
    high: float
    n: int
    n_finite: int

    @property
    def all_finite(self) -> bool:
        return self.n_finite == self.n


def spread(values: Sequence[float | None]) -> Spread:
    """The ``Spread`` of ``values`` (None, NaN and infinities are not finite).

    Example:
    >>> spread([0.5, 2.0, float("nan"), 1.0])
    Spread(median=1.0, low=0.5, high=2.0, n=4, n_finite=3)
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return Spread(math.nan, math.nan, math.nan, len(values), 0)
    return Spread(statistics.median(finite), min(finite), max(finite), len(values), len(finite))


def elementwise_median(rows: Sequence[Sequence[float]]) -> list[float]:
    """The median over rows (seeds) of each column (layer or epoch), finite values only.

    A column with no finite value gives NaN, or the infinity every row agrees on.

    Example:
    >>> elementwise_median([[1.0, 4.0], [3.0, float("inf")], [2.0, 5.0]])
    [2.0, 4.5]
    """
    columns = zip(*rows, strict=True)
    out = []
    for column in columns:
        value = spread(column).median
        if math.isnan(value) and column and all(c == column[0] for c in column):
            value = float(column[0])  # every seed at the same infinity
        out.append(value)
    return out
