"""`keras-initlab compare --quick`: the table, the --json format and the report folder."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from keras_initlab.cli import main
from keras_initlab.compare.runner import QUICK

SCHEMES = ("zeros", "identity_1.5", "he_normal")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The identity stack is exact up to float32 rounding: each of the ~depth multiplications by
# 1.5 and the variance sums over 128 x 32 values add relative errors of order 2**-24 * terms.
FLOAT32_REL = 1e-4


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    json_path = folder / "out.json"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(
            [
                "compare",
                "--quick",
                "--schemes",
                ",".join(SCHEMES),
                "--out",
                str(folder / "report"),
                "--json",
                str(json_path),
            ]
        )
    return code, out.getvalue(), err.getvalue(), json.loads(json_path.read_text()), folder


def test_exit_status_and_table(quick_run):
    code, out, err, _, _ = quick_run
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[:2] == ["scheme", "activation"]
    assert "verdict" in header
    rows = {
        line.split()[0] + "/" + line.split()[1]
        for line in out.splitlines()[1:8]
        if line.split() and line.split()[0] in SCHEMES
    }
    # every scheme with relu, and he_normal again with tanh (the Xavier-vs-He contrast)
    assert rows == {f"{s}/relu" for s in SCHEMES} | {"he_normal/tanh"}
    assert "he_normal (relu)" in err  # a progress line per run
    assert "Report:" in out


def test_json_follows_the_design_format(quick_run):
    _, _, _, data, _ = quick_run
    depth, epochs = QUICK["depth"], QUICK["epochs"]
    assert data["dataset"] == "digits"
    assert set(data["schemes"]) == set(SCHEMES)
    for run in data["schemes"].values():
        assert len(run["activation_var"]) == depth + 1  # hidden layers and the output
        assert len(run["gradient_var"]) == depth + 1
        assert len(run["distinct_units"]) == depth
        assert len(run["loss"]) == len(run["accuracy"]) == epochs
    assert set(data["contrast"]["schemes"]) == {"he_normal"}
    assert data["contrast"]["activation"] == "tanh"


def test_zeros_is_symmetric_and_frozen(quick_run):
    _, _, _, data, _ = quick_run
    zeros = data["schemes"]["zeros"]
    assert zeros["distinct_units"] == [1] * QUICK["depth"]
    assert zeros["activation_var"][:-1] == [0.0] * QUICK["depth"]
    assert zeros["verdict"] == "symmetric"
    claim = next(c for c in data["claims"] if c["claim"] == "Zero initialization cannot learn")
    assert claim["holds"] is True


def test_identity_grows_exactly_by_its_scale(quick_run):
    # ReLU(1.5 h) = 1.5 ReLU(h) for h >= 0: the activation variance grows by 1.5**2 per layer.
    _, _, _, data, _ = quick_run
    run = data["schemes"]["identity_1.5"]
    expected = 1.5 ** (2 * (QUICK["depth"] - 1))
    assert run["activation_ratio"] == pytest.approx(expected, rel=FLOAT32_REL)
    assert run["verdict"] == "exploding"


def test_he_keeps_finite_variances(quick_run):
    _, _, _, data, _ = quick_run
    run = data["schemes"]["he_normal"]
    assert all(v is not None and math.isfinite(v) and v > 0 for v in run["activation_var"])
    assert all(v is not None and math.isfinite(v) and v > 0 for v in run["gradient_var"])


def test_report_folder(quick_run):
    _, _, _, data, folder = quick_run
    report = folder / "report"
    for name in (
        "depth_profile.png",
        "heatmap.png",
        "loss_curves.png",
        "contrast.png",
        "training/he_normal_relu.png",
    ):
        assert (report / name).read_bytes()[:8] == PNG_MAGIC, name
    summary = (report / "summary.md").read_text()
    assert "![depth_profile.png](depth_profile.png)" in summary
    assert "| zeros | relu |" in summary
    assert (
        json.loads((report / "results.json").read_text())["schemes"].keys()
        == data["schemes"].keys()
    )
    history = (report / "history.csv").read_text().splitlines()
    assert history[0] == "scheme,activation,epoch,loss,accuracy,test_loss,test_accuracy"
    assert len(history) == 1 + (len(SCHEMES) + 1) * QUICK["epochs"]
    records = (report / "records.csv").read_text().splitlines()
    assert records[0].startswith("scheme,")
