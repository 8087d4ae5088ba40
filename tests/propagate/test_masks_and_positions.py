"""Attention over the keys a mask shows, integer tensors, and layers computed from their
input's shape alone: `propagate` against `measure` (`prediction_agreement`) and NumPy.

A causal mask changes what attention averages: query ``i`` sees ``i + 1`` keys, so the
attended values keep ``(i + 1) E[p^2]`` of the values' fluctuations instead of ``T
E[p^2]``; the masked scores get probability 0 and no gradient. Integer and boolean tensors
(a padding mask, positions) carry no activation: the walk computes their values (a padding
mask of ones) and gives them no row.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab.testing import prediction_agreement

L = keras.layers
T, WIDTH, N = 12, 32, 256
BOUNDS = (np.log(1.25), np.log(2.0))  # median and 90th percentile of |log(pred / meas)|


def _probe(shape, seed=0):
    return np.random.default_rng(seed).standard_normal((N, *shape)).astype("float32")


def _agrees(agreement):
    assert agreement.share == 1.0, [r.layer for r in agreement.not_predicted]
    for summary in (agreement.activation, agreement.gradient):
        assert summary.median <= BOUNDS[0], str(agreement)
        assert summary.p90 <= BOUNDS[1], str(agreement)


def test_causal_self_attention_is_predicted_over_each_querys_prefix():
    keras.utils.set_random_seed(0)
    x = keras.Input((T, WIDTH))
    attention = L.MultiHeadAttention(2, 16, name="attention")
    h = attention(x, x, use_causal_mask=True)
    model = keras.Model(x, L.Dense(WIDTH, name="out")(h))
    agreement = prediction_agreement(model, _probe((T, WIDTH)))
    _agrees(agreement)
    row = keras_initlab.propagate(model).by_layer()["attention"]
    assert "its mask shows" in row.note
    # Without the mask the prediction would keep T E[p^2] of the values' fluctuations;
    # the prefix keeps more: the causal output's predicted variance is the larger.
    unmasked = keras.Model(x, L.Dense(WIDTH, name="out2")(attention(x, x)))
    plain = keras_initlab.propagate(unmasked).by_layer()["attention"]
    assert row.activation_var > 2 * plain.activation_var


def _grouped_heads_run() -> bool:
    """Whether this Keras backend's ``dot_product_attention`` takes fewer key and value
    heads than query heads (Keras 3.12's TensorFlow backend does not)."""
    q, kv = np.ones((1, 2, 4, 8), "float32"), np.ones((1, 2, 2, 8), "float32")
    try:
        keras.ops.dot_product_attention(q, kv, kv)
    except Exception:  # whatever the backend raises on the shapes
        return False
    return True


@pytest.mark.parametrize(("groups", "causal", "scale"), [(1, False, None), (2, True, 0.5)])
def test_a_fused_dot_product_attention_is_predicted(groups, causal, scale):
    """``keras.ops.dot_product_attention`` (what keras_hub's decoders call on JAX and
    PyTorch) as a graph node: 4 query heads sharing ``4 // groups`` key and value heads, the
    rule of ``MultiHeadAttention`` without its projections."""
    if groups > 1 and not _grouped_heads_run():
        pytest.skip("this Keras backend's dot_product_attention has no grouped heads")
    keras.utils.set_random_seed(0)
    x = keras.Input((T, WIDTH))

    def project(name, heads):
        return L.EinsumDense("btd,dnh->btnh", (T, heads, 8), name=name)(x)

    q, k, v = project("query", 4), project("key", 4 // groups), project("value", 4 // groups)
    a = keras.ops.dot_product_attention(q, k, v, scale=scale, is_causal=causal)
    model = keras.Model(x, L.Dense(WIDTH, name="out")(L.Reshape((T, 32), name="heads")(a)))
    _agrees(prediction_agreement(model, _probe((T, WIDTH))))
    rows = [r for r in keras_initlab.propagate(model) if "dot_product_attention" in r.layer]
    assert [r.status for r in rows] == ["predicted"]
    assert ("its mask shows" in rows[0].note) == causal


class _MaskedScores(L.Layer):
    """Self-attention weights written with ops and a ``Softmax`` given a causal mask (or,
    with ``diagonal``, a mask that shows each query only its own key)."""

    def __init__(self, diagonal=False, **kwargs):
        super().__init__(**kwargs)
        self.query = L.Dense(8, name="query")
        self.key = L.Dense(8, name="key")
        self.softmax = L.Softmax(name="softmax")
        self.diagonal = diagonal

    def call(self, x):
        scores = keras.ops.einsum("btd,bsd->bts", self.query(x), self.key(x)) / np.sqrt(8.0)
        t = x.shape[1]
        mask = keras.ops.eye(t) if self.diagonal else keras.ops.tril(keras.ops.ones((t, t)))
        return self.softmax(scores, mask=keras.ops.cast(mask[None], "bool"))


def test_a_softmax_whose_mask_shows_one_logit_per_row_passes_back_exactly_zero():
    """Each row's weight is 1 on its one visible logit whatever the scores: the gradient it
    passes back is exactly 0, predicted as such, not a softmax saturated beyond float32."""
    x = keras.Input((T, 8))
    model = keras.Model(x, _MaskedScores(diagonal=True, name="scores")(x))
    rows = keras_initlab.propagate(model).by_layer()
    assert "saturated" not in rows["scores/softmax"].note
    for name in ("scores/query", "scores/key"):
        assert rows[name].status == "predicted", rows[name].note
        assert rows[name].gradient_var == 0.0
    weights = keras.ops.convert_to_numpy(model(_probe((T, 8))))
    np.testing.assert_array_equal(weights, np.broadcast_to(np.eye(T), weights.shape))


def test_a_softmax_given_a_mask_averages_over_the_keys_it_shows():
    x = keras.Input((T, 8))
    model = keras.Model(x, _MaskedScores(name="scores")(x))
    probe = _probe((T, 8)) * 0.3
    rows = keras_initlab.propagate(model, input_var=float(probe.var())).by_layer()
    softmax = rows["scores/softmax"]
    assert softmax.status == "predicted", softmax.note
    # The weights' mean over all elements: (number of visible keys) / T^2 per row sums to
    # T rows of total weight 1 each: mean = 1 / T exactly.
    assert softmax.activation_mean == pytest.approx(1.0 / T, rel=1e-12)
    weights = keras.ops.convert_to_numpy(model(probe))
    assert np.all(weights[:, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)
    # Over all elements the weights vary mostly between rows (1/n_i where shown, 0 where
    # masked), which only the mask explains: the softmax's row agrees with measurement.
    agreement = prediction_agreement(model, probe)
    measured = {r.layer: r for r in agreement.rows}["scores/softmax"]
    assert measured.activation_error <= BOUNDS[0], measured.describe()


class _Positions(L.Layer):
    """A learned position embedding: the table's first rows, read from the input's shape."""

    def build(self, shape):
        self.table = self.add_weight(
            shape=(64, shape[-1]), initializer=keras.initializers.RandomNormal(stddev=0.5)
        )

    def call(self, x):
        table = keras.ops.convert_to_tensor(self.table)  # as keras_hub's (JAX needs it)
        rows = keras.ops.slice(table, (0, 0), (x.shape[1], x.shape[-1]))
        return keras.ops.broadcast_to(rows, x.shape)

    def compute_output_shape(self, shape):
        return shape


def test_a_layer_computed_from_its_inputs_shape_is_the_same_in_every_sample():
    x = keras.Input((None, 8))
    positions = _Positions(name="positions")
    h = L.Add(name="sum")([x, positions(x)])
    model = keras.Model(x, L.Dense(4, name="out")(h))
    report = keras_initlab.propagate(model, input_shapes=[(T, 8)])
    rows = report.by_layer()
    row = rows["positions"]
    assert row.status == "predicted"
    assert "shape alone" in row.note
    table = keras.ops.convert_to_numpy(positions.table).astype(np.float64)[:T]
    assert row.activation_mean == pytest.approx(table.mean(), rel=1e-9)
    assert row.activation_var == pytest.approx(table.var(), rel=1e-9)  # no sample spread
    assert row.gradient_var == pytest.approx(rows["sum"].gradient_var, rel=1e-12)
    assert rows["sum"].activation_var == pytest.approx(1.0 + table.var(), rel=1e-9)


def test_input_shapes_must_fit_the_inputs():
    x = keras.Input((None, 8))
    model = keras.Model(x, L.Dense(4)(x))
    for bad in ([(T, 9)], [(T,)], [(T, 8), (T, 8)], [(0, 8)], "12"):
        with pytest.raises(ValueError, match="input_shapes"):
            keras_initlab.propagate(model, input_shapes=bad)
    assert keras_initlab.propagate(model, input_shapes=[(T, 8)])[0].status == "predicted"


class _RMSNorm(L.Layer):
    """RMS normalization written with keras.ops, as Llama's and Gemma's are."""

    def call(self, x):
        mean_square = keras.ops.mean(keras.ops.square(x), axis=-1, keepdims=True)
        return x * keras.ops.rsqrt(mean_square + 1e-6)


def test_an_rms_normalization_written_with_ops_is_predicted():
    """``mean(square(x))`` over ``n`` iid N(0, 1) elements is Gamma(n / 2, 2 / n), so its
    ``rsqrt`` has the closed-form mean ``sqrt(n / 2) Gamma((n - 1) / 2) / Gamma(n / 2)``;
    the normalized output's variance agrees with measurement."""
    import math

    keras.utils.set_random_seed(0)
    x = keras.Input((T, WIDTH))
    model = keras.Model(x, L.Dense(8, name="out")(_RMSNorm(name="norm")(x)))
    report = keras_initlab.propagate(model, input_shapes=[(T, WIDTH)])
    rows = report.by_layer()
    assert all(r.predicted for r in report), [(r.layer, r.note) for r in report if not r.predicted]
    n = WIDTH
    log_mean = 0.5 * math.log(n / 2) + math.lgamma((n - 1) / 2) - math.lgamma(n / 2)
    # The eps (1e-6) moves it by about 5e-7 relative; float64 arithmetic by far less.
    assert rows["norm/rsqrt"].activation_mean == pytest.approx(math.exp(log_mean), rel=1e-6)
    _agrees(prediction_agreement(model, _probe((T, WIDTH))))


def test_where_with_a_known_condition_and_zeros_like():
    """``where(mask, x, zeros_like(x))`` with a constant mask: the kept elements keep their
    moments, the others are 0 in every sample; the gradient reaches the kept ones only."""
    mask = np.arange(WIDTH) % 2 == 0

    class Masked(L.Layer):
        def call(self, x):
            return keras.ops.where(mask, x, keras.ops.zeros_like(x))

    x = keras.Input((WIDTH,))
    h = L.Dense(WIDTH, name="d0")(x)
    model = keras.Model(x, L.Dense(4, name="out")(Masked(name="masked")(h)))
    rows = keras_initlab.propagate(model).by_layer()
    assert all(rows[n].predicted for n in ("d0", "masked", "masked/where", "out"))
    # d0's element j has mean 0 (zero bias) and variance sum_i W_ij^2 on unit inputs; the
    # kept half keeps it, the rest is 0 in every sample.
    w = keras.ops.convert_to_numpy(model.get_layer("d0").kernel).astype(np.float64)
    expected = np.where(mask, (w * w).sum(axis=0), 0.0).mean()
    assert rows["masked"].activation_var == pytest.approx(expected, rel=1e-9)
    assert rows["masked"].activation_mean == 0.0
    agreement = prediction_agreement(model, _probe((WIDTH,)))
    _agrees(agreement)


def test_a_bias_computed_from_a_mask_alone_is_known_in_every_sample():
    """A float tensor computed by ``keras.ops`` from a padding mask alone (Falcon's ALiBi
    bias: positions counted along the mask, the batch axis moved by ``expand_dims`` and a
    transpose) is the same in every sample: its value is computed, not assumed. With a
    mask of ones the bias at position ``t`` is ``0.1 t``: the sum's predicted mean is the
    dense output's (0: no bias, zero-mean input) plus ``0.1 (T - 1) / 2``."""
    x = keras.Input((T, WIDTH))
    m = keras.Input((T,), dtype="int32")
    steps = keras.ops.cast(keras.ops.cumsum(m, axis=-1) - 1, "float32")
    moved = keras.ops.transpose(keras.ops.expand_dims(steps, 0), (1, 0, 2))  # (B, 1, T)
    bias = 0.1 * keras.ops.transpose(moved, (0, 2, 1))  # (B, T, 1)
    h = keras.ops.add(L.Dense(WIDTH, name="dense")(x), bias)
    model = keras.Model([x, m], L.Dense(WIDTH, name="out")(h))
    report = keras_initlab.propagate(model)
    assert [(r.layer, r.note) for r in report if not r.predicted] == []
    (row,) = [r for r in report if r.layer.startswith("add")]
    # (the bias computed in float32, as the model computes it: 0.1 rounds at 1.5e-8)
    assert row.activation_mean == pytest.approx(0.1 * (T - 1) / 2, rel=1e-7)
