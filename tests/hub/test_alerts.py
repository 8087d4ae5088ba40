"""`VarianceMonitor`'s alerts at step 0 on keras_hub's transformers (tiny configs from their
constructors), stock and after ``initialize(model, "he_normal")``: none.

Nothing vanishes or explodes there, and what the depth rule reads must say so: the main
path runs through every block (a padding mask that every block reads is an integer tensor,
which carries no signal: it jumps over no block); a block that builds its causal mask from
the sequence length is read at stand-in sizes; keras_hub's RMS norms (no Keras class) reset
the scale, found by what they compute; a pre-norm block's sums add what their normalized
branches give, whatever the stream's scale (GPT-2's and Llama's streams start at an
embedding of variance 1e-4 and gain unit-variance branches: 1e4-fold over the first sum,
linear after). Of the transformer issue's planted faults, the tied embedding drawn at
std 1 is here (the logits rule); the stack with no normalization under He, whose stream
compounds (the depth rule), is in tests/callbacks/test_grounded_alerts.py.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab.callbacks import VarianceMonitor

pytest.importorskip("keras_hub")
from tests.hub.models import (
    IMAGE,
    TOKENS,
    VOCAB,
    bert_classifier,
    causal_lm,
    tokens,
    vit_classifier,
)
from tests.model_reading.judge import step0_alerts

BATCH = 4


def _task(name):
    """The task model ``name``, its probe inputs and class ids for its outputs."""
    rng = np.random.default_rng(1)
    if name == "vit":
        x = rng.standard_normal((BATCH, IMAGE, IMAGE, 3)).astype("float32")
        return vit_classifier(10), x, rng.integers(0, 10, BATCH)
    if name == "bert":
        return bert_classifier(4), tokens(name, BATCH), rng.integers(0, 4, BATCH)
    return causal_lm(name), tokens(name, BATCH), rng.integers(0, VOCAB, (BATCH, TOKENS))


@pytest.mark.parametrize("scheme", [None, "he_normal"])
@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "gemma", "vit", "gptneox", "falcon"])
def test_no_alert_at_step_0_on_a_stock_or_he_initialized_transformer(name, scheme):
    model, x, labels = _task(name)
    if scheme is not None:
        keras_initlab.initialize(model, scheme, seed=0)
    alerts, monitor, _ = step0_alerts(model, x, labels)
    assert [a.message for a in alerts] == []
    path, _ = monitor._judging_path(monitor.probe_mode)
    assert path.assumed == ""
    # BERT is post-norm; GPT-NeoX adds both branches of a block to the stream in one sum.
    assert len(path.normalized_sums) == {"bert": 0, "gptneox": 2}.get(name, 4)


def _fit_alerts(model, x, labels):
    """The alerts of a monitored fit at its start (its step-0 record), the model compiled
    as keras_hub's causal LMs are trained: a cross-entropy of its logits. The monitor is
    called as ``fit`` calls it before the first step (keras_hub's data pipeline on JAX,
    grain, refuses a fit of no epochs)."""
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    monitor = VarianceMonitor((x, labels))
    monitor.set_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monitor.on_train_begin()
    return monitor.alerts


@pytest.mark.parametrize("std", [None, 1.0])
def test_a_tied_embedding_drawn_at_std_1_makes_saturated_logits(std):
    """The transformer issue's planted fault: GPT-2's tied embedding drawn at std 1. The
    logits (final LayerNorm's unit-variance output times the embedding, over 64 features)
    have a variance of about 64 across the 1000 classes, beyond twice 2 ln 1000, 27.6: an alert
    of kind "logits" whose text gives the measured loss, far above ln 1000 = 6.9 (28 on
    this probe). Stock (std 0.02: variance 0.026 * 0.25), no alert."""
    model, x, labels = _task("gpt2")
    embedding = model.backbone.token_embedding.embeddings
    if std is not None:
        draw = np.random.default_rng(0).standard_normal(embedding.shape) * std
        embedding.assign(draw.astype("float32"))
    alerts = [a for a in _fit_alerts(model, x, labels) if a.kind == "logits"]
    if std is None:
        assert alerts == []
        return
    (alert,) = alerts
    assert alert.cause == "weights"
    assert not alert.checked
    assert "above 27.6 (2 x 2 ln C)" in alert.what
    # Each position's logits are h . E_c with |h|^2 = 64 (LayerNorm, unit scale), so their
    # variance across classes is h^T S h, S the covariance of the embedding's 1000 rows of
    # iid N(0, 1) entries, whose eigenvalues lie within the Marchenko-Pastur edges
    # (1 +- sqrt(64 / 1000))^2 = 0.56 and 1.57 (with 1000 rows, past them by O(1000^-2/3)).
    assert 64 * 0.5 < alert.factor < 64 * 1.6
    measured = float(alert.what.split("measured ")[1].split(",")[0])
    assert measured > 2 * np.log(VOCAB)


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "gemma"])
def test_a_lost_attention_scale_collapses_the_softmax(name):
    """The transformer issue's planted fault on He: the query and key kernels drawn
    ``d_head^(1/4)`` larger each, so the scores are ``sqrt(d_head)`` times He's (a lost
    ``1/sqrt(d_head)``): their variance, about 3 under He, becomes about ``3 d_head`` (96
    here), beyond ``2 x 2 ln 16 = 11.1`` for the 16 keys a query sees at most; the
    attention softmax starts collapsed. Under He alone (the test above), no alert. Where
    keras_hub's attention takes the fused ``dot_product_attention`` (Llama on JAX), the
    scores are those of its query and key, named by the calling layer."""
    model, x, labels = _task(name)
    keras_initlab.initialize(model, "he_normal", seed=0)
    for variable in model.weights:
        if variable.path.endswith(("query/kernel", "key/kernel")):
            variable.assign(variable.numpy() * variable.shape[-1] ** 0.25)
    alerts, _, _ = step0_alerts(model, x, labels)
    (alert,) = [a for a in alerts if a.kind == "attention"]
    assert alert.cause == "weights"
    assert not alert.checked
    assert alert.layer.startswith(f"{model.backbone.name}/")
    last = alert.layer.rsplit("/", 1)[1]
    assert "softmax" in last or last == "dot_product_attention", alert.layer
    assert "above 11.1 (2 x 2 ln n, n = 16 keys)" in alert.what
    assert "in 2 of 2 attention softmaxes" in alert.what
