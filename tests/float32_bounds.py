"""The float32 statistics' bounds on one layer output, derived as `_statistics` states them.

Shared by the tests that check records against NumPy float64 (`test_measure`, on
TensorFlow) and against another backend's records (`test_measurement_core`, everywhere).
For an output ``y``, as rows (elements, units) with ``k = block_terms(rows)`` and
``j = block_terms(units)``: each unit mean is off by at most ``e_c = gamma_{k+1} mean|y_c| +
u |m_c|``, the layer mean by ``(gamma_{k+1} + gamma_{j+1}) mean|y| + u |mean|``; a
variance by `variance_bound` of its kappa.
"""

from __future__ import annotations

import numpy as np

from keras_initlab.measurement._statistics import block_terms, gamma, variance_bound

U = 2.0**-24  # float32's unit roundoff


def rows_of(y: np.ndarray) -> np.ndarray:
    return y.reshape(-1, y.shape[-1])


def mean_error(y: np.ndarray) -> float:
    """Absolute bound of ``activation_mean``."""
    rows = rows_of(y)
    k, j = block_terms(rows.shape[0]), block_terms(rows.shape[1])
    return (gamma(k + 1) + gamma(j + 1)) * float(np.mean(np.abs(y))) + U * abs(float(y.mean()))


def variance_rtol(y: np.ndarray) -> float:
    """Relative bound of ``activation_var`` (pooled over the units)."""
    rows = rows_of(y)
    return variance_bound(rows.shape[0], float(np.mean(y * y) / y.var()), units=rows.shape[1])


def channel_bounds(y: np.ndarray) -> tuple[float, float, float, float]:
    """``channel_mean_sq`` and ``channel_var`` in NumPy float64, the absolute bound of the
    first (each unit mean's square off by ``2 |m_c| e_c + e_c^2``, then the sum over units)
    and the relative bound of the second (`variance_bound` of the worst live unit, then the
    sum over units)."""
    rows = rows_of(y)
    means, variances = rows.mean(0), rows.var(0)
    k, j = block_terms(rows.shape[0]), block_terms(rows.shape[1])
    e = gamma(k + 1) * np.abs(rows).mean(0) + U * np.abs(means)
    mean_sq = float(np.mean(means**2))
    mean_sq_tol = float(np.mean(2 * np.abs(means) * e + e * e)) + gamma(j + 4) * mean_sq
    live = variances > 0
    kappa = float(np.max(np.mean(rows * rows, 0)[live] / variances[live]))
    var_rtol = variance_bound(rows.shape[0], kappa) + gamma(j + 2)
    return mean_sq, float(variances.mean()), mean_sq_tol, var_rtol
