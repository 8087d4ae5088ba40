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
    with tf.GradientTape() as tape:

        def tap(name: str, t: Any) -> Any:
            t = tf.identity(t)  # dL/dy through y itself (no `_keras_logits` shortcut)
            tape.watch(t)
            outputs.setdefault(name, []).append(t)
            return t

        loss = loss_fn(y, forward(x, tap))
    names = list(outputs)
    flat = [t for n in names for t in outputs[n]]
    kvars = [kernels[n] for n in names if kernels.get(n) is not None]
    grads = tape.gradient(loss, flat + kvars)
    result: dict[str, dict[str, float]] = {}
    k = 0
    kernel_grads = iter(grads[len(flat) :])
    for name in names:
        outs = outputs[name]
        a = np.concatenate([np.asarray(o, np.float64).reshape(-1, o.shape[-1]) for o in outs])
        g = np.concatenate([np.asarray(t, np.float64).ravel() for t in grads[k : k + len(outs)]])
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
    """Every expected statistic equals the record of that layer to RTOL (counts exactly)."""
    by_layer = {r["layer"]: r for r in records}
    assert set(expected) <= set(by_layer), (set(expected), set(by_layer))
    for name, row in expected.items():
        for key, value in row.items():
            got = by_layer[name][key]
            if key == "distinct_units":
                assert got == value, (name, key, got, value)
            else:
                np.testing.assert_allclose(got, value, rtol=RTOL, atol=0, err_msg=f"{name}.{key}")


class _Tools:
    RTOL = RTOL
    reference = staticmethod(reference)
    assert_matches = staticmethod(assert_matches)
    distinct_units = staticmethod(distinct_units)


@pytest.fixture
def ref() -> type[_Tools]:
    """The reference computation (see the module docstring)."""
    return _Tools
