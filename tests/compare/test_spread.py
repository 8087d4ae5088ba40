"""Spread over seeds: median and range of the finite values, non-finite seeds counted."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_initlab.compare.spread import elementwise_median, spread


@pytest.mark.parametrize(
    "values",
    [[0.3], [2.0, 1.0], [5.0, 0.1, 3.0], [1e-20, 4e5, 7.0, 2.0, 0.5]],
)
def test_spread_of_finite_values_matches_numpy(values):
    s = spread(values)
    assert (s.median, s.low, s.high) == (np.median(values), min(values), max(values))
    assert s.n == s.n_finite == len(values)


def test_non_finite_seeds_are_counted_not_used():
    s = spread([1.0, math.nan, math.inf, None, 3.0])
    assert (s.median, s.low, s.high, s.n, s.n_finite) == (2.0, 1.0, 3.0, 5, 2)
    assert not s.all_finite
    assert math.isnan(spread([math.nan, None]).median)


def test_elementwise_median_is_per_column():
    rows = [[1.0, 0.0, math.inf], [3.0, 0.0, math.inf], [2.0, math.nan, math.inf]]
    assert elementwise_median(rows) == [2.0, 0.0, math.inf]
