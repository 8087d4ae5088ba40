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
    Twins,
    _sketch_map,
    distinct_consts,
    project,
    screen_dtype,
    screen_flags,
    screen_lhs,
    screen_slack,
    screen_terms,
    sketch_load,
    sketch_rows,
    uses_sketch,
)
from keras_initlab.measurement._sums import unit_sums

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


# --- the comparison in two steps (`Twins`): a screen, then the definition on flagged units


def _reference_twins(m: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """The definition in NumPy float64 on columns ``m``: an earlier unit within ``rtol``."""
    found = np.zeros(m.shape[1], bool)
    for i in range(m.shape[1]):
        d = np.sum((m[:, :i] - m[:, i : i + 1]) ** 2, axis=0)
        found[i] = np.any(d <= DISTINCT_RTOL**2 * np.maximum(squares[:i], squares[i]))
    return found


def _numpy_sketch(a: np.ndarray) -> np.ndarray:
    buckets, signs = _sketch_map(a.shape[0], {})
    m = np.zeros((SKETCH_DIM, a.shape[1]))
    np.add.at(m, buckets, a * signs)
    return m


def _twins_of(
    a: np.ndarray, summed: bool = False, dtype: tf.DType | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The probe's twin flags of one layer with rows ``a`` (one replica, or ``summed``: the
    sketch as several replicas add it) and the flags the screen raised in ``dtype`` (the
    screen's own dtype by default; float64 is also that of its second screen)."""
    dtype = dtype or screen_dtype()
    consts = distinct_consts(DISTINCT_RTOL)
    rows = tf.constant(a)
    squares = tf.reduce_sum(rows * rows, 0)
    twins = Twins(consts)
    if summed:
        m = sketch_rows(rows, consts)
        p = project(m, consts)
        twins.add(0, a.shape[1], m, None, None)
        norms2 = tf.reduce_sum(m * m, 0)
    else:
        p = unit_sums(rows, *screen_lhs(rows, consts, screened=True))[0][1:]
        sketched = uses_sketch(a.shape[0])
        load = sketch_load(a.shape[0])
        twins.add(0, a.shape[1], rows, load, a.shape[0] if sketched else None)
        norms2 = load * squares
    slack = screen_slack(dtype, SKETCH_DIM if summed else a.shape[0])
    terms = screen_terms(p, squares, norms2, consts["rtol2"], slack, dtype)
    flagged = screen_flags(*terms)
    return twins.run(p, squares).numpy(), flagged.numpy()


def _columns(kind: str, rows: int = 64, units: int = 512) -> np.ndarray:
    rng = np.random.default_rng(7)
    a = np.maximum(rng.standard_normal((rows, units)), 0.0)  # He-like ReLU units
    if kind == "constant":
        a[:] = a[:, :1]
    elif kind == "dead":  # dead units, and weak units firing on one row each, next to strong
        a[:, ::3] = 0.0
        weak = np.arange(1, units, 6)
        a[:, weak] = 0.0
        a[np.arange(len(weak)) % rows, weak] = 1e-5 * (1 + rng.random(len(weak)))
    elif kind.startswith("near"):  # pairs at a distance ratio around rtol
        relative = float(kind[4:])
        a[:, units // 2 :] = a[:, : units // 2] * (1 + relative)
    elif kind == "scales":  # twins among units whose norms span 12 decades
        a *= 10.0 ** rng.integers(-6, 6, size=units)
        a[:, 1::4] = a[:, ::4] * (1 + 5e-4 * rng.standard_normal((rows, 1)))
    return a.astype(np.float32).astype(np.float64)


KINDS = ["he", "constant", "dead", "near1e-7", "near9e-4", "near1.1e-3", "scales"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", ["rows", "sketched", "summed"])
def test_twins_are_the_definition(kind, layout):
    """The flags equal the definition on the columns compared (the rows, or their sketch)."""
    a = _columns(kind, rows=4 * SKETCH_MIN_ROWS if layout != "rows" else 64)
    got, _ = _twins_of(a, summed=layout == "summed")
    m = a if layout == "rows" else _numpy_sketch(a)
    np.testing.assert_array_equal(got, _reference_twins(m, np.sum(a * a, 0)))
    if layout == "rows" and kind != "near1.1e-3":
        assert int(np.sum(~got)) == exact_distinct(a)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_screen_flags_every_twin_and_no_he_unit(kind, dtype):
    a = _columns(kind)
    _, flagged = _twins_of(a, dtype=dtype)
    squares = np.sum(a * a, 0)
    d = np.sum((a[:, :, None] - a[:, None, :]) ** 2, axis=0)
    twin = d <= DISTINCT_RTOL**2 * np.maximum(squares[:, None], squares[None, :])
    np.fill_diagonal(twin, False)
    assert np.all(flagged[np.any(twin, axis=1)]), kind  # a superset of the twins
    if kind == "he":  # distinct units are decided by the screen alone
        assert not flagged.any()
    if kind == "dead":  # only the zero columns (each has zero twins)
        np.testing.assert_array_equal(flagged, squares == 0)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["float32", "float64"])
def test_screen_slack_bounds_its_rounding(dtype):
    """The slack exceeds the rounding of the comparison on real columns: the computed
    squared distances of every pair are within ``slack (n_i^2 + n_j^2) / 2`` of NumPy's (in
    extended precision, whose rounding is below float64's)."""
    a = _columns("he", rows=64, units=256) * 10.0 ** np.random.default_rng(1).integers(-3, 3, 256)
    consts = distinct_consts(DISTINCT_RTOL)
    rows = tf.constant(a)
    p = unit_sums(rows, *screen_lhs(rows, consts, screened=True))[0][1:]
    pd = tf.cast(p, dtype)
    q = tf.reduce_sum(pd * pd, 0)
    d = (q[:, None] + q[None, :] - 2.0 * tf.matmul(pd, pd, transpose_a=True)).numpy()
    pn = p.numpy().astype(np.longdouble)
    exact = np.sum((pn[:, :, None] - pn[:, None, :]) ** 2, axis=0)
    n2 = np.sum(a * a, 0)
    bound = screen_slack(dtype, a.shape[0]) * (n2[:, None] + n2[None, :]) / 2
    assert np.all(np.abs(d - exact) <= bound)
    # and the projection shrinks every distance (orthonormal directions)
    assert np.all(exact <= np.sum((a[:, :, None] - a[:, None, :]) ** 2, axis=0) * (1 + 1e-12))
