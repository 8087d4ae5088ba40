"""The main path of a model (`keras_initlab.model.path`), read from its graph."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_initlab.model.path import model_path
from tests.model_reading.blocks import BackendBlock, ResidualBlock

L = keras.layers


def _residual(blocks=3):
    x = keras.Input((8,))
    h = L.Dense(8, name="stem")(x)
    for i in range(blocks):
        branch = L.Dense(8, name=f"b{i}_fc2")(L.Dense(8, activation="relu", name=f"b{i}_fc1")(h))
        h = L.Add(name=f"b{i}_add")([h, branch])
    return keras.Model(x, L.Dense(2, name="head")(h))


def test_a_residual_stream_is_the_path_and_its_branches_are_not():
    path = model_path(_residual())
    assert path.nodes == ["stem", "b0_add", "b1_add", "b2_add", "head"]
    assert path.sums == {"b0_add", "b1_add", "b2_add"}
    assert path.forks == {"stem", "b0_add", "b1_add"}
    assert path.outputs == {"head"}
    assert path.weighted == {"stem", "head"}
    assert path.elements == dict.fromkeys(path.nodes[:-1], 8) | {"head": 2}
    assert path.assumed == ""


def test_an_ops_sum_is_a_sum():
    x = keras.Input((8,))
    h = L.Dense(8, name="stem")(x)
    h = h + L.Dense(8, name="fc")(h)
    path = model_path(keras.Model(x, L.Dense(2, name="head")(h)))
    assert len(path.sums) == 1
    assert "fc" not in path


@pytest.mark.parametrize(("mode", "reset"), [("training", True), ("inference", False)])
def test_batchnorm_resets_the_scale_in_training_mode_only(mode, reset):
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            L.Conv2D(8, 3, name="conv"),
            L.BatchNormalization(name="bn"),
            L.ReLU(name="relu"),
            L.Conv2D(8, 1, name="conv2"),
            L.LayerNormalization(name="ln"),
            L.GlobalAveragePooling2D(name="gap"),
            L.Dense(3, name="head"),
        ]
    )
    path = model_path(model, mode)
    assert path.nodes == ["conv", "bn", "relu", "conv2", "ln", "gap", "head"]
    assert path.normalized == ({"conv", "conv2"} if reset else {"conv2"})
    assert path.resets == ({"bn", "ln"} if reset else {"ln"})
    assert path.one_off == {"gap"}
    assert path.producer == {"gap": "ln"}
    assert path.outputs == {"head"}


def test_the_levels_of_a_unet_below_a_skip_are_off_the_path():
    x = keras.Input((8, 8, 3))
    e1 = L.Conv2D(4, 3, padding="same", name="e1")(x)
    mid = L.Conv2D(8, 3, padding="same", name="mid")(L.MaxPooling2D(name="down")(e1))
    up = L.UpSampling2D(name="up")(mid)
    d1 = L.Conv2D(4, 3, padding="same", name="d1")(L.Concatenate(name="skip")([up, e1]))
    path = model_path(keras.Model(x, L.Conv2D(2, 1, name="out")(d1)))
    assert path.nodes == ["e1", "skip", "d1", "out"]
    assert path.forks == {"e1"}


def test_a_nested_model_on_the_path_is_read_inside():
    inner = keras.Sequential([keras.Input((8,)), L.Dense(8, name="i0"), L.Dense(8, name="i1")])
    inner.name = "inner"
    x = keras.Input((8,))
    path = model_path(keras.Model(x, L.Dense(2, name="head")(inner(L.Dense(8, name="a")(x)))))
    assert path.nodes == ["a", "inner/i0", "inner/i1", "head"]


def test_a_subclassed_model_is_read_through_its_traced_call():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d0 = L.Dense(8, name="d0")
            self.d1 = L.Dense(8, name="d1")
            self.d2 = L.Dense(2, name="d2")

        def call(self, x):
            h = self.d0(x)
            return self.d2(h + self.d1(h))

    model = Net()
    model(np.zeros((1, 4), "float32"))
    path = model_path(model)
    assert path.nodes == ["d0", "add", "d2"]  # d1 is the sum's branch, off the path
    assert path.sums == {"add"}
    assert not path.assumed


def test_a_subclassed_model_whose_call_cannot_be_traced_is_a_chain_and_says_so():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d0 = L.Dense(8, name="d0")
            self.d1 = L.Dense(2, name="d1")

        def call(self, x):
            h = self.d0(x)
            if keras.ops.convert_to_numpy(keras.ops.sum(h)) > 1e9:  # control flow on values
                h = -h
            return self.d1(h)

    model = Net()
    model(np.zeros((1, 4), "float32"))
    path = model_path(model)
    assert path.nodes == ["d0", "d1"]
    assert "subclassed model" in path.assumed
    assert "cannot be traced" in path.assumed


@pytest.mark.parametrize(("shortcut", "reset"), [("projection", True), ("identity", False)])
def test_a_block_whose_every_route_ends_in_batchnorm_resets_the_scale(shortcut, reset):
    x = keras.Input((8, 8, 4))
    h = L.ReLU(name="stem")(L.Conv2D(4, 3, padding="same", name="conv0")(x))
    branch = L.BatchNormalization(name="bn_b")(L.Conv2D(4, 3, padding="same", name="cb")(h))
    skip = h
    if shortcut == "projection":
        skip = L.BatchNormalization(name="bn_s")(L.Conv2D(4, 1, name="cs")(h))
    out = L.ReLU(name="out_relu")(L.Add(name="add")([skip, branch]))
    path = model_path(keras.Model(x, L.Dense(2, name="head")(out)), "training")
    assert path.nodes[:4] == ["conv0", "stem", "add", "out_relu"]
    assert ("add" in path.resets) == reset
    assert "add" not in model_path(keras.Model(x, out), "inference").resets


def test_a_custom_block_on_the_path_is_read_through_its_traced_call():
    x = keras.Input((8,))
    h = ResidualBlock(8, name="b1")(ResidualBlock(8, name="b0")(L.Dense(8, name="stem")(x)))
    path = model_path(keras.Model(x, L.Dense(2, name="head")(h)))
    # the branch is off the path; the block's output (its sum) is named by the block
    assert path.nodes == ["stem", "b0", "b1", "head"]
    assert path.sums == {"b0", "b1"}
    assert path.forks == {"stem", "b0"}  # each block's input feeds its skip and its branch
    assert not path.assumed


@pytest.mark.tensorflow  # the block calls tf.math
def test_a_custom_layer_whose_call_cannot_be_traced_is_read_as_a_chain_and_says_why():
    x = keras.Input((8,))
    h = BackendBlock(8, name="b0")(L.Dense(8, name="stem")(x))
    path = model_path(keras.Model(x, L.Dense(2, name="head")(h)))
    assert path.nodes == ["stem", "b0/d1", "b0/d2", "head"]
    assert "BackendBlock (b0) is a custom layer" in path.assumed
    assert "cannot be traced" in path.assumed


class RMSNorm(keras.layers.Layer):
    """An RMS normalization written with keras.ops, as keras_hub's are (no Keras class)."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return (
            x * keras.ops.rsqrt(keras.ops.mean(x * x, axis=-1, keepdims=True) + 1e-6) * self.scale
        )


