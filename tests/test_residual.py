"""``residual_blocks``: the skip and the branch of every residual sum, on real graphs.

The expected blocks come from the architectures' own naming: keras.applications names each
layer after its block (``conv3_block2_1_conv``, ``block_5_project``), so a block's branch
must hold exactly the kernels named after its Add's block, and a ResNet projection shortcut
is the block's ``_0_conv``.
"""

from __future__ import annotations

import keras
import pytest

from keras_initlab.model.residual import residual_blocks
from tests.model_reading.blocks import BackendBlock, ResidualBlock

L = keras.layers


def _adds(model):
    return [layer.name for layer in model.layers if isinstance(layer, L.Add)]


def _kernel_layers(model, prefix):
    return [
        layer.name
        for layer in model.layers
        if layer.name.startswith(prefix) and getattr(layer, "kernel", None) is not None
    ]


def test_resnet50_every_add_is_a_block_with_its_own_branch_and_shortcut():
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    report = residual_blocks(model)
    assert [b.add for b in report] == _adds(model)
    assert not report.unresolved
    for block in report:
        prefix = block.add.removesuffix("_add")
        kernels = _kernel_layers(model, prefix + "_")
        shortcut = [k for k in kernels if k.endswith("_0_conv")]
        assert block.shortcut == tuple(shortcut)
        assert block.branch == tuple(k for k in kernels if k not in shortcut)
        assert block.last_kernel == f"{prefix}_3_conv"
        assert block.last_norm == f"{prefix}_3_bn"
        assert block.last_kernel_layer is model.get_layer(block.last_kernel)
        assert block.branch_output == f"{prefix}_3_bn"
    # the first block of each stage projects, the others are identity skips
    assert sum(bool(b.shortcut) for b in report) == 4


def test_mobilenetv2_identity_skips_read_the_previous_block():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), classes=10)
    report = residual_blocks(model)
    assert [b.add for b in report] == _adds(model)
    assert not report.unresolved
    layer_names = [layer.name for layer in model.layers]
    for block in report:
        prefix = block.add.removesuffix("_add")
        assert block.branch == tuple(_kernel_layers(model, prefix + "_"))
        assert block.shortcut == ()
        assert block.last_kernel == f"{prefix}_project"
        # the skip is the output of the layer right before this block's first layer
        first = next(i for i, n in enumerate(layer_names) if n.startswith(prefix + "_"))
        assert block.skip == layer_names[first - 1]


def test_transformer_sums_written_as_operators_are_found():
    x = keras.Input((6, 8))
    h = x + L.MultiHeadAttention(2, 4, name="mha")(x, x)
    h = L.LayerNormalization(name="ln")(h)
    f = L.Dense(8, name="ff2")(L.Dense(16, activation="relu", name="ff1")(h))
    y = L.Add(name="ff_add")([h, f])
    report = residual_blocks(keras.Model(x, y))
    first, second = report.rows
    assert first.skip == "input"
    assert first.branch_output == "mha"
    assert first.branch == ("mha/query", "mha/key", "mha/value", "mha/attention_output")
    assert first.last_kernel == "mha/attention_output"
    assert (second.add, second.skip, second.branch) == ("ff_add", "ln", ("ff1", "ff2"))
    assert second.last_norm is None


def test_nested_blocks_are_named_by_path():
    x = keras.Input((4,))
    block = keras.Model(x, L.Add(name="s")([x, L.Dense(4, name="d")(x)]), name="blk")
    model = keras.Sequential([keras.Input((4,)), block, L.Dense(3, name="head")])
    (found,) = residual_blocks(model).rows
    assert (found.add, found.skip, found.branch) == ("blk/s", "blk/input", ("blk/d",))


def _sum_of(make):
    x = keras.Input((4,), name="x")
    return keras.Model(x, make(x))


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = L.Dense(4)

    def call(self, x):
        return x + self.dense(x)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (_sum_of(lambda x: L.Add()([L.Dense(4)(x), L.Dense(4)(x)])), "cannot tell the skip"),
        (_sum_of(lambda x: L.Add()([x, L.ReLU()(x)])), "no branch"),
        (_sum_of(lambda x: L.Add()([x, L.Dense(4)(x), L.Dense(4)(x)])), "sums 3 inputs"),
    ],
)
def test_sums_that_are_not_residual_are_listed_with_the_reason(model, reason):
    report = residual_blocks(model)
    assert not report.rows
    assert len(report.unresolved) == 1
    assert reason in report.unresolved[0].reason
    assert reason in str(report)
    with pytest.raises(ValueError, match=r"`residual`.*no residual block.*residual='zero'"):
        report.require("residual", "zero")


