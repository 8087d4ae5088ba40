"""Exact checks of each scheme against an independent reference.

Keras' built-ins with the same seed (the same random stream, so equal values prove the same
formula), closed-form structure of the deterministic and orthogonal schemes, and the
tutorial's slip (a variance written as a standard deviation).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import keras_initlab as ki
from keras_initlab.initializers._truncated_normal import EXACT_BACKENDS
from keras_initlab.initializers._variance_scaling import TRUNCATED_STD

# Keras' truncated normal is exact on TensorFlow and JAX, and keras_initlab draws it there;
# elsewhere (PyTorch) keras_initlab draws its own (test_truncated_normal.py), so the twins of
# the truncated-normal family are compared on the exact backends only.
KERAS_TRUNCATES = keras.backend.backend() in EXACT_BACKENDS
KERAS_TWINS = [
    (ki.GlorotUniform, keras.initializers.GlorotUniform),
    (ki.HeUniform, keras.initializers.HeUniform),
    (ki.LecunUniform, keras.initializers.LecunUniform),
]
if KERAS_TRUNCATES:
    KERAS_TWINS += [
        (ki.GlorotNormal, keras.initializers.GlorotNormal),
        (ki.HeNormal, keras.initializers.HeNormal),
        (ki.LecunNormal, keras.initializers.LecunNormal),
    ]
VS_TWINS = [("normal", "untruncated_normal"), ("uniform", "uniform")]
if KERAS_TRUNCATES:
    VS_TWINS.append(("truncated_normal", "truncated_normal"))


@pytest.mark.parametrize(("ours", "theirs"), KERAS_TWINS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("shape", [(64, 32), (3, 3, 8, 16), (1, 1)])
def test_named_schemes_equal_keras_builtins_on_dense_and_conv_kernels(ours, theirs, shape):
    np.testing.assert_array_equal(
        np.asarray(ours(seed=3)(shape)), np.asarray(theirs(seed=3)(shape))
    )


@pytest.mark.parametrize(
    ("mode", "keras_mode"), [("fan_in", "fan_in"), ("fan_out", "fan_out"), ("fan_avg", "fan_avg")]
)
@pytest.mark.parametrize(
    ("dist", "keras_dist"),
    VS_TWINS,
)
def test_variance_scaling_equals_keras(mode, keras_mode, dist, keras_dist):
    ours = ki.VarianceScaling(0.3, mode, dist, seed=9)((20, 30))
    theirs = keras.initializers.VarianceScaling(0.3, keras_mode, keras_dist, seed=9)((20, 30))
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.mark.parametrize(
    ("name", "fans", "variance"),
    [
        ("GlorotNormal", (300, 100), 2 / 400),
        ("GlorotUniform", (300, 100), 2 / 400),
        ("HeNormal", (300, 100), 2 / 300),
        ("HeUniform", (300, 100), 2 / 300),
        ("LecunNormal", (300, 100), 1 / 300),
        ("LecunUniform", (300, 100), 1 / 300),
    ],
)
def test_target_variances_are_variances_not_standard_deviations(name, fans, variance):
    # The tutorial writes Var(W) = sqrt(2 / (n_in + n_out)): that is the std. A scheme that
    # followed it would report sqrt(variance) here, which differs by a factor > 10.
    assert getattr(ki, name)().variance(fans) == pytest.approx(variance, rel=1e-12)
    assert not math.isclose(getattr(ki, name)().variance(fans), math.sqrt(variance))


def test_uniform_limits_and_truncation_scale_are_the_closed_forms():
    w = np.asarray(ki.HeUniform(seed=1)((400, 300)), dtype=np.float64)
    limit = math.sqrt(6 / 400)
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > limit * (1 - 1e-3)  # 120k draws: the edge is reached
    t = np.asarray(ki.HeNormal(seed=1)((400, 300)), dtype=np.float64)
    edge = 2 * math.sqrt(2 / 400) / TRUNCATED_STD  # truncated at 2 pre-truncation sds
    assert np.abs(t).max() <= edge * (1 + 1e-6)
    assert np.abs(t).max() > edge * (1 - 1e-3)


def test_truncated_std_constant_is_the_std_of_a_standard_normal_truncated_at_two():
    from scipy import stats

    assert math.isclose(stats.truncnorm(-2, 2).std(), TRUNCATED_STD, rel_tol=1e-14)


def test_gain_multiplies_the_variance_by_gain_squared():
    base = ki.VarianceScaling(1.0, "fan_in", "normal")
    assert ki.VarianceScaling(1.0, "fan_in", "normal", gain="relu").variance((50, 10)) == (
        pytest.approx(2 * base.variance((50, 10)))
    )
    assert ki.VarianceScaling(3.0, "fan_geo_avg", gain=0.5).variance((16, 4)) == (
        pytest.approx(3.0 * 0.25 / 8.0)
    )


@pytest.mark.parametrize(
    ("gain", "shape"), [(1.0, (8, 8)), (2.0, (20, 6)), (0.5, (6, 20)), (1.0, (3, 3, 4, 10))]
)
def test_orthogonal_is_orthogonal_times_gain(gain, shape):
    w = np.asarray(ki.Orthogonal(gain, seed=1)(shape), dtype=np.float64)
    flat = w.reshape(-1, shape[-1])
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(len(gram)), atol=1e-5 * gain**2)


@pytest.mark.parametrize("gates", [1, 3, 4])
def test_recurrent_orthogonal_is_orthogonal_per_gate_where_keras_is_not(gates):
    units = 8
    ours = np.asarray(
        ki.Orthogonal(seed=1, layout="recurrent", layout_args={"gates": gates})(
            (units, gates * units)
        )
    )
    theirs = np.asarray(keras.initializers.Orthogonal(seed=1)((units, gates * units)))
    for g in range(gates):
        block = ours[:, g * units : (g + 1) * units].astype(np.float64)
        np.testing.assert_allclose(block.T @ block, np.eye(units), atol=1e-5)
    if gates > 1:  # Keras' one (units, g*units) matrix: its gate blocks hold 1/g of the norm
        blocks = [theirs[:, g * units : (g + 1) * units].astype(np.float64) for g in range(gates)]
        assert sum(np.trace(b.T @ b) for b in blocks) == pytest.approx(units, rel=1e-5)
        assert np.trace(blocks[0].T @ blocks[0]) < units * (1 - 0.25)


def test_delta_orthogonal_is_an_orthogonal_centre_tap():
    w = np.asarray(ki.DeltaOrthogonal(2.0, seed=3)((3, 5, 6, 4)), dtype=np.float64)
    centre = w[1, 2]
    np.testing.assert_allclose(centre.T @ centre, 4.0 * np.eye(4), atol=1e-5)
    w[1, 2] = 0
    assert not w.any()
    even = np.asarray(ki.DeltaOrthogonal(seed=3)((2, 2, 3, 3)))
    assert np.count_nonzero(np.abs(even).sum(axis=(2, 3))) == 1
    assert np.abs(even[0, 0]).sum() > 0  # (k - 1) // 2: the tap "same" padding aligns


def test_scaled_identity_dense_and_dirac_are_exact():
    np.testing.assert_array_equal(
        np.asarray(ki.ScaledIdentity(1.5)((2, 3))), [[1.5, 0, 0], [0, 1.5, 0]]
    )
    kernel = np.asarray(ki.ScaledIdentity(0.5)((3, 3, 4, 4)))
    expected = np.zeros((3, 3, 4, 4), np.float32)
    expected[1, 1] = 0.5 * np.eye(4)
    np.testing.assert_array_equal(kernel, expected)
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 4)).astype("float32")
    conv = keras.layers.Conv2D(
        4, 3, padding="same", use_bias=False, kernel_initializer=ki.ScaledIdentity(0.5)
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conv(x)), 0.5 * x, rtol=1e-6)


def test_identity_stack_scales_the_signal_by_scale_to_the_depth():
    depth, x = 6, np.array([[1.0, -2.0]], np.float32)
    for scale in (1.5, 0.5):
        model = keras.Sequential(
            [keras.Input((2,))]
            + [
                keras.layers.Dense(2, use_bias=False, kernel_initializer=ki.ScaledIdentity(scale))
                for _ in range(depth)
            ]
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(model(x)), scale**depth * x, rtol=1e-6
        )


def test_constants_and_random_fixed_scale_closed_forms():
    np.testing.assert_array_equal(np.asarray(ki.Constant(-0.75)((2, 2))), np.full((2, 2), -0.75))
    assert not np.asarray(ki.Zeros()((3, 2))).any()
    ours = np.asarray(ki.RandomNormal(0.2, 0.3, seed=4)((10, 10)))
    theirs = np.asarray(keras.initializers.RandomNormal(0.2, 0.3, seed=4)((10, 10)))
    np.testing.assert_array_equal(ours, theirs)
    ours = np.asarray(ki.RandomUniform(-0.1, 0.3, seed=4)((10, 10)))
    theirs = np.asarray(keras.initializers.RandomUniform(-0.1, 0.3, seed=4)((10, 10)))
    np.testing.assert_array_equal(ours, theirs)


def test_defaults_match_the_documentation():
    assert ki.VarianceScaling().get_config() | {"seed": None} == {
        "scale": 1.0,
        "mode": "fan_in",
        "distribution": "truncated_normal",
        "seed": None,
        "input_axes": None,
        "output_axes": None,
        "gain": None,
        "layout": "auto",
        "layout_args": {},
    }
    assert ki.RandomNormal().get_config() | {"seed": None} == {
        "mean": 0.0,
        "stddev": 0.05,
        "seed": None,
    }
    assert ki.RandomUniform().get_config() | {"seed": None} == {
        "minval": -0.05,
        "maxval": 0.05,
        "seed": None,
    }
    assert ki.Orthogonal().gain == 1.0
    assert ki.DeltaOrthogonal().gain == 1.0
    assert ki.ScaledIdentity().scale == 1.0
    assert ki.Constant().value == 0.0
    assert ki.XavierNormal is ki.GlorotNormal
    assert ki.KaimingUniform is ki.HeUniform
