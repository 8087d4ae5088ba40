"""`audit(model)` on stock keras_hub models (tiny configs from their constructors): every
weight is what its configured initializer drew as Keras calls it, so none is flagged.
Gemma's token embedding is drawn with ``VarianceScaling(1, "fan_in")`` on Keras' shape rule
(fan_in = the vocabulary: std 0.0316); it was held to the same initializer on an
embedding's true fan-in of 1 (std 1) and flagged."""

from __future__ import annotations

import pytest

import keras_initlab

pytest.importorskip("keras_hub")
from tests.hub.models import VOCAB, WIDTH, backbone, vit_classifier

pytestmark = pytest.mark.tensorflow


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "gemma", "vit"])
def test_a_stock_model_passes_the_audit_of_its_own_initializers(name):
    model = vit_classifier() if name == "vit" else backbone(name)
    report = keras_initlab.audit(model)
    assert [(r.path, r.ratio) for r in report.flagged] == []
    if name == "gemma":
        (row,) = [r for r in report if r.path.endswith("token_embedding/embeddings")]
        assert row.expected_std == pytest.approx((1.0 / VOCAB) ** 0.5, rel=1e-12)
        assert row.fan_out == WIDTH
