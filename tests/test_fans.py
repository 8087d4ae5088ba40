"""Fans: exact values per layout, and the layouts checked against built Keras layers.

A fan is right when a layer initialized with ``Var(W) = 1 / fan_in`` maps unit-variance input
to unit-variance output (and ``1 / fan_out`` keeps the backward variance). Each built layer is
initialized by ``keras_initlab.initialize`` with LeCun normal on its true fans and fed N(0, 1)
input; the output variance is compared with 1 within a bound from the sample size.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from scipy import stats

import keras_initlab as ki
from keras_initlab.fans import LAYOUTS, compute_fans

L = keras.layers


@pytest.mark.parametrize(
    ("shape", "layout", "args", "fans"),
    [
        ((), "auto", {}, (1, 1)),
        ((7,), "auto", {}, (7, 7)),
        ((5, 3), "auto", {}, (5, 3)),
        ((3, 3, 4, 8), "auto", {}, (36, 72)),
        ((5, 3), "dense", {}, (5, 3)),
        ((1, 1), "dense", {}, (1, 1)),
        ((3, 3, 4, 8), "conv", {}, (36, 72)),
        ((3, 3, 4, 8), "conv", {"groups": 4}, (36, 18)),
        ((5, 2, 6), "conv", {"groups": 3}, (10, 10)),
        ((3, 3, 16, 64), "conv_transpose", {}, (576, 144)),
        ((4, 4, 16, 64), "conv_transpose", {"strides": 2}, (256, 256)),
        ((3, 3, 1, 2), "conv_transpose", {"strides": (2, 2)}, (4.5, 9)),
        ((3, 3, 64, 1), "depthwise", {}, (9, 9)),
        ((5, 64, 3), "depthwise", {}, (5, 15)),
        ((10, 4 * 7), "recurrent", {"gates": 4}, (10, 7)),
        ((7, 3 * 7), "recurrent", {"gates": 3}, (7, 7)),
        ((7, 7), "recurrent", {}, (7, 7)),
        ((8, 2, 4), "einsum", {"in_axes": [0], "out_axes": [1, 2]}, (8, 8)),
        ((2, 4, 8), "einsum", {"in_axes": (0, 1), "out_axes": -1}, (8, 8)),
        ((1000, 16), "embedding", {}, (1, 16)),
        ((3, 3), "explicit", {"fan_in": 11, "fan_out": 13}, (11, 13)),
    ],
)
def test_fans_per_layout(shape, layout, args, fans):
    assert compute_fans(shape, layout, **args) == fans


def test_every_layout_has_a_case_and_auto_is_keras_rule():
    assert set(LAYOUTS) == {
        "auto",
        "dense",
        "conv",
        "conv_transpose",
        "depthwise",
        "recurrent",
        "einsum",
        "embedding",
        "explicit",
    }
    from keras.src.initializers.random_initializers import compute_fans as keras_fans

    for shape in [(4,), (3, 5), (2, 3, 4), (3, 3, 8, 16), (1, 2, 3, 4, 5)]:
        assert compute_fans(shape) == keras_fans(shape)


# (layer, input shape, crop). Convolutions use "valid" padding so every output position sees
# all its taps; the transposed ones are cropped to the interior, where the number of taps
# per output averages prod(k) / prod(strides). Sizes give >= 2,000 weights per draw.
LAYERS = [
    ("dense", lambda: L.Dense(64), (48,), None),
    ("conv2d", lambda: L.Conv2D(32, 3), (10, 10, 16), None),
    ("conv2d_groups", lambda: L.Conv2D(64, 3, groups=4), (10, 10, 32), None),
    ("conv1d", lambda: L.Conv1D(32, 5), (30, 16), None),
    ("conv3d", lambda: L.Conv3D(16, 3), (5, 5, 5, 8), None),
    ("conv2d_transpose", lambda: L.Conv2DTranspose(16, 3), (8, 8, 32), 2),
    ("conv2d_transpose_s2", lambda: L.Conv2DTranspose(16, 4, strides=2), (8, 8, 32), 3),
    ("conv1d_transpose_s2", lambda: L.Conv1DTranspose(32, 3, strides=2), (30, 32), 2),
    ("depthwise2d", lambda: L.DepthwiseConv2D(3, depth_multiplier=2), (8, 8, 128), None),
    ("depthwise1d", lambda: L.DepthwiseConv1D(5), (30, 512), None),
    ("separable2d", lambda: L.SeparableConv2D(64, 3, depth_multiplier=2), (8, 8, 128), None),
    ("einsum", lambda: L.EinsumDense("abc,cde->abde", (10, 4, 16)), (10, 32), None),
    ("embedding", lambda: L.Embedding(4096, 16), None, None),
]
SEEDS = (1, 2, 3)  # independent re-initializations averaged per layer


def _mean_squares(make, input_shape, crop, seed):
    """Per-sample mean of y**2 over a batch of N(0, 1) inputs, and the weight count."""
    layer = make()
    rng = np.random.default_rng(seed)
    if input_shape is None:  # embedding: integer ids, each row is read once
        x = rng.permutation(4096).reshape(64, -1)
        model = keras.Sequential([keras.Input(x.shape[1:], dtype="int32"), layer])
    else:
        x = rng.normal(size=(64, *input_shape)).astype("float32")
        model = keras.Sequential([keras.Input(input_shape), layer])
    if input_shape is None:  # initialize() keeps embeddings: draw on the layout directly
        table = layer.embeddings
        table.assign(ki.LecunNormal(seed=seed, layout="embedding")(tuple(table.shape)))
    else:
        ki.initialize(model, "lecun_normal", seed=seed)
    y = np.asarray(keras.ops.convert_to_numpy(model(x)), dtype=np.float64)
    if crop:
        inner = tuple(slice(crop, -crop) for _ in range(y.ndim - 2))
        y = y[(slice(None), *inner, slice(None))]
    n_weights = min(int(np.prod(w.shape)) for w in model.weights if len(w.shape) > 1)
    return (y**2).reshape(len(y), -1).mean(axis=1), n_weights


@pytest.mark.parametrize(
    ("name", "make", "input_shape", "crop"), LAYERS, ids=[c[0] for c in LAYERS]
)
def test_true_fan_in_keeps_unit_variance_through_built_layers(name, make, input_shape, crop):
    # Var(W) = 1/fan_in on the true fans gives E[y^2] = 1. Two independent errors: the draw
    # of the weights (the second moment of n truncated-normal draws has relative sd
    # sqrt(1.3655 / n); the smallest kernel of the layer bounds n) and the batch (the
    # per-sample means are i.i.d. given the weights: their empirical standard error).
    # z* = 6 standard errors (two-sided alpha ~ 2e-9) catches the shape-rule fans, which
    # are off by 2x to 500x in variance for these layers.
    samples, n = zip(*(_mean_squares(make, input_shape, crop, s) for s in SEEDS), strict=True)
    per_sample = np.concatenate(samples)
    weight_se = math.sqrt(1.3655 / (n[0] * len(SEEDS)))
    batch_se = per_sample.std(ddof=1) / math.sqrt(len(per_sample))
    z = stats.norm.isf(1e-9)
    bound = z * math.hypot(weight_se, batch_se)
    assert bound < 0.25, (name, bound)  # the check keeps the power to see a 2x error
    assert abs(per_sample.mean() - 1.0) < bound, (name, per_sample.mean(), bound)


def test_keras_shape_rule_misses_unit_variance_on_depthwise_and_transposed():
    # The same measurement with Keras' own LecunNormal (shape-rule fans).
    x = np.random.default_rng(0).normal(size=(64, 12, 12, 64)).astype("float32")
    depthwise = L.DepthwiseConv2D(3, depthwise_initializer=keras.initializers.LecunNormal(1))
    assert (
        np.mean(keras.ops.convert_to_numpy(depthwise(x)) ** 2) < 1 / 16
    )  # ~1/64: fan_in read as 9 * 64
    transposed = L.Conv2DTranspose(16, 3, kernel_initializer=keras.initializers.LecunNormal(1))
    y = keras.ops.convert_to_numpy(transposed(x))[:, 2:-2, 2:-2]
    assert np.mean(y**2) > 3  # ~4: fan_in read as 9 * 16 instead of 9 * 64


def test_recurrent_gates_get_the_per_gate_fan_out():
    model = keras.Sequential([keras.Input((5, 16)), L.LSTM(32)])
    ki.initialize(model, "glorot_normal", seed=0)
    kernel = model.layers[0].cell.kernel.numpy().astype(np.float64)
    for g in range(4):  # each gate is a (16, 32) dense map: Glorot var 2 / (16 + 32)
        block = kernel[:, g * 32 : (g + 1) * 32]
        ratio = np.mean(block**2) / (2 / 48)
        # 512 truncated-normal draws: sd of the ratio sqrt(1.3655 / 512) = 0.052
        assert abs(ratio - 1) < 6 * math.sqrt(1.3655 / 512)


@pytest.mark.parametrize(
    ("shape", "layout", "args", "message"),
    [
        ((3, 3), "dens", {}, r"Did you mean 'dense'"),
        ((3, 3), "conv", {}, r"rank >= 3"),
        ((3, 3, 4, 6), "conv", {"groups": 4}, r"`groups` must divide"),
        ((3, 3, 4, 6), "conv", {"groups": 0}, r"`groups` must be a positive integer"),
        ((3, 3, 4, 6), "conv", {"strides": 2}, r"accepts the arguments \['groups'\]"),
        ((4, 10), "recurrent", {"gates": 4}, r"`gates` must divide"),
        ((3, 3, 4, 6), "conv_transpose", {"strides": (1, 2, 3)}, r"`strides` must be an int or 2"),
        ((3, 4), "einsum", {"in_axes": [5], "out_axes": [1]}, r"`in_axes` must be a sequence"),
        (
            (3, 4),
            "einsum",
            {"in_axes": [0], "out_axes": [2]},
            r"`out_axes` must be a sequence.*\[-2, 2\)",
        ),
        ((3, 4), "einsum", {"in_axes": [-3], "out_axes": [1]}, r"`in_axes` must be a sequence"),
        ((3, 4), "explicit", {"fan_in": 0, "fan_out": 1}, r"`fan_in` must be a positive integer"),
        ((3, -4), "dense", {}, r"`shape` must have non-negative dims"),
    ],
)
def test_bad_fan_arguments_are_named(shape, layout, args, message):
    with pytest.raises(ValueError, match=message):
        compute_fans(shape, layout, **args)
