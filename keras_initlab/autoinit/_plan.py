"""What AutoInit reads from the graph before the walk: for every kernel layer, the activation
that follows it and the elementwise layers in between, and the residual branches' share.

* **What follows.** A kernel layer without an activation of its own whose output goes to one
  layer only is followed through the layers that are elementwise affine maps at
  initialization (BatchNormalization in inference mode, dropout and noise layers, which are
  the identity in inference) up to an activation layer (``Activation``, ``ReLU``,
  ``LeakyReLU``, ``ELU``, ``PReLU``); that activation's output is the one whose variance the
  layer's scale sets. A softmax, a merge, a pooling or a second consumer ends the chain: the
  target is then the end of the chain (the kernel's output through the affine layers).
  A nested model's boundary ends it too.
* **Residual shares.** The residual sums of ``keras_initlab.residual_blocks`` are grouped in
  streams: a sum whose skip is the output of an earlier sum, through no kernel, adds to the
  same stream; a projection shortcut (a kernel on the skip path, which the walk scales to
  the target) starts a new one. An identity skip carries the stream unchanged, so each sum
  adds its branch's variance (``Var(s + b) = Var(s) + Var(b)`` for a branch independent of
  the stream): with ``n`` branches of variance ``f T`` the stream goes from ``T`` to ``(1 +
  n f) T``. Each branch's last kernel gets the fraction ``f`` that puts the branch ends and
  the stream's last sum equally far from the target on a log scale, ``f T = T^2 / (T + n f
  T)``:

      f = (sqrt(1 + 4 n) - 1) / (2 n)        (n <= BALANCED_SUMS = 11)

  (0.62 for one sum, 0.39 for 4, 0.28 for 9: the stream ends at ``T / f``, at most 3.9
  ``T``), so that every branch end and every sum lies within ``[T/4, 4 T]``. A longer
  stream cannot have both (``T + n T/4 > 4 T``); its branches get ``f = 1/n`` (GPT-2's
  ``1/sqrt(2N)`` std on the residual projections), which keeps every sum within ``2 T``
  and leaves the branch ends below ``T/4``.
* **Learned scales on a branch.** A branch whose end passes through learned per-channel
  scales that the walk keeps (a layer registered as ``"scale"``: ConvNeXt's ``LayerScale``,
  its ``gamma`` drawn at 1e-6) adds ``g Var(b)`` to the stream, ``g`` the product of their
  mean squares; its last kernel gets ``min(1, f / g)`` of the target, so that the branch's
  part of the stream is still ``f T`` where the scales allow it, and the branch end is
  not pushed below the target for a stream it barely feeds (ConvNeXtSmall's 27 blocks of
  stage 2: ``1/27`` put their ends at 0.037; now at the target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from keras_initlab import _keras
from keras_initlab.model.layers import ACTIVATION_LAYERS, MULTIPLY, PASS_THROUGH
from keras_initlab.model.operations import OPERATIONS, Arithmetic
from keras_initlab.model.registry import registered
from keras_initlab.model.residual import ResidualBlock, residual_blocks
from keras_initlab.model.trace import model_inputs, trace_layer

_MULTIPLY_OP = Arithmetic("multiply")
BALANCED_SUMS = 11  # the longest stream whose branch ends and sums fit in [T/4, 4 T]


@dataclass(frozen=True)
class Follow:
    """What a kernel layer's output goes through before its variance is set.

    Attributes:
        chain: the elementwise affine layers between the kernel layer and ``activation``.
        activation: the activation layer that follows, or None.
        gate: whether the end (``activation``'s output, else the kernel layer's own) is an
            operand of a product with another tensor (a ``Multiply`` layer or a
            ``keras.ops.multiply`` node); with an activation that can start neutral
            (``_solve.solve_gate``: sigmoid, hard sigmoid) the kernel is a gate, as in
            squeeze-and-excitation, else the product's other operand.
        partners: the layers whose outputs are the product's other factors (where
            ``gate``): a gate among them (`_solve.neutral_gate`) makes this kernel its
            operand (`_solve.solve_operand`).
    """

    chain: tuple[Any, ...] = ()
    activation: Any = None
    gate: bool = False
    partners: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Share:
    """A residual branch's share of the target variance.

    Attributes:
        fraction: `fraction` of a stream of ``n`` residual sums, over ``gain`` (at most 1).
        add: the sum the branch enters.
        stream: how many sums the stream has.
        gain: the product of the mean squares of the learned scales on the branch after its
            last kernel (`branch_gain`; 1 without).
    """

    fraction: float
    add: str
    stream: int
    gain: float = 1.0


def _product(call: Any) -> bool:
    """Whether ``call`` multiplies two or more tensors element by element."""
    op = call.operation
    product = isinstance(op, MULTIPLY) or OPERATIONS.get(type(op).__name__) == _MULTIPLY_OP
    return product and len(call.inputs) > 1


def _end(
    chain: list[Any], activation: Any, tensor: Any, graph: tuple[dict[int, Any], ...]
) -> Follow:
    """The `Follow` whose end is ``tensor``: its products, and their other factors' layers."""
    consumers, producers = graph
    products = [call for call in consumers.get(id(tensor), []) if _product(call)]
    partners = tuple(
        producers[id(t)].operation
        for call in products
        for t in call.inputs
        if t is not tensor and id(t) in producers
    )
    return Follow(tuple(chain), activation, bool(products), partners)