class Gain(keras.layers.Layer):
    """A learned scale, ``x * alpha``: not a normalization."""

    def build(self, input_shape):
        self.alpha = self.add_weight(shape=(), initializer="ones")

    def call(self, x):
        return x * self.alpha


class SequenceBlock(keras.layers.Layer):
    """``x + dense(norm(x)) * causal-ish weights``: the weights come from the sequence
    length (``ops.arange(ops.shape(x)[1])``), so the call traces only at concrete sizes;
    the integer padding mask multiplies the branch. ``norm`` is a `RMSNorm` (pre-norm)
    or a `Gain` (a branch that reads the stream unnormalized)."""

    def __init__(self, norm, **kwargs):
        super().__init__(**kwargs)
        self.norm, self.dense = norm, keras.layers.Dense(16)

    def build(self, x_shape, mask_shape=None):
        self.norm.build(x_shape)
        self.dense.build(x_shape)

    def call(self, x, mask):
        positions = keras.ops.cast(keras.ops.arange(keras.ops.shape(x)[1]), x.dtype)
        weights = keras.ops.reshape(1.0 / (1.0 + positions), (1, -1, 1))
        keep = keras.ops.cast(keras.ops.expand_dims(mask, -1), x.dtype)
        return x + self.dense(self.norm(x)) * weights * keep


