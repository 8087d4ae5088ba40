"""`keras-initlab compare --quick`: the table, the --json format and the report folder.

The measured numbers are compared with theory: the identity stacks with their exact
growth, ``too_small`` / ``too_large`` with the closed form ``(width * std**2 / 2)**(L-1)``
of a ReLU stack, He with a band from its finite-width fluctuation.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re

import numpy as np
import pytest

from keras_initlab.cli import main
from keras_initlab.compare.config import QUICK, CompareConfig
from keras_initlab.compare.setups import TOO_LARGE_STD, TOO_SMALL_STD

SCHEMES = ("zeros", "too_small", "too_large", "identity_1.5", "he_normal")
SEEDS = CompareConfig().seeds
DEPTH, WIDTH = QUICK["depth"], QUICK["width"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The identity stack is exact up to float32 rounding: each of the ~depth multiplications by
# 1.5 and the variance sums over 128 x 32 values add relative errors of order 2**-24 * terms.
FLOAT32_REL = 1e-4
# He's variance ratio across the L-1 square ReLU layers after the first fluctuates from seed
# to seed: Hanin & Rolnick (2018) give Var[ln(q_L / q_1)] ~ 5 * sum_l 1 / n_l for one input
# (averaging over the probe only lowers it). A correct implementation lands within Z of
# those standard deviations with probability 1 - 2e-9; a variance off by a factor c per layer
# moves log10 of the ratio by (L-1) log10 c (c = 10: 5, far outside the band).
Z = 6.0
LOG10_SD = math.sqrt(5.0 * (DEPTH - 1) / WIDTH) / math.log(10.0)


def relu_stack_ratio(std: float) -> float:
    """Closed form of the activation ratio of a ReLU stack of N(0, std) square kernels."""
    return (WIDTH * std**2 / 2.0) ** (DEPTH - 1)


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


def test_exit_status_table_and_progress(quick_run):
    code, out, err, _, _ = quick_run
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[:2] == ["scheme", "activation"]
    assert "verdict" in header
    rows = {
        line.split()[0] + "/" + line.split()[1]
        for line in out.splitlines()[1 : len(SCHEMES) + 3]
        if line.split() and line.split()[0] in SCHEMES
    }
    # every scheme with relu, and he_normal again with tanh (the Xavier-vs-He contrast)
    assert rows == {f"{s}/relu" for s in SCHEMES} | {"he_normal/tanh"}
    # the header gives the sizes actually used and counts what the progress lines count
    runs = len(SCHEMES) + 1
    assert f"{QUICK['train_limit']} training / {QUICK['test_limit']} test examples" in err
    assert f"{runs} runs ({len(SCHEMES)} schemes + 1 with tanh) x {SEEDS} seeds" in err
    counters = re.findall(r"\[\s*(\d+)/(\d+)\]", err)
    assert [int(i) for i, _ in counters] == list(range(1, runs + 1))
    assert {int(n) for _, n in counters} == {runs}
    assert all(len(line) < 80 for line in err.splitlines() if line.startswith("["))
    assert "Report:" in out


def test_json_follows_the_design_format(quick_run):
    _, _, _, data, _ = quick_run
    assert data["dataset"] == "digits"
    assert set(data["schemes"]) == set(SCHEMES)
    for run in data["schemes"].values():
        assert len(run["activation_var"]) == DEPTH + 1  # hidden layers and the output
        assert len(run["gradient_var"]) == DEPTH + 1
        assert len(run["distinct_units"]) == DEPTH
        assert len(run["loss"]) == len(run["accuracy"]) == QUICK["epochs"]
        assert run["seeds"] == list(range(SEEDS))
        assert [r["seed"] for r in run["per_seed"]] == run["seeds"]
    assert set(data["contrast"]["schemes"]) == {"he_normal"}
    assert data["contrast"]["activation"] == "tanh"


def test_design_lists_are_medians_of_the_seeds(quick_run):
    _, _, _, data, _ = quick_run
    run = data["schemes"]["he_normal"]
    per_seed = run["per_seed"]
    for key in ("activation_var", "gradient_var", "loss", "accuracy"):
        expected = np.median([r[key] for r in per_seed], axis=0)
        np.testing.assert_array_equal(run[key], expected)
    ratios = [r["activation_ratio"] for r in per_seed]
    assert run["activation_ratio"] == np.median(ratios)
    assert run["spread"]["activation_ratio"]["min"] == min(ratios)
    assert run["spread"]["activation_ratio"]["max"] == max(ratios)


def test_zeros_is_symmetric_and_frozen(quick_run):
    _, _, _, data, _ = quick_run
    zeros = data["schemes"]["zeros"]
    for run in zeros["per_seed"]:
        assert run["distinct_units"] == [1] * DEPTH
        assert run["activation_var"][:-1] == [0.0] * DEPTH
    assert zeros["verdicts"] == ["symmetric"] * SEEDS
    claim = next(c for c in data["claims"] if c["claim"] == "Zero initialization cannot learn")
    assert claim["holds"] is True


def test_identity_grows_exactly_by_its_scale(quick_run):
    # ReLU(1.5 h) = 1.5 ReLU(h) for h >= 0: the activation variance grows by 1.5**2 per layer.
    _, _, _, data, _ = quick_run
    run = data["schemes"]["identity_1.5"]
    expected = 1.5 ** (2 * (DEPTH - 1))
    for seed_run in run["per_seed"]:
        assert seed_run["activation_ratio"] == pytest.approx(expected, rel=FLOAT32_REL)
    assert run["verdicts"] == ["exploding"] * SEEDS


def test_he_keeps_the_variance_within_its_finite_width_band(quick_run):
    _, _, _, data, _ = quick_run
    for activation_ratio, gradient_ratio in (
        (r["activation_ratio"], r["gradient_ratio"])
        for r in data["schemes"]["he_normal"]["per_seed"]
    ):
        assert abs(math.log10(activation_ratio)) <= Z * LOG10_SD
        assert abs(math.log10(gradient_ratio)) <= Z * LOG10_SD
    assert data["schemes"]["he_normal"]["verdicts"] == ["ok"] * SEEDS


@pytest.mark.parametrize(
    ("scheme", "std"), [("too_small", TOO_SMALL_STD), ("too_large", TOO_LARGE_STD)]
)
def test_random_normal_scales_follow_the_closed_form(quick_run, scheme, std):
    # N(0, std) kernels are He's (std_he**2 = 2 / width) scaled: the ratio is the closed form
    # times a He-like fluctuation, within the same band.
    _, _, _, data, _ = quick_run
    for run in data["schemes"][scheme]["per_seed"]:
        assert abs(math.log10(run["activation_ratio"] / relu_stack_ratio(std))) <= Z * LOG10_SD


def test_too_large_is_exploding_in_every_seed(quick_run):
    _, out, _, data, _ = quick_run
    assert data["schemes"]["too_large"]["verdicts"] == ["exploding"] * SEEDS
    row = next(line for line in out.splitlines() if line.startswith("too_large "))
    assert row.split()[-1] == "exploding"
    claim = next(c for c in data["claims"] if c["claim"] == "Too-large weights diverge")
    assert claim["holds"] is True


def test_width_check_spread_shrinks(quick_run):
    _, out, _, data, _ = quick_run
    widths = data["width_check"]["widths"]
    assert sorted(widths, key=int) == ["64", "256"]
    assert widths["256"]["activation_ratio_log10_sd"] < widths["64"]["activation_ratio_log10_sd"]
    for w, check in widths.items():
        sd = math.sqrt(5.0 * (DEPTH - 1) / int(w)) / math.log(10.0)
        assert all(abs(math.log10(r)) <= Z * sd for r in check["activation_ratio"])
    assert "Finite width: he_normal" in out


def test_report_folder(quick_run):
    _, _, _, data, folder = quick_run
    report = folder / "report"
    for name in (
        "depth_profile.png",
        "heatmap.png",
        "loss_curves.png",
        "contrast.png",
        "width_check.png",
        "training/he_normal_relu.png",
    ):
        assert (report / name).read_bytes()[:8] == PNG_MAGIC, name
    summary = (report / "summary.md").read_text()
    assert "![depth_profile.png](depth_profile.png)" in summary
    assert "| zeros | relu |" in summary
    assert (report / "table.md").read_text().strip() in summary
    assert (
        json.loads((report / "results.json").read_text())["schemes"].keys()
        == data["schemes"].keys()
    )
    history = (report / "history.csv").read_text().splitlines()
    assert history[0] == "scheme,activation,seed,epoch,loss,accuracy,test_loss,test_accuracy"
    assert len(history) == 1 + (len(SCHEMES) + 1) * SEEDS * QUICK["epochs"]
    records = (report / "records.csv").read_text().splitlines()
    assert records[0].startswith("scheme,")


def test_table_csv_holds_numbers(quick_run):
    _, _, _, data, folder = quick_run
    with (folder / "report" / "table.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(SCHEMES) + 1
    text_columns = {"scheme", "activation", "verdict"}
    for row in rows:
        for column, cell in row.items():
            if column not in text_columns and cell != "":
                float(cell)  # a number, never a display string such as "-" or "6-64"
    he = next(r for r in rows if r["scheme"] == "he_normal" and r["activation"] == "relu")
    ratios = [r["activation_ratio"] for r in data["schemes"]["he_normal"]["per_seed"]]
    assert float(he["activation_ratio_min"]) == pytest.approx(min(ratios), rel=1e-12)
    assert float(he["activation_ratio_max"]) == pytest.approx(max(ratios), rel=1e-12)
    zeros = next(r for r in rows if r["scheme"] == "zeros")
    assert zeros["activation_ratio_median"] == ""  # 0/0: no value, an empty cell


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _progress_writes(monkeypatch, columns, losses):
    import os
    import shutil

    from keras_initlab.compare.progress import Progress

    monkeypatch.setattr(shutil, "get_terminal_size", lambda *a: os.terminal_size((columns, 24)))
    stream = _Terminal()
    update = Progress(stream, total=2, epochs=len(losses)).start("he_normal (relu)", 3)
    for epoch, loss in enumerate(losses):
        update(epoch, {"loss": loss})
    return stream.getvalue().split("\r")[1:]


def test_progress_line_never_wraps(monkeypatch):
    writes = _progress_writes(monkeypatch, 40, [2.3, 1.0, 0.5])
    assert len(writes) == 3
    assert all(len(w.rstrip("\n")) <= 39 for w in writes)
    assert writes[-1].endswith("\n")


def test_progress_line_leaves_no_stale_characters(monkeypatch):
    writes = _progress_writes(monkeypatch, 200, [123456.0, 0.5, 0.5])
    assert len(writes[1].rstrip()) < len(writes[0])  # the line shrank ...
    assert len(writes[1]) >= len(writes[0])  # ... and its redraw covers the longer one
    assert "[ 1/2] he_normal (relu)" in writes[0]
    assert re.search(r"\d+:\d\d ETA \d+:\d\d", writes[0])
