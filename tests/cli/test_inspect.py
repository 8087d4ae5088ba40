"""`keras-initlab inspect MODEL.keras`: the audit table and the variance profile."""

from __future__ import annotations

import re

import keras
import pytest

from keras_initlab.audit import AUDIT_Z
from keras_initlab.cli import main
from keras_initlab.compare.verdicts import VERDICT_FACTOR

DEPTHWISE_LAYERS = 6  # judged: the first maps the input, the last is the output
CHANNELS = 64
KERNEL = 3


def test_inspect_marks_keras_depthwise_fans_unhealthy(capsys, tmp_path):
    # Keras' he_normal reads a (3, 3, 64, 1) depthwise kernel as dense: fan_in 3*3*64 instead
    # of the true 3*3, so each layer multiplies the variance by 9 / 576 = 1/64 where He on the
    # true fans keeps it: after six layers the last/first ratio is 64**-5 in expectation,
    # far below 1 / VERDICT_FACTOR, so the verdict must be "vanishing".
    model = keras.Sequential(
        [keras.Input((8, 8, CHANNELS))]
        + [
            keras.layers.DepthwiseConv2D(
                KERNEL, padding="same", depthwise_initializer="he_normal", activation="relu"
            )
            for _ in range(DEPTHWISE_LAYERS)
        ]
    )
    path = tmp_path / "model.keras"
    model.save(path)
    code = main(["inspect", str(path), "--samples", "32"])
    out = capsys.readouterr().out
    assert code == 0
    audit_lines = [line for line in out.splitlines() if " depthwise " in line]
    assert len(audit_lines) == DEPTHWISE_LAYERS
    # Each is what Keras drew (no "!!"), and on its true fans unhealthy ("**").
    assert all(line.rstrip().endswith("**") for line in audit_lines), audit_lines
    assert "Variance profile on 32 unit-variance random inputs:" in out
    expected_ratio = (KERNEL**2 / (KERNEL**2 * CHANNELS)) ** (DEPTHWISE_LAYERS - 1)
    assert expected_ratio < 1 / VERDICT_FACTOR
    summary = re.search(r"activation variance last/first: (\S+);.*verdict: (\w+)", out)
    assert summary is not None, out
    assert float(summary[1]) < 1 / VERDICT_FACTOR
    assert summary[2] == "vanishing"


def test_inspect_explains_the_flag(capsys, tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = tmp_path / "model.keras"
    model.save(path)
    assert main(["inspect", str(path), "--samples", "8"]) == 0
    legend = [line for line in capsys.readouterr().out.splitlines() if line.startswith("!! ")]
    assert len(legend) == 1
    assert f"{AUDIT_Z:g} standard errors" in legend[0]
    assert f"{AUDIT_Z:g} * sqrt(2 / n)" in legend[0]


def _error(capsys, path):
    assert main(["inspect", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"just some text\n", "corrupt or not a Keras file"),
        (b"PK\x05\x06" + b"\x00" * 18, "corrupt or not a Keras file"),  # an empty zip
    ],
    ids=["text", "zip-without-config"],
)
def test_corrupt_keras_file_is_not_reported_missing(capsys, tmp_path, content, fragment):
    path = tmp_path / "model.keras"
    path.write_bytes(content)
    line = _error(capsys, path)
    assert fragment in line
    assert "not found" not in line.lower()
    assert "no such file" not in line


def test_directory_is_reported_as_a_directory(capsys, tmp_path):
    folder = tmp_path / "model.keras"
    folder.mkdir()
    line = _error(capsys, folder)
    assert "is a directory" in line
    assert "no such file" not in line


class Doubler(keras.layers.Layer):  # deliberately not registered
    def call(self, x):
        return 2 * x


def test_unregistered_custom_layer_is_named_in_full(capsys, tmp_path):
    model = keras.Sequential([keras.Input((3,)), Doubler(), keras.layers.Dense(2)])
    path = tmp_path / "custom.keras"
    model.save(path)
    line = _error(capsys, path)
    assert f"`{Doubler.__module__}.Doubler`" in line
    assert "keras.saving.register_keras_serializable()" in line
    assert "custom_objects={'Doubler': Doubler}" in line
