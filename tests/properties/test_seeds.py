"""Keras' seed contract for every random scheme, on every device.

An int seed gives the same values on every call and from a fresh instance; different seeds
give different values; a ``keras.random.SeedGenerator`` gives new values on each call.
Kernels have at least ``MIN_SIZE`` entries, so that two independent float32 draws coincide
with probability far below the budget's alpha.
"""

from __future__ import annotations

import keras
import numpy as np
from hypothesis import assume, given

from keras_initlab import testing as kt

RANDOM_SCHEMES = sorted(set(kt.SCHEME_NAMES) - {"Constant", "Zeros", "ScaledIdentity"})
MIN_SIZE = 16


@given(case=kt.initializers(schemes=RANDOM_SCHEMES), other=kt.seeds())
def test_int_seed_is_deterministic_and_seeds_differ(case, other):
    assume(case.kernel.size >= MIN_SIZE)
    config = case.initializer.get_config()
    assume(other != config["seed"])
    cls = type(case.initializer)
    for _ in kt.each_device():
        first = kt.to_numpy(case.initializer(case.shape))
        np.testing.assert_array_equal(kt.to_numpy(case.initializer(case.shape)), first)
        np.testing.assert_array_equal(kt.to_numpy(cls.from_config(config)(case.shape)), first)
        changed = cls.from_config({**config, "seed": other})(case.shape)
        assert not np.array_equal(kt.to_numpy(changed), first)


@given(case=kt.initializers(schemes=RANDOM_SCHEMES), seed=kt.seeds())
def test_seed_generator_advances(case, seed):
    assume(case.kernel.size >= MIN_SIZE)
    config = case.initializer.get_config()
    for _ in kt.each_device():
        init = type(case.initializer).from_config(
            {**config, "seed": keras.random.SeedGenerator(seed)}
        )
        first, second = init(case.shape), init(case.shape)
        assert not np.array_equal(kt.to_numpy(first), kt.to_numpy(second))
        again = type(case.initializer).from_config(
            {**config, "seed": keras.random.SeedGenerator(seed)}
        )
        np.testing.assert_array_equal(kt.to_numpy(again(case.shape)), kt.to_numpy(first))
