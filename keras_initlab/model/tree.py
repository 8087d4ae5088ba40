"""The layers of a model as a tree, and the one name the package gives a layer.

A layer's name is its **path** below the model: the names of the layers that hold it,
outermost first, joined by ``"/"`` (``"encoder/block_1/dense"``; a top-level layer is just
its name). Unlike ``layer.path`` (the name scope the layer was *created* in) it is the same
however and wherever the model was built, and it tells apart two sub-models that use the
same layer names. Records, reports and predictions all name layers this way.

The walk covers Sequential, Functional and subclassed models, wrappers (Bidirectional,
TimeDistributed) and RNN layers with their cells, through Keras' own tracking of
sub-layers; a layer reached twice (shared) is visited once, at its first path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from keras_initlab import _keras

__all__ = ["leaf_layers", "walk"]


def walk(model: Any, *, descend: Callable[[Any], bool] | None = None) -> Iterator[tuple[str, Any]]:
    """``(path, layer)`` for every layer below ``model``, parents before their children.

    Input layers (placeholders, they compute nothing) are left out.

    Args:
        model: a Keras model or layer (``model`` itself is not yielded).
        descend: whether to walk into a layer's sub-layers (default: always).

    Example:
    >>> import keras
    >>> inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="d")],
    ...                          name="enc")
    >>> model = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(2, name="out")])
    >>> [path for path, _ in walk(model)]
    ['enc', 'enc/d', 'out']
    """
    from keras_initlab.model.layers import INPUT_LAYER

    seen: set[int] = {id(model)}

    def visit(parent: Any, prefix: str) -> Iterator[tuple[str, Any]]:
        for child in _keras.child_layers(parent):
            if id(child) in seen or isinstance(child, INPUT_LAYER):
                continue
            seen.add(id(child))
            path = prefix + child.name
            yield path, child
            if descend is None or descend(child):
                yield from visit(child, path + "/")

    yield from visit(model, "")


def leaf_layers(model: Any) -> list[tuple[str, Any]]:
    """``(path, layer)`` of the layers that compute (no sub-layers, or an RNN as a whole).

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.ReLU()])
    >>> [type(layer).__name__ for _, layer in leaf_layers(model)]
    ['Dense', 'ReLU']
    """
    from keras_initlab.model.layers import RNN

    def descend(layer: Any) -> bool:
        return not isinstance(layer, RNN)

    return [
        (path, layer)
        for path, layer in walk(model, descend=descend)
        if isinstance(layer, RNN) or not _keras.child_layers(layer)
    ]
