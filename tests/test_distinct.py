"""`distinct_units` from a sketch of the probe rows agrees with the exact count.

Layers with at least `SKETCH_MIN_ROWS` probe rows compare their units on a CountSketch
``C a`` of the rows (`keras_initlab.measurement._distinct`). The reference is the exact
definition on the full columns (``||a_i - a_j|| <= rtol * max(||a_i||, ||a_j||)`` for an
earlier unit j). The sketch's error is one-sided with a known bound: ``||C d||^2 <= L ||d||^2``
with ``L = ceil(rows / SKETCH_DIM)``, so pairs closer than ``rtol / sqrt(L)`` are always the
same unit; the cases here are constant, He, duplicated and near-duplicated units.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_initlab import HeNormal, measure
from keras_initlab.measurement import DISTINCT_RTOL
from keras_initlab.measurement._distinct import (
    SKETCH_DIM,
    SKETCH_MIN_ROWS,
    distinct_consts,
    sketch_rows,
    uses_sketch,
)

L = keras.layers
ROWS = 4 * SKETCH_MIN_ROWS  # probe rows of the dense layers: sketched
UNITS = 48


def exact_distinct(a: np.ndarray, rtol: float = DISTINCT_RTOL) -> int:
    """The definition, on the full columns of ``a`` (rows, units), in float64."""
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    norms = np.linalg.norm(a, axis=0)
    count = 0
    for i in range(a.shape[1]):
        d = np.linalg.norm(a[:, :i] - a[:, i : i + 1], axis=0)
        count += not np.any(d <= rtol * np.maximum(norms[:i], norms[i]))
    return count


def _dense(kernel_initializer, kernel: np.ndarray | None = None) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((16,)),
            L.Dense(UNITS, activation="relu", kernel_initializer=kernel_initializer, name="h"),
        ]
    )
    if kernel is not None:
        model.get_layer("h").kernel.assign(kernel)
    return model


def _probe(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype("float32")


def _distinct_and_output(model: keras.Model, x: np.ndarray) -> tuple[int, np.ndarray]:
    (record,) = measure(model, x)
    return record["distinct_units"], np.asarray(model(x))


def test_the_dense_layers_here_are_sketched():
    assert uses_sketch(ROWS)
    assert not uses_sketch(SKETCH_MIN_ROWS - 1)
    assert not uses_sketch(None)


def test_constant_init_gives_one_unit():
    got, _ = _distinct_and_output(_dense(keras.initializers.Constant(0.1)), _probe((ROWS, 16)))
    assert got == 1


def test_he_init_gives_the_exact_count():
    x = _probe((ROWS, 16))
    got, out = _distinct_and_output(_dense(HeNormal(seed=1)), x)
    assert got == exact_distinct(out)
    assert got >= UNITS - 2  # He: every live unit distinct


@pytest.mark.parametrize("relative", [0.0, 1e-7, 1e-4])
def test_duplicated_units_count_once(relative):
    # Units 24.. copy units ..24, scaled by (1 + relative): a distance ratio of `relative`,
    # below rtol / sqrt(L) (the sketch's guarantee), so each pair is one unit.
    assert relative <= DISTINCT_RTOL / math.sqrt(math.ceil(ROWS / SKETCH_DIM))
    kernel = HeNormal(seed=2)((16, UNITS)).numpy()
    kernel[:, UNITS // 2 :] = kernel[:, : UNITS // 2] * (1 + relative)
    x = _probe((ROWS, 16))
    got, out = _distinct_and_output(_dense("zeros", kernel), x)
    assert got == exact_distinct(out) <= UNITS // 2


def test_conv_units_over_batch_and_space_are_sketched_and_exact():
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), L.Conv2D(16, 3, padding="same", kernel_initializer=HeNormal(3))]
    )
    x = _probe((SKETCH_MIN_ROWS // 32, 8, 8, 3))  # 8 images x 64 positions: sketched
    assert uses_sketch(x.shape[0] * 64)
    got, out = _distinct_and_output(model, x)
    assert got == exact_distinct(out) == 16


def test_sketch_is_linear_and_within_its_bound():
    rows = 5 * SKETCH_DIM + 3
    load = math.ceil(rows / SKETCH_DIM)
    a = tf.constant(np.random.default_rng(4).standard_normal((rows, 6)))
    consts = distinct_consts(DISTINCT_RTOL)
    c = sketch_rows(a, consts).numpy()
    assert c.shape == (SKETCH_DIM, 6)
    # The same C on every call (the signs and buckets are fixed per row count).
    np.testing.assert_array_equal(sketch_rows(a, distinct_consts(DISTINCT_RTOL)).numpy(), c)
    # Identical columns stay identical, zero columns zero.
    twin = sketch_rows(tf.concat([a[:, :1], a[:, :1], 0 * a[:, :1]], 1), consts).numpy()
    np.testing.assert_array_equal(twin[:, 0], twin[:, 1])
    assert not twin[:, 2].any()
    # ||C d||^2 <= L ||d||^2 for every column (Cauchy-Schwarz over a bucket of L rows).
    squares = np.sum(a.numpy() ** 2, axis=0)
    assert np.all(np.sum(c**2, axis=0) <= load * squares * (1 + 1e-12))
