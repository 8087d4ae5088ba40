"""`distinct_units`: how many units of a layer compute different functions on the probe.

Units i and j are the same unit when ``||a_i - a_j|| <= rtol * max(||a_i||, ||a_j||)`` for
their output columns ``a`` on the probe. The distances come from a Gram matrix: ``A^T A``
itself (`exact`) for a layer with few probe rows, else that of a *sketch* ``C A`` of the rows
(`sketch_rows`), which costs ``rows x units`` instead of ``rows x units^2``:

    C: SKETCH_DIM x rows, one +-1 per column (row r goes to bucket b(r) with sign s(r)),
       the buckets balanced: each holds L = ceil(rows / SKETCH_DIM) rows (rows are split
       across replicas: L is then that of every replica's share, times the replicas).

``C`` is linear, so identical columns stay identical and zero columns stay zero: constant
initialization still gives 1 unit, dead units still count once. Its error is one-sided in
a known way: ``||C d||^2 <= L ||d||^2`` (Cauchy-Schwarz per bucket), so a pair at distance
ratio ``rho <= rtol / sqrt(L)`` is always found to be the same unit; a pair with ``rho >
rtol`` is merged only if the sketch shrinks its distance by more than ``rho / rtol``. For a
difference spread over the rows each bucket sum is a signed sum of ``L`` terms, so that needs
all SKETCH_DIM bucket sums to cancel at once (about ``(rtol / rho)^SKETCH_DIM``: none for He
units, ``rho`` near 1.4). The norms in the threshold are always exact.

For a layer of at least `FAST_MIN_UNITS` units the U x U comparison (`twins`) runs first in
float32 (a float64 matrix product runs about four times slower on a CPU): ``B = M^T M`` of
the columns ``m_i`` (the rows or the sketch) in float32 and ``d'_ij = B_ii + B_jj - 2 B_ij``.
Its error is bounded (``k`` the rows of ``m``, ``u`` the float32 unit round-off, ``n_i >=
||m_i||`` from ``B_ii``; any order of summation, with or without FMA):

    |d'_ij - ||m_i - m_j||^2| <= 2 (gamma_k(u) + 2.1 u + 8 u64) (n_i + n_j)^2,
    gamma_k(u) = k u / (1 - k u),

and the float64 comparison's own rounding by the same form in ``u64`` with the norms of
``m``. A pair whose ``d'`` is farther than both bounds from the threshold is decided as the
float64 comparison decides it; two zero columns are the same unit. Each unit with a pair
left undecided (a pair near the threshold itself: near-identical columns, such as after a
constant initialization) is compared again in float64, its row of the Gram matrix only, so
the result is that of the float64 comparison (up to the order of its own float64 sums).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

# Dimensions of the row sketch, and the fewest probe rows for which it is used (below, the
# exact Gram matrix is as cheap).
SKETCH_DIM = 128
SKETCH_MIN_ROWS = 2 * SKETCH_DIM
# The fewest units for which `twins` compares in float32 first (below, the float64 product
# is cheap and the extra ops would cost more trace time than they save).
FAST_MIN_UNITS = 512


def uses_sketch(rows: int | None) -> bool:
    """Whether a layer with ``rows`` probe rows (None: not static) is sketched."""
    return rows is not None and rows >= SKETCH_MIN_ROWS


def sketch_rows(a: tf.Tensor, consts: dict[Any, tf.Tensor]) -> tf.Tensor:
    """``C a`` (SKETCH_DIM, units) for ``a`` (rows, units) with static rows (see the module).

    The buckets and signs are fixed per row count (a seeded permutation), so every call and
    every replica uses the same ``C``.
    """
    rows = a.shape[0]
    key = ("sketch", rows)
    if key not in consts:
        rng = np.random.default_rng(rows)
        buckets = rng.permutation(rows) % SKETCH_DIM
        signs = rng.choice(np.array([-1.0, 1.0]), size=(rows, 1))
        consts[key] = (tf.constant(buckets.astype(np.int32)), tf.constant(signs))
    buckets, signs = consts[key]
    return tf.math.unsorted_segment_sum(a * signs, buckets, SKETCH_DIM)


def has_twin(
    gram: tf.Tensor, norms: tf.Tensor, consts: dict[Any, tf.Tensor], squares: tf.Tensor = None
) -> tf.Tensor:
    """Per unit, whether an earlier unit is indistinguishable from it: `distinct_units`.

    ``||a_i - a_j||^2 = G_ii + G_jj - 2 G_ij`` from the Gram matrix ``gram`` (exact or of the
    sketch) with ``norms`` its diagonal (static size U); ``squares`` the exact ``||a_i||^2``
    for the threshold (default ``norms``). The distinct units are those with no earlier
    twin, so identical columns count once and all-zero columns count once. ``consts`` holds
    shared constants (`distinct_consts`). The U x U comparison runs as one XLA-compiled
    function (`_twins`): its elementwise steps fuse into one pass over the matrix (a
    comparison of float64 values formed in the same order, so the same booleans).
    """
    squares = norms if squares is None else squares
    return _twins(gram, norms, squares, consts["rtol2"])


@tf.function(jit_compile=True, autograph=False, reduce_retracing=False)
def _twins(gram: tf.Tensor, norms: tf.Tensor, squares: tf.Tensor, rtol2: tf.Tensor) -> tf.Tensor:
    units = gram.shape[-1]
    earlier = tf.logical_not(tf.linalg.band_part(tf.fill((units, units), True), 0, -1))  # j < i
    rows = tf.reshape(norms, (-1, 1))
    scale = tf.maximum(tf.reshape(squares, (-1, 1)), squares)
    close = rows + norms - 2.0 * gram <= rtol2 * scale
    return tf.reduce_any(tf.logical_and(close, earlier), axis=1)


def twins(
    m: tf.Tensor, squares: tf.Tensor, consts: dict[Any, tf.Tensor], sketched: bool
) -> tf.Tensor:
    """`has_twin` of the float64 Gram matrix of ``m`` (rows or sketch, units), from float32.

    ``squares`` are the exact ``||a_i||^2`` (for the rows, the diagonal of that Gram matrix up
    to rounding). The float32 comparison (`_fast_twins`, see the module) decides the units it
    can; the others (typically none) are compared in float64 on their Gram rows
    (`_exact_rows`).
    """
    k = m.shape[0]
    u, u64 = roundoff(), 2.0**-53
    bounds = np.array(
        [
            _gamma(k, u),
            2.0 * (_gamma(k, u) + 2.1 * u + 8.0 * u64),
            2.0 * (_gamma(k, u64) + 8.0 * u64),
        ]
    )
    m_squares = tf.reduce_sum(m * m, consts["axis0"]) if sketched else squares
    c = tf.cast(m, tf.float32)
    b = tf.matmul(c, c, transpose_a=True)
    sure, undecided = _fast_twins(b, m_squares, squares, consts["rtol2"], tf.constant(bounds))
    return _exact_rows(m, m_squares, squares, consts["rtol2"], sure, undecided)


def roundoff() -> float:
    """The unit round-off of a float32 matrix product here (TF32 on a GPU: 10-bit inputs)."""
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    return 2.0**-11 if tf32 and tf.config.list_physical_devices("GPU") else 2.0**-24


def _gamma(k: int, u: float) -> float:
    return k * u / (1.0 - k * u)


@tf.function(jit_compile=True, autograph=False, reduce_retracing=False)
def _fast_twins(
    b32: tf.Tensor, m_squares: tf.Tensor, squares: tf.Tensor, rtol2: tf.Tensor, bounds: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per unit: an earlier unit is surely its twin; one may be and none surely is (`twins`)."""
    gamma, err32, err64 = tf.unstack(bounds)
    units = b32.shape[-1]
    earlier = tf.logical_not(tf.linalg.band_part(tf.fill((units, units), True), 0, -1))  # j < i
    b = tf.cast(b32, tf.float64)
    diag = tf.linalg.diag_part(b)
    d = tf.reshape(diag, (-1, 1)) + diag - 2.0 * b
    n = tf.sqrt(tf.maximum(diag, 0.0) / (1.0 - gamma))
    n_pair = tf.reshape(n, (-1, 1)) + n
    m_norm = tf.sqrt(m_squares)
    m_pair = tf.reshape(m_norm, (-1, 1)) + m_norm
    err = err32 * n_pair * n_pair + err64 * m_pair * m_pair
    threshold = rtol2 * tf.maximum(tf.reshape(squares, (-1, 1)), squares)
    zero = tf.equal(squares, 0.0)
    dead = tf.logical_and(tf.reshape(zero, (-1, 1)), zero)  # both columns zero
    sure = tf.reduce_any(tf.logical_and(tf.logical_or(d + err <= threshold, dead), earlier), 1)
    maybe = tf.reduce_any(tf.logical_and(d - err <= threshold, earlier), 1)
    return sure, tf.logical_and(maybe, tf.logical_not(sure))


