"""Dtypes and config round trips over random shapes, for every scheme and device.

A draw in any float dtype is the float32 draw cast to it (values are sampled in float32);
``from_config(get_config())`` and Keras serialization rebuild an initializer that produces
identical values.
"""

from __future__ import annotations

import keras
import numpy as np
from hypothesis import given

from keras_initlab import testing as kt

RANDOM_SCHEMES = sorted(set(kt.SCHEME_NAMES) - {"Constant", "Zeros", "ScaledIdentity"})


@given(case=kt.initializers(), dtype=kt.float_dtypes())
def test_dtype_is_the_float32_draw_cast(case, dtype):
    for device in kt.each_device():
        values = case.initializer(case.shape, dtype=dtype)
        assert kt.on_device(values, device)
        assert keras.backend.standardize_dtype(values.dtype) == dtype
        assert tuple(values.shape) == case.shape
        reference = keras.ops.cast(case.initializer(case.shape, dtype="float32"), dtype)
        np.testing.assert_array_equal(kt.to_numpy(values), kt.to_numpy(reference))


@given(case=kt.initializers())
def test_config_round_trip_reproduces_values(case):
    init = case.initializer
    rebuilt = type(init).from_config(init.get_config())
    assert rebuilt.get_config() == init.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(init))
    assert type(restored) is type(init)
    for _ in kt.each_device():
        values = kt.to_numpy(init(case.shape))
        np.testing.assert_array_equal(kt.to_numpy(rebuilt(case.shape)), values)
        np.testing.assert_array_equal(kt.to_numpy(restored(case.shape)), values)


@given(case=kt.initializers(schemes=RANDOM_SCHEMES), seed=kt.seeds())
def test_config_round_trip_with_a_seed_generator(case, seed):
    """A SeedGenerator seed serializes to a dict that from_config turns back into one."""
    cls = type(case.initializer)
    config = {**case.initializer.get_config(), "seed": keras.random.SeedGenerator(seed)}
    for _ in kt.each_device():
        init = cls.from_config(config)
        rebuilt = cls.from_config(init.get_config())
        assert isinstance(rebuilt.seed, keras.random.SeedGenerator)
        np.testing.assert_array_equal(
            kt.to_numpy(rebuilt(case.shape)), kt.to_numpy(init(case.shape))
        )


@given(case=kt.initializers())
def test_repr_shows_the_config(case):
    init = case.initializer
    args = ", ".join(f"{k}={v!r}" for k, v in init.get_config().items())
    assert repr(init) == f"{type(init).__name__}({args})"
