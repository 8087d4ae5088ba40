"""`propagate` on keras_hub backbones (tiny configs from their constructors) against
`measure` (`keras_initlab.testing.prediction_agreement`, 16 sequences of 16 tokens).

The blocks are read through their traced calls at the probe's sequence length: the causal
or padding mask computed from it (keras_hub builds it with `keras.ops` from the input's
length and the padding mask, taken as ones), the attention over the keys each query sees,
the learned position embedding computed from the input's shape alone, an RMS normalization
written with `keras.ops` (a power of the positive mean of squares), and the correlation
between positions that each causal or bidirectional attention average leaves for the next
(`keras_initlab.propagate._positions`; Llama, which has no position embedding to dilute
it, was 2x off without it). GPT-2, BERT, Llama, Gemma and, beyond the issue's five,
GPT-NeoX and Falcon: every recorded row is predicted, within the transformer issue's bounds
(median of |log(predicted / measured)| at most log 1.25, 90th percentile at most log 2,
activation and gradient). Gemma's stock query and key kernels share their draws (one
unseeded initializer instance for all four projections), so each query scores its own key
about 6.5 above the others: read as independent, its gradients were 1.5x off at the
median, 3x at the 90th percentile (`keras_initlab.propagate._linear`). On JAX Llama's and
Gemma's attention is the fused `keras.ops.dot_product_attention` (its own rule), on
TensorFlow `keras.ops` einsums over repeated key/value heads: both are read.
"""

from __future__ import annotations

import numpy as np
import pytest

import keras_initlab
from keras_initlab.healthy import probe_moments
from keras_initlab.testing import prediction_agreement

pytest.importorskip("keras_hub")
from tests.hub.models import IMAGE, backbone, tokens, vit_classifier

BATCH = 16
BOUNDS = (np.log(1.25), np.log(2.0))


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "gemma", "gptneox", "falcon"])
def test_every_row_is_predicted_within_the_bounds(name):
    """GPT-NeoX's attention returns ``(output, None)`` (no cache), which Keras cannot record
    as a node; Falcon multiplies a backend array of ALiBi slopes by a tensor of positions
    (a JAX array does not defer to a KerasTensor) and moves the batch axis of the bias it
    computes from its padding mask: both are read."""
    agreement = prediction_agreement(backbone(name), tokens(name, BATCH))
    assert agreement.share == 1.0, [(r.layer, r.note) for r in agreement.not_predicted]
    for summary in (agreement.activation, agreement.gradient):
        assert summary.median <= BOUNDS[0], str(agreement)
        assert summary.p90 <= BOUNDS[1], str(agreement)


def test_the_position_embedding_passes_no_gradient_to_the_tokens():
    """keras_hub's PositionEmbedding reads only its input's shape: the token embedding's
    gradient is the sum's alone (it was predicted twice the sum's when the position
    embedding was taken as passing its input through)."""
    model = backbone("gpt2")
    rows = keras_initlab.propagate(model, **probe_moments(tokens("gpt2", BATCH), model)).by_layer()
    assert rows["position_embedding"].status == "predicted"
    token, total = rows["token_embedding"].gradient_var, rows["embeddings_add"].gradient_var
    assert token == pytest.approx(total, rel=1e-12)


def test_vit_is_predicted_within_the_bounds_bar_its_position_table():
    """ViT's patch embedding computes its position table from a constant inside its call
    (the embedding of its own position ids): the trace records no node for it, so
    `propagate` has no row for it (`measure` has one); every other row is predicted
    within the bounds."""
    model = vit_classifier(10).backbone
    images = np.random.default_rng(0).standard_normal((BATCH, IMAGE, IMAGE, 3)).astype("float32")
    agreement = prediction_agreement(model, images)
    missing = [(r.layer, r.status) for r in agreement.not_predicted]
    assert missing == [("vit_patching_and_embedding/position_embedding", "no row")]
    for summary in (agreement.activation, agreement.gradient):
        assert summary.median <= BOUNDS[0], str(agreement)
        assert summary.p90 <= BOUNDS[1], str(agreement)