def _follow(start: Any, graph: tuple[dict[int, Any], ...]) -> Follow:
    chain: list[Any] = []
    tensor = start
    while True:
        users = graph[0].get(id(tensor), [])
        op = users[0].operation if len(users) == 1 else None
        if isinstance(op, ACTIVATION_LAYERS):
            return _end(chain, op, users[0].outputs[0], graph)
        if not isinstance(op, PASS_THROUGH) or len(users[0].outputs) != 1:
            return _end(chain, None, tensor, graph)
        chain.append(op)
        tensor = users[0].outputs[0]


def _sequential_follow(layers: list[Any], index: int) -> Follow:
    chain: list[Any] = []
    for layer in layers[index + 1 :]:
        if isinstance(layer, ACTIVATION_LAYERS):
            return Follow(tuple(chain), layer)
        if not isinstance(layer, PASS_THROUGH):
            break
        chain.append(layer)
    return Follow(tuple(chain))


def follows(model: Any) -> dict[int, Follow]:
    """``{id(layer): Follow}`` for every layer called in the model's graphs (nested too)."""
    found: dict[int, Follow] = {}
    calls = _graph_calls(model)
    if calls is not None:
        consumers: dict[int, list[Any]] = {}
        producers: dict[int, Any] = {}
        for call in calls:
            for t in call.inputs:
                consumers.setdefault(id(t), []).append(call)
            producers.update((id(t), call) for t in call.outputs)
        for call in calls:
            op = call.operation
            if isinstance(op, keras.Sequential) or _keras.is_functional(op):
                found.update(follows(op))
            elif len(call.outputs) == 1:
                found.setdefault(id(op), _follow(call.outputs[0], (consumers, producers)))
    elif isinstance(model, keras.Sequential):
        for i, layer in enumerate(model.layers):
            if isinstance(layer, keras.Sequential) or _keras.is_functional(layer):
                found.update(follows(layer))
            else:
                found.setdefault(id(layer), _sequential_follow(model.layers, i))
    return found


def _graph_calls(model: Any) -> list[Any] | None:
    """The calls of a Functional model's graph, or of a subclassed model's traced ``call``
    (at the shapes it was built with; none where it cannot be traced); None for a
    Sequential model (a chain)."""
    if _keras.is_functional(model):
        return _keras.functional_calls(model)
    if isinstance(model, keras.Sequential):
        return None
    try:
        specs, args = model_inputs(model)
        return list(trace_layer(model, args, {}, specs).calls)
    except Exception:  # whatever its call raises on KerasTensors: no layer is followed
        return []


def fraction(n: int) -> float:
    """The branch variance, as a fraction of the target, for a stream of ``n`` sums
    (module docstring): branch ends and the stream's end equally far from the target up to
    `BALANCED_SUMS` sums, ``1/n`` beyond.

    Example:
    >>> round(fraction(1), 3), round(fraction(4), 3), round(1 + 4 * fraction(4), 3)
    (0.618, 0.39, 2.562)
    >>> fraction(32) == 1 / 32
    True
    """
    if n > BALANCED_SUMS:
        return 1.0 / n
    return (math.sqrt(1.0 + 4.0 * n) - 1.0) / (2.0 * n)


def branch_gain(block: ResidualBlock) -> float:
    """The product of the mean squares ``mean(w^2)`` of the learned per-channel scales on
    ``block``'s branch after its last kernel (layers registered as ``"scale"``, with their
    weight), by which the branch's variance enters the stream; 1 without."""
    gain = 1.0
    for layer in block.tail_layers:
        kind = registered(layer)
        if kind is not None and kind.kind == "scale" and kind.weight is not None:
            weight = keras.ops.convert_to_numpy(getattr(layer, kind.weight))
            gain *= float(np.mean(np.square(weight.astype(np.float64))))
    return gain


def shares(model: Any) -> dict[int, Share]:
    """``{id(last kernel layer): Share}`` for every residual branch of the model."""
    blocks = list(residual_blocks(model))
    stream_of: dict[str, int] = {}
    sizes: list[int] = []
    for block in blocks:
        stream = None if block.shortcut else stream_of.get(block.skip)
        if stream is None:
            stream = len(sizes)
            sizes.append(0)
        sizes[stream] += 1
        stream_of[block.add] = stream
    found = {}
    for block in blocks:
        if block.last_kernel_layer is None:
            continue
        n, gain = sizes[stream_of[block.add]], branch_gain(block)
        share = fraction(n) / gain if gain > 0 else 1.0
        found[id(block.last_kernel_layer)] = Share(min(1.0, share), block.add, n, gain)
    return found