def test_independent_inputs_are_not_guessed_and_a_subclassed_models_sum_is_read():
    a, b = keras.Input((4,)), keras.Input((4,))
    two = keras.Model([a, b], L.Add()([L.Dense(4)(a), b]))
    assert "share no upstream tensor" in residual_blocks(two).unresolved[0].reason
    sub = _Subclassed()
    sub(keras.ops.zeros((1, 4)))  # read through its call, traced at the shapes it was built with
    (block,) = residual_blocks(sub)
    assert (block.add, block.skip, block.branch) == ("add", "input", (sub.dense.name,))
    plain = keras.Sequential([keras.Input((4,)), L.Dense(4)])
    report = residual_blocks(plain)
    assert not report.rows
    assert not report.unresolved
    with pytest.raises(ValueError, match="no residual block"):
        report.require("residual", "fixup")


def test_sums_inside_custom_blocks_are_found_named_by_block_at_every_call():
    inputs = keras.Input((8,))
    h = L.Dense(8, name="stem")(inputs)
    for i in range(16):
        h = ResidualBlock(8, name=f"block{i}")(h)
    model = keras.Model(inputs, L.Dense(2)(h))
    first, again = residual_blocks(model), residual_blocks(model)
    assert [b.add for b in first] == [f"block{i}/add" for i in range(16)]
    assert [b.add for b in again] == [b.add for b in first]  # stable names
    assert not first.unresolved
    block = model.get_layer("block3")
    found = first.rows[3]
    # the previous block's output, which its sum computes: one stream of 16 sums
    assert found.skip == "block2/add"
    from keras_initlab.autoinit._plan import shares

    assert {s.stream for s in shares(model).values()} == {16}
    assert found.branch == (f"block3/{block.d1.name}", f"block3/{block.d2.name}")
    assert found.last_kernel_layer is block.d2
    assert residual_blocks(model).rows[0].skip == "stem"
    # the trace leaves the model as it was: no node added to the sub-layers
    assert not block.d1._inbound_nodes


@pytest.mark.tensorflow  # the block calls tf.math
def test_a_custom_block_whose_call_cannot_be_traced_is_opaque_with_the_reason():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, BackendBlock(8, name="tfblock")(inputs))
    report = residual_blocks(model)
    assert not report.rows
    (opaque,) = report.unresolved
    assert opaque.name == "tfblock"
    assert "cannot be traced" in opaque.reason


class _OwnAttention(keras.layers.Layer):
    """Single-head attention written with keras.ops: a softmax of ``q k^T`` (``fused=False``)
    or ``keras.ops.dot_product_attention`` (``fused=True``)."""

    def __init__(self, width, fused=False, **kwargs):
        super().__init__(**kwargs)
        self.fused = fused
        self.q, self.k, self.v, self.o = (keras.layers.Dense(width) for _ in range(4))

    def call(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        if self.fused:
            heads = [keras.ops.expand_dims(t, 2) for t in (q, k, v)]
            attended = keras.ops.squeeze(keras.ops.dot_product_attention(*heads), 2)
        else:
            scores = keras.ops.einsum("btd,bsd->bts", q, k) / float(q.shape[-1]) ** 0.5
            attended = keras.ops.einsum("bts,bsd->btd", keras.ops.softmax(scores), v)
        return self.o(attended)


@pytest.mark.parametrize("fused", [False, True])
def test_the_query_and_key_of_an_attention_branch_are_its_scores(fused):
    x = keras.Input((6, 8))
    own = _OwnAttention(8, fused, name="own")
    h = keras.layers.Add(name="a0")([x, own(x)])
    mha = keras.layers.MultiHeadAttention(2, 4, name="mha")(h, h)
    y = keras.layers.Add(name="a1")([h, mha])
    blocks = residual_blocks(keras.Model(x, y))
    assert [(b.add, b.scores) for b in blocks] == [
        ("a0", (f"own/{own.q.name}", f"own/{own.k.name}")),
        ("a1", ("mha/query", "mha/key")),
    ]