@tf.function(autograph=False, reduce_retracing=True)
def _exact_rows(
    m: tf.Tensor,
    m_squares: tf.Tensor,
    squares: tf.Tensor,
    rtol2: tf.Tensor,
    sure: tf.Tensor,
    undecided: tf.Tensor,
) -> tf.Tensor:
    """``sure`` with the ``undecided`` units compared in float64 (their Gram rows only)."""
    index = tf.where(undecided)[:, 0]
    rows = tf.matmul(tf.gather(m, index, axis=1), m, transpose_a=True)  # (undecided, units)
    norms = tf.gather(m_squares, index)[:, None]
    scale = tf.maximum(tf.gather(squares, index)[:, None], squares)
    close = norms + m_squares - 2.0 * rows <= rtol2 * scale
    earlier = tf.range(tf.shape(m, out_type=tf.int64)[1])[None, :] < index[:, None]
    found = tf.reduce_any(tf.logical_and(close, earlier), 1)
    return tf.tensor_scatter_nd_update(sure, index[:, None], found)


def distinct_consts(rtol: float) -> dict[Any, tf.Tensor]:
    return {
        "two": tf.constant(2.0, tf.float64),
        "rtol2": tf.constant(rtol**2, tf.float64),
        "column": tf.constant([-1, 1]),
        "axis0": tf.constant(0),
        "axis1": tf.constant(1),
        "k0": tf.constant(0),
        "zero": tf.constant(0.0, tf.float64),
    }
