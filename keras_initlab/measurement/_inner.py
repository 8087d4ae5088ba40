"""The residual sums no layer holds: ``keras.ops`` sums in a graph and inside a block's call.

A residual network's stream is where variance grows, and many are written without an
``Add`` layer: ``h = x + branch`` in a Functional model (a ``keras.ops`` ``Add`` operation,
a node of the graph), or ``return x + self.d2(self.d1(x))`` inside a subclassed block (a
user's residual block, every keras_hub transformer block). `inner_sums` finds them where
`keras_initlab.model.residual.residual_blocks` does, with its names (``add_3``,
``block3/add``), and each becomes a measured entry:

* an operation of a Functional graph is a node that lives as long as the graph: it is
  tapped like a layer (`_routing.install_taps` wraps its ``call``);
* a sum inside a block's ``call`` exists only while the call runs: an `InnerSum` names it,
  and while a probe records, the block's ``call`` is replaced by a replay of its trace
  (`replayed`: `keras_initlab.model.trace.replay`, the block's own sub-layers and weights
  computing the same operations in the same order), which hands the sum to the recorder.
  Where the call cannot be traced (Python control flow on values, backend ops) the block
  runs as it is and the sum has no record. Training steps never replay: the in-step taps
  record no such sum (its rows are "did not run" there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_initlab import _keras
from keras_initlab.model.layers import is_opaque
from keras_initlab.model.trace import Trace, replay, trace_layer


class InnerSum:
    """A residual sum computed inside ``owner``'s ``call``: the operation ``name`` of its
    trace (``"add"``, ``"add_1"``: numbered by class within the call).

    Attributes:
        owner: the block (a layer whose ``call`` is traced).
        name: the operation's name in the trace.
        weights: none (it holds no variable).
    """

    record_class = "Add"
    weights: tuple[Any, ...] = ()

    def __init__(self, owner: Any, name: str) -> None:
        self.owner, self.name = owner, name

    def __repr__(self) -> str:
        return f"InnerSum({self.owner.name}/{self.name})"


def inner_sums(model: Any, walked: Sequence[tuple[str, Any]]) -> list[tuple[str, Any, str]]:
    """``(path, entry, after)`` of each residual sum of ``model`` that no layer computes:
    the ``keras.ops`` operation of a Functional graph, or an `InnerSum` of a traced block;
    ``after`` names what feeds its branch input (the entry to place it after).

    ``walked``: the model's ``(path, layer)`` (`keras_initlab.model.tree.walk`).
    """
    from keras_initlab.model.residual import residual_blocks

    layers = dict(walked)
    operations = {}
    for path, layer in [("", model), *walked]:
        if _keras.is_functional(layer):
            prefix = f"{path}/" if path else ""
            for call in _keras.functional_calls(layer):
                if not isinstance(call.operation, keras.layers.Layer):
                    operations[prefix + call.operation.name] = call.operation
    if not model.weights or not (operations or any(map(is_opaque, layers.values()))):
        return []  # (every sum is a layer: nothing to look for)
    found = []
    for block in residual_blocks(model):
        owner_path, _, name = block.add.rpartition("/")
        if block.add in layers:
            continue  # an Add layer: measured as a layer
        if block.add in operations:
            found.append((block.add, operations[block.add], block.branch_output))
        elif is_opaque(layers.get(owner_path)):
            entry = InnerSum(layers[owner_path], name)
            found.append((block.add, entry, block.branch_output))
    return found


def _stand_ins(args: Any, kwargs: dict[str, Any]) -> tuple[list[Any], tuple[Any, ...]]:
    """The tensors among a call's arguments, and what tells one trace from another: their
    shapes and dtypes and the other arguments."""
    leaves = keras.tree.flatten((args, kwargs))
    tensors = [t for t in leaves if keras.ops.is_tensor(t)]
    key = tuple(
        (tuple(t.shape), str(t.dtype)) if keras.ops.is_tensor(t) else repr(t) for t in leaves
    )
    return tensors, key


def replayed(
    layer: Any,
    original: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    sums: dict[str, int],
    tap: Callable[[int, Any], Any],
    pause: Callable[[], Any],
) -> Any:
    """``layer``'s call on ``args``/``kwargs``, replayed from its trace so that each sum of
    ``sums`` (operation name -> entry index) is handed to ``tap(index, y)``; the original
    ``call`` where the trace fails. The trace is kept per argument shapes (`_stand_ins`)
    unless it holds a backend tensor of this pass (`_captures_tensors`); ``pause()`` is a
    context in which no recorder sees the sub-layers traced."""
    tensors, key = _stand_ins(args, kwargs)
    cache = _keras.instance_cache(layer, "_keras_initlab_replays")
    trace: Trace | None = cache.get(key)
    if trace is None:
        try:
            with pause():
                trace = trace_layer(layer, args, kwargs, tensors)
        except Exception:  # whatever the call raises on KerasTensors: run it as it is
            return original(*args, **kwargs)
        if not _captures_tensors(trace):
            cache[key] = trace
    return _run(trace, tensors, sums, tap)


def _captures_tensors(trace: Trace) -> bool:
    """Whether a call of ``trace`` reads a backend tensor as a constant: one the call
    computes from its inputs' known sizes (Gemma's causal mask at the probe's length is a
    tensor of the graph being traced), or one the block keeps. Such a trace holds for the
    pass it was made in only."""
    return any(
        keras.ops.is_tensor(leaf) and not isinstance(leaf, keras.KerasTensor)
        for call in trace.calls
        for leaf in keras.tree.flatten((call.args, call.kwargs))
    )


def _run(trace: Trace, tensors: list[Any], sums: dict[str, int], tap: Any) -> Any:
    """`replay` with each sum of ``sums`` handed to ``tap(index, y)``."""

    def at(call: Any, y: Any) -> Any:
        index = sums.get(call.operation.name)
        return y if index is None else tap(index, y)

    return replay(trace, tensors, at)
