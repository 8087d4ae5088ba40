"""The contract every initializer meets: one table, one parametrized test per property.

Shapes, dtypes, finiteness, zero-size shapes, Keras' seed contract, config round trips,
registration, `.keras` save and load in a fresh process. Statistical properties live in
tests/properties; scheme-specific behaviour in the other files here.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_initlab as ki
from keras_initlab.initializers._base import available_float_dtypes

# Every public class with a non-default configuration and a shape it accepts.
CASES = [
    (
        ki.VarianceScaling(
            0.7, "fan_geo_avg", "uniform", 3, gain="tanh", layout="conv", layout_args={"groups": 2}
        ),
        (3, 3, 4, 8),
    ),
    (ki.GlorotNormal(seed=1), (16, 24)),
    (ki.GlorotUniform(seed=1, layout="recurrent", layout_args={"gates": 4}), (8, 32)),
    (ki.HeNormal(seed=2, layout="depthwise"), (3, 3, 16, 2)),
    (ki.HeUniform(seed=2), (3, 3, 8, 16)),
    (
        ki.LecunNormal(seed=4, layout="conv_transpose", layout_args={"strides": [2, 2]}),
        (4, 4, 8, 16),
    ),
    (
        ki.LecunUniform(seed=4, layout="einsum", layout_args={"in_axes": [0], "out_axes": [1, 2]}),
        (16, 2, 8),
    ),
    (ki.SmallInit(seed=9, layout="einsum", layout_args={"in_axes": [0], "out_axes": [1]}), (64, 8)),
    (ki.Orthogonal(2.0, seed=5), (12, 20)),
    (ki.Orthogonal("relu", seed=5, layout="recurrent", layout_args={"gates": 3}), (8, 24)),
    (ki.DeltaOrthogonal(1.5, seed=6), (3, 3, 8, 12)),
    (ki.ScaledIdentity(1.5), (6, 4)),
    (ki.ScaledIdentity(0.5), (3, 5, 5)),
    (ki.Constant(0.25), (5, 7)),
    (ki.Zeros(), (4, 4)),
    (ki.RandomNormal(0.1, 0.3, seed=7), (10, 10)),
    (ki.RandomUniform(-0.2, 0.4, seed=8), (10, 10)),
]
IDS = [f"{type(i).__name__}-{i.get_config().get('layout', '')}" for i, _ in CASES]
RANDOM = [(i, s) for i, s in CASES if "seed" in i.get_config()]
RANDOM_IDS = [f"{type(i).__name__}-{i.get_config().get('layout', '')}" for i, _ in RANDOM]
DTYPES = list(available_float_dtypes())  # float64 on JAX only in its 64-bit mode
HAS_FLOAT64 = "float64" in DTYPES


def test_table_covers_every_public_class():
    public = {
        c
        for c in vars(ki.initializers).values()
        if inspect.isclass(c) and issubclass(c, ki.initializers.Scheme)
    }
    public.discard(ki.initializers.Scheme)
    assert public == {type(i) for i, _ in CASES}


@pytest.mark.parametrize(("init", "shape"), CASES, ids=IDS)
def test_is_a_keras_initializer_registered_by_name(init, shape):
    assert isinstance(init, keras.initializers.Initializer)
    name = f"keras_initlab>{type(init).__name__}"
    assert keras.saving.get_registered_object(name) is type(init)
    assert keras.saving.get_registered_name(type(init)) == name


@pytest.mark.parametrize(("init", "shape"), CASES, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_shape_dtype_and_finite(init, shape, dtype):
    values = init(shape, dtype=dtype)
    assert tuple(values.shape) == shape
    assert keras.backend.standardize_dtype(values.dtype) == dtype
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(values).astype(np.float64)))


@pytest.mark.parametrize(("init", "shape"), CASES, ids=IDS)
def test_float64_is_made_or_refused_with_the_way_to_get_it(init, shape):
    if HAS_FLOAT64:
        assert keras.backend.standardize_dtype(init(shape, dtype="float64").dtype) == "float64"
        return
    # JAX outside its 64-bit mode would return float32 for a float64 request.
    with pytest.raises(TypeError, match=r"`dtype` float64 needs JAX's 64-bit mode.*X64"):
        init(shape, dtype="float64")


@pytest.mark.parametrize(("init", "shape"), CASES, ids=IDS)
def test_default_dtype_is_floatx_and_zero_size_is_empty(init, shape):
    assert keras.backend.standardize_dtype(init(shape).dtype) == keras.config.floatx()
    empty = (0, *shape[1:])
    assert tuple(init(empty).shape) == empty


@pytest.mark.parametrize(("init", "shape"), CASES, ids=IDS)
def test_half_precision_is_the_cast_of_the_float32_draw(init, shape):
    config = init.get_config()
    full = np.asarray(type(init).from_config(config)(shape, "float32"))
    half = np.asarray(type(init).from_config(config)(shape, "float16"), dtype=np.float32)
    np.testing.assert_array_equal(half, full.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize(("init", "shape"), CASES, ids=IDS)
def test_draw_is_float32_whatever_floatx(init, shape):
    # Values are generated in float32 and cast, also when Keras' default float is float64.
    config = init.get_config()
    expected = np.asarray(type(init).from_config(config)(shape, "float32"), dtype=np.float64)
    previous = keras.config.floatx()
    keras.config.set_floatx(DTYPES[-1])  # float64 where the backend makes it
    try:
        wide = np.asarray(type(init).from_config(config)(shape))
    finally:
        keras.config.set_floatx(previous)
    np.testing.assert_array_equal(wide, expected.astype(DTYPES[-1]))


@pytest.mark.parametrize(("init", "shape"), CASES, ids=IDS)
def test_config_keys_are_init_arguments_and_round_trip(init, shape):
    config = init.get_config()
    params = set(inspect.signature(type(init).__init__).parameters) - {"self"}
    assert set(config) == params
    json.dumps(config)  # serializable as the .keras format stores it
    clone = type(init).from_config(config)
    assert clone.get_config() == config
    np.testing.assert_array_equal(np.asarray(clone(shape)), np.asarray(init(shape)))
    assert repr(init).startswith(f"{type(init).__name__}(")


@pytest.mark.parametrize(("init", "shape"), RANDOM, ids=RANDOM_IDS)
def test_int_seed_repeats_and_different_seeds_differ(init, shape):
    config = init.get_config()
    first = type(init).from_config({**config, "seed": 11})
    np.testing.assert_array_equal(np.asarray(first(shape)), np.asarray(first(shape)))
    other = type(init).from_config({**config, "seed": 12})
    assert not np.array_equal(np.asarray(first(shape)), np.asarray(other(shape)))


@pytest.mark.parametrize(("init", "shape"), RANDOM, ids=RANDOM_IDS)
def test_seed_generator_advances_and_round_trips(init, shape):
    config = init.get_config()
    seeded = type(init).from_config({**config, "seed": keras.random.SeedGenerator(3)})
    replay = type(init).from_config(seeded.get_config())
    a, b = np.asarray(seeded(shape)), np.asarray(seeded(shape))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(replay(shape)), a)


@pytest.mark.parametrize(("init", "shape"), RANDOM, ids=RANDOM_IDS)
def test_unseeded_is_reproducible_under_set_random_seed(init, shape):
    config = {**init.get_config(), "seed": None}
    keras.utils.set_random_seed(5)
    a = type(init).from_config(config)
    keras.utils.set_random_seed(5)
    b = type(init).from_config(config)
    np.testing.assert_array_equal(np.asarray(a(shape)), np.asarray(b(shape)))
    np.testing.assert_array_equal(np.asarray(a(shape)), np.asarray(a(shape)))


@pytest.mark.parametrize("bad", [np.int32, "int64", "bool", "string", "complex64"])
def test_non_float_dtype_is_refused(bad):
    with pytest.raises(TypeError, match=r"Argument `dtype` must be a floating dtype"):
        ki.HeNormal(seed=0)((2, 2), dtype=bad)


def test_registered_string_identifiers_work_in_layers():
    layer = keras.layers.Dense(
        4, kernel_initializer="keras_initlab>HeUniform", bias_initializer="keras_initlab>Zeros"
    )
    layer.build((None, 3))
    assert isinstance(layer.kernel_initializer, ki.HeUniform)
    assert isinstance(keras.initializers.get("keras_initlab>Orthogonal"), ki.Orthogonal)


_SAVE = textwrap.dedent("""
    import json, sys, keras, keras_initlab as ki
    inits = [ki.initializers.__dict__[name].from_config(config)
             for name, config in json.loads(sys.argv[2])]
    inputs = keras.Input((6,))
    x = inputs
    for i, init in enumerate(inits):
        x = keras.layers.Dense(6, kernel_initializer=init, name=f"d{i}")(x)
    keras.Model(inputs, x).save(sys.argv[1])
