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
    FAST_MIN_UNITS,
    SKETCH_DIM,
    SKETCH_MIN_ROWS,
    _fast_twins,
    _gamma,
    distinct_consts,
    has_twin,
    roundoff,
    sketch_rows,
    twins,
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


# --- the float32 comparison first (`twins`): the booleans of the float64 comparison


def _float64_twins(m: tf.Tensor, squares: tf.Tensor, sketched: bool) -> np.ndarray:
    """What the probe computes without the float32 step: `has_twin` of the float64 Gram."""
    consts = distinct_consts(DISTINCT_RTOL)
    g = tf.matmul(m, m, transpose_a=True)
    return has_twin(g, tf.linalg.diag_part(g), consts, squares if sketched else None).numpy()


def _undecided(m: tf.Tensor, squares: tf.Tensor) -> int:
    k, u = m.shape[0], roundoff()
    bounds = [
        _gamma(k, u),
        2 * (_gamma(k, u) + 2.1 * u + 2.0**-50),
        2 * (_gamma(k, 2.0**-53) + 2.0**-50),
    ]
    c = tf.cast(m, tf.float32)
    b = tf.matmul(c, c, transpose_a=True)
    rtol2 = tf.constant(DISTINCT_RTOL**2, tf.float64)
    _, undecided = _fast_twins(b, squares, squares, rtol2, tf.constant(bounds, tf.float64))
    return int(np.sum(undecided.numpy()))


def _columns(kind: str, rows: int = 64, units: int = FAST_MIN_UNITS) -> np.ndarray:
    rng = np.random.default_rng(7)
    a = np.maximum(rng.standard_normal((rows, units)), 0.0)  # He-like ReLU units
    if kind == "constant":
        a[:] = a[:, :1]
    elif kind == "dead":  # dead units, and weak units firing on one row each, next to strong
        a[:, ::3] = 0.0
        weak = np.arange(1, units, 6)
        a[:, weak] = 0.0
        a[np.arange(len(weak)) % rows, weak] = 1e-5 * (1 + rng.random(len(weak)))
    elif kind.startswith("near"):  # pairs at a distance ratio around rtol: undecided in float32
        relative = float(kind[4:])
        a[:, units // 2 :] = a[:, : units // 2] * (1 + relative)
    return a.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("kind", ["he", "constant", "dead", "near1e-7", "near9e-4", "near1.1e-3"])
@pytest.mark.parametrize("sketched", [False, True])
def test_float32_first_gives_the_float64_booleans(kind, sketched):
    a = _columns(kind, rows=4 * SKETCH_MIN_ROWS if sketched else 64)
    rows = tf.constant(a)
    squares = tf.reduce_sum(rows * rows, 0)
    m = sketch_rows(rows, distinct_consts(DISTINCT_RTOL)) if sketched else rows
    got = twins(m, squares, distinct_consts(DISTINCT_RTOL), sketched).numpy()
    np.testing.assert_array_equal(got, _float64_twins(m, squares, sketched))
    if not sketched and kind in ("he", "constant", "dead", "near1e-7"):
        assert int(np.sum(~got)) == exact_distinct(a)


def test_float32_decides_distinct_and_dead_units_alone():
    # He-like and dead units: every unit decided in float32 (no float64 product at all);
    # pairs near the threshold are left to the float64 comparison.
    for kind in ("he", "dead"):
        rows = tf.constant(_columns(kind))
        assert _undecided(rows, tf.reduce_sum(rows * rows, 0)) == 0, kind
    rows = tf.constant(_columns("near9e-4"))
    assert _undecided(rows, tf.reduce_sum(rows * rows, 0)) > 0
