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


@pytest.mark.parametrize(
    ("argv", "listed", "not_listed"),
    [
        # compare and residual train LSUV and AutoInit: both are in the list of schemes
        (["compare", "--schemes", "he_nromal"], ["'auto'", "'lsuv'", "'he_normal'"], []),
        (["residual", "--schemes", "he_normal+fixpu"], ["'auto'", "'lsuv'"], []),
        # inspect runs AutoInit but not LSUV (no data): 'auto' is listed, 'lsuv' is not
        (["inspect", "m.keras", "--scheme", "he_nrmal"], ["'auto'", "'he_normal'"], ["'lsuv'"]),
        (["inspect", "m.keras", "--scheme", "lsuv"], ["Received: scheme='lsuv'", "'auto'"], []),
    ],
)
def test_unknown_scheme_lists_every_scheme_the_command_takes(capsys, argv, listed, not_listed):
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, "must be one of", *listed)
    allowed = err.split("must be one of", 1)[1].split("Received:", 1)[0]
    for name in not_listed:
        assert name not in allowed


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


def test_report_folder_below_a_file(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the report folder should go")
    code, _, err = run(capsys, "compare", "--out", str(blocker / "report"))
    assert_one_line_error(code, err, "`out`", str(blocker), "is not a directory")


def test_report_folder_that_is_a_file(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("kept")
    code, _, err = run(capsys, "compare", "--out", str(blocker))
    assert_one_line_error(code, err, "`out`", "exists and is not a directory")
    assert blocker.read_text() == "kept"


def test_json_path_that_is_a_directory(capsys, tmp_path):
    # used to end in IsADirectoryError after the whole run; now refused before training
    code, _, err = run(capsys, "compare", "--quick", "--no-report", "--json", str(tmp_path))
    assert_one_line_error(code, err, "`json`", repr(str(tmp_path)), "is a directory")


def test_json_path_below_a_file(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("kept")
    code, _, err = run(
        capsys, "compare", "--quick", "--no-report", "--json", str(blocker / "out.json")
    )
    assert_one_line_error(code, err, "`json`", "is not a directory")


def _unwritable_folder(tmp_path):
    """A folder nobody can create files in: a read-only one, or /sys for root."""
    if os.geteuid() == 0:  # root ignores permission bits; sysfs refuses new files to root too
        return "/sys"
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return str(folder)


@pytest.mark.parametrize("argument", ["--json", "--out"])
def test_unwritable_output_path_says_why(capsys, tmp_path, argument):
    folder = _unwritable_folder(tmp_path)
    target = os.path.join(folder, "initlab-out", "results.json")
    argv = ["compare", "--quick", argument, target]
    code, _, err = run(capsys, *argv, *(["--no-report"] if argument == "--json" else []))
    assert_one_line_error(code, err, argument.lstrip("-"), "Permission denied")
    assert "No such file or directory" not in err


def test_non_empty_folder_that_is_not_a_report_is_refused(capsys, tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("a user's file")
    code, _, err = run(capsys, "compare", "--quick", "--out", str(tmp_path))
    assert_one_line_error(code, err, "`out`", "notes.txt", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert mine.read_text() == "a user's file"


def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


_RNG = np.random.default_rng(0)
_X = _RNG.normal(size=(200, 3))


@pytest.mark.parametrize(
    ("arrays", "fragments"),
    [
        ({"x": _X, "y": np.arange(150) % 2}, ["200 examples in `x`", "150 labels in `y`"]),
        ({"x": _X[:150], "y": np.arange(200) % 2}, ["150 examples in `x`", "200 labels in `y`"]),
        (
            {
                "x": np.where(np.arange(600).reshape(200, 3) == 7, np.nan, _X),
                "y": np.arange(200) % 2,
            },
            ["finite", "1 non-finite values in `x`", "nan at index (2, 1)"],
        ),
        (
            {
                "x": np.where(np.arange(600).reshape(200, 3) >= 598, np.inf, _X),
                "y": np.arange(200) % 2,
            },
            ["finite", "2 non-finite values in `x`", "inf at index (199, 1)"],
        ),
        ({"x": _X[:1], "y": np.zeros(1)}, ["at least 2 examples", "1 examples in `x`"]),
        (
            {
                "x_train": _X[:100],
                "y_train": np.arange(100) % 2,
                "x_test": _X[:0],
                "y_test": np.zeros(0),
            },
            ["at least 1 examples in `x_test`", "0 examples"],
        ),
        (
            {
                "x_train": _X[:100],
                "y_train": np.arange(100) % 2,
                "x_test": _X[:10, :2],
                "y_test": np.arange(10) % 2,
            },
            ["one feature shape", "`x_train` of (3,)", "`x_test` of (2,)"],
        ),
        ({"x": _X, "y": np.ones((200, 2))}, ["one per example", "`y` of shape (200, 2)"]),
        ({"x": _X, "y": -(np.arange(200) % 2)}, ["integer class labels", "-1"]),
    ],
    ids=[
        "fewer-labels",
        "more-labels",
        "nan",
        "inf",
        "one-sample",
        "empty-test",
        "features",
        "label-shape",
        "negative-label",
    ],
)
def test_npz_is_validated_before_anything_runs(capsys, tmp_path, arrays, fragments):
    path = _npz(tmp_path, **arrays)
    code, _, err = run(
        capsys,
        "compare",
        "--quick",
        "--epochs",
        "1",
        "--schemes",
        "zeros",
        "--no-report",
        "--dataset",
        path,
    )
    # one line: no progress header, so nothing was trained
    assert_one_line_error(code, err, repr(path), *fragments)


def test_missing_model_file(capsys, tmp_path):
    code, _, err = run(capsys, "inspect", str(tmp_path / "missing.keras"))
    assert_one_line_error(code, err, "no such file")


def test_corrupt_model_file(capsys, tmp_path):
    path = tmp_path / "corrupt.keras"
    path.write_bytes(b"\x00garbage\n" * 10)
    code, _, err = run(capsys, "inspect", str(path))
    assert_one_line_error(code, err, "readable model file", "corrupt.keras")


def test_python_dash_m_exit_status_and_no_tensorflow_log_lines(tmp_path):
    # The module entry point in a fresh process: the same one-line error and exit status,
    # and none of TensorFlow's C++ start-up lines (absl notice, oneDNN, CPU features),
    # which print at import whatever TF_CPP_MIN_LOG_LEVEL says.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-m", "keras_initlab", "inspect", str(tmp_path / "missing.keras")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == EXIT_USAGE
    assert proc.stderr.splitlines() == [
        "keras-initlab: error: Argument `model` must be a readable model file (.keras or "
        f".h5). Received: model={str(tmp_path / 'missing.keras')!r} (no such file)"
    ]
    assert proc.stdout == ""


_IMPORTS = """
import sys
from keras_initlab.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:  # --help
    code = stop.code
print(code, "tensorflow" in sys.modules, "keras" in sys.modules)
"""


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--help"], 0),
        (["compare", "--help"], 0),
        (["inspect", "--help"], 0),
        (["comapre"], EXIT_USAGE),
        (["compare", "--depth", "ten"], EXIT_USAGE),
        (["inspect"], EXIT_USAGE),
        (["inspect", "m.keras", "--samples", "0"], EXIT_USAGE),
        (["compare", "--json", "."], EXIT_USAGE),  # a directory: refused before Keras starts
        # values, not only their syntax, are checked before Keras starts
        (["compare", "--depth", "1"], EXIT_USAGE),
        (["compare", "--schemes", "he_norml"], EXIT_USAGE),
        (["compare", "--activation", "rleu"], EXIT_USAGE),
        (["compare", "--dataset", "cirlces"], EXIT_USAGE),
    ],
)
def test_help_and_usage_errors_do_not_start_tensorflow(tmp_path, argv, code):
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORTS, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.stdout.split()[-3:] == [str(code), "False", "False"], proc.stderr[-2000:]
