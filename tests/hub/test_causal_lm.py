"""keras_hub's causal LMs (GPT-2, Llama, Gemma), tiny configs from their constructors (2
blocks, width 64, vocabulary 1000; no preset, no network), read and measured end to end.

Each calls its token embedding twice: the lookup, and reversed, as the output projection
that makes the logits. Both calls are recorded, each under its name; both residual sums
of every decoder block (inside the block's ``call``) are found and recorded; the logits'
record has the vocabulary's units; a monitored fit runs; an alert's candidate
fix is tried on the model (a clone would untie the embedding) and leaves it as it was.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab.callbacks import VarianceMonitor

pytest.importorskip("keras_hub")
from tests.hub.models import BLOCKS, TOKENS, VOCAB, WIDTH, causal_lm, tokens

BATCH = 4
MODELS = ("gemma", "gpt2", "llama")


def _built(name: str):
    model = causal_lm(name)
    model.compile(
        optimizer=keras.optimizers.SGD(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    labels = np.random.default_rng(1).integers(0, VOCAB, (BATCH, TOKENS))
    return model, tokens(name, BATCH), labels


def _embedding_path(model) -> str:
    embedding = model.backbone.token_embedding
    return f"{model.backbone.name}/{embedding.name}"


@pytest.mark.parametrize("name", MODELS)
def test_both_calls_of_the_tied_embedding_and_every_residual_sum_are_recorded(name):
    model, x, y = _built(name)
    records = keras_initlab.measure(model, (x, y))
    by = {r["layer"]: r for r in records}
    embedding = _embedding_path(model)
    assert {embedding, f"{embedding}@2"} <= set(by)
    assert by[embedding]["layer_class"] == by[f"{embedding}@2"]["layer_class"]
    sums = [block.add for block in keras_initlab.residual_blocks(model)]
    assert len(sums) == 2 * BLOCKS
    assert all(by[s]["layer_class"] == "Add" for s in sums), sums
    for record in records:
        assert np.isfinite(record["activation_var"]), record["layer"]
        assert np.isfinite(record["gradient_var"]), record["layer"]
    # The lookup has WIDTH units; the reversed call makes the logits, VOCAB of them.
    assert by[embedding]["distinct_units"] <= WIDTH
    assert by[f"{embedding}@2"]["distinct_units"] > WIDTH


def test_a_monitored_fit_records_every_batch_and_trains_as_a_plain_fit():
    """Two models built alike (weights and dropout's seed states), one fit plain and one
    with the monitor recording every batch: the same weights, bit for bit."""
    fitted = []
    for monitor in (None, VarianceMonitor):
        model, x, y = _built("gpt2")
        data = ({k: np.tile(v, (2, 1)) for k, v in x.items()}, np.tile(y, (2, 1)))
        callbacks = [] if monitor is None else [monitor((x, y), every_n_batches=1)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(
                *data, batch_size=BATCH, epochs=1, verbose=0, shuffle=False, callbacks=callbacks
            )
        fitted.append(model.get_weights())
    embedding = _embedding_path(model)
    assert {embedding, f"{embedding}@2"} <= {r["layer"] for r in callbacks[0].records}
    for got, want in zip(fitted[1], fitted[0], strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_candidate_fix_is_tried_on_the_tied_model_and_leaves_it_alone():
    from keras_initlab.diagnosis import predict_fix

    model, x, _ = _built("gpt2")
    before = model.get_weights()
    candidate = predict_fix(model, {"scheme": "he_normal"}, x)
    assert candidate.error == ""
    assert candidate.judgement is not None
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", MODELS)
def test_auto_reports_what_it_did_to_every_kernel(name):
    """No kernel is changed silently: each has a row saying whether it was scaled, drawn on
    its true fans and not scaled (inside a block the walk reads as a whole), or kept."""
    from keras_initlab.model.weights import weight_specs

    model, _, _ = _built(name)
    report = keras_initlab.initialize(model, "auto", seed=0, report=True)
    rows = report.by_layer()
    for spec in weight_specs(model):
        if not spec.is_bias:
            assert rows[spec.layer_path].kernel in {"scaled", "drawn", "kept"}, spec.layer_path


def test_auto_scales_every_kernel_inside_gpt2s_blocks():
    """The walk reads GPT-2's blocks, so `auto` sets the scale of each kernel in them (the
    query, key, value and output projections, the feed-forward pair)."""
    model, _, _ = _built("gpt2")
    report = keras_initlab.initialize(model, "auto", seed=0, report=True)
    inside = [r for r in report if "/transformer_layer_" in r.layer and r.kernel]
    assert len(inside) == 6 * BLOCKS
    assert all(r.kernel == "scaled" for r in inside), [(r.layer, r.note) for r in inside]


@pytest.mark.parametrize("name", MODELS)
def test_each_attention_softmax_is_recorded_or_said_not_to_have_run(name):
    """keras_hub's attention layers hold a softmax layer; on TensorFlow they compute their
    weights with it (a record per block). Llama's attention on JAX takes the fused
    ``keras.ops.dot_product_attention`` instead, which keeps no weights: its softmax did
    not run, and the monitor's ``skipped`` says so."""
    from keras_initlab.attention_rule import attention_softmaxes

    model, x, y = _built(name)
    monitor = VarianceMonitor((x, y))
    monitor.set_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monitor.on_train_begin()
    recorded = {r["layer"] for r in monitor.records}
    did_not_run = {path for path, _, reason in monitor.skipped if reason == "did not run"}
    softmaxes = [path for path, _ in attention_softmaxes(model)]
    assert len(softmaxes) == BLOCKS
    fused = keras.backend.backend() == "jax" and name == "llama"
    assert [path in did_not_run for path in softmaxes] == [fused] * BLOCKS
    assert [path in recorded for path in softmaxes] == [not fused] * BLOCKS
