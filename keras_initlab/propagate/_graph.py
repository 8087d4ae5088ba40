"""The walk: forward through a model's graph in execution order, then backward.

Sequential models are chains of their layers; Functional models are walked call by call
(``keras_initlab._keras.functional_calls``); a nested model is walked in place, its layers
named below it (``"encoder/dense_1"``). Each tensor carries a ``Signal``; the backward pass
starts from 1 at every model output (the gradient variances are relative to the output's),
runs the calls in reverse and adds the contributions of every consumer of a tensor
(independent paths, as in mean-field theory). A layer called more than once gets the row of
its first call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_initlab._keras import functional_calls, is_functional
from keras_initlab.propagate._report import ASSUMED, PREDICTED, PropagateRow
from keras_initlab.propagate._rules import ASSUMPTION, predict
from keras_initlab.propagate._signal import Signal
from keras_initlab.propagate._step import Arg, Call, Shape, Step

Backward = Callable[[list[np.ndarray]], list[np.ndarray]]


class _Row:
    """A row being filled: the forward moments now, the gradient in the backward pass."""

    def __init__(self, name: str, layer: Any, signal: Signal, status: str, note: str) -> None:
        self.name, self.layer, self.signal, self.status, self.note = (
            name,
            layer,
            signal,
            status,
            note,
        )
        self.gradient = float("nan")

    def set_gradient(self, g: np.ndarray) -> None:
        self.gradient = float(np.mean(g))  # gradients taken as zero-mean: E[g^2]

    def freeze(self) -> PropagateRow:
        s = self.signal
        return PropagateRow(
            self.name,
            type(self.layer).__name__,
            s.mean,
            s.var,
            self.gradient,
            s.between,
            self.status,
            self.note,
        )


L = keras.layers
# Layers that act on each position alone: a gradient common to all positions stays common.
_PER_POSITION = (
    L.Dense,
    L.EinsumDense,
    L.LayerNormalization,
    L.BatchNormalization,
    L.Add,
    L.Subtract,
    L.Average,
    L.Dropout,
    L.Activation,
    L.ReLU,
    L.LeakyReLU,
    L.ELU,
    L.Rescaling,
    L.MultiHeadAttention,  # its value path averages a common gradient into a common one
)
_POOLING = (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D)
_PER_POSITION_OPS = ("Add", "Subtract")


def _mark_coherent(calls: list[Any], steps: list[Step | None], outputs: Any) -> None:
    """Which calls' output gradients are common to all positions (see ``Step.context``):
    a global average pool's input is; a per-position layer passes it on; a tensor read by
    several calls is coherent only if all of them pass it on."""
    coherent = {id(t): False for t in outputs}
    for call, step in zip(reversed(calls), reversed(steps), strict=True):
        op = call.operation
        out = all(coherent.get(id(t), True) for t in call.outputs)
        if step is not None:
            step.context["coherent"] = out
        per_position = isinstance(op, _PER_POSITION) or (
            not isinstance(op, L.Layer) and type(op).__name__ in _PER_POSITION_OPS
        )
        value = True if isinstance(op, _POOLING) else (out and per_position)
        for t in call.inputs:
            coherent[id(t)] = coherent.get(id(t), True) and value


def _shape(tensor: Any) -> Shape:
    return tuple(tensor.shape)


def _output_shape(layer: Any, shape: Shape) -> Shape:
    try:
        return tuple(layer.compute_output_shape(shape))
    except Exception:
        return tuple(layer.compute_output_spec(keras.KerasTensor(shape)).shape)


def _bind(value: Any, index: dict[int, int]) -> Any:
    if isinstance(value, keras.KerasTensor):
        return Arg(index[id(value)])
    if isinstance(value, list | tuple):
        return type(value)(_bind(v, index) for v in value)
    return value


Hook = Callable[[Call, str], None]


class Walker:
    """Walks one model; ``rows`` holds the layers in execution order.

    ``before`` (optional) is called with each layer's ``Call`` and path just before its rule
    runs: it may change the layer's weights from the input moments it is about to receive
    (``keras_initlab.autoinit`` sets each kernel's scale so, in one pass).
    """

    def __init__(self, mode: str, before: Hook | None = None) -> None:
        self.mode = mode
        self.before = before
        self.rows: list[_Row] = []
        self._named: set[str] = set()

    def model(
        self, model: Any, prefix: str, inputs: list[Signal], shapes: list[Shape]
    ) -> tuple[list[Signal], Backward]:
        if is_functional(model):
            return self._functional(model, prefix, inputs)
        if isinstance(model, keras.Sequential):
            return self._sequential(model, prefix, inputs[0], shapes[0])
        raise TypeError(  # subclassed models have no graph to walk
            "Argument `model` must be a Sequential or Functional model. "
            f"Received: model={type(model).__name__}"
        )

    def _sequential(
        self, model: Any, prefix: str, x: Signal, shape: Shape
    ) -> tuple[list[Signal], Backward]:
        steps: list[Backward] = []
        for layer in model.layers:
            out_shape = _output_shape(layer, shape)
            outs, step = self._operation(layer, prefix, [x], [shape], [out_shape], (Arg(0),), {})
            steps.append(step)
            x, shape = outs[0], out_shape

        def backward(g: list[np.ndarray]) -> list[np.ndarray]:
            for step in reversed(steps):
                g = step(g)
            return g

        return [x], backward

    def _functional(
        self, model: Any, prefix: str, inputs: list[Signal]
    ) -> tuple[list[Signal], Backward]:
        env = {id(t): s for t, s in zip(model.inputs, inputs, strict=True)}
        done: list[tuple[Any, Backward]] = []
        steps: list[Step | None] = []
        for call in functional_calls(model):
            index = {id(t): i for i, t in enumerate(call.inputs)}
            outs, step = self._operation(
                call.operation,
                prefix,
                [env[id(t)] for t in call.inputs],
                [_shape(t) for t in call.inputs],
                [_shape(t) for t in call.outputs],
                _bind(call.args, index),
                {k: _bind(v, index) for k, v in call.kwargs.items()},
            )
            for t, s in zip(call.outputs, outs, strict=False):
                env[id(t)] = s
            done.append((call, step))
            steps.append(self._last_step)
        _mark_coherent([c for c, _ in done], steps, model.outputs)

        def gradient(grads: dict[int, np.ndarray], tensor: Any) -> np.ndarray:
            if id(tensor) in grads:
                return grads[id(tensor)]
            return np.zeros(env[id(tensor)].shape)

        def backward(g_out: list[np.ndarray]) -> list[np.ndarray]:
            grads: dict[int, np.ndarray] = {}
            for t, g in zip(model.outputs, g_out, strict=True):
                grads[id(t)] = gradient(grads, t) + g
            for call, step in reversed(done):
                g_in = step([gradient(grads, t) for t in call.outputs])
                for t, g in zip(call.inputs, g_in, strict=True):
                    grads[id(t)] = gradient(grads, t) + g
            return [gradient(grads, t) for t in model.inputs]

        return [env[id(t)] for t in model.outputs], backward

    def _add_row(self, name: str, layer: Any, signal: Signal, status: str, note: str):
        if name in self._named:
            return None
        self._named.add(name)
        row = _Row(name, layer, signal, status, note)
        self.rows.append(row)
        return row

    _last_step: Step | None = None

    def _operation(
        self,
        operation: Any,
        prefix: str,
        inputs: list[Signal],
        in_shapes: list[Shape],
        out_shapes: list[Shape],
        args: Any,
        kwargs: dict[str, Any],
    ) -> tuple[list[Signal], Backward]:
        self._last_step = None
        if is_functional(operation) or isinstance(operation, keras.Sequential):
            return self.model(operation, f"{prefix}{operation.name}/", inputs, in_shapes)
        if isinstance(operation, keras.layers.InputLayer):
            return inputs, lambda g: g
        step: Step
        if isinstance(operation, keras.Model):  # a subclassed model: no graph inside
            step = predict(Call(object(), inputs, in_shapes, out_shapes, self.mode))
            step = Step(step.outputs, step.backward, f"subclassed model: {ASSUMPTION}")
        else:
            call = Call(operation, inputs, in_shapes, out_shapes, self.mode, tuple(args), kwargs)
            if self.before is not None:
                self.before(call, f"{prefix}{operation.name}")
            step = predict(call)
        name = f"{prefix}{operation.name}"
        status = ASSUMED if step.assumed else PREDICTED
        row = self._add_row(name, operation, step.outputs[0], status, step.assumed or step.note)
        parts = [
            (self._add_row(f"{name}/{p.name}", p.layer, p.signal, PREDICTED, step.note), p)
            for p in step.parts
        ]

        def backward(g: list[np.ndarray]) -> list[np.ndarray]:
            if row is not None:
                row.set_gradient(g[0])
            for part_row, part in parts:
                if part_row is not None:
                    part_row.set_gradient(part.gradient(g))
            return step.backward(g)

        self._last_step = step
        return step.outputs, backward
