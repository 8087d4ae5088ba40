"""Verdicts: exploding / vanishing / symmetric / ok from the depth profile."""

from __future__ import annotations

import math

import pytest

from keras_initlab.compare.verdicts import VERDICT_FACTOR, backward_ratio, forward_ratio, verdict


def test_ratios_follow_the_direction_of_each_signal():
    assert forward_ratio([1.0, 2.0, 8.0]) == 8.0  # last / first
    assert backward_ratio([8.0, 2.0, 1.0]) == 8.0  # first / last: growth towards the input
    assert math.isnan(forward_ratio([0.0, 0.0]))


@pytest.mark.parametrize(
    ("act", "grad", "units", "losses", "expected"),
    [
        ([1.0, 1.0], [1.0, 1.0], [1, 1], [2.3, 2.3], "symmetric"),
        ([1.0, VERDICT_FACTOR * 1.01], [1.0, 1.0], [8, 8], [1.0], "exploding"),
        ([1.0, 1.0], [VERDICT_FACTOR * 1.01, 1.0], [8, 8], [1.0], "exploding"),
        ([1.0, 1.0], [1.0, 1.0], [8, 8], [1.0, math.nan], "exploding"),
        ([1.0, 0.99 / VERDICT_FACTOR], [1.0, 1.0], [8, 8], [1.0], "vanishing"),
        ([1.0, 0.0], [1.0, 1.0], [8, 1], [1.0], "vanishing"),
        ([1.0, 1.01 / VERDICT_FACTOR], [1.0, 0.99 * VERDICT_FACTOR], [8, 8], [1.0], "ok"),
        # a diverged network whose units all read the same value is not "symmetric"
        ([1.0, 1.0], [1.0, 1.0], [1, 1], [2.3, math.nan], "exploding"),
        ([1.0, math.inf], [1.0, 1.0], [1, 1], [2.3, 2.3], "exploding"),
        ([1.0, 1e13], [1.0, 1e13], [1, 1], [2.3, 2.3], "exploding"),
        # layers whose outputs were not finite after training (NaN) are not judged
        ([1.0, 1.0], [1.0, 1.0], [1, math.nan], [2.3, 2.3], "symmetric"),
        ([1.0, 1.0], [1.0, 1.0], [math.nan, math.nan], [2.3, 2.3], "ok"),
    ],
)
def test_verdicts(act, grad, units, losses, expected):
    assert verdict(act, grad, units, losses) == expected
