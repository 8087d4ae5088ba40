"""The walk: forward through a model's graph in execution order, then backward.

Sequential models are chains of their layers; Functional models are walked call by call
(``keras_initlab._keras.functional_calls``); a nested model is walked in place, its layers
named below it (``"encoder/dense_1"``). Each tensor carries a ``Signal``; the backward pass
starts from 1 at every model output (the gradient variances are relative to the output's),
runs the calls in reverse and adds the contributions of every consumer of a tensor
(independent paths, as in mean-field theory). A layer called more than once gets a row per
call: its path for the first, ``path@2``, ``path@3``, ... for the next ones, as
`keras_initlab.measure` names its records (the inner rows of a nested model or a traced
layer called twice: ``path/inner``, then ``path/inner@2``).

Assumptions are carried, not forgotten: every tensor carries the names of the assumed layers
its moments rest on (a layer no rule covers, and everything computed from its output), and
every gradient those its variance rests on (the assumed layers it passed back through, and
the inputs of the rules it passed back through). A row is ``predicted`` only when neither
rests on an assumption; else it is ``assumed``, ``downstream`` or ``upstream`` and names
the layers (``PropagateRow.assumes``, ``PropagateRow.gradient_assumes``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_initlab._keras import ConstantCall, functional_calls, is_functional
from keras_initlab.model.layers import (
    BIDIRECTIONAL,
    INPUT_LAYER,
    PER_POSITION,
    POOLING_GLOBAL_AVERAGE,
    RNN,
    TIME_DISTRIBUTED,
)
from keras_initlab.model.trace import Trace, model_inputs, output_spec, trace_layer
from keras_initlab.propagate import _paths
from keras_initlab.propagate._identity import Key, copies, value_key
from keras_initlab.propagate._report import (
    ASSUMED,
    DOWNSTREAM,
    PREDICTED,
    UPSTREAM,
    PropagateRow,
)
from keras_initlab.propagate._rules import ASSUMPTION, predict, rule_for
from keras_initlab.propagate._signal import Signal, index_signal, make
from keras_initlab.propagate._step import Arg, Call, Shape, Step

Taint = tuple[str, ...]  # the assumed layers a value rests on, in walk order
# Gradient variances per tensor, with the assumed layers each rests on.
Grads = tuple[list[np.ndarray], list[Taint]]
Backward = Callable[[Grads], Grads]


def _union(*taints: Taint) -> Taint:
    return tuple(dict.fromkeys(name for t in taints for name in t))


class _Row:
    """A row being filled: the forward moments now, the gradient in the backward pass.

    ``assumes`` names the assumed layers its activation rests on (itself first when it is
    one); ``gradient_assumes`` those its gradient rests on, known after the backward pass.
    """

    def __init__(
        self, name: str, layer: Any, signal: Signal, assumed: str, note: str, assumes: Taint
    ) -> None:
        self.name, self.layer, self.signal, self.assumed, self.note = (
            name,
            layer,
            signal,
            assumed,
            note,
        )
        self.assumes = assumes
        self.gradient = float("nan")
        self.gradient_assumes: Taint = ()

    def set_gradient(self, g: np.ndarray, taint: Taint) -> None:
        self.gradient = float(np.mean(g))  # gradients taken as zero-mean: E[g^2]
        self.gradient_assumes = taint

    def freeze(self) -> PropagateRow:
        s = self.signal
        if self.assumed:
            status, note = ASSUMED, self.assumed
        elif self.assumes:
            status, note = DOWNSTREAM, f"downstream of assumed {_names(self.assumes)}"
        elif self.gradient_assumes:
            status = UPSTREAM
            note = f"gradient passes back through {_names(self.gradient_assumes)}, not predicted"
        else:
            status, note = PREDICTED, self.note
        return PropagateRow(
            self.name,
            type(self.layer).__name__,
            s.mean,
            s.var,
            self.gradient,
            s.between,
            status,
            note,
            self.assumes,
            self.gradient_assumes,
        )


def _names(taint: Taint) -> str:
    shown = ", ".join(taint[:3])
    return shown + (f" and {len(taint) - 3} more" if len(taint) > 3 else "")


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
        per_position = isinstance(op, PER_POSITION) or (
            not isinstance(op, keras.layers.Layer) and type(op).__name__ in _PER_POSITION_OPS
        )
        value = True if isinstance(op, POOLING_GLOBAL_AVERAGE) else (out and per_position)
        for t in call.inputs:
            coherent[id(t)] = coherent.get(id(t), True) and value


def _copy_factors(
    calls: list[Any], steps: list[Step | None], keys: dict[int, int], outputs: Any
) -> dict[int, float]:
    """``{call index: factor}`` for the backward of calls whose outputs a sum reads as
    copies of one value (`_identity`: two pools alike of one tensor ``p``): the copies get
    the same gradient, so what they pass back to ``p`` adds as amplitudes, ``(sum_i w_i)^2``
    times one copy's contribution (``w_i``: the sum's weights, `Step.weights`): the first
    copy's call passes that back, the others nothing. Only where every copy is the one
    output of its own call, read by the sum alone, and the copies' calls read the same
    tensors; elsewhere the paths stay independent."""
    producer = {id(t): i for i, call in enumerate(calls) for t in call.outputs}
    reads: dict[int, int] = {}
    for t in [*outputs, *(t for call in calls for t in call.inputs)]:
        reads[id(t)] = reads.get(id(t), 0) + 1
    factors: dict[int, float] = {}
    for call, step in zip(calls, steps, strict=True):
        if step is None or len(step.weights) != len(call.inputs):
            continue
        groups: dict[int, list[int]] = {}
        for i, t in enumerate(call.inputs):
            groups.setdefault(keys[id(t)], []).append(i)
        for members in groups.values():
            tensors = [call.inputs[i] for i in members]
            makers = [producer.get(id(t), -1) for t in tensors]
            if (
                len(members) < 2
                or min(makers) < 0
                or any(reads[id(t)] != 1 for t in tensors)
                or len(set(makers)) != len(makers)
                or any(len(calls[m].outputs) != 1 for m in makers)
                or len({tuple(id(t) for t in calls[m].inputs) for m in makers}) != 1
            ):
                continue
            w = [step.weights[i] for i in members]
            factors[makers[0]] = (sum(w) / w[0]) ** 2
            factors.update((m, 0.0) for m in makers[1:])
    return factors


def _coherent(
    inputs: list[Any], grads: list[np.ndarray], weights: tuple[float, ...]
) -> list[np.ndarray | None]:
    """A sum's input gradients with a tensor it reads more than once (``add([x, x])``)
    given once, its copies' amplitudes added (``(sum_i w_i)^2 Var(dy)``); None for the
    repeats."""
    if not weights or len({id(t) for t in inputs}) == len(inputs):
        return list(grads)
    out: list[np.ndarray | None] = []
    first: dict[int, int] = {}
    amplitude: dict[int, np.ndarray] = {}
    for i, (t, g, w) in enumerate(zip(inputs, grads, weights, strict=True)):
        first.setdefault(id(t), i)
        amplitude[id(t)] = amplitude.get(id(t), 0.0) + np.sign(w) * np.sqrt(g)
    for i, t in enumerate(inputs):
        out.append(amplitude[id(t)] ** 2 if first[id(t)] == i else None)
    return out


def _shape(tensor: Any) -> Shape:
    return tuple(tensor.shape)


def _reason(error: Exception) -> str:
    """``Type: first line`` of an error (its first 120 characters)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:120]}" if text else type(error).__name__


