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
  streams: a sum whose skip is the output of an earlier sum adds to the same stream. Each of
  the ``n`` branches of a stream gets ``1/n`` of the target variance at its output (the
  branch's last kernel), so that the stream, which an identity skip carries unchanged, goes
  from the target at its start to twice it after its last sum (``Var(s + b) = Var(s) +
  Var(b)`` for a branch independent of the stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras

from keras_initlab import _keras
from keras_initlab.model.layers import ACTIVATION_LAYERS, PASS_THROUGH
from keras_initlab.model.residual import residual_blocks


@dataclass(frozen=True)
class Follow:
    """What a kernel layer's output goes through before its variance is set.

    Attributes:
        chain: the elementwise affine layers between the kernel layer and ``activation``.
        activation: the activation layer that follows, or None.
    """

    chain: tuple[Any, ...] = ()
    activation: Any = None


@dataclass(frozen=True)
class Share:
    """A residual branch's share of the target variance.

    Attributes:
        fraction: ``1/n`` for a stream of ``n`` residual sums.
        add: the sum the branch enters.
        stream: how many sums the stream has.
    """

    fraction: float
    add: str
    stream: int


def _follow(start: Any, consumers: dict[int, list[Any]]) -> Follow:
    chain: list[Any] = []
    tensor = start
    while True:
        users = consumers.get(id(tensor), [])
        if len(users) != 1:
            return Follow(tuple(chain))
        call = users[0]
        op = call.operation
        if isinstance(op, ACTIVATION_LAYERS):
            return Follow(tuple(chain), op)
        if not isinstance(op, PASS_THROUGH) or len(call.outputs) != 1:
            return Follow(tuple(chain))
        chain.append(op)
        tensor = call.outputs[0]


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
    if _keras.is_functional(model):
        calls = _keras.functional_calls(model)
        consumers: dict[int, list[Any]] = {}
        for call in calls:
            for t in call.inputs:
                consumers.setdefault(id(t), []).append(call)
        for call in calls:
            op = call.operation
            if isinstance(op, keras.Sequential) or _keras.is_functional(op):
                found.update(follows(op))
            elif len(call.outputs) == 1:
                found.setdefault(id(op), _follow(call.outputs[0], consumers))
    elif isinstance(model, keras.Sequential):
        for i, layer in enumerate(model.layers):
            if isinstance(layer, keras.Sequential) or _keras.is_functional(layer):
                found.update(follows(layer))
            else:
                found.setdefault(id(layer), _sequential_follow(model.layers, i))
    return found


def shares(model: Any) -> dict[int, Share]:
    """``{id(last kernel layer): Share}`` for every residual branch of the model."""
    if not (_keras.is_functional(model) or isinstance(model, keras.Sequential)):
        return {}
    blocks = list(residual_blocks(model))
    stream_of: dict[str, int] = {}
    sizes: list[int] = []
    for block in blocks:
        stream = stream_of.get(block.skip)
        if stream is None:
            stream = len(sizes)
            sizes.append(0)
        sizes[stream] += 1
        stream_of[block.add] = stream
    return {
        id(block.last_kernel_layer): Share(
            1.0 / sizes[stream_of[block.add]], block.add, sizes[stream_of[block.add]]
        )
        for block in blocks
        if block.last_kernel_layer is not None
    }