def _sequence_model(norm):
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    mask = keras.Input((None,), dtype="int32", name="mask")
    h = L.Embedding(50, 16, name="embed")(tokens)
    for i in range(3):
        h = SequenceBlock(norm(), name=f"block{i}")(h, mask)
    return keras.Model([tokens, mask], L.Dense(4, name="head")(RMSNorm(name="final")(h)))


@pytest.mark.parametrize(("norm", "pre_norm"), [(RMSNorm, True), (Gain, False)])
def test_blocks_that_read_a_mask_and_their_sequence_length_are_on_the_path(norm, pre_norm):
    """The integer mask every block reads jumps over no block; each block is read through
    its call traced at stand-in sizes (its sum on the path, not a chain of its layers), its
    elements per sample at the sizes the graph knows (one position: 16); a custom RMS norm
    resets the scale (read from what it computes) and makes the blocks' sums pre-norm; a
    learned gain does neither."""
    keras.utils.set_random_seed(0)
    model = _sequence_model(norm)
    model([np.zeros((2, 5), "int32"), np.ones((2, 5), "int32")])
    path = model_path(model)
    assert path.assumed == ""
    assert path.nodes == ["embed", "block0", "block1", "block2", "final", "head"]
    assert path.sums == {"block0", "block1", "block2"}
    assert path.elements == dict.fromkeys(path.nodes[:-1], 16) | {"head": 4}
    assert path.resets == {"final"}
    assert path.normalized_sums == ({"block0", "block1", "block2"} if pre_norm else set())


class Constant(keras.layers.Layer):
    """Returns ones: unchanged by any scale, and no normalization."""

    def call(self, x):
        return keras.ops.ones_like(x)


class Centered(keras.layers.Layer):
    """A LayerNorm written with keras.ops: ``(x - mean) / sqrt(var + eps)``."""

    def call(self, x):
        centred = x - keras.ops.mean(x, axis=-1, keepdims=True)
        return centred * keras.ops.rsqrt(keras.ops.var(x, axis=-1, keepdims=True) + 1e-5)


@pytest.mark.parametrize(
    ("layer", "resets"),
    [
        (RMSNorm(), True),
        (Centered(), True),
        (Gain(), False),
        (Constant(), False),
        (L.Activation("softmax"), False),  # scale-dependent, and a Keras class anyway
    ],
)
def test_a_layer_no_table_classifies_resets_the_scale_when_its_output_ignores_it(layer, resets):
    from keras_initlab.model.path import normalizes
    from keras_initlab.model.resets import resets_scale

    layer(keras.ops.ones((2, 3, 8)))
    assert normalizes(layer, "inference") is resets
    assert resets_scale(layer) is resets


class CountingNorm(RMSNorm):
    """An RMS norm that counts its calls in a non-trainable variable."""

    def build(self, input_shape):
        super().build(input_shape)
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, x):
        self.calls.assign_add(1.0)
        return super().call(x)


def test_reading_what_a_layer_computes_leaves_its_state_alone():
    from keras_initlab.model.resets import resets_scale

    layer = CountingNorm()
    layer(keras.ops.ones((2, 3, 8)))
    assert resets_scale(layer)
    assert float(keras.ops.convert_to_numpy(layer.calls)) == 1.0
