"""An independent computation of the VarianceMonitor numbers (plain eager GradientTape).

The model's layers are called one by one in eager mode by a test-written ``forward`` function;
each monitored output is kept, the compiled loss (a plain Keras loss here) is differentiated with
respect to those outputs and the kernels, and statistics are computed in NumPy float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

# Relative agreement required between the monitor and this reference (issue 4).
RTOL = 1e-4


def distinct_units(columns: np.ndarray, rtol: float = 1e-3) -> int:
    """Units i < j are the same when ||a_i - a_j|| <= rtol * max(||a_i||, ||a_j||)."""
    a = columns.reshape(-1, columns.shape[-1]).astype(np.float64)
    count = 0
    for i in range(a.shape[1]):
        twin = any(
            np.linalg.norm(a[:, i] - a[:, j])
            <= rtol * max(np.linalg.norm(a[:, i]), np.linalg.norm(a[:, j]))
            for j in range(i)
        )
        count += not twin
    return count


def reference(
    forward: Callable[[Any, Callable[[str, Any], Any]], Any],
    loss_fn: Callable[[Any, Any], Any],
    x: Any,
    y: Any,
    kernels: dict[str, Any],
) -> dict[str, dict[str, float]]:
    """Per-layer statistics: ``forward(x, tap)`` must pass each monitored output to tap."""
    outputs: dict[str, list[Any]] = {}
    logits: dict[str, list[Any]] = {}
    with tf.GradientTape() as tape:

        def tap(name: str, t: Any) -> Any:
            # Keras' cross-entropies read a softmax/sigmoid output's `_keras_logits`; keep it,
            # as training does, and differentiate with respect to both.
            z = getattr(t, "_keras_logits", None)
            t = tf.identity(t)
            tape.watch(t)
            if z is not None:
                z = tf.identity(z)
                tape.watch(z)
                t._keras_logits = z
            outputs.setdefault(name, []).append(t)
            logits.setdefault(name, []).append(z)
            return t

        loss = loss_fn(y, forward(x, tap))
    names = list(outputs)
    flat = [t for n in names for t in outputs[n]]
    flat_logits = [
        z if z is not None else t for n in names for t, z in zip(outputs[n], logits[n], strict=True)
    ]
    kvars = [kernels[n] for n in names if kernels.get(n) is not None]
    grads = tape.gradient(
        loss, flat + flat_logits + kvars, unconnected_gradients=tf.UnconnectedGradients.NONE
    )
    # dL/dy; where the loss reads the logits instead (y itself unconnected), dL/dlogits.
    output_grads = [
        g if g is not None else gz if gz is not None else tf.zeros_like(t)
        for t, g, gz in zip(flat, grads[: len(flat)], grads[len(flat) : 2 * len(flat)], strict=True)
    ]
    result: dict[str, dict[str, float]] = {}
    k = 0
    kernel_grads = iter(grads[2 * len(flat) :])
    for name in names:
        outs = outputs[name]
        a = np.concatenate([np.asarray(o, np.float64).reshape(-1, o.shape[-1]) for o in outs])
        g = np.concatenate(
            [np.asarray(t, np.float64).ravel() for t in output_grads[k : k + len(outs)]]
        )
        k += len(outs)
        row = {
            "activation_mean": a.mean(),
            "activation_var": a.var(),
            "gradient_var": g.var(),
            "dead_fraction": float(np.mean(np.all(a == 0, axis=0))),
            "distinct_units": distinct_units(a),
        }
        if kernels.get(name) is not None:
            row["weight_var"] = np.asarray(kernels[name], np.float64).var()
            row["weight_grad_var"] = np.asarray(next(kernel_grads), np.float64).var()
        result[name] = row
    return result


def assert_matches(records: list[dict[str, Any]], expected: dict[str, dict[str, float]]) -> None:
    """Every expected statistic equals the record of that layer to RTOL (counts exactly).

    A mean is judged against the scale of the elements it averages, its RMS
    ``sqrt(var + mean^2)``: the float32 outputs behind both sides differ by rounding
    relative to their own size, and a mean near 0 (tanh units, positive and negative)
    cancels that size away, so its relative error alone is not bounded by RTOL.
    """
    by_layer = {r["layer"]: r for r in records}
    assert set(expected) <= set(by_layer), (set(expected), set(by_layer))
    for name, row in expected.items():
        for key, value in row.items():
            got = by_layer[name][key]
            if key == "distinct_units":
                assert got == value, (name, key, got, value)
                continue
            spread = row.get(key.replace("_mean", "_var")) if key.endswith("_mean") else None
            atol = 0.0 if spread is None else RTOL * float(np.sqrt(spread + value**2))
            np.testing.assert_allclose(got, value, rtol=RTOL, atol=atol, err_msg=f"{name}.{key}")


class _Tools:
    RTOL = RTOL
    reference = staticmethod(reference)
    assert_matches = staticmethod(assert_matches)
    distinct_units = staticmethod(distinct_units)


@pytest.fixture
def ref() -> type[_Tools]:
    """The reference computation (see the module docstring)."""
    return _Tools


def reference_function(
    model: Any, layers: dict[str, Any], training: bool = False
) -> Callable[[Any, Any], dict[str, dict[str, float]]]:
    """``f(x, y)``: the same statistics for any model; ``layers`` maps names to layers.

    Each layer's ``call`` is wrapped on the instance (while ``f`` runs only) to keep its
    outputs; the model runs in inference mode (or training mode, its non-trainable
    variables restored afterwards) under a `GradientTape`, the loss is Keras' own
    ``model.compute_loss`` (compiled loss with its from-logits shortcut, plus
    ``model.losses``), and statistics are taken in NumPy float64. The gradient is dL/dy, or
    dL/d(logits) where the loss reads a softmax/sigmoid output's logits (y unconnected).
    Traced once as a graph, as the monitor's probe is: the same fused kernels, so that
    layers whose variance is tiny next to their mean (ill-conditioned in float32) compare
    exactly, and a second call (after a fit) costs no second trace.
    """
    outputs: dict[str, list[Any]] = {name: [] for name in layers}

    @tf.function
    def run(x: Any, y: Any) -> Any:
        with tf.GradientTape(persistent=True) as tape:
            # Watched inputs: a weightless layer before the first weight is on the tape too.
            tape.watch([t for t in tf.nest.flatten(x) if t.dtype.is_floating])
            y_pred = model(x, training=training)
            loss = model.compute_loss(x, y, y_pred, training=training)
        grads = {}
        for name, outs in outputs.items():
            grads[name] = []
            for o in outs:
                g = tape.gradient(loss, o)
                z = getattr(o, "_keras_logits", None)
                if g is None and z is not None:
                    g = tape.gradient(loss, z)
                grads[name].append(tf.zeros_like(o) if g is None else g)
        return {n: list(outs) for n, outs in outputs.items()}, grads

    def reference(x: Any, y: Any) -> dict[str, dict[str, float]]:
        for name, layer in layers.items():
            original = layer.call

            def call(*args: Any, _name: str = name, _call: Any = original, **kw: Any) -> Any:
                out = _call(*args, **kw)
                outputs[_name].append(out[0] if isinstance(out, (list, tuple)) else out)
                return out

            object.__setattr__(layer, "call", call)
        state = [np.asarray(v).copy() for v in model.non_trainable_variables]
        try:
            values, grads = run(x, y)
        finally:
            for layer in layers.values():
                object.__delattr__(layer, "call")
            for v, value in zip(model.non_trainable_variables, state, strict=True):
                v.assign(value)
        result: dict[str, dict[str, float]] = {}
        for name, outs in values.items():
            if not outs:
                continue
            a = np.concatenate([np.asarray(o, np.float64).ravel() for o in outs])
            g = np.concatenate([np.asarray(t, np.float64).ravel() for t in grads[name]])
            result[name] = {
                "activation_mean": a.mean(),
                "activation_var": a.var(),
                "gradient_var": g.var(),
            }
        return result

    return reference


def reference_by_calls(
    model: Any, layers: dict[str, Any], x: Any, y: Any, training: bool = False
) -> dict[str, dict[str, float]]:
    """`reference_function` for one call."""
    return reference_function(model, layers, training)(x, y)


_Tools.reference_by_calls = staticmethod(reference_by_calls)  # type: ignore[attr-defined]
_Tools.reference_function = staticmethod(reference_function)  # type: ignore[attr-defined]
