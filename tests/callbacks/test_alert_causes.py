"""`alerts_for`: which findings become alerts at step 0 and later, and what later ones say."""

from __future__ import annotations

import math

from keras_initlab.callbacks._alerts import Alert, alerts_for
from keras_initlab.depth_rule import judge


def _rows(activation, gradient=None, **extra):
    gradient = [1.0] * len(activation) if gradient is None else gradient
    return [
        {"layer": f"h{i}", "activation_var": a, "gradient_var": g, **extra}
        for i, (a, g) in enumerate(zip(activation, gradient, strict=True))
    ]


FORETOLD = Alert(
    0,
    0,
    "h0",
    "activation_var",
    1e6,
    "weights",
    "it grew",
    "too large",
    "advice",
    {"scheme": "he_normal"},
    True,
)


def test_depth_changes_count_at_step0_only():
    rows = _rows([10.0**i for i in range(6)])
    assert [a.kind for a in alerts_for(rows, judge(rows), epoch=0, step=0, diagnosis=None)] == [
        "activation_var"
    ]
    assert alerts_for(rows, judge(rows), epoch=3, step=300, diagnosis=None) == []


def test_a_later_nan_after_a_healthy_start_blames_the_training_dynamics_unchecked():
    rows = _rows([1.0, math.nan, 1.0])
    (alert,) = alerts_for(rows, judge(rows), epoch=1, step=40, diagnosis=None)
    assert (alert.kind, alert.cause, alert.fix, alert.checked) == (
        "non_finite",
        "training",
        None,
        False,
    )
    assert "step 0 was healthy" in alert.why
    assert "not checked" in alert.advice
    assert "[not checked]" in alert.message


def test_a_later_nan_foretold_at_step0_points_back_and_gives_its_checked_fix():
    rows = _rows([1.0, math.inf, 1.0])
    (alert,) = alerts_for(rows, judge(rows), epoch=1, step=40, diagnosis=None, foretold=FORETOLD)
    assert alert.cause == "training"
    assert "foretold" in alert.why
    assert "it grew" in alert.why
    assert alert.fix == {"scheme": "he_normal"}
    assert alert.checked


def test_a_gradient_that_dies_during_training_is_a_training_alert():
    rows = _rows([1.0, 1.0, 1.0], [0.0, 0.0, 1.0], dead_fraction=0.0)
    rows[1]["dead_fraction"] = 1.0
    (alert,) = alerts_for(rows, judge(rows), epoch=2, step=90, diagnosis=None)
    assert (alert.kind, alert.cause, alert.layer) == ("gradient_zero", "training", "h1")
    assert "'h1' is dead" in alert.what


def test_the_message_is_what_cause_and_fix_in_plain_parts():
    lines = FORETOLD.message.splitlines()
    assert lines[0] == "VarianceMonitor, step 0: it grew."
    assert lines[1] == "  cause (weights): too large."
    assert lines[2] == "  fix: advice."
