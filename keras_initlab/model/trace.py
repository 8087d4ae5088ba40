"""The graph inside a layer: a subclassed layer's or model's ``call`` traced on KerasTensors.

A Functional model records its graph; a subclassed layer or model (a user's residual block,
a keras_hub transformer block) does not. Calling its ``call`` on fresh KerasTensors makes
every sub-layer and ``keras.ops`` call inside record a node, the same way on every backend,
and `keras_initlab._keras.traced_call` orders them as a Functional model's calls
(`keras_initlab._keras.GraphCall`), so one walker reads both. The model is left as it was.
Where the trace fails (Python control flow on tensor values, backend ops such as
``tf.math.multiply`` on a KerasTensor), the layer is opaque and the error says why.
`replay` runs a trace on real tensors, the layer's own sub-layers and weights computing it,
so the tensors inside a call (the residual sums of a block) can be seen.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_initlab._keras import Trace, traced_call

__all__ = ["Trace", "model_inputs", "output_spec", "replay", "trace_layer"]


def trace_layer(
    layer: Any,
    args: Any,
    kwargs: dict[str, Any],
    inputs: Any,
    mode: str = "inference",
    shapes: Sequence[tuple[int | None, ...]] | None = None,
) -> Trace:
    """Trace one call of ``layer``: ``layer.call(*args, **kwargs)``.

    Args:
        layer: the layer or subclassed model.
        args, kwargs: the call's arguments; the tensors among them are ``inputs``.
        inputs: the KerasTensors or tensors (anything with ``shape`` and ``dtype``) the
            call reads, in order; fresh KerasTensors like them are traced, so ``inputs`` and
            the graph they belong to are not touched.
        mode: ``"training"`` or ``"inference"``: the ``training`` argument where ``call``
            takes one and the arguments do not set it.
        shapes: where given, the shapes traced in place of the ``inputs``' own (one per
            input, the same rank), to make sizes the graph leaves unknown (batch, sequence
            length) concrete: a block that builds a tensor from its input's sequence length
            (a causal mask: ``ops.arange(ops.shape(x)[1])``) cannot be traced without
            one (`stand_in`).

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

    shapes = [tuple(t.shape) for t in inputs] if shapes is None else shapes
    dtypes = [keras.backend.standardize_dtype(t.dtype) for t in inputs]
    fresh = {
        id(t): keras.KerasTensor(tuple(shape), dtype=dtype)
        for t, shape, dtype in zip(inputs, shapes, dtypes, strict=True)
    }

    def swap(value: Any) -> Any:
        if id(value) in fresh:
            return fresh[id(value)]
        if isinstance(value, list | tuple):
            return type(value)(swap(v) for v in value)
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    kwargs = swap(kwargs)
    if "training" in inspect.signature(layer.call).parameters and "training" not in kwargs:
        kwargs["training"] = mode == "training"
    return traced_call(layer, [fresh[id(t)] for t in inputs], swap(args), kwargs)


def model_inputs(model: Any) -> tuple[list[Any], tuple[Any, ...] | None]:
    """``(inputs, args)``: the KerasTensors ``model`` reads and the positional arguments of a
    call of it that hold them.

    A Functional or Sequential model: its own ``inputs`` (``args`` None: its graph is
    walked). A subclassed model has no inputs until a graph calls it; once built by a call
    on data, fresh float KerasTensors of the shapes that call built it with
    (``get_build_config()["input_shape"]``, batch size unknown), one tensor or a list as it
    was called, so its ``call`` can be traced (`trace_layer`) and read like a graph.

    Raises:
        ValueError: the model is not built, or was built with shapes it does not record.

    Example:
    >>> import keras, numpy as np
    >>> class Net(keras.Model):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.dense = keras.layers.Dense(4)
    ...     def call(self, x):
    ...         return self.dense(x)
    >>> net = Net()
    >>> _ = net(np.zeros((2, 3), "float32"))
    >>> [tuple(t.shape) for t in model_inputs(net)[0]]
    [(None, 3)]
    """
    try:
        return list(model.inputs), None
    except (AttributeError, ValueError):
        pass
    config = (model.get_build_config() or {}) if getattr(model, "built", False) else {}
    shape = config.get("input_shape")
    if shape is None:
        raise ValueError(
            "Argument `model` must be a built model with known inputs: give it a keras.Input, "
            "or call it once on a batch of data (a subclassed model is read through its "
            f"traced call at the shapes that call built it with). Received: model={model!r}"
        )
    several = isinstance(shape, (list, tuple)) and all(isinstance(s, (list, tuple)) for s in shape)
    shapes = list(shape) if several else [shape]
    specs = [keras.KerasTensor((None, *tuple(s)[1:])) for s in shapes]
    return specs, ((specs,) if several else (specs[0],))


