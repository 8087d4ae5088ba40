"""Residual sums no layer computes, measured: ``x + h`` in a Functional graph and the sum
inside a subclassed block's ``call`` (`keras_initlab.measurement._inner`), on every backend.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_initlab import measure, propagate, residual_blocks
from keras_initlab.callbacks import VarianceMonitor
from keras_initlab.measurement._statistics import variance_bound
from keras_initlab.model.trace import replay, trace_layer
from tests.float32_bounds import variance_rtol
from tests.model_reading.blocks import BackendBlock, ResidualBlock

L = keras.layers
WIDTH, BLOCKS, N = 8, 3, 32


def _model(block=ResidualBlock):
    """A stem, ``BLOCKS`` residual blocks (the sum inside their call), a projection added
    to the stream with ``+`` (a keras.ops node) and a head; the sums' KerasTensors too."""
    keras.utils.set_random_seed(0)
    x = keras.Input((WIDTH,))
    h = L.Dense(WIDTH, name="stem")(x)
    sums = {}
    for i in range(BLOCKS):
        h = sums[f"block{i}/add"] = block(WIDTH, name=f"block{i}")(h)
    h = h + L.Dense(WIDTH, name="proj")(h)
    model = keras.Model(x, L.Dense(3, name="head")(h))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    sums["graph"] = h  # (named by its operation: a global count, "add_<k>")
    return model, sums


def _data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((N, WIDTH)).astype("float32"), rng.integers(0, 3, N)


def test_the_replay_computes_what_the_call_computes():
    """A block's call replayed from its trace, its own sub-layers and weights computing the
    same operations in the same order: the same values as the call."""
    block = ResidualBlock(WIDTH)
    x = _data()[0]
    expected = keras.ops.convert_to_numpy(block(x))
    got = keras.ops.convert_to_numpy(replay(trace_layer(block, (x,), {}, [x]), [x]))
    np.testing.assert_array_equal(got, expected)


def test_sums_inside_blocks_and_graph_operations_are_measured():
    """Each residual sum gets a record under the name `residual_blocks` and `propagate`
    give it, after the layer feeding its branch; its activation variance is NumPy's on the
    sum (within the float32 statistics' bound), and a sum that is a block's output has the
    block's gradient (a check that each row gets its own gradient where the measured order
    is not the order the pass runs: JAX and PyTorch matched gradients by position, once)."""
    model, sums = _model()
    x, y = _data()
    records = measure(model, (x, y))
    names = [r["layer"] for r in records]
    found = {block.add for block in residual_blocks(model)}
    (graph,) = found - set(sums)
    assert graph.startswith("add")
    sums[graph] = sums.pop("graph")
    assert found == set(sums)
    assert found <= set(names)
    assert found <= set(propagate(model).by_layer())
    by = {r["layer"]: r for r in records}
    for name, tensor in sums.items():
        assert by[name]["layer_class"] == "Add"
        a = np.asarray(keras.ops.convert_to_numpy(keras.Model(model.input, tensor)(x)), "f8")
        assert abs(by[name]["activation_var"] - a.var()) <= variance_rtol(a) * a.var(), name
    assert names.index(graph) == names.index("proj") + 1
    # The same gradient reaches a block's output, the sum that is that output and the
    # branch's last layer (it feeds only the sum): three rows measured in an order the pass
    # does not run them in (the block's own row first), each with its own gradient.
    bound = 2 * variance_bound(N, 2.0, units=WIDTH)
    for i in range(BLOCKS):
        assert names.index(f"block{i}/add") == names.index(f"block{i}/d2") + 1
        inner = by[f"block{i}/add"]["gradient_var"]
        for other in (f"block{i}", f"block{i}/d2"):
            assert abs(inner - by[other]["gradient_var"]) <= bound * inner, other


