"""`distinct_units`: how many units of a layer compute different functions on the probe."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def has_twin(gram: tf.Tensor, norms: tf.Tensor, consts: dict[Any, tf.Tensor]) -> tf.Tensor:
    """Per unit, whether an earlier unit is indistinguishable from it: `distinct_units`.

    Units i and j of a layer are indistinguishable when
    ``||a_i - a_j|| <= rtol * max(||a_i||, ||a_j||)`` for their output columns on the probe,
    with ``||a_i - a_j||^2 = G_ii + G_jj - 2 G_ij`` from the Gram matrix ``G = A^T A``. The
    distinct units are those with no earlier twin, so identical columns count once and
    all-zero columns count once. ``norms`` is the diagonal of ``gram`` (static size U).
    ``consts`` holds shared constants (`distinct_consts`) and, per U, the (U, U) mask
    ``j < i``: built by ops that Grappler folds (a boolean NumPy constant is slow to convert).
    """
    units = gram.shape[-1]
    if units not in consts:
        upper = tf.linalg.band_part(tf.fill((units, units), True), 0, -1)  # j >= i
        consts[units] = tf.logical_not(upper)
    rows = tf.reshape(norms, consts["column"])
    close = rows + norms - consts["two"] * gram <= consts["rtol2"] * tf.maximum(rows, norms)
    return tf.reduce_any(tf.logical_and(close, consts[units]), axis=consts["axis1"])


def distinct_consts(rtol: float) -> dict[Any, tf.Tensor]:
    return {
        "two": tf.constant(2.0, tf.float64),
        "rtol2": tf.constant(rtol**2, tf.float64),
        "column": tf.constant([-1, 1]),
        "axis1": tf.constant(1),
        "k0": tf.constant(0),
        "zero": tf.constant(0.0, tf.float64),
    }
