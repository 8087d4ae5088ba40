"""`keras-initlab inspect MODEL.keras`: the audit table and the variance profile."""

from __future__ import annotations

import keras

from keras_initlab.cli import main


def test_inspect_flags_keras_depthwise_fans(capsys, tmp_path):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 64)),
            keras.layers.DepthwiseConv2D(3, depthwise_initializer="he_normal", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ]
    )
    path = tmp_path / "model.keras"
    model.save(path)
    code = main(["inspect", str(path), "--samples", "32"])
    out = capsys.readouterr().out
    assert code == 0
    audit_lines = [
        line
        for line in out.splitlines()
        if line.startswith("depthwise_conv2d ") and " depthwise " in line
    ]
    assert len(audit_lines) == 1
    assert audit_lines[0].rstrip().endswith("!!")  # Keras' He on dense fans: 8x too small std
    assert "Variance profile on 32 unit-variance random inputs:" in out
    assert "verdict:" in out