def test_a_monitored_fit_with_replayed_blocks_trains_the_same():
    """The probe replays the blocks outside the training step: the weights after a fit
    with the monitor are bit-identical to a plain fit's."""
    x, y = _data()
    plain, watched = _model()[0], _model()[0]
    plain.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    monitor = VarianceMonitor((x, y), alert=False)
    watched.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[monitor])
    for a, b in zip(plain.get_weights(), watched.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert {f"block{i}/add" for i in range(BLOCKS)} <= {r["layer"] for r in monitor.records}


@pytest.mark.tensorflow
def test_a_block_that_cannot_be_traced_runs_as_it_is():
    """A block written with a backend op cannot be traced on KerasTensors: it runs as it is,
    its sum has no record (`residual_blocks` says why), and its output still has one."""
    model, _ = _model(BackendBlock)
    records = {r["layer"]: r for r in measure(model, _data())}
    assert not any(name.startswith("block") and "/add" in name for name in records)
    assert {"block0", "block0/d2"} <= set(records)
    assert any(name.startswith("add") for name in records)  # (the graph's sum)
    assert {u.name for u in residual_blocks(model).unresolved} >= {"block0"}


class _CausalBlock(L.Layer):
    """A block that builds a tensor from its input's sequence length (as a causal mask is
    built): no trace on a sequence of unknown length can run it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(WIDTH, name="dense")

    def call(self, x):
        steps = keras.ops.arange(keras.ops.shape(x)[1], dtype=x.dtype)
        return x + self.dense(x) * keras.ops.expand_dims(steps / (steps + 1.0), -1)


def test_a_sum_in_a_block_that_needs_the_sequence_length_is_found_and_measured():
    """The sum is found on a trace at a stand-in length, and measured by replaying the
    block at the probe's own length: NumPy's variance of ``x + dense(x) * t / (t + 1)``.
    At a known length the trace computes ``t`` as a backend tensor of the pass it runs in
    (a graph's, on TensorFlow), so each pass traces anew: a second measurement, in its own
    graph, works too."""
    x = keras.Input((None, WIDTH))
    model = keras.Model(x, _CausalBlock(name="block")(x))
    assert [b.add for b in residual_blocks(model)] == ["block/add"]
    probe = np.random.default_rng(2).standard_normal((4, 5, WIDTH)).astype("float32")
    a = np.asarray(keras.ops.convert_to_numpy(model(probe)), np.float64)
    for mode in ("inference", "training"):
        records = {r["layer"]: r for r in measure(model, probe, mode=mode)}
        got = records["block/add"]["activation_var"]
        assert abs(got - a.var()) <= variance_rtol(a) * a.var(), mode


class _CachedAttention(L.MultiHeadAttention):
    """Attention whose call takes an argument its inherited ``compute_output_spec`` does
    not (keras_hub's ``CachedMultiHeadAttention``: ``cache=``)."""

    def call(self, query, value, key=None, cache=None, **kwargs):
        return super().call(query, value, key, **kwargs)


class _AttentionBlock(L.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = _CachedAttention(2, 4, name="attention")

    def call(self, x):
        return x + self.attention(x, x, cache=None)


def test_a_block_whose_sublayer_rejects_its_own_arguments_symbolically_is_read():
    """The attention's output spec comes from its call on placeholders, so the block traces,
    its sum is found and measured."""
    x = keras.Input((6, WIDTH))
    model = keras.Model(x, _AttentionBlock(name="block")(x))
    assert [b.add for b in residual_blocks(model)] == ["block/add"]
    probe = np.random.default_rng(3).standard_normal((4, 6, WIDTH)).astype("float32")
    records = {r["layer"]: r for r in measure(model, probe)}
    a = np.asarray(keras.ops.convert_to_numpy(model(probe)), np.float64)
    got = records["block/add"]["activation_var"]
    assert abs(got - a.var()) <= variance_rtol(a) * a.var()


class _WithoutCache(L.Layer):
    """Returns ``(output, None)``, as keras_hub's GPT-NeoX attention does without a cache:
    Keras records no node with a ``None`` output."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(WIDTH, name="dense")

    def call(self, x):
        return self.dense(x), None


class _NoneBlock(L.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = _WithoutCache(name="inner")

    def call(self, x):
        h, cache = self.inner(x)
        return x if cache is not None else x + h


class _SlopesBlock(L.Layer):
    """``x + dense(slopes * x)`` with ``slopes`` a backend array on the left of the product
    (keras_hub's Falcon builds its ALiBi bias so): a JAX array does not defer to a
    KerasTensor of its own accord."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(WIDTH, name="dense")

    def call(self, x):
        slopes = keras.ops.convert_to_tensor(np.linspace(0.5, 1.5, WIDTH), dtype=x.dtype)
        return x + self.dense(slopes * x)


@pytest.mark.parametrize("block", [_NoneBlock, _SlopesBlock])
def test_blocks_keras_cannot_trace_as_they_are_written_are_read(block):
    """Each block's sum is found, measured (NumPy's variance of the output) and predicted."""
    x = keras.Input((WIDTH,))
    model = keras.Model(x, block(name="block")(x))
    assert [b.add for b in residual_blocks(model)] == ["block/add"]
    probe = _data()[0]
    records = {r["layer"]: r for r in measure(model, probe)}
    a = np.asarray(keras.ops.convert_to_numpy(model(probe)), np.float64)
    assert abs(records["block/add"]["activation_var"] - a.var()) <= variance_rtol(a) * a.var()
    rows = propagate(model).by_layer()
    assert rows["block/add"].status == "predicted", rows["block/add"].note
