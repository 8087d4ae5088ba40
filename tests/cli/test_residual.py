"""`keras-initlab residual --quick`: the table, the claims, --json and the report folder.

A zero-initialized branch adds exactly nothing, so under ``zero`` and ``skipinit`` every
sum's variance equals the stem's (the same float32 tensor: exact). He's stream is checked
against a NumPy forward pass of the same weights on the same probe. The claims are pure
functions of the numbers, checked on constructed results where the answer is known.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

from keras_initlab.cli import main
from keras_initlab.compare.claims import HIGH_ACCURACY
from keras_initlab.compare.residual.claims import AUTO_BAND, check_residual_claims, verdict
from keras_initlab.compare.residual.config import RESIDUAL_QUICK, ResidualConfig
from keras_initlab.compare.residual.experiment import ResidualResult, ResidualRun

SCHEMES = ("he_normal", "he_normal+zero", "he_normal+skipinit")
ARCHS = ("mlp", "cnn")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("residual")
    out, err = io.StringIO(), io.StringIO()
    argv = ["residual", "--quick", "--schemes", ",".join(SCHEMES), "--quiet"]
    argv += ["--out", str(folder / "report"), "--json", str(folder / "out.json")]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), folder


def test_quick_run_writes_every_run_and_the_report(quick_run):
    code, printed, folder = quick_run
    assert code == 0
    document = json.loads((folder / "out.json").read_text())
    seeds = RESIDUAL_QUICK["seeds"]
    assert len(document["runs"]) == len(ARCHS) * len(SCHEMES) * seeds
    for run in document["runs"]:
        blocks = RESIDUAL_QUICK["blocks" if run["architecture"] == "mlp" else "cnn_blocks"]
        assert len(run["stream"]) == blocks + 1
        assert len(run["loss"]) == len(run["test_accuracy"]) == RESIDUAL_QUICK["epochs"]
    report = folder / "report"
    for name in ("stream_profile.png", "training_curves.png"):
        assert (report / name).read_bytes()[:8] == PNG_MAGIC
    assert json.loads((report / "results.json").read_text())["table"] == document["table"]
    summary = (report / "summary.md").read_text()
    assert "![stream_profile.png](stream_profile.png)" in summary
    for row in document["table"]:
        assert row["scheme"] in printed
        assert row["scheme"] in summary


def test_zero_initialized_branches_leave_every_sum_at_the_stem(quick_run):
    _, printed, folder = quick_run
    document = json.loads((folder / "out.json").read_text())
    zeroed = [r for r in document["runs"] if r["scheme"] != "he_normal"]
    assert zeroed
    for run in zeroed:
        assert run["stream"] == [run["stream"][0]] * len(run["stream"])
    assert "[yes] A zero-initialized branch" in printed


def test_he_stream_matches_a_numpy_forward_pass():
    import keras

    from keras_initlab.compare.datasets import load_dataset
    from keras_initlab.compare.residual.experiment import apply_scheme
    from keras_initlab.compare.residual.models import build_residual_mlp
    from keras_initlab.measurement import measure

    data = load_dataset("digits", seed=0)
    model = build_residual_mlp(64, 10, blocks=4, width=16)
    apply_scheme(model, "he_normal", seed=3, x=None)
    probe = data.x_test[:128].astype(np.float64)
    names = ["stem", *(f"block_{i}_add" for i in range(1, 5))]
    records = {r["layer"]: r for r in measure(model, probe.astype(np.float32), layers=names)}

    def dense(name, x, relu=False):
        layer = model.get_layer(name)
        y = x @ keras.ops.convert_to_numpy(layer.kernel) + keras.ops.convert_to_numpy(layer.bias)
        return np.maximum(y, 0.0) if relu else y

    h = dense("stem", probe)
    expected = [h.var()]
    for i in range(1, 5):
        h = h + dense(f"block_{i}_dense_2", dense(f"block_{i}_dense_1", h, relu=True))
        expected.append(h.var())
    measured = [records[n]["activation_var"] for n in names]
    # float32 forward pass against float64: relative error ~ depth * 2**-24 * fan-in terms
    np.testing.assert_allclose(measured, expected, rtol=1e-4)


def _result(runs, schemes, blocks=4):
    config = ResidualConfig(schemes=schemes, architectures=("mlp",), blocks=blocks)
    return ResidualResult(config, {"name": "t"}, runs, 1.0)


def _run(scheme, stream, accuracy=0.95, loss=0.1, seed=0):
    return ResidualRun("mlp", scheme, seed, stream, [loss], [loss], [accuracy])


def test_claims_follow_the_numbers():
    blocks = 4
    theory = (1 + 2 / blocks) ** blocks
    runs = [
        _run("he_normal", [1.0] + [3.0**i for i in range(1, blocks + 1)], loss=math.nan),
        _run("auto", [1.0, 1.5, 2.0, AUTO_BAND, 2.0]),
        _run("he_normal+zero", [2.0] * (blocks + 1)),
        _run("he_normal+scaled", [1.0, 1.5, 2.0, 3.0, theory]),
    ]
    schemes = ("he_normal", "auto", "he_normal+zero", "he_normal+scaled")
    claims = check_residual_claims(_result(runs, schemes))
    assert [c.holds for c in claims] == [False, True, True, True, True]  # 3^4 = 81 < 100
    result = _result(runs, schemes)
    assert verdict(result, "mlp", "he_normal") == "diverged (1/1)"
    assert verdict(result, "mlp", "auto") == "trains"
    slow = _result([_run("auto", [1.0] * 5, accuracy=HIGH_ACCURACY / 2)], ("auto",))
    assert verdict(slow, "mlp", "auto") == "slow"
    assert [c.holds for c in check_residual_claims(slow)] == [True, False]


def test_claims_fail_when_a_sum_leaves_the_band_or_a_zero_branch_adds():
    runs = [
        _run("auto", [1.0, 1.0, AUTO_BAND * 1.01, 1.0, 1.0]),
        _run("he_normal+zero", [1.0, 1.0, 1.0 + 1e-7, 1.0, 1.0]),
    ]
    claims = check_residual_claims(_result(runs, ("auto", "he_normal+zero")))
    assert [c.holds for c in claims] == [False, True, False]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--blocks", "0"], "`blocks` must be a positive integer"),
        (["--architectures", "mlp,rnn"], "`architectures` must be one of"),
        (["--schemes", "he"], "`schemes` must be one of"),
        (["--dataset", "circles", "--architectures", "cnn"], "perfect square"),
    ],
)
def test_bad_arguments_end_with_one_line(capsys, tmp_path, argv, fragment):
    code = main(["residual", "--quick", "--no-report", "--quiet", *argv])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert fragment in err[0]


def test_a_folder_that_is_not_a_report_is_refused(capsys, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["residual", "--quick", "--out", str(tmp_path)]) == 2
    assert "keep.txt" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_the_experiment_trains_every_residual_rule_initialize_has():
    from keras_initlab.compare.residual.config import RESIDUAL_RULES
    from keras_initlab.residual_init import RULES, TRANSFORMER_RULES

    # config.py names them without importing Keras; the transformer rules (a block's two
    # sums, attention's query and key kept) are language-model recipes', not these stacks'
    assert tuple(r for r in RULES if r not in TRANSFORMER_RULES) == RESIDUAL_RULES
