"""Step-0 measurement of every leaf layer's output moments and output-gradient variance.

Until ``keras_initlab.measure`` is on main: each leaf layer's ``call`` is wrapped on the
instance (while the measurement runs only) to keep its output, the model runs eagerly under
a ``tf.GradientTape`` and the surrogate loss ``L = sum(y * u)``, ``u`` iid N(0, 1) of the
model output's shape, is differentiated with respect to every kept output. ``dL/dy_out =
u``, so each layer's gradient variance is divided by ``Var(u)`` (measured): the result is
relative to the output's gradient, as ``propagate`` predicts it. Statistics over all
elements in float64. Layer names: the path below the model, parents joined by ``/``.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_initlab.callbacks._selection import _children


def leaf_layers(model: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for child in _children(model):
        path = prefix + child.name
        if _children(child) and not isinstance(child, keras.layers.RNN):
            out.extend(leaf_layers(child, path + "/"))
        if not isinstance(child, keras.layers.InputLayer):
            out.append((path, child))
    return out


def measure(model: Any, x: Any, *, mode: str = "inference", seed: int = 0) -> dict[str, dict]:
    """``{layer path: {"activation_mean", "activation_var", "gradient_var"}}``."""
    entries = leaf_layers(model)
    kept: dict[str, Any] = {}
    originals = {}
    with tf.GradientTape(persistent=False) as tape:
        for path, layer in entries:
            original = layer.call
            originals[path] = (layer, original)

            def call(*args, _original=original, _path=path, **kwargs):
                y = _original(*args, **kwargs)
                if _path not in kept and isinstance(y, tf.Tensor):
                    y = tf.identity(y)
                    tape.watch(y)
                    kept[_path] = y
                return y

            layer.call = call
        try:
            y = model(x, training=mode == "training")
        finally:
            for layer, original in originals.values():
                del layer.call  # back to the class's method
        u = tf.random.stateless_normal(tf.shape(y), seed=[seed, 1], dtype=y.dtype)
        loss = tf.reduce_sum(y * u)
    names = list(kept)
    grads = tape.gradient(loss, [kept[n] for n in names])
    g_out = float(np.var(np.asarray(u, np.float64)))
    result = {}
    for name, t, g in zip(names, [kept[n] for n in names], grads, strict=True):
        a = np.asarray(t, np.float64)
        gv = math.nan if g is None else float(np.var(np.asarray(g, np.float64))) / g_out
        result[name] = {
            "activation_mean": float(a.mean()),
            "activation_var": float(a.var()),
            "gradient_var": gv,
        }
    return result


def log_errors(report: Any, measured: dict[str, dict], key: str) -> dict[str, float]:
    """``|log(predicted / measured)|`` per layer present in both with positive values."""
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
    values = np.array(list(errors.values()))
    return float(np.median(values)), float(np.quantile(values, 0.9))
