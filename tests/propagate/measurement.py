"""The measurement ``propagate`` is checked against, and the error summaries.

``keras_initlab.measure`` on every leaf layer (``keras_initlab.model.tree.leaf_layers``), with the
surrogate loss ``L = mean_n sum_j y_nj u_nj``: ``u`` iid N(0, 1) of the output's shape passed
as the targets, so ``dL/dy_out = u / N`` and every layer's gradient variance divided by the
output's is what ``propagate`` predicts (relative to the output's gradient). The surrogate
measurement and the comparison are ``keras_initlab.testing``'s (``surrogate_measure``,
``compare_prediction``: the ones ``prediction_agreement`` uses). Loaded by path (tests and
``benchmarks/bench_propagate.py``), so it is not collected as a test module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keras_initlab.model.tree import leaf_layers
from keras_initlab.testing import compare_prediction, surrogate_loss, surrogate_measure

surrogate = surrogate_loss  # per sample ``sum_j y_j u_j`` (``u`` = the targets)


def measure(
    model: Any, x: Any, *, mode: str = "inference", seed: int = 0, stride: int = 1
) -> dict[str, dict]:
    """``{layer path: record}`` of every ``stride``-th leaf layer and the last;
    ``gradient_var`` relative to the model output's."""
    leaves = [p for p, _ in leaf_layers(model)]
    paths = leaves[::stride] + ([leaves[-1]] if (len(leaves) - 1) % stride else [])
    return surrogate_measure(model, x, layers=paths, mode=mode, seed=seed)


def measure_eager(model: Any, x: Any, *, seed: int = 0) -> dict[str, dict]:
    """The same statistics from one eager pass under a ``tf.GradientTape`` (inference mode).

    Each leaf layer's ``call`` is wrapped on the instance while the pass runs, to keep its
    output; ``dL/dy`` is taken for every kept output with the same surrogate loss (summed,
    so ``dL/dy_out = u`` and the gradient is divided by ``Var(u)``). This is the reference
    ``measure()`` is checked against to 1e-4 (tests/callbacks/test_real_networks.py); it
    skips the traced probe, whose tracing costs seconds on a 200-layer application model.
    """
    import tensorflow as tf

    kept: dict[str, Any] = {}
    wrapped = []
    with tf.GradientTape() as tape:
        for path, layer in leaf_layers(model):

            def call(*args: Any, _original: Any = layer.call, _path: str = path, **kw: Any):
                y = _original(*args, **kw)
                if _path not in kept and isinstance(y, tf.Tensor):
                    y = tf.identity(y)
                    tape.watch(y)
                    kept[_path] = y
                return y

            object.__setattr__(layer, "call", call)
            wrapped.append(layer)
        try:
            y = model(x, training=False)
        finally:
            for layer in wrapped:
                object.__delattr__(layer, "call")
        u = tf.constant(np.random.default_rng(seed + 10_000).standard_normal(y.shape), y.dtype)
        loss = tf.reduce_sum(y * u)
    names = list(kept)
    grads = tape.gradient(loss, [kept[n] for n in names])
    reference = float(np.var(np.asarray(u, np.float64)))
    result = {}
    for name, g in zip(names, grads, strict=True):
        a = np.asarray(kept[name], np.float64)
        result[name] = {
            "activation_mean": float(a.mean()),
            "activation_var": float(a.var()),
            "gradient_var": math.nan if g is None else float(np.var(np.asarray(g))) / reference,
        }
    return result


def log_errors(report: Any, measured: dict[str, dict], key: str) -> dict[str, float]:
    """``|log(predicted / measured)|`` per predicted layer present in both, both positive."""
    error = key.replace("_var", "_error")  # activation_var -> activation_error
    rows = compare_prediction(report, measured).rows
    return {r.layer: getattr(r, error) for r in rows if math.isfinite(getattr(r, error))}


def summary(errors: dict[str, float]) -> tuple[float, float]:
    """(median, 90th percentile)."""
    values = np.array(list(errors.values()))
    return float(np.median(values)), float(np.quantile(values, 0.9))
