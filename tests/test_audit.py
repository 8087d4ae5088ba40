"""audit(): true fans, flags where Keras' shape rule is wrong, and a printable table."""

from __future__ import annotations

import keras
import pytest

import keras_initlab as ki

L = keras.layers


def test_depthwise_with_keras_he_normal_is_flagged_at_one_eighth():
    model = keras.Sequential(
        [
            keras.Input((16, 16, 64)),
            L.DepthwiseConv2D(3, depthwise_initializer="he_normal", name="dw"),
            L.Conv2D(32, 1, kernel_initializer="he_normal"),
        ]
    )
    report = ki.audit(model)
    (flag,) = report.flagged
    assert flag.path.endswith("dw/kernel")
    assert (flag.fan_in, flag.fan_out) == (9, 9)
    # Keras reads fan_in as 9 * 64: std sqrt(2/576) instead of sqrt(2/9), 1/8 of it.
    assert flag.ratio == pytest.approx(1 / 8, rel=0.15)
    table = str(report)
    assert "dw/kernel" in table
    assert "!!" in table
    assert table.splitlines()[0].split() == [
        "layer",
        "path",
        "layout",
        "fan_in",
        "fan_out",
        "std",
        "expected_std",
        "ratio",
        "flag",
    ]


def test_initialized_model_passes_its_own_audit_and_fails_another():
    model = keras.Sequential(
        [
            keras.Input((10, 10, 32)),
            L.Conv2DTranspose(16, 3, name="t"),
            L.Flatten(),
            L.Dense(10, name="d"),
        ]
    )
    ki.initialize(model, "he_normal", seed=0)
    assert ki.audit(model, "he_normal").flagged == []
    transposed = ki.audit(model, "lecun_normal").flagged  # var off by 2x
    assert [r.path.split("/")[-2] for r in transposed] == ["t", "d"]


def test_keras_transposed_glorot_and_lstm_glorot_are_flagged():
    model = keras.Sequential([keras.Input((4, 16)), L.LSTM(32)])
    report = ki.audit(model)  # Keras: Glorot with fan_out = 4 * units
    kernel = next(r for r in report if r.path.endswith("lstm_cell/kernel"))
    assert kernel.flagged
    assert kernel.ratio == pytest.approx(((16 + 32) / (16 + 128)) ** 0.5, rel=0.1)


def test_report_rows_and_repr():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    report = ki.audit(model)
    assert len(report) == 2
    assert repr(report) == "AuditReport(2 weights, 0 flagged)"
    assert report.to_dicts()[0]["layout"] == "dense"
    with pytest.raises(TypeError, match=r"Argument `scheme` must be"):
        ki.audit(model, scheme=1.0)


def test_unbuilt_model_is_refused():
    with pytest.raises(ValueError, match=r"Argument `model` must be built"):
        ki.audit(keras.Sequential([L.Dense(3)]))
