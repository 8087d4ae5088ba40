"""The graph inside a layer: a subclassed layer's or model's ``call`` traced on KerasTensors.

A Functional model records its graph; a subclassed layer or model (a user's residual block,
a keras_hub transformer block) does not. Calling its ``call`` on fresh KerasTensors makes
every sub-layer and ``keras.ops`` call inside record a node, the same way on every backend,
and `keras_initlab._keras.traced_call` orders them as a Functional model's calls
(`keras_initlab._keras.GraphCall`), so one walker reads both. The model is left as it was.
Where the trace fails (Python control flow on tensor values, backend ops such as
``tf.math.multiply`` on a KerasTensor), the layer is opaque and the error says why.
"""

from __future__ import annotations

import inspect
from typing import Any

import keras

from keras_initlab._keras import Trace, traced_call

__all__ = ["Trace", "output_spec", "trace_layer"]


def trace_layer(
    layer: Any, args: Any, kwargs: dict[str, Any], inputs: Any, mode: str = "inference"
) -> Trace:
    """Trace one call of ``layer``: ``layer.call(*args, **kwargs)``.

    Args:
        layer: the layer or subclassed model.
        args, kwargs: the call's arguments; the tensors among them are ``inputs``.
        inputs: the KerasTensors (or anything with ``shape`` and ``dtype``) the call reads,
            in order; fresh KerasTensors like them are traced, so ``inputs`` and the graph
            they belong to are not touched.
        mode: ``"training"`` or ``"inference"``: the ``training`` argument where ``call``
            takes one and the arguments do not set it.

    Returns:
        The `Trace` (its ``inputs`` are the fresh tensors, in the order of ``inputs``).

    Raises:
        Whatever ``call`` raises on KerasTensors.

    Example:
    >>> import keras
    >>> class Block(keras.layers.Layer):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.dense = keras.layers.Dense(4)
    ...     def call(self, x):
    ...         return x + self.dense(x)
    >>> block, x = Block(), keras.KerasTensor((None, 4))
    >>> _ = block(x)
    >>> [type(c.operation).__name__ for c in trace_layer(block, (x,), {}, [x]).calls]
    ['Dense', 'Add']
    """
    fresh = {id(t): keras.KerasTensor(t.shape, dtype=t.dtype) for t in inputs}

    def swap(value: Any) -> Any:
        if isinstance(value, keras.KerasTensor):
            return fresh.get(id(value), value)
        if isinstance(value, list | tuple):
            return type(value)(swap(v) for v in value)
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    kwargs = swap(kwargs)
    if "training" in inspect.signature(layer.call).parameters and "training" not in kwargs:
        kwargs["training"] = mode == "training"
    return traced_call(layer, [fresh[id(t)] for t in inputs], swap(args), kwargs)


def output_spec(layer: Any, spec: Any) -> Any:
    """The output of ``layer`` on a tensor like ``spec``, as a KerasTensor (shape, dtype)."""
    try:
        shape = tuple(layer.compute_output_shape(tuple(spec.shape)))
        return keras.KerasTensor(shape, dtype=getattr(layer, "compute_dtype", spec.dtype))
    except Exception:
        return layer.compute_output_spec(keras.KerasTensor(spec.shape, dtype=spec.dtype))
