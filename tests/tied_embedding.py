"""A token embedding tied to the output projection, and its records in NumPy float64.

keras_hub's causal LMs call their token embedding twice: as the lookup (batch, tokens,
width) and, reversed, as the output projection that makes the logits (batch, tokens,
vocabulary). `tied_model` is the smallest such model (the lookup, then the reversed call);
`check_records` checks a measurement's two records (``embed``, ``embed@2``) against NumPy
float64 from the table: the outputs ``h = E[x]`` and ``z = h E^T``, the loss's gradients at
them (``dL/dz = (softmax(z) - onehot) / count``, ``dL/dh = dL/dz E``) and the shared
table's variance on both, each within the float32 statistics' bound plus the backend's own
float32 rounding of ``z`` (a matmul of ``WIDTH`` terms) and of ``dL/dh`` (``VOCAB`` terms).
Used by `test_measurement_core` (every backend) and the MirroredStrategy worker.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_initlab.measurement._statistics import gamma, variance_bound

VOCAB, WIDTH, TOKENS, BATCH = 40, 16, 6, 16
U = 2.0**-24


@keras.saving.register_keras_serializable(package="keras_initlab_tests")
class TiedEmbedding(keras.layers.Embedding):
    """Called as the lookup, and reversed (``x @ embeddings.T``) for the logits (registered,
    as keras_hub's layers are, so that a model holding it can be cloned)."""

    def call(self, x, reverse=False):
        if reverse:
            return keras.ops.matmul(x, keras.ops.transpose(self.embeddings))
        return super().call(x)

    def compute_output_spec(self, x, reverse=False):
        if reverse:
            return keras.KerasTensor((*x.shape[:-1], self.input_dim), dtype=self.compute_dtype)
        return super().compute_output_spec(x)


def tied_model() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """The model (compiled: sparse cross-entropy from logits), its tokens and labels."""
    rng = np.random.default_rng(3)
    tokens = keras.Input((TOKENS,), dtype="int32")
    embed = TiedEmbedding(VOCAB, WIDTH, name="embed")
    model = keras.Model(tokens, embed(embed(tokens), reverse=True))
    model.set_weights([rng.standard_normal((VOCAB, WIDTH)) * 0.5])
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = rng.integers(0, VOCAB, (BATCH, TOKENS)).astype("int32")
    return model, x, rng.integers(0, VOCAB, (BATCH, TOKENS))


def _within(got: float, g: np.ndarray, e: np.ndarray) -> None:
    """``got`` is the variance of the float64 ``g``, which the backend computed with an
    elementwise rounding of at most ``e``, within the float32 statistics' bound."""
    exact = g.var()
    rounding = float(np.mean(2 * np.abs(g) * e + e * e)) / exact
    bound = variance_bound(g.size, float(np.mean(g**2) / exact)) + rounding
    assert abs(got - exact) <= bound * exact, (got, exact, bound)


def check_records(records: list[dict], table: np.ndarray, x: np.ndarray, labels: np.ndarray):
    """Assert the two records of `tied_model` on ``(x, labels)`` (see the module)."""
    assert [r["layer"] for r in records] == ["embed", "embed@2"]
    by = {r["layer"]: r for r in records}
    table = np.asarray(table, np.float64)
    h = table[x]
    z = h @ table.T
    e_z = gamma(WIDTH) * (np.abs(h) @ np.abs(table).T)
    for name, y, e in (("embed", h, np.zeros_like(h)), ("embed@2", z, e_z)):
        _within(by[name]["activation_var"], y, e)
        assert abs(by[name]["weight_var"] - table.var()) <= 4 * U * table.var()
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    dz = (p - np.eye(VOCAB)[labels]) / labels.size
    # Logits off by at most e_z move each probability by at most 2 max(e_z) relative; the
    # float32 softmax itself (exp, a sum of VOCAB terms, a division) by gamma(VOCAB + 4);
    # the division by the count by u.
    e_dz = p * (2 * e_z.max(-1, keepdims=True) + gamma(VOCAB + 4)) / labels.size
    e_dz = e_dz + U * np.abs(dz)
    _within(by["embed@2"]["gradient_var"], dz, e_dz)
    dh = dz @ table
    _within(by["embed"]["gradient_var"], dh, gamma(VOCAB) * (np.abs(dz) @ np.abs(table)))
    assert by["embed"]["weight_grad_var"] == by["embed@2"]["weight_grad_var"]
