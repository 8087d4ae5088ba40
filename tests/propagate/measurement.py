"""The measurement ``propagate`` is checked against, and the error summaries.

``keras_initlab.measure`` on every leaf layer (``layer_tree.leaf_layers``), with the
surrogate loss ``L = mean_n sum_j y_nj u_nj``: ``u`` iid N(0, 1) of the output's shape passed
as the targets, so ``dL/dy_out = u / N`` and every layer's gradient variance divided by the
output's is what ``propagate`` predicts (relative to the output's gradient). Loaded by path
(tests and ``benchmarks/bench_propagate.py``), so it is not collected as a test module.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

import keras_initlab
from keras_initlab.layer_tree import leaf_layers


def surrogate(y_true: Any, y_pred: Any) -> Any:
    """Per sample ``sum_j y_j u_j`` (``u`` = the targets): ``dL/dy = u / N``."""
    axes = list(range(1, len(y_pred.shape)))
    return keras.ops.sum(y_pred * y_true, axis=axes)


def measure(model: Any, x: Any, *, mode: str = "inference", seed: int = 0) -> dict[str, dict]:
    """``{layer path: record}``; ``gradient_var`` relative to the model output's."""
    out_shape = (x.shape[0], *model.outputs[0].shape[1:])
    u = np.random.default_rng(seed + 10_000).standard_normal(out_shape).astype("float32")
    paths = [p for p, _ in leaf_layers(model)]
    records = keras_initlab.measure(model, (x, u), layers=paths, mode=mode, loss=surrogate)
    # dL/dy_out = u / N: the output's gradient variance is Var(u) / N^2
    reference = float(np.var(u.astype(np.float64))) / x.shape[0] ** 2
    result = {}
    for r in records:
        row = dict(r)
        row["gradient_var"] = r["gradient_var"] / reference
        result[r["layer"]] = row
    return result


def log_errors(report: Any, measured: dict[str, dict], key: str) -> dict[str, float]:
    """``|log(predicted / measured)|`` per predicted layer present in both, both positive."""
    out = {}
    for row in report:
        m = measured.get(row.layer)
        if m is None or not row.predicted:
            continue
        p, v = getattr(row, key), m[key]
        if p > 0 and v > 0 and math.isfinite(p) and math.isfinite(v):
            out[row.layer] = abs(math.log(p / v))
    return out


def summary(errors: dict[str, float]) -> tuple[float, float]:
    """(median, 90th percentile)."""
    values = np.array(list(errors.values()))
    return float(np.median(values)), float(np.quantile(values, 0.9))
