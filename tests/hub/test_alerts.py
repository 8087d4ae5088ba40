"""`VarianceMonitor`'s alerts at step 0 on keras_hub's transformers (tiny configs from their
constructors), stock and after ``initialize(model, "he_normal")``: none.

Nothing vanishes or explodes there, and what the depth rule reads must say so: the main
path runs through every block (a padding mask that every block reads is an integer tensor,
which carries no signal: it jumps over no block); a block that builds its causal mask from
the sequence length is read at stand-in sizes; keras_hub's RMS norms (no Keras class) reset
the scale, found by what they compute; a pre-norm block's sums add what their normalized
branches give, whatever the stream's scale (GPT-2's and Llama's streams start at an
embedding of variance 1e-4 and gain unit-variance branches: 1e4-fold over the first sum,
linear after). The planted fault of the transformer issue that the depth rule judges, a
stack with no normalization under He whose stream compounds, is in
tests/callbacks/test_grounded_alerts.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import keras_initlab

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

pytestmark = pytest.mark.tensorflow
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
@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "gemma", "vit"])
def test_no_alert_at_step_0_on_a_stock_or_he_initialized_transformer(name, scheme):
    model, x, labels = _task(name)
    if scheme is not None:
        keras_initlab.initialize(model, scheme, seed=0)
    alerts, monitor, _ = step0_alerts(model, x, labels)
    assert [a.message for a in alerts] == []
    path, _ = monitor._judging_path(monitor.probe_mode)
    assert path.assumed == ""
    assert len(path.normalized_sums) == (0 if name == "bert" else 4)  # BERT is post-norm