def _no_gradient(inputs: list[Signal]) -> Grads:
    """Zero gradients for ``inputs``, resting on no assumption (an output that does not
    depend on their values)."""
    return [np.zeros(x.shape) for x in inputs], [() for _ in inputs]


def _floating(tensor: Any) -> bool:
    return keras.backend.is_float_dtype(tensor.dtype)


def _bind(value: Any, index: dict[int, int]) -> Any:
    if isinstance(value, keras.KerasTensor):
        return Arg(index[id(value)])
    if isinstance(value, list | tuple):
        return type(value)(_bind(v, index) for v in value)
    return value


def _unbind(value: Any, tensors: list[Any]) -> Any:
    if isinstance(value, Arg):
        return tensors[value.index]
    if isinstance(value, list | tuple):
        return type(value)(_unbind(v, tensors) for v in value)
    return value


Hook = Callable[[Call, str], None]


class Walker:
    """Walks one model; ``rows`` holds the layers in execution order.

    ``before`` (optional) is called with each layer's ``Call`` and path just before its rule
    runs: it may change the layer's weights from the input moments it is about to receive
    (``keras_initlab.autoinit`` sets each kernel's scale so, in one pass).

    A layer no rule covers (a custom layer, a subclassed block or model) is read through
    its ``call`` traced on KerasTensors (`keras_initlab._keras.traced_call`): its sub-layers
    and ``keras.ops`` calls are walked in place, named below it, and its own row is its
    output. Where the trace fails (Python control flow on values, backend ops) the layer is
    opaque: it is assumed, with the reason.
    """

    def __init__(self, mode: str, before: Hook | None = None, batch: int | None = None) -> None:
        self.mode = mode
        self.batch = batch
        self.before = before
        self.rows: list[_Row] = []
        self._named: set[str] = set()
        # calls of each operation so far, by its parent's path and its name (a traced
        # layer's trace may hold new operation objects at each call, named alike)
        self._calls: dict[tuple[str, str], int] = {}

    def model(
        self,
        model: Any,
        prefix: str,
        inputs: list[Signal],
        taints: list[Taint] | None = None,
    ) -> tuple[list[Signal], list[Taint], Backward]:
        """Walk ``model`` forward from its input moments (and the assumed layers each input
        rests on); returns the output moments, their taints and the backward map."""
        taints = taints or [()] * len(inputs)
        if is_functional(model):
            calls = functional_calls(model)
            return self._graph(model.inputs, model.outputs, calls, prefix, inputs, taints)
        if isinstance(model, keras.Sequential):
            return self._sequential(model, prefix, inputs[0], taints[0])
        # a subclassed model: its call traced at the shapes it was built with, its rows
        # named below the model as `measure` names them (no row of its own)
        specs, args = model_inputs(model)
        trace = trace_layer(model, args, {}, specs, self.mode, self._sizes(specs, inputs))
        return self._graph(trace.inputs, trace.outputs, trace.calls, prefix, inputs, taints)

    def _sequential(
        self, model: Any, prefix: str, x: Signal, taint: Taint
    ) -> tuple[list[Signal], list[Taint], Backward]:
        steps: list[Backward] = []
        spec = model.inputs[0]
        for layer in model.layers:
            out_spec = output_spec(layer, spec)
            outs, taints, step = self._operation(
                layer, prefix, [x], [taint], [spec], [out_spec], (Arg(0),), {}
            )
            steps.append(step)
            x, taint, spec = outs[0], taints[0], out_spec

        def backward(g: Grads) -> Grads:
            for step in reversed(steps):
                g = step(g)
            return g

        return [x], [taint], backward

    def _graph(
        self,
        graph_inputs: Any,
        graph_outputs: Any,
        calls: Any,
        prefix: str,
        inputs: list[Signal],
        taints: list[Taint],
    ) -> tuple[list[Signal], list[Taint], Backward]:
        """Walk a graph's calls (a Functional model's, or a traced ``call``'s)."""
        env = {id(t): s for t, s in zip(graph_inputs, inputs, strict=True)}
        tainted = {id(t): a for t, a in zip(graph_inputs, taints, strict=True)}
        # value keys, each interned as a number (a key names its inputs' numbers, not their
        # keys: nested keys would grow with the depth of the graph)
        numbers: dict[Key, int] = {}
        keys = {
            id(t): numbers.setdefault(("input", id(s)), len(numbers))
            for t, s in zip(graph_inputs, inputs, strict=True)
        }
        done: list[tuple[Any, Backward]] = []
        steps: list[Step | None] = []
        for call in calls:
            index = {id(t): i for i, t in enumerate(call.inputs)}
            args = _bind(call.args, index)
            kwargs = {k: _bind(v, index) for k, v in call.kwargs.items()}
            in_keys = [keys[id(t)] for t in call.inputs]
            key = value_key(call.operation, in_keys, args, kwargs, self.mode)
            outs, out_taints, step = self._operation(
                call.operation,
                prefix,
                [env[id(t)] for t in call.inputs],
                [tainted[id(t)] for t in call.inputs],
                list(call.inputs),
                list(call.outputs),
                args,
                kwargs,
                copies(in_keys),
            )
            if any(env[id(t)].correlated_steps for t in call.inputs) and not isinstance(
                call.operation, (*RNN, *BIDIRECTIONAL)
            ):  # a recurrent layer's rule says what it returns
                outs = [dataclasses.replace(s, correlated_steps=True) for s in outs]
            for i, (t, s, a) in enumerate(zip(call.outputs, outs, out_taints, strict=False)):
                env[id(t)], tainted[id(t)] = s, a
                keys[id(t)] = numbers.setdefault(
                    ("own", id(t)) if key is None else (key, i), len(numbers)
                )
            done.append((call, step))
            steps.append(self._last_step if self._last_operation is call.operation else None)
        _mark_coherent([c for c, _ in done], steps, graph_outputs)
        factors = _copy_factors([c for c, _ in done], steps, keys, graph_outputs)

        def backward(g_out: Grads) -> Grads:
            grads: dict[int, np.ndarray] = {}
            blame: dict[int, Taint] = {}

            def gradient(tensor: Any) -> np.ndarray:
                return grads.get(id(tensor), np.zeros(env[id(tensor)].shape))

            def add(tensor: Any, g: np.ndarray, taint: Taint) -> None:
                grads[id(tensor)] = gradient(tensor) + g
                blame[id(tensor)] = _union(blame.get(id(tensor), ()), taint)

            for t, g, a in zip(graph_outputs, *g_out, strict=True):
                add(t, g, a)
            for index in reversed(range(len(done))):
                call, step = done[index]
                outs = [(gradient(t), blame.get(id(t), ())) for t in call.outputs]
                for t in call.outputs:  # read once: a stream's paths hold K times the tensor
                    grads.pop(id(t), None)
                g_in, a_in = step(([g for g, _ in outs], [a for _, a in outs]))
                own = steps[index]
                merged = _coherent(call.inputs, g_in, own.weights if own is not None else ())
                factor = factors.get(index, 1.0)
                for t, d, a in zip(call.inputs, merged, a_in, strict=True):
                    if d is not None:
                        add(t, d * factor, a)
            return [gradient(t) for t in graph_inputs], [blame.get(id(t), ()) for t in graph_inputs]

        outputs = [env[id(t)] for t in graph_outputs]
        return outputs, [tainted[id(t)] for t in graph_outputs], backward

    def _add_row(self, name: str, *args: Any) -> _Row | None:
        if name in self._named:
            return None
        self._named.add(name)
        row = _Row(name, *args)
        self.rows.append(row)
        return row

    _last_step: Step | None = None  # the last rule's step, and the operation it was for
    _last_operation: Any = None

    def _operation(
        self,
        operation: Any,
        prefix: str,
        inputs: list[Signal],
        taints: list[Taint],
        in_specs: list[Any],
        out_specs: list[Any],
        args: Any,
        kwargs: dict[str, Any],
        same: tuple[int, ...] = (),
    ) -> tuple[list[Signal], list[Taint], Backward]:
        """One call: its rule forward, its row, and its backward map (``same``: for each
        input, the first input holding the same value, `_identity.copies`). The outputs rest on
        every assumption an input rests on, and on this layer when it is assumed; the input
        gradients on every assumption the output gradients rest on, on the inputs' own (a
        rule's backward factor reads the input moments), and on this layer's."""
        self._last_step = None
        if isinstance(operation, INPUT_LAYER):
            return inputs, taints, lambda g: g
        if out_specs and not any(_floating(t) for t in out_specs):
            return self._indices(operation, inputs, out_specs, args, kwargs)
        if not isinstance(operation, keras.layers.Layer) and inputs:
            known = self._values(operation, inputs, args, kwargs)
            if known is not None and len(known) == len(out_specs):
                return self._indices(operation, inputs, out_specs, args, kwargs, known)
        key = (prefix, operation.name)
        calls = self._calls[key] = self._calls.get(key, 0) + 1
        name = f"{prefix}{operation.name}" + (f"@{calls}" if calls > 1 else "")
        inner = f"{prefix}{operation.name}/"  # each call's inner rows count their own calls
        if is_functional(operation) or isinstance(operation, keras.Sequential):
            return self.model(operation, inner, inputs, taints)
        if isinstance(operation, TIME_DISTRIBUTED) and len(inputs) == 1:
            return self._time_distributed(operation, inner, inputs[0], taints[0], in_specs[0])
        in_shapes = self._sizes(in_specs, inputs)
        out_shapes = self._out_shapes(operation, in_specs, in_shapes, out_specs, args, kwargs)
        call = Call(
            operation,
            inputs,
            in_shapes,
            out_shapes,
            self.mode,
            tuple(args),
            kwargs,
            self.batch,
            same,
        )
        opaque = ""
        if rule_for(operation, len(inputs)) is None and isinstance(operation, keras.layers.Layer):
            try:
                trace = trace_layer(
                    operation,
                    _unbind(args, in_specs),
                    {k: _unbind(v, in_specs) for k, v in kwargs.items()},
                    in_specs,
                    self.mode,
                    in_shapes,
                )
            except ConstantCall as constant:
                return self._constant(operation, name, constant.values, inputs)
            except Exception as error:  # whatever the call raises on KerasTensors
                opaque = f"could not be traced ({_reason(error)})"
            else:
                rows, named = len(self.rows), set(self._named)
                try:
                    return self._traced(operation, name, inner, trace, inputs, taints)
                except (ValueError, TypeError, NotImplementedError) as error:
                    # A part of the traced call no rule can lay out (shapes it does not
                    # expect): the layer is read as a whole, assumed; its partial rows go.
                    del self.rows[rows:]
                    self._named = named
                    opaque = f"has a traced call no rule reads ({_reason(error)})"
        if self.before is not None:
            self.before(call, name)
        step = predict(call)
        if opaque:
            step = Step(
                step.outputs,
                step.backward,
                f"{type(operation).__name__} {opaque}: {ASSUMPTION}",
            )
        upstream = _union(*taints)
        out_taint = _union(upstream, (name,)) if step.assumed else upstream
        note = "; ".join(n for n in (step.note, step.gradient_assumed) if n)
        row = self._add_row(name, operation, step.outputs[0], step.assumed, note, out_taint)
        parts = [
            (self._add_row(f"{name}/{p.name}", p.layer, p.signal, "", step.note, out_taint), p)
            for p in step.parts
        ]

        def backward(g: Grads) -> Grads:
            arrays, blamed = g
            below = _union(*blamed)
            # gradients per path of a rectified stream: the rows get their mean, a rule
            # that does not follow paths their mean weighted by its output's derivatives
            plain = [_paths.averaged(a) for a in arrays]
            if row is not None:
                row.set_gradient(plain[0], below)
            for part_row, part in parts:
                if part_row is not None:
                    part_row.set_gradient(part.gradient(plain), below)
            if not step.paths:
                arrays = [
                    _paths.for_rule(a, out) for a, out in zip(arrays, step.outputs, strict=False)
                ]
            g_in = step.backward(arrays)
            own = (name,) if step.assumed or step.gradient_assumed else ()
            taint = _union(below, upstream, own)
            return g_in, [taint] * len(g_in)

        self._last_step, self._last_operation = step, operation
        return step.outputs, [out_taint] * len(step.outputs), backward

    def _time_distributed(
        self, wrapper: Any, inner: str, x: Signal, taint: Taint, spec: Any
    ) -> tuple[list[Signal], list[Taint], Backward]:
        """``TimeDistributed(layer)``: the layer called on each step of the first axis, as
        Keras does (its rows named per call below the wrapper, ``td/dense``, ``td/dense@2``,
        as `measure` names its records); the outputs stacked back along that axis."""
        layer, steps = wrapper.layer, x.shape[0]
        step_spec = keras.KerasTensor((spec.shape[0], *spec.shape[2:]), dtype=spec.dtype)
        out_spec = output_spec(layer, step_spec)
        walked = [
            self._operation(
                layer,
                inner,
                [make(x.means[t], x.variances[t])],
                [taint],
                [step_spec],
                [out_spec],
                (Arg(0),),
                {},
            )
            for t in range(steps)
        ]
        outs = [w[0][0] for w in walked]
        out = make(np.stack([o.means for o in outs]), np.stack([o.variances for o in outs]))

        def backward(g: Grads) -> Grads:
            (arrays, blamed) = g
            back = [w[2](([arrays[0][t]], [blamed[0]])) for t, w in enumerate(walked)]
            grad = np.stack([b[0][0] for b in back])
            return [grad], [_union(*(b[1][0] for b in back))]

        return [out], [_union(*(w[1][0] for w in walked))], backward

    def _constant(
        self, layer: Any, name: str, values: list[np.ndarray], inputs: list[Signal]
    ) -> tuple[list[Signal], list[Taint], Backward]:
        """A layer whose outputs its traced call computes from its inputs' shapes alone (a
        learned position embedding: the table's first rows): each element is the same in
        every sample (its value, variance 0), and no gradient reaches the inputs."""
        outputs = [make(value[0], np.zeros(value.shape[1:])) for value in values]
        note = "computed from its input's shape alone: the same in every sample"
        row = self._add_row(name, layer, outputs[0], "", note, ())

        def backward(g: Grads) -> Grads:
            if row is not None:
                row.set_gradient(g[0][0], _union(*g[1][:1]))
            return _no_gradient(inputs)

        return outputs, [() for _ in outputs], backward

    def _indices(
        self,
        operation: Any,
        inputs: list[Signal],
        out_specs: list[Any],
        args: Any,
        kwargs: dict[str, Any],
        outputs: list[np.ndarray | None] | None = None,
    ) -> tuple[list[Signal], list[Taint], Backward]:
        """An operation whose outputs are integer or boolean (a mask, positions), or a
        ``keras.ops`` operation of such tensors alone (``outputs``: the values `_values`
        computed; Falcon's ALiBi bias from its padding mask): no row, no gradient; its
        value computed from its inputs' where all are known (`Signal.value`: a causal mask
        built from a sequence length, a padding mask of ones), so that an attention layer
        can read which keys each query sees. A floating output has that value's mean and
        variance over the batch as its moments (a bias the same in every sample: variance
        0)."""
        if outputs is None:
            outputs = self._values(operation, inputs, args, kwargs) or [None] * len(out_specs)
        signals = [
            index_signal(spec, value)
            if value is None or not _floating(spec)
            else dataclasses.replace(make(value.mean(axis=0), value.var(axis=0)), value=value)
            for spec, value in zip(out_specs, outputs, strict=True)
        ]

        return signals, [() for _ in signals], lambda g: _no_gradient(inputs)

    @staticmethod
    def _values(
        operation: Any, inputs: list[Signal], args: Any, kwargs: dict[str, Any]
    ) -> list[np.ndarray | None] | None:
        """The operation run on its inputs' values (batch axis first), or None where one
        is not known or the operation raises."""
        values = [signal.value for signal in inputs]
        if not all(v is not None for v in values):
            return None
        tensors = [keras.ops.convert_to_tensor(v) for v in values]
        try:
            result = operation(
                *_unbind(args, tensors), **{k: _unbind(v, tensors) for k, v in kwargs.items()}
            )
            return [keras.ops.convert_to_numpy(t) for t in keras.tree.flatten(result)]
        except Exception:  # whatever the operation raises: its value stays unknown
            return None

    def _out_shapes(
        self,
        operation: Any,
        in_specs: list[Any],
        in_shapes: list[Shape],
        out_specs: list[Any],
        args: Any,
        kwargs: dict[str, Any],
    ) -> list[Shape]:
        """The output shapes a rule reads: the graph's, or, where the graph leaves a size
        unknown beyond the batch (a sequence length), the operation's output spec on inputs
        of the sizes the walk knows (``in_shapes``, `_sizes`); the graph's where that spec
        fails."""
        shapes = [_shape(t) for t in out_specs]
        if all(d is not None for shape in shapes for d in shape[1:]):
            return shapes
        fresh = [
            keras.KerasTensor(s, dtype=t.dtype) for s, t in zip(in_shapes, in_specs, strict=True)
        ]
        try:
            spec = operation.compute_output_spec(
                *_unbind(args, fresh), **{k: _unbind(v, fresh) for k, v in kwargs.items()}
            )
        except Exception:  # whatever the spec raises: the graph's shapes stand
            return shapes
        known = [_shape(t) for t in keras.tree.flatten(spec)]
        return known if len(known) == len(shapes) else shapes

    def _sizes(self, specs: list[Any], inputs: list[Signal]) -> list[tuple[int | None, ...]]:
        """The shapes a layer's call is traced at: its inputs' as the walk knows them (the
        sizes the graph leaves unknown, a sequence length, made concrete: a block that
        builds a causal mask from its input's length is traced at that length), the batch
        at the walk's batch size (1 where none is given)."""
        return [
            (self.batch or 1, *signal.shape)
            if len(signal.shape) == len(spec.shape) - 1
            else tuple(spec.shape)
            for spec, signal in zip(specs, inputs, strict=True)
        ]

    def _traced(
        self,
        layer: Any,
        name: str,
        inner: str,
        trace: Trace,
        inputs: list[Signal],
        taints: list[Taint],
    ) -> tuple[list[Signal], list[Taint], Backward]:
        """A layer read through its traced ``call``: its own row ``name`` (its first
        output), then the rows of its sub-layers and operations, named below ``inner``."""
        row = self._add_row(name, layer, inputs[0], "", "read through its traced call", ())
        outs, out_taints, walked = self._graph(
            trace.inputs, trace.outputs, trace.calls, inner, inputs, taints
        )
        if row is not None:
            row.signal, row.assumes = outs[0], out_taints[0]

        def backward(g: Grads) -> Grads:
            if row is not None:
                row.set_gradient(g[0][0], _union(*g[1][:1]))
            return walked(g)

        return outs, out_taints, backward
