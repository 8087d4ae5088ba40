"""`audit(model)` on stock keras_hub models (tiny configs from their constructors): every
weight is what its configured initializer drew as Keras calls it, so none is flagged.
Gemma's token embedding is drawn with ``VarianceScaling(1, "fan_in")`` on Keras' shape rule
(fan_in = the vocabulary: std 0.0316); it was held to the same initializer on an
embedding's true fan-in of 1 (std 1) and flagged."""

from __future__ import annotations

import numpy as np
import pytest

import keras_initlab
from keras_initlab.testing import budget, variance_interval

pytest.importorskip("keras_hub")
from tests.hub.models import BLOCKS, VOCAB, WIDTH, backbone, vit_classifier


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "gemma", "vit"])
def test_a_stock_model_passes_the_audit_of_its_own_initializers(name):
    model = vit_classifier() if name == "vit" else backbone(name)
    report = keras_initlab.audit(model)
    assert [(r.path, r.ratio) for r in report.flagged] == []
    if name == "gemma":
        (row,) = [r for r in report if r.path.endswith("token_embedding/embeddings")]
        assert row.expected_std == pytest.approx((1.0 / VOCAB) ** 0.5, rel=1e-12)
        assert row.fan_out == WIDTH


def test_stock_gpt2_against_the_gpt2_recipe_has_its_branch_outputs_sqrt_2n_too_large():
    """keras_hub draws every GPT-2 kernel at 0.02; GPT-2's recipe (Radford et al. 2019,
    section 2.3) draws each branch's output projection at 0.02 / sqrt(2N). Its token table
    is drawn at 0.01 where OpenAI's model.py draws 0.02 (``wte``; 0.01 is ``wpe``'s)."""
    model = backbone("gpt2")
    report = keras_initlab.audit(model, "gpt2")
    outputs = {
        r.path
        for r in report
        if r.path.endswith(("attention_output/kernel", "feedforward_output_dense/kernel"))
    }
    assert len(outputs) == 2 * BLOCKS
    assert {r.path for r in report.flagged} == outputs | {"token_embedding/embeddings"}
    for row in report.flagged:
        n = int(np.prod(next(v for v in model.weights if v.path == row.path).shape))
        lo, hi = variance_interval(n, "normal", budget().alpha)
        target = 2 * BLOCKS if row.path in outputs else 0.25
        assert lo <= row.ratio**2 / target <= hi, (row.path, row.ratio)


@pytest.mark.parametrize(("name", "recipe"), [("gpt2", "gpt2"), ("llama", "olmo")])
def test_a_recipe_applied_to_a_hub_backbone_passes_its_own_audit(name, recipe):
    model = backbone(name)
    report = keras_initlab.initialize(model, recipe, seed=0, report=True)
    assert len(report.residual.blocks) == 2 * BLOCKS
    assert keras_initlab.audit(model, recipe).flagged == []


def test_the_rules_that_cannot_apply_to_a_hub_block_say_why():
    """BERT is post-LN, but its blocks are keras_hub layers with no fixed branch multiplier:
    DeepNet's alpha cannot be set there; GPT-2 normalizes, so T-Fixup does not apply."""
    bert = backbone("bert")
    with pytest.raises(ValueError, match=r"ResidualGate\(trainable=False\).*keras_hub"):
        keras_initlab.initialize(bert, "deepnet")
    with pytest.raises(ValueError, match=r"'t_fixup'.*without normalization"):
        keras_initlab.initialize(backbone("gpt2"), "t_fixup")


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "gemma", "vit"])
def test_attention_projections_drawn_from_one_instance_repeat_the_querys_draws(name):
    """Llama's and Gemma's attentions pass one unseeded initializer instance to their
    four projections (Keras draws the same numbers at each call of one instance), and
    Llama's untied output table repeats its token table; GPT-2, BERT and ViT clone theirs.
    `initialize` re-draws every kernel from its own seed; the untied ``reverse_embeddings``
    is a weight it does not handle and keeps its draws."""
    model = vit_classifier() if name == "vit" else backbone(name)
    report = keras_initlab.audit(model)
    pairs = {(r.path, r.repeats) for r in report.repeated}
    expected = set()
    if name in ("llama", "gemma"):
        llama = name == "llama"
        attention = "transformer_layer_{}/self_attention" if llama else "decoder_block_{}/attention"
        for block in range(BLOCKS):
            prefix = attention.format(block)
            for other in ("key", "value", "attention_output"):
                expected.add((f"{prefix}/{other}/kernel", f"{prefix}/query/kernel"))
    untied = {("token_embedding/reverse_embeddings", "token_embedding/embeddings")}
    if name == "llama":
        expected |= untied
    assert pairs == expected
    keras_initlab.initialize(model, "he_normal", seed=0)
    after = {(r.path, r.repeats) for r in keras_initlab.audit(model).repeated}
    assert after == (untied if name == "llama" else set())
