"""`keras-initlab transformer`: the quick run, the data, the stream against NumPy, the claims.

The stream the experiment records is checked against a float64 NumPy forward pass of the
same weights (LayerNormalization, causal multi-head attention, GELU written out), the data
against the standard library's bytes, re-initialization by running one setup after another
setup trained the same model (the numbers must equal a fresh run's: every weight, the
optimizer and the batch order put back), and the claims on constructed results where the
answer is known.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

from keras_initlab.cli import main
from keras_initlab.compare.datasets import DatasetUnavailable
from keras_initlab.compare.transformer.claims import check_transformer_claims, verdict
from keras_initlab.compare.transformer.config import (
    SCHEMES_OF,
    TRANSFORMER_QUICK,
    TRANSFORMER_SCHEMES,
    TransformerConfig,
)
from keras_initlab.compare.transformer.experiment import TransformerResult, TransformerRun
from keras_initlab.compare.transformer.text import STDLIB_FILES, VOCABULARY, load_stdlib

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {
    "depth": 2,
    "width": 16,
    "heads": 2,
    "length": 8,
    "epochs": 2,
    "steps": 2,
    "batch_size": 4,
    "seeds": 1,
    "probe_size": 8,
    "test_limit": 16,
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transformer")
    out, err = io.StringIO(), io.StringIO()
    argv = ["transformer", "--quick", "--quiet"]  # every setup: the smoke run CI runs
    argv += ["--out", str(folder / "report"), "--json", str(folder / "out.json")]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), folder


def test_quick_run_writes_every_run_and_the_report(quick_run):
    code, printed, folder = quick_run
    assert code == 0
    document = json.loads((folder / "out.json").read_text())
    setups = [(a, s) for a, schemes in SCHEMES_OF.items() for s in schemes]
    assert [(r["architecture"], r["scheme"]) for r in document["runs"]] == [
        setup for setup in setups for _ in range(TRANSFORMER_QUICK["seeds"])
    ]
    for run in document["runs"]:
        assert len(run["stream"]) == len(run["predicted"]) == 1 + 2 * TRANSFORMER_QUICK["depth"]
        assert len(run["loss"]) == len(run["test_loss"]) == TRANSFORMER_QUICK["epochs"]
    assert document["data"]["sha256"]
    assert document["data"]["unigram_loss"] > 0
    report = folder / "report"
    for name in ("stream_profile.png", "training_curves.png"):
        assert (report / name).read_bytes()[:8] == PNG_MAGIC
    summary = (report / "summary.md").read_text()
    assert "![stream_profile.png](stream_profile.png)" in summary
    for row in document["table"]:
        assert row["scheme"] in printed
        assert row["scheme"] in summary
    assert len(document["claims"]) == 7


def test_the_initialization_claims_hold_on_the_smoke_run(quick_run):
    """Claims 1, 2 and 4 need no training: propagate's prediction within 2x, a pre-LN
    stream without depth scaling growing at least linearly, and He's stream without
    normalization at least doubling per block while T-Fixup's stays below 2x. Their
    thresholds come from the variance recursions (`claims`'s docstring), not from a run."""
    _, _, folder = quick_run
    claims = json.loads((folder / "out.json").read_text())["claims"]
    assert [claims[i]["holds"] for i in (0, 1, 3)] == [True, True, True], claims


def test_the_windows_are_the_standard_librarys_bytes_shifted_by_one():
    import sysconfig
    from pathlib import Path

    data = load_stdlib(16, seed=0)
    assert data.num_classes == VOCABULARY
    assert data.num_features == 16
    np.testing.assert_array_equal(data.x_train[:, 1:], data.y_train[:, :-1])
    text = b"\n".join(
        (Path(sysconfig.get_paths()["stdlib"]) / name).read_bytes() for name in STDLIB_FILES
    )
    windows = len(text) // 17
    assert len(data.y_train) + len(data.y_test) == windows
    assert round(0.1 * windows) == len(data.y_test)
    # every window is a run of the text's bytes (non-ASCII ones as 0)
    first = bytes(np.concatenate([data.x_test[0], data.y_test[0][-1:]]).astype(np.uint8))
    assert first in bytes(b if b < 128 else 0 for b in text)
    assert load_stdlib(16, seed=1).x_train.tolist() != data.x_train.tolist()


def test_a_missing_module_is_named(tmp_path):
    with pytest.raises(DatasetUnavailable, match=r"difflib\.py"):
        load_stdlib(16, root=tmp_path)


def _numpy_stream(model, ids):
    """The embedding and every residual sum of a pre-LN `build_decoder` model, in float64."""
    import keras

    def weights(name):
        return [
            np.asarray(keras.ops.convert_to_numpy(w), np.float64)
            for w in model.get_layer(name).weights
        ]

    def norm(name, h):
        gamma, beta = weights(name)
        mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        return (h - mean) / np.sqrt(var + model.get_layer(name).epsilon) * gamma + beta

    def attention(name, u):
        (wq, bq, wk, bk, wv, bv, wo, bo) = weights(name)
        q = np.einsum("btd,dhk->bthk", u, wq) + bq
        k = np.einsum("btd,dhk->bthk", u, wk) + bk
        v = np.einsum("btd,dhk->bthk", u, wv) + bv
        scores = np.einsum("bshk,bthk->bhts", k, q) / math.sqrt(wq.shape[-1])
        t = u.shape[1]
        scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        return np.einsum("bhts,bshk,hkd->btd", p, v, wo) + bo

    def ffn(prefix, u):
        w1, b1 = weights(f"{prefix}_in")
        w2, b2 = weights(f"{prefix}_out")
        z = u @ w1 + b1
        erf = np.vectorize(math.erf)(z / math.sqrt(2.0))
        return (0.5 * z * (1.0 + erf)) @ w2 + b2

    h = weights("tokens")[0][ids]
    stream = [h.var()]
    depth = sum(layer.name.endswith("_sum") for layer in model.layers) // 2
    for b in range(depth):
        h = h + attention(f"block_{b}_attention", norm(f"block_{b}_attention_norm", h))
        stream.append(h.var())
        h = h + ffn(f"block_{b}_ffn", norm(f"block_{b}_ffn_norm", h))
        stream.append(h.var())
    return stream


@pytest.mark.parametrize("scheme", ["he_normal", "gpt2"])
def test_the_recorded_stream_matches_a_numpy_forward_pass(scheme):
    from keras_initlab.compare.transformer.experiment import apply_scheme
    from keras_initlab.compare.transformer.models import EMBEDDING, build_decoder, sum_names
    from keras_initlab.measurement import measure

    model = build_decoder("pre_ln", vocabulary=VOCABULARY, length=12, depth=2, width=16, heads=2)
    apply_scheme(model, scheme, seed=5)
    ids = np.random.default_rng(0).integers(0, VOCABULARY, (16, 12)).astype("int32")
    names = [EMBEDDING, *sum_names(2)]
    records = {r["layer"]: r for r in measure(model, ids, layers=names, loss="mse")}
    measured = [records[n]["activation_var"] for n in names]
    # float32 forward pass against float64: a few roundings of 2**-24 per op, 4 sums deep
    np.testing.assert_allclose(measured, _numpy_stream(model, ids), rtol=1e-4)


def test_each_scheme_draws_the_token_table_it_names():
    from keras_initlab.compare.transformer.experiment import apply_scheme
    from keras_initlab.compare.transformer.models import build_decoder

    width, vocabulary = 64, VOCABULARY
    model = build_decoder("pre_ln", vocabulary=vocabulary, length=4, depth=2, width=width, heads=2)
    expected = {
        "normal_0.02": 0.02,
        "small_init": math.sqrt(2 / (5 * width)),
        "he_normal": 1.0,
        "gpt2": 0.02,  # the recipe's own draw
    }
    n = vocabulary * width
    for scheme, std in expected.items():
        apply_scheme(model, scheme, seed=0)
        table = model.get_layer("tokens").embeddings.numpy()
        # the sample variance of n normal draws: relative standard error sqrt(2 / n)
        assert abs(table.var() / std**2 - 1) < 5 * math.sqrt(2 / n), scheme


def test_a_setup_run_after_another_equals_a_fresh_run():
    """One model serves every scheme: re-initialization puts back every weight (the trained
    LayerNormalization's too), the optimizer's state and the batch order."""
    from keras_initlab.compare.transformer.experiment import run_transformer

    alone = run_transformer(
        TransformerConfig(schemes=("he_normal",), architectures=("pre_ln",), **TINY)
    )
    after = run_transformer(
        TransformerConfig(schemes=("normal_0.02", "he_normal"), architectures=("pre_ln",), **TINY)
    )
    assert [r.scheme for r in after.runs] == ["normal_0.02", "he_normal"]
    assert after.runs[1] == alone.runs[0]


def _run(arch, scheme, sums, *, predicted=None, final=2.0, diverged=False, seed=0):
    stream = [sums[0], *sums]
    losses = [math.nan if diverged else final]
    return TransformerRun(
        arch, scheme, seed, stream, predicted or stream, [1.0] * len(stream), 4.8, losses, losses
    )


def _result(runs, depth=2):
    config = TransformerConfig(depth=depth, schemes=TRANSFORMER_SCHEMES)
    return TransformerResult(config, {"unigram_loss": 3.0}, runs, 1.0)


def _linear(increment, start=1.0, depth=2):
    return [start + increment * i for i in range(2 * depth)]


def test_claims_follow_the_numbers():
    runs = [
        _run("pre_ln", "normal_0.02", _linear(0.4), final=2.0),
        _run("pre_ln", "he_normal", _linear(1.0)),
        _run("pre_ln", "gpt2", _linear(0.09), final=1.9),  # over 2N = 4 times less added
        _run("post_ln", "normal_0.02", [1.0] * 4, final=3.5),  # stalls
        _run("post_ln", "deepnet", [1.0] * 4, final=2.5),
        _run("no_norm", "he_normal", [1.0, 3.0, 9.0, 27.0], diverged=True),
        _run("no_norm", "t_fixup", [1.0, 1.1, 1.2, 1.3], final=2.8),
    ]
    claims = check_transformer_claims(_result(runs))
    assert [c.holds for c in claims] == [True] * 7, claims
    result = _result(runs)
    assert verdict(result, "no_norm", "he_normal") == "diverged (1/1)"
    assert verdict(result, "post_ln", "normal_0.02") == "stalls"
    assert verdict(result, "pre_ln", "gpt2") == "trains"


def test_claims_fail_where_the_numbers_say_so():
    runs = [
        # predicted 2.5x off; the second half of the blocks adds 0.4 of the first's
        _run(
            "pre_ln",
            "normal_0.02",
            [1.0, 3.0, 3.5, 3.8],
            predicted=[1.0, 1.0, 1.2, 1.5, 1.5],
            final=2.0,
        ),
        _run("pre_ln", "gpt2", [1.0, 1.3, 1.6, 2.0], final=2.1),  # 2.8x less added, worse
        _run("post_ln", "normal_0.02", [1.0] * 4, final=2.2),  # trains, below DeepNet
        _run("post_ln", "deepnet", [1.0] * 4, final=2.5),
        _run("no_norm", "he_normal", [1.0, 2.0, 3.0, 3.9], final=2.9),  # trains, grows < 2^N
        _run("no_norm", "t_fixup", [1.0, 1.5, 2.0, 2.5], final=2.8),
    ]
    claims = check_transformer_claims(_result(runs))
    assert [c.holds for c in claims] == [False] * 7, claims
    assert "beyond: pre_ln normal_0.02" in claims[0].evidence


def test_claims_without_their_runs_are_not_applicable():
    runs = [_run("pre_ln", "auto", _linear(0.1))]
    marks = [c.mark for c in check_transformer_claims(_result(runs))]
    assert marks == ["yes", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--depth", "0"], "`depth` must be a positive integer"),
        (["--heads", "3"], "`heads` must divide `width` (32)"),
        (["--architectures", "pre_ln,decoder"], "`architectures` must be one of"),
        (["--schemes", "deepnet", "--architectures", "pre_ln"], "names no scheme of the chosen"),
        (["--dataset", "digits"], "`dataset` must be one of ['stdlib']"),
        (["--steps", "1000"], "the data hold"),
    ],
)
def test_bad_arguments_end_with_one_line(capsys, argv, fragment):
    code = main(["transformer", "--quick", "--no-report", "--quiet", *argv])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert fragment in err[0]


def test_the_experiment_names_every_transformer_rule_and_recipe_it_trains():
    from keras_initlab.initialize import INITIALIZE_SCHEMES

    # config.py names them without importing Keras; "normal_0.02" is the experiment's own
    assert set(TRANSFORMER_SCHEMES) - {"normal_0.02"} <= set(INITIALIZE_SCHEMES)
