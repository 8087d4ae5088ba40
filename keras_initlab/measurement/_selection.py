"""Which layers are measured, and their kernels and activations.

Measured by default: every leaf layer that owns weights (Dense, Conv, Embedding, recurrent
layers as a whole), every separate activation layer (Activation, ReLU, ...), every merge
layer (Add, Concatenate, Multiply, ...: in a residual network the stream is where variance
grows), every normalization layer, every layer registered with
`keras_initlab.register_layer`, and the output of every custom layer or subclassed model
that holds weighted sub-layers (a user's residual block: its output), found by walking the
model tree (`keras_initlab.model.tree`), so nested and subclassed models are covered; and
every residual sum no layer computes (``x + h`` as a ``keras.ops`` node of a Functional
graph, or inside a block's ``call``: ``"block3/add"``; see `_inner`), named as
`keras_initlab.model.residual.residual_blocks` names it. Any other leaf layer (pooling,
dropout, reshaping) is measured when asked for by name. A layer's name is its path below the
model, e.g. ``"encoder/dense_1"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras

from keras_initlab._validation import unknown_name_message
from keras_initlab.measurement._inner import InnerSum, inner_sums
from keras_initlab.model.layers import (
    ACTIVATION_LAYERS,
    MERGE_LAYERS,
    NORMALIZATION_LAYERS,
    RNN,
    is_opaque,
)
from keras_initlab.model.registry import registered
from keras_initlab.model.tree import leaf_layers, walk

_MEASURED = ACTIVATION_LAYERS + MERGE_LAYERS + NORMALIZATION_LAYERS
# Kernel attributes in order of preference: the weight whose variance is reported.
_KERNEL_ATTRIBUTES = ("kernel", "depthwise_kernel", "embeddings")


def monitored_layers(model: Any, layers: Iterable[Any] | None = None) -> list[tuple[str, Any]]:
    """``(path, layer)`` for each measured layer of ``model``, in model order.

    Args:
        model: a built Keras model.
        layers: None for the default set (see the module docstring), or names, paths or
            layer objects of any leaf layers.

    Raises:
        ValueError: a requested name matches no leaf layer (close matches suggested).

    Example:
    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.ReLU()])
    >>> [p for p, _ in monitored_layers(m)] == [m.layers[0].name, m.layers[1].name]
    True
    """
    leaves = leaf_layers(model)
    if layers is None:
        chosen = {
            id(layer)
            for p, layer in leaves
            if layer.weights or isinstance(layer, _MEASURED) or registered(layer) is not None
        }
        walked = list(walk(model))
        chosen |= {id(layer) for _, layer in walked if is_opaque(layer) and layer.weights}
        entries = [(p, layer) for p, layer in walked if id(layer) in chosen]
        return _placed(entries, inner_sums(model, walked))
    found = leaves
    wanted = list(layers)
    by_key = _keys(found)
    if any(_key(item) not in by_key for item in wanted):  # a sum no layer computes?
        found = _placed(found, inner_sums(model, list(walk(model))))
        by_key = _keys(found)
    keep = set()
    for item in wanted:
        if _key(item) not in by_key:
            allowed = [p for p, _ in found]
            raise ValueError(unknown_name_message("layers", getattr(item, "name", item), allowed))
        keep.add(by_key[_key(item)][0])
    return [(p, layer) for p, layer in found if p in keep]


def _key(item: Any) -> Any:
    """How a requested layer is found: by name or path, a sum inside a block by its block
    and name, anything else by identity."""
    if isinstance(item, str):
        return item
    if isinstance(item, InnerSum):
        return id(item.owner), item.name
    return id(item)


def _keys(found: list[tuple[str, Any]]) -> dict[Any, tuple[str, Any]]:
    by_key: dict[Any, tuple[str, Any]] = {}
    for path, layer in found:
        for key in (path, _key(layer)) + (() if isinstance(layer, InnerSum) else (layer.name,)):
            by_key.setdefault(key, (path, layer))
    return by_key


def _placed(
    entries: list[tuple[str, Any]], sums: list[tuple[str, Any, str]]
) -> list[tuple[str, Any]]:
    """``entries`` with each residual sum no layer computes (`_inner.inner_sums`) placed
    after what feeds its branch, else before the block that computes it, else last."""
    out = list(entries)
    for path, entry, after in sums:
        paths = [p for p, _ in out]
        owner = path.rpartition("/")[0]
        if after in paths:
            out.insert(paths.index(after) + 1, (path, entry))
        elif owner in paths:
            out.insert(paths.index(owner), (path, entry))
        else:
            out.append((path, entry))
    return out


def kernel_of(layer: Any) -> Any:
    """The layer's kernel variable (recurrent layers: the cell's input kernel), else None."""
    owner = layer.cell if isinstance(layer, RNN) and hasattr(layer, "cell") else layer
    for attribute in _KERNEL_ATTRIBUTES:
        variable = getattr(owner, attribute, None)
        if isinstance(variable, keras.Variable):
            return variable
    return None
