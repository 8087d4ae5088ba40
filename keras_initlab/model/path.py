"""The main path of a model: the layers every signal between input and output goes through.

The depth rule (`keras_initlab.depth_rule`) judges how a variance changes along the main
path, not across every layer: the inside of a residual branch, of a squeeze-and-excite gate,
of an Inception module or of an attention layer carries a variance of its own that no
stream reads as it is (a zero-initialized branch outputs 0 by design; query and key
gradients are small at initialization). In a Functional graph whose calls are in a
topological order, a call lies on the main path when no edge of the graph jumps over it
(every path from the inputs to the outputs then runs through it); a nested Functional
model on the path is read the same way, and the sublayers of a known container on the path
(a `MultiHeadAttention`'s query, an RNN's cell) are its internals, off the path.
A Sequential model is a chain. A subclassed model or a custom layer that holds sub-layers
(not a known container such as `MultiHeadAttention`) is read through its ``call`` traced
on KerasTensors (`keras_initlab.model.trace`), like a nested graph: the sum inside a custom
residual block is on the path, and the block's output is named by the block (``block3``,
the record `measure` takes of it); the block's input feeds its skip and its branch, a
fork. Where the trace fails, its leaf layers are taken as a chain in call order
(`ModelPath.assumed` says so and why), so a stream that grows inside still shows in the
sub-layers it feeds.

Three kinds of layer on the path are marked for the rule:

* **normalized**: a layer whose output only feeds a normalization layer that resets its
  scale (LayerNormalization, GroupNormalization, RMSNormalization, UnitNormalization
  always; BatchNormalization in training mode, where it uses batch statistics): that
  scale reaches nothing downstream, so the layer's row is not judged.
* **one-off**: a layer that only moves or reduces values (pooling, reshaping, padding,
  cropping, upsampling, repeating) or adds training noise (dropout, Gaussian noise):
  `ONE_OFF_LAYERS`. It changes a variance where it sits, not through the weights (global
  pooling divides a gradient's variance by (H*W)^2); its predicted change is divided out
  of the profile (`keras_initlab.depth_rule.structural_factors`).
* **sum**: a residual sum (an ``Add`` layer or an ``x + y`` call on the path), and
  **fork**: a layer whose output feeds more than one call (its gradient is the sum of its
  consumers'). A stream of sums of normalized branches grows linearly with their number,
  forward at the sums and backward at the forks, which the rule allows; a sum whose
  branches read the stream through a normalization (pre-norm) is a **normalized sum**.

A layer resets the scale when it is one of Keras' normalizations, registered as one
(`keras_initlab.register_layer`), or, for a layer no table classifies (keras_hub's RMS
norms), when it returns the same output for its input scaled 8-fold
(`keras_initlab.model.resets`). Only floating tensors carry the signal: an integer or
boolean input that every block reads (token ids, a padding mask) jumps over no call. A
block that can only be traced at concrete sizes (a causal mask built from the sequence
length) is read at stand-in sizes (`keras_initlab.model.trace.trace_structure`), its
elements per sample counted at the sizes the graph knows.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import keras

from keras_initlab import _keras
from keras_initlab.model.layers import (
    ALWAYS_NORMALIZING,
    BATCH_NORMALIZATION,
    ONE_OFF_LAYERS,
    classified,
    is_opaque,
    is_sum,
)
from keras_initlab.model.registry import registered
from keras_initlab.model.resets import resets_scale
from keras_initlab.model.trace import model_inputs, output_spec, trace_structure
from keras_initlab.model.tree import walk

L = keras.layers


def normalizes(layer: Any, mode: str) -> bool:
    """Whether ``layer`` resets the scale of its input in ``mode`` (see the module doc).

    Example:
    >>> import keras
    >>> normalizes(keras.layers.BatchNormalization(), "training")
    True
    >>> normalizes(keras.layers.BatchNormalization(), "inference")
    False
    """
    kind = registered(layer)
    if isinstance(layer, ALWAYS_NORMALIZING) or (kind is not None and kind.kind == "normalization"):
        return True
    if isinstance(layer, BATCH_NORMALIZATION):
        return mode == "training"
    return kind is None and classified(type(layer)) is None and resets_scale(layer)


def is_one_off(layer: Any) -> bool:
    """Whether ``layer`` is one of `ONE_OFF_LAYERS` or registered as dropout
    (`keras_initlab.register_layer`)."""
    kind = registered(layer)
    return isinstance(layer, ONE_OFF_LAYERS) or (kind is not None and kind.kind == "dropout")


@dataclass
class ModelPath:
    """The main path of a model, in execution order (see the module doc).

    Attributes:
        nodes: the names (paths below the model, as `measure` names rows) of the calls on
            the main path, in execution order; a name may repeat when a layer is called
            more than once.
        normalized: names on the path whose scale a following normalization resets.
        one_off: names on the path of one-off layers (`is_one_off`).
        sums: names on the path that are residual sums.
        forks: names on the path whose output feeds more than one call (the gradient of a
            fork is the sum of its consumers': a backward sum).
        normalized_sums: sums on the path whose every input other than the stream comes
            from the stream through a normalization (a pre-norm block's sums: the branch
            reads the stream normalized, so what it adds does not grow with the stream).
        resets: names on the path that every route from the previous name reaches through a
            normalization that resets the scale (the name itself included): the scale before
            does not reach them (a BatchNorm in training mode; a ResNet's projection block,
            whose branch and shortcut both end in one).
        producer: for each one-off name, the name on the path that feeds it.
        weighted: names on the path of layers that hold trainable weights.
        outputs: names of the calls whose outputs are the model's.
        elements: per name, the elements of one sample of its output (None axes: 1), which
            turn a gradient's variance into its squared norm (`keras_initlab.depth_rule`).
        assumed: why the path is assumed rather than read (subclassed model), or "".
    """

    nodes: list[str] = field(default_factory=list)
    normalized: set[str] = field(default_factory=set)
    one_off: set[str] = field(default_factory=set)
    sums: set[str] = field(default_factory=set)
    normalized_sums: set[str] = field(default_factory=set)
    forks: set[str] = field(default_factory=set)
    resets: set[str] = field(default_factory=set)
    producer: dict[str, str] = field(default_factory=dict)
    weighted: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)
    elements: dict[str, int] = field(default_factory=dict)
    assumed: str = ""

    def __contains__(self, name: object) -> bool:
        return name in self.nodes


def model_path(model: Any, mode: str = "training") -> ModelPath:
    """The `ModelPath` of a built model, for records taken in ``mode``.

    Args:
        model: a built Keras model (Sequential, Functional or subclassed).
        mode: ``"training"`` or ``"inference"``: whether BatchNormalization resets scales.

    Example:
    >>> import keras
    >>> x = keras.Input((4,))
    >>> h = keras.layers.Dense(4, name="stem")(x)
    >>> s = keras.layers.Add(name="sum")([h, keras.layers.Dense(4, name="branch")(h)])
    >>> path = model_path(keras.Model(x, keras.layers.Dense(2, name="head")(s)))
    >>> path.nodes, sorted(path.sums)
    (['stem', 'sum', 'head'], ['sum'])
    """
    path = ModelPath()
    _read(model, "", mode, path)
    for before, name in itertools.pairwise(path.nodes):
        if name in path.one_off:
            path.producer[name] = before
    return path


def _read(model: Any, prefix: str, mode: str, path: ModelPath) -> None:
    if _keras.is_functional(model):
        _graph(model.inputs, model.outputs, _keras.functional_calls(model), prefix, mode, path)
        return
    if isinstance(model, keras.Sequential):
        layers = list(model.layers)
        spec = model.inputs[0]
        for i, layer in enumerate(layers):
            name = prefix + layer.name
            following = layers[i + 1] if i + 1 < len(layers) else None
            out = _output(layer)
            _node(path, name, layer, mode, [following] if following else [], out, (spec,))
            spec = output_spec(layer, spec)
        if layers and not prefix:
            path.outputs.add(prefix + layers[-1].name)
        return
    try:  # a subclassed model: its call traced at the shapes it was built with
        specs, args = model_inputs(model)
        trace = trace_structure(model, (args, {}, specs), mode)
    except Exception as error:  # no recorded shapes, or whatever its call raises
        _chain(model, prefix, mode, path, f"its call cannot be traced: {type(error).__name__}")
        if path.nodes and not prefix:
            path.outputs.add(path.nodes[-1])
        return
    _graph(trace.inputs, trace.outputs, trace.calls, prefix, mode, path)


def _chain(layer: Any, prefix: str, mode: str, path: ModelPath, why: str) -> None:
    """A subclassed model or custom layer whose graph cannot be read: its leaf layers are
    taken as a chain in call order, and `ModelPath.assumed` says so and why."""
    what = "subclassed model" if isinstance(layer, keras.Model) else "custom layer"
    note = (
        f"{type(layer).__name__} ({prefix.rstrip('/') or 'the model'}) is a {what} whose "
        f"graph cannot be read ({why}), so its layers are taken as a chain in call order"
    )
    path.assumed = f"{path.assumed}; {note}" if path.assumed else note
    for name, leaf in walk(layer):
        if name and not _keras.child_layers(leaf):
            _add(path, prefix + name, leaf, mode, [], _output(leaf))


def _node(
    path: ModelPath,
    name: str,
    layer: Any,
    mode: str,
    following: list[Any],
    output: Any,
    inputs: Any,
    args: Any = None,
    kwargs: Any = None,
) -> None:
    """One call on the path (reading ``inputs``, passed as ``args``/``kwargs``; default: the
    inputs alone): a nested Functional or Sequential model is read inside; a subclassed
    model or custom layer with sub-layers through its traced ``call``
    (`keras_initlab.model.trace`), its output named by the layer itself (a block's output is
    its residual sum), or, where the trace fails, as a chain of its leaves; any other layer
    or operation is one node."""
    if isinstance(layer, keras.Model) and not is_opaque(layer):
        _read(layer, name + "/", mode, path)
        return
    if not is_opaque(layer):
        _add(path, name, layer, mode, following, output)
        return
    args = tuple(inputs) if args is None else args
    try:
        trace = trace_structure(layer, (args, kwargs or {}, inputs), mode)
    except Exception as error:  # whatever its call raises on KerasTensors
        _chain(layer, name + "/", mode, path, f"its call cannot be traced: {type(error).__name__}")
        return
    before = path.nodes[-1] if path.nodes else None
    count = len(path.nodes)
    _graph(trace.inputs, trace.outputs, trace.calls, name + "/", mode, path, (name, following))
    stood_in = _stood_in(inputs, trace.inputs)
    for added in path.nodes[count:]:  # elements per sample at the sizes the graph knows
        if stood_in > 1 and added in path.elements:
            path.elements[added] = max(1, path.elements[added] // stood_in)
    reads = [c for c in trace.calls for t in c.inputs if any(t is i for i in trace.inputs)]
    if before is not None and len(reads) > 1:  # the block's input feeds more than one call
        path.forks.add(before)


def _graph(
    inputs: Any,
    outputs: Any,
    calls: Any,
    prefix: str,
    mode: str,
    path: ModelPath,
    block: tuple[str, list[Any]] | None = None,
) -> None:
    """The path through a graph's calls (a Functional model's, or a traced block's: then
    ``block`` is the block's name, which its output call takes, and what follows it)."""
    calls = list(calls)
    position = {id(t): -1 for t in inputs}
    consumers: dict[int, list[Any]] = {}
    produced: dict[int, list[Any]] = {}  # operation -> the tensors its calls produce
    for i, call in enumerate(calls):
        produced.setdefault(id(call.operation), []).extend(call.outputs)
        for t in call.outputs:
            position[id(t)] = i
        for t in call.inputs:
            consumers.setdefault(id(t), []).append(call.operation)
    # An edge u -> w covers every position strictly between them; a call no edge jumps over
    # is one every path runs through. Only floating tensors carry the signal: an integer or
    # boolean one (token ids, a padding or causal mask that every block reads) jumps over
    # no call.
    covered = [0] * (len(calls) + 1)
    sink = len(calls)
    edges = [
        (position[id(t)], i)
        for i, call in enumerate(calls)
        for t in call.inputs
        if id(t) in position and _carries_signal(t)
    ]
    edges += [(position[id(t)], sink) for t in outputs if id(t) in position]
    for u, w in edges:
        if w - u > 1:
            covered[u + 1] += 1
            covered[w] -= 1
    final = {id(t) for t in outputs}
    running = 0
    before: Any = None  # the previous call on the path
    stream = {id(t) for t in inputs if _carries_signal(t)}  # the path's tensors so far
    producer_of = {id(t): call for call in calls for t in call.outputs}
    for i, call in enumerate(calls):
        last = any(id(t) in final for t in call.outputs)
        if not prefix and last:
            path.outputs.add(call.operation.name)
        running += covered[i]
        if running:
            continue
        op = call.operation
        name = prefix + op.name
        following = [c for t in call.outputs for c in consumers.get(id(t), [])]
        if block is not None and last:
            name, following = block
        if before is not None and _every_route_normalized(before, op, consumers, produced, mode):
            path.resets.add(name)
        if is_sum(op) and _branches_normalized(call, stream, producer_of, mode):
            path.normalized_sums.add(name)
        stream.update(id(t) for t in call.outputs)
        before = call
        output = call.outputs[0] if call.outputs else None
        _node(path, name, op, mode, following, output, call.inputs, call.args, call.kwargs)


def _stood_in(inputs: Any, traced: Any) -> int:
    """The product of the sizes a trace put in place of unknown dimensions (batch left out)
    of the first floating input (`trace_structure`'s stand-ins): a node inside counts its
    elements per sample at the sizes the graph knows, as a node outside does (an unknown
    sequence axis counts one position), taken to keep those axes as a block's stream does."""
    for given, fresh in zip(inputs, traced, strict=False):
        if _carries_signal(given):
            return math.prod(
                int(f)
                for g, f in zip(given.shape[1:], fresh.shape[1:], strict=True)
                if g is None and f is not None
            )
    return 1


def _carries_signal(tensor: Any) -> bool:
    """Whether ``tensor`` is floating (a signal whose variance is judged), not an integer or
    boolean tensor (ids, masks)."""
    return bool(keras.backend.is_float_dtype(keras.backend.standardize_dtype(tensor.dtype)))


def _branches_normalized(
    call: Any, stream: set[int], producer_of: dict[int, Any], mode: str
) -> bool:
    """Whether the sum ``call`` reads the stream (the path's tensors, ids in ``stream``)
    once directly and otherwise only through a normalization: every route back from its
    other floating inputs meets a layer that resets the scale (`normalizes`) before it
    meets the stream."""
    branches = [t for t in call.inputs if _carries_signal(t) and id(t) not in stream]
    if not branches or not any(id(t) in stream for t in call.inputs):
        return False
    seen: set[int] = set()
    frontier = list(branches)
    while frontier:
        tensor = frontier.pop()
        if id(tensor) in stream:
            return False
        producer = producer_of.get(id(tensor))
        if producer is None or id(producer) in seen or normalizes(producer.operation, mode):
            continue
        seen.add(id(producer))
        frontier += [t for t in producer.inputs if _carries_signal(t)]
    return True


def _every_route_normalized(
    start: Any,
    end: Any,
    consumers: dict[int, list[Any]],
    produced: dict[int, list[Any]],
    mode: str,
) -> bool:
    """Whether every route from the call ``start`` to the operation ``end`` (the next on the
    path) runs through a layer that resets the scale (`normalizes`), ``end`` included."""
    seen: set[int] = set()
    frontier = [c for t in start.outputs for c in consumers.get(id(t), [])]
    while frontier:
        op = frontier.pop()
        if id(op) in seen or normalizes(op, mode):
            continue
        if op is end:
            return False
        seen.add(id(op))
        frontier += [c for t in produced.get(id(op), []) for c in consumers.get(id(t), [])]
    return True


def _output(layer: Any) -> Any:
    try:
        return layer.output
    except (AttributeError, ValueError):  # never called symbolically
        return None


def _add(
    path: ModelPath, name: str, layer: Any, mode: str, following: list[Any], output: Any
) -> None:
    if path.nodes and normalizes(layer, mode):
        path.resets.add(name)
    path.nodes.append(name)
    shape = getattr(output, "shape", None)
    if shape is not None:
        path.elements[name] = math.prod(int(d) if d is not None else 1 for d in shape[1:])
    if len(following) > 1:
        path.forks.add(name)
    if following and all(normalizes(f, mode) for f in following):
        path.normalized.add(name)
    if is_one_off(layer):
        path.one_off.add(name)
    if is_sum(layer):
        path.sums.add(name)
    if isinstance(layer, L.Layer) and layer.trainable_weights:
        path.weighted.add(name)