def stand_in(inputs: Any, size: int) -> list[tuple[int, ...]]:
    """The shapes of ``inputs`` with every unknown dimension at ``size`` (`trace_layer`'s
    ``shapes``, for reading a graph's structure, which does not depend on it).

    Example:
    >>> import keras
    >>> stand_in([keras.KerasTensor((None, None, 8))], 2)
    [(2, 2, 8)]
    """
    return [tuple(size if d is None else int(d) for d in t.shape) for t in inputs]


# The size unknown dimensions (batch, sequence) are traced at where a call needs one to be
# read for its structure (a keras_hub decoder's causal mask is built from its input's
# length): which calls feed which does not depend on it.
STRUCTURE_SIZE = 2


def trace_structure(layer: Any, call: Any, mode: str = "inference") -> Trace:
    """The trace of ``layer``'s call (``call`` = (args, kwargs, inputs), as `trace_layer`
    takes them), its unknown dimensions at `STRUCTURE_SIZE` where the call cannot be traced
    without sizes: for reading which calls feed which (residual sums, the main path), never
    for values.

    Raises:
        Whatever ``call`` raises on KerasTensors at the known sizes too.
    """
    args, kwargs, inputs = call
    try:
        return trace_layer(layer, args, kwargs, inputs, mode)
    except Exception:
        shapes = stand_in(inputs, STRUCTURE_SIZE)
        return trace_layer(layer, args, kwargs, inputs, mode, shapes=shapes)


def output_spec(layer: Any, spec: Any) -> Any:
    """The output of ``layer`` on a tensor like ``spec``, as a KerasTensor (shape, dtype)."""
    try:
        shape = tuple(layer.compute_output_shape(tuple(spec.shape)))
        return keras.KerasTensor(shape, dtype=getattr(layer, "compute_dtype", spec.dtype))
    except Exception:
        return layer.compute_output_spec(keras.KerasTensor(spec.shape, dtype=spec.dtype))


def replay(
    trace: Trace,
    inputs: Sequence[Any],
    tap: Callable[[Any, Any], Any] | None = None,
) -> Any:
    """Run a traced call on real tensors: what the layer's ``call`` computes, call by call.

    Each call of ``trace.calls`` runs its operation (the layer's own sub-layers, with their
    weights; the traced ``keras.ops`` operations) on the values its inputs have.

    Args:
        trace: a `trace_layer` result.
        inputs: the tensors standing for ``trace.inputs``, in that order.
        tap: ``tap(call, y)`` sees the first output ``y`` of each call (a `GraphCall`) and
            returns the value the graph goes on with (None: no tap).

    Returns:
        The values of ``trace.returned`` (the call's output, in its structure).

    Raises:
        KeyError: a call reads a KerasTensor the trace does not compute (not a trace of
            these inputs).

    Example:
    >>> import keras, numpy as np
    >>> dense, x = keras.layers.Dense(4), np.ones((2, 3), "float32")
    >>> expected = keras.ops.convert_to_numpy(dense(x))
    >>> traced = trace_layer(dense, (x,), {}, [x])
    >>> [type(c.operation).__name__ for c in traced.calls]
    ['Matmul', 'Add']
    >>> bool(np.allclose(keras.ops.convert_to_numpy(replay(traced, [x])), expected))
    True
    """
    values = {id(k): v for k, v in zip(trace.inputs, inputs, strict=True)}

    def fill(item: Any) -> Any:
        return values[id(item)] if isinstance(item, keras.KerasTensor) else item

    for call in trace.calls:
        args = keras.tree.map_structure(fill, call.args)
        kwargs = keras.tree.map_structure(fill, call.kwargs)
        flat = list(keras.tree.flatten(call.operation(*args, **kwargs)))
        if tap is not None and flat:
            flat[0] = tap(call, flat[0])
        values.update((id(t), y) for t, y in zip(call.outputs, flat, strict=False))
    return keras.tree.pack_sequence_as(trace.returned, [values[id(t)] for t in trace.outputs])
