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
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

# Dimensions of the row sketch, and the fewest probe rows for which it is used (below, the
# exact Gram matrix is as cheap).
SKETCH_DIM = 128
SKETCH_MIN_ROWS = 2 * SKETCH_DIM


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


def distinct_consts(rtol: float) -> dict[Any, tf.Tensor]:
    return {
        "two": tf.constant(2.0, tf.float64),
        "rtol2": tf.constant(rtol**2, tf.float64),
        "column": tf.constant([-1, 1]),
        "axis1": tf.constant(1),
        "k0": tf.constant(0),
        "zero": tf.constant(0.0, tf.float64),
    }
