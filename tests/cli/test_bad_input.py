"""Bad input: a one-line error on stderr, exit status 2, no traceback, nothing trained."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_initlab.cli import main

EXIT_USAGE = 2


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *fragments):
    assert code == EXIT_USAGE
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("keras-initlab: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_scheme_suggests_close_matches(capsys):
    code, _, err = run(capsys, "compare", "--schemes", "zeros,he_nromal")
    assert_one_line_error(code, err, "he_nromal", "Did you mean 'he_normal'")


def test_unknown_dataset_suggests_close_matches(capsys):
    code, _, err = run(capsys, "compare", "--dataset", "mnits")
    assert_one_line_error(code, err, "mnits", "'mnist'")


def test_unknown_activation(capsys):
    code, _, err = run(capsys, "compare", "--activation", "rleu")
    assert_one_line_error(code, err, "'relu'")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["compare", "--depth", "1"], "depth"),
        (["compare", "--width", "0"], "width"),
        (["compare", "--epochs", "-3"], "epochs"),
        (["compare", "--learning-rate", "0"], "learning_rate"),
        (["compare", "--momentum", "1.5"], "momentum"),
        (["compare", "--depth", "ten"], "invalid int value"),
        (["compare", "--schemes", ","], "at least one scheme"),
        (["comapre"], "invalid choice"),
        (["inspect"], "required"),
        (["inspect", "m.keras", "--scheme", "he_nrmal"], "he_normal"),
    ],
)
def test_bad_arguments(capsys, argv, fragment):
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, fragment)


def test_dataset_needing_network_while_offline(capsys, monkeypatch):
    import keras

    def offline():
        raise Exception(
            "URL fetch failure on https://example.invalid/mnist.npz: None -- "
            "[Errno -2] Name or service not known"
        )

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    code, _, err = run(capsys, "compare", "--dataset", "mnist", "--quick")
    assert_one_line_error(code, err, "mnist", "network", "--dataset digits")


def test_npz_without_the_expected_arrays(capsys, tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, features=np.zeros((4, 2)))
    code, _, err = run(capsys, "compare", "--dataset", str(path))
    assert_one_line_error(code, err, "x_train", "features")


def test_unreadable_npz(capsys, tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip archive")
    code, _, err = run(capsys, "compare", "--dataset", str(path))
    assert_one_line_error(code, err, "readable .npz")


def test_unwritable_report_folder(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the report folder should go")
    code, _, err = run(capsys, "compare", "--out", str(blocker / "report"))
    assert_one_line_error(code, err, "Cannot write the report")


def test_missing_model_file(capsys, tmp_path):
    code, _, err = run(capsys, "inspect", str(tmp_path / "missing.keras"))
    assert_one_line_error(code, err, "no such file")


def test_corrupt_model_file(capsys, tmp_path):
    path = tmp_path / "corrupt.keras"
    path.write_bytes(b"\x00garbage\n" * 10)
    code, _, err = run(capsys, "inspect", str(path))
    assert_one_line_error(code, err, "readable model file", "corrupt.keras")


def test_python_dash_m_exit_status(tmp_path):
    # The module entry point: the same one-line error and exit status in a fresh process.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "keras_initlab", "compare", "--schemes", "xavier_norml"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == EXIT_USAGE
    assert proc.stderr.strip().splitlines()[-1].startswith("keras-initlab: error: ")
    assert "Did you mean 'xavier_normal'" in proc.stderr
    assert "Traceback" not in proc.stderr
