"""The one place where keras_initlab reads Keras' private attributes.

Every access to a Keras internal (``keras.src.*``, underscore attributes) goes through one
function here per need, so that a Keras release that moves one is fixed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# --- graph (propagate)


@dataclass(frozen=True)
class GraphCall:
    """One call of an operation in a Functional graph.

    Attributes:
        operation: the layer, nested model or ``keras.ops`` operation called.
        args: the positional arguments, KerasTensors where the graph feeds them.
        kwargs: the keyword arguments, the same.
        inputs: the KerasTensors it reads, flattened, in argument order.
        outputs: the KerasTensors it produces, flattened.
    """

    operation: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    inputs: tuple[Any, ...]
    outputs: tuple[Any, ...]


def is_functional(model: Any) -> bool:
    """Whether ``model`` is a Functional graph (a Sequential model is not, for this)."""
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


def functional_calls(model: Any) -> list[GraphCall]:
    """The calls of a Functional model in an order that computes every input first.

    Keras 3 keeps them in ``model._nodes_by_depth`` (depth 0: the outputs); input nodes are
    left out.
    """
    calls = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            calls.append(
                GraphCall(
                    node.operation,
                    tuple(node.arguments.args),
                    dict(node.arguments.kwargs),
                    tuple(node.input_tensors),
                    tuple(node.outputs),
                )
            )
    return calls


def attention_softmax(layer: Any) -> Any:
    """The Softmax sublayer of a MultiHeadAttention (Keras keeps it as ``_softmax``)."""
    return layer._softmax