""")
_LOAD = textwrap.dedent("""
    import json, sys, keras, keras_initlab
    model = keras.models.load_model(sys.argv[1], safe_mode=True)
    print(json.dumps([[type(l.kernel_initializer).__name__, l.kernel_initializer.get_config(),
                       l.kernel.numpy().tolist()] for l in model.layers[1:]]))
""")


def _run(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_model_saves_and_loads_in_a_fresh_process(tmp_path):
    # Dense kernels are (6, 6): every class accepts a square 2-D kernel except the conv-only
    # DeltaOrthogonal and the layouts that need a rank-3 kernel, which keep their own test.
    inits = [
        i
        for i, s in CASES
        if len(s) == 2
        and i.get_config().get("layout", "auto") in ("auto", "recurrent")
        and i.get_config().get("layout_args", {}) in ({}, None)
    ]
    inits.append(ki.VarianceScaling(2.0, "fan_out", "normal", 9, gain=0.5))
    specs = json.dumps([[type(i).__name__, i.get_config()] for i in inits])
    path = str(tmp_path / "model.keras")
    _run(_SAVE, path, specs)
    loaded = json.loads(_run(_LOAD, path))
    assert [name for name, _, _ in loaded] == [type(i).__name__ for i in inits]
    for (_, config, kernel), init in zip(loaded, inits, strict=True):
        assert config == init.get_config()
        assert np.isfinite(kernel).all()
