"""Verdicts: exploding / vanishing / symmetric / ok from the depth profile."""

from __future__ import annotations

import math

import pytest

from keras_initlab.compare.verdicts import VERDICT_FACTOR, backward_ratio, forward_ratio, verdict


def test_ratios_follow_the_direction_of_each_signal():
    assert forward_ratio([1.0, 2.0, 8.0]) == 8.0  # last / first
    assert backward_ratio([8.0, 2.0, 1.0]) == 8.0  # first / last: growth towards the input
    assert math.isnan(forward_ratio([0.0, 0.0]))


F = VERDICT_FACTOR
FLAT = [1.0, 1.0, 1.0, 1.0]  # four hidden layers: the depth rule compares points 3 apart


@pytest.mark.parametrize(
    ("act", "grad", "units", "losses", "expected"),
    [
        (FLAT, FLAT, [1, 1, 1, 1], [2.3, 2.3], "symmetric"),
        ([1.0, 1.0, 1.0, F * 1.01], FLAT, [8] * 4, [1.0], "exploding"),
        (FLAT, [F * 1.01, 1.0, 1.0, 1.0], [8] * 4, [1.0], "exploding"),
        (FLAT, FLAT, [8] * 4, [1.0, math.nan], "exploding"),
        ([1.0, 1.0, 1.0, 0.99 / F], FLAT, [8] * 4, [1.0], "vanishing"),
        ([1.0, 1.0, 1.0, 0.0], FLAT, [8, 8, 8, 1], [1.0], "vanishing"),
        ([1.0, 1.0, 1.0, 1.01 / F], [0.99 * F, 1.0, 1.0, 1.0], [8] * 4, [1.0], "ok"),
        # a change over fewer than three steps is one-off, not compounding
        ([1.0, F * 10, F * 100], [1.0, 1.0, 1.0], [8] * 3, [1.0], "ok"),
        # a diverged network whose units all read the same value is not "symmetric"
        (FLAT, FLAT, [1] * 4, [2.3, math.nan], "exploding"),
        ([1.0, 1.0, 1.0, math.inf], FLAT, [1] * 4, [2.3, 2.3], "exploding"),
        ([1.0, 1.0, 1.0, 1e13], [1.0, 1.0, 1.0, 1e13], [1] * 4, [2.3, 2.3], "exploding"),
        # layers whose outputs were not finite after training (NaN) are not judged
        (FLAT, FLAT, [1, 1, 1, math.nan], [2.3, 2.3], "symmetric"),
        (FLAT, FLAT, [math.nan] * 4, [2.3, 2.3], "ok"),
    ],
)
def test_verdicts(act, grad, units, losses, expected):
    assert verdict(act, grad, units, losses) == expected
