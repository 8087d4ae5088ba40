"""Initializers inside built Keras layers: "same"-padded identity taps, attention fans.

References: the input itself (a pass-through conv), NumPy's matmul for the orthogonal centre
tap, and the closed-form variance 1 / fan_in checked with ``keras_initlab.testing``.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import keras_initlab as ki
from keras_initlab import testing as kt

L = keras.layers
CHANNELS = 4
# A float32 matmul of CHANNELS terms of size <= max|x| * max|Q| (<= 1) is exact up to this
# many units in the last place: one rounding per product and per sum.
F32_ATOL_PER_UNIT = 2 * CHANNELS * float(np.finfo(np.float32).eps)
KERNEL_SIZES = [1, 2, 3, 4, 5]


def _x(rank, seed=0):
    spatial = (9,) * rank
    return np.random.default_rng(seed).normal(size=(2, *spatial, CHANNELS)).astype("float32")


def _conv(rank, size, init):
    conv = (L.Conv1D, L.Conv2D, L.Conv3D)[rank - 1]
    return conv(CHANNELS, size, padding="same", use_bias=False, kernel_initializer=init)


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("size", KERNEL_SIZES)
def test_scaled_identity_conv_passes_its_input_through_for_every_kernel_size(rank, size):
    x = _x(rank)
    layer = _conv(rank, size, ki.ScaledIdentity(1.0))
    np.testing.assert_array_equal(kt.to_numpy(layer(x)), x)


def test_scaled_identity_passes_through_with_mixed_even_and_odd_sizes():
    x = _x(2)
    layer = _conv(2, (2, 3), ki.ScaledIdentity(1.0))
    np.testing.assert_array_equal(kt.to_numpy(layer(x)), x)


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("size", KERNEL_SIZES)
def test_delta_orthogonal_conv_applies_its_centre_matrix_at_each_position(rank, size):
    x = _x(rank, seed=size)
    layer = _conv(rank, size, ki.DeltaOrthogonal(seed=size))
    y = kt.to_numpy(layer(x)).astype(np.float64)
    kernel = np.asarray(layer.kernel.numpy(), np.float64)
    centre = (size - 1) // 2
    q = kernel[(centre,) * rank]
    np.testing.assert_allclose(q.T @ q, np.eye(CHANNELS), atol=F32_ATOL_PER_UNIT)
    rest = kernel.copy()
    rest[(centre,) * rank] = 0.0
    assert not rest.any()
    expected = x.astype(np.float64) @ q  # the same position, channels mixed by Q
    np.testing.assert_allclose(y, expected, atol=F32_ATOL_PER_UNIT * np.abs(x).max())


def _attention(init, d_model=128):
    mha = L.MultiHeadAttention(4, 32, kernel_initializer=init)
    x = np.zeros((1, 3, d_model), "float32")
    mha(x, x)
    return mha


@pytest.mark.parametrize(
    ("init", "family"),
    [
        (ki.LecunNormal(seed=11), "truncated_normal"),
        (ki.LecunUniform(seed=12), "uniform"),
        (ki.VarianceScaling(1.0, "fan_in", "normal", seed=13), "normal"),
    ],
)
def test_attention_kernels_drawn_by_the_layer_get_their_true_fan_in(init, family):
    mha = _attention(init)
    query = mha._query_dense.kernel.numpy()  # (128, 4, 32): fan_in 128, not 4 * 128
    output = mha._output_dense.kernel.numpy()  # (4, 32, 128): fan_in 4 * 32 = 128
    assert query.shape == (128, 4, 32)
    assert output.shape == (4, 32, 128)
    kt.assert_variance(query, 1.0 / 128, family=family)
    kt.assert_variance(output, 1.0 / 128, family=family)
    # What initialize() prescribes for the same kernels (its own rule, read by audit).
    expected = {
        r.path.split("/")[-2]: r.expected_std
        for r in ki.audit(mha, init)
        if r.path.endswith("/kernel")
    }
    assert expected["query"] == pytest.approx((1.0 / 128) ** 0.5, rel=1e-12)
    assert expected["attention_output"] == pytest.approx((1.0 / 128) ** 0.5, rel=1e-12)
    ki.initialize(mha, init, seed=5)
    kt.assert_variance(mha._query_dense.kernel.numpy(), 1.0 / 128, family=family)


def test_einsum_dense_passes_its_axes_to_keras_initlab_variance_scaling():
    layer = L.EinsumDense("abc,cde->abde", (5, 4, 32), kernel_initializer=ki.HeNormal(seed=2))
    layer(np.zeros((1, 5, 64), "float32"))
    kt.assert_variance(layer.kernel.numpy(), 2.0 / 64, family="truncated_normal")


def test_a_layout_given_by_name_wins_over_the_einsum_layers_axes():
    init = ki.HeNormal(seed=2, layout="explicit", layout_args={"fan_in": 16, "fan_out": 1})
    layer = L.EinsumDense("abc,cde->abde", (5, 4, 32), kernel_initializer=init)
    layer(np.zeros((1, 5, 64), "float32"))
    kt.assert_variance(layer.kernel.numpy(), 2.0 / 16, family="truncated_normal")
    both = ki.VarianceScaling(input_axes=[0], output_axes=[1], layout="dense")
    assert both.fans((6, 7)) == (6, 7)


def test_input_and_output_axes_give_einsum_fans_and_round_trip():
    init = ki.VarianceScaling(2.0, "fan_out", "normal", 4, [0], [1, 2])
    assert init.fans((64, 4, 16)) == (64, 64)
    assert init.variance((64, 4, 16)) == 2.0 / 64
    config = init.get_config()
    assert (config["input_axes"], config["output_axes"]) == ([0], [1, 2])
    json.dumps(config)
    clone = ki.VarianceScaling.from_config(config)
    np.testing.assert_array_equal(clone((64, 4, 16)), init((64, 4, 16)))
    named = ki.GlorotUniform(input_axes=(0, 1), output_axes=(2,))
    assert named.fans((3, 5, 7)) == (15, 7)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(named))
    assert (restored.input_axes, restored.output_axes) == ([0, 1], [2])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_axes": [0]}, r"`input_axes` and `output_axes` must be given together"),
        ({"input_axes": "0", "output_axes": [1]}, r"`input_axes` must be a list of integer"),
        ({"input_axes": [0.5], "output_axes": [1]}, r"`input_axes` must be a list of integer"),
    ],
)
def test_bad_axes_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ki.VarianceScaling(**kwargs)


NUMPY_SCALARS = [
    (lambda v: ki.Constant(v), np.float32(6.0), "value", 6.0),
    (lambda v: ki.VarianceScaling(scale=v, seed=0), np.float32(2.0), "scale", 2.0),
    (lambda v: ki.VarianceScaling(gain=v, seed=0), np.float64(2.0), "gain", 2.0),
    (lambda v: ki.Orthogonal(gain=v, seed=0), np.float32(2.0), "gain", 2.0),
    (lambda v: ki.DeltaOrthogonal(gain=v, seed=0), np.int64(2), "gain", 2.0),
    (lambda v: ki.RandomNormal(stddev=v, seed=0), np.float32(0.125), "stddev", 0.125),
    (lambda v: ki.RandomNormal(mean=v, seed=0), np.int32(-1), "mean", -1.0),
    (lambda v: ki.RandomUniform(minval=v, seed=0), np.float16(-0.5), "minval", -0.5),
    (lambda v: ki.ScaledIdentity(v), np.float32(1.5), "scale", 1.5),
    (lambda v: ki.HeNormal(seed=v), np.int64(3), "seed", 3),
]


@pytest.mark.parametrize(("make", "value", "key", "stored"), NUMPY_SCALARS)
def test_numpy_scalars_are_accepted_and_stored_as_python_numbers(make, value, key, stored):
    init = make(value)
    config = init.get_config()
    assert config[key] == stored
    assert type(config[key]) is type(stored)  # a Python float/int: the config stays JSON
    json.dumps(config)
    same = make(stored)
    np.testing.assert_array_equal(init((3, 3, 4, 4)), same((3, 3, 4, 4)))


def test_numpy_scalars_in_gain_and_fans():
    slope = np.float32(0.2)
    assert ki.gain("leaky_relu", slope) == (2.0 / (1.0 + float(slope) ** 2)) ** 0.5
    assert ki.compute_fans((3, 3, 4, 8), "conv", groups=np.int64(2)) == (36, 36)
    assert ki.compute_fans((3, 8, 8), "conv_transpose", strides=np.int64(2)) == (12, 24)


@pytest.mark.parametrize("bad", [True, np.bool_(True), "2", np.array([2.0]), None])
@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda v: ki.Constant(v), "value"),
        (lambda v: ki.VarianceScaling(scale=v), "scale"),
        (lambda v: ki.Orthogonal(gain=v), "gain"),
        (lambda v: ki.RandomNormal(stddev=v), "stddev"),
    ],
)
def test_bools_strings_and_arrays_are_still_refused(make, name, bad):
    if bad == "2" and name == "gain":  # a string gain is an activation name
        bad = "two"
    error = ValueError if isinstance(bad, str) and name == "gain" else TypeError
    with pytest.raises(error, match=rf"`{name}`|`activation`"):
        make(bad)


@pytest.mark.parametrize("bad", [True, np.bool_(True), 3.0, np.array([3])])
def test_bool_float_and_array_seeds_are_refused(bad):
    with pytest.raises(TypeError, match=r"Argument `seed` must be an int"):
        ki.HeNormal(seed=bad)
