"""Which layers a `VarianceMonitor` watches, their names, kernels and activations.

Monitored: every leaf layer that owns weights (Dense, Conv, BatchNormalization, Embedding,
recurrent layers as a whole) and every separate activation layer (Activation, ReLU, ...), found
by walking the model tree, so nested and subclassed models are covered. A layer's name is its
path below the model, e.g. ``"encoder/dense_1"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras

from keras_initlab._validation import unknown_name_message

L = keras.layers
ACTIVATION_LAYERS = (L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.PReLU, L.Softmax)
_ACTIVATION_LAYER_NAMES = {
    L.ReLU: "relu",
    L.LeakyReLU: "leaky_relu",
    L.ELU: "elu",
    L.PReLU: "prelu",
    L.Softmax: "softmax",
}
# Kernel attributes in order of preference: the weight whose variance is reported.
_KERNEL_ATTRIBUTES = ("kernel", "depthwise_kernel", "embeddings")


def _children(layer: Any) -> list[Any]:
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _walk(layer: Any, prefix: str, out: list[tuple[str, Any]], seen: set[int]) -> None:
    for child in _children(layer):
        if id(child) in seen:
            continue
        seen.add(id(child))
        path = prefix + child.name
        if _children(child) and not isinstance(child, L.RNN):
            _walk(child, path + "/", out, seen)
        elif child.weights or isinstance(child, ACTIVATION_LAYERS):
            out.append((path, child))


def monitored_layers(model: Any, layers: Iterable[Any] | None = None) -> list[tuple[str, Any]]:
    """``(path, layer)`` for each monitored layer of ``model``, in model order.

    Args:
        model: a built Keras model.
        layers: None for all monitorable layers, or names, paths or layer objects to keep.

    Raises:
        ValueError: a requested name matches no monitorable layer (close matches suggested).

    Example:
    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.ReLU()])
    >>> [p for p, _ in monitored_layers(m)] == [m.layers[0].name, m.layers[1].name]
    True
    """
    found: list[tuple[str, Any]] = []
    _walk(model, "", found, set())
    if layers is None:
        return found
    wanted = list(layers)
    by_key: dict[Any, tuple[str, Any]] = {}
    for path, layer in found:
        by_key.setdefault(path, (path, layer))
        by_key.setdefault(layer.name, (path, layer))
        by_key.setdefault(id(layer), (path, layer))
    keep = set()
    for item in wanted:
        key = item if isinstance(item, str) else id(item)
        if key not in by_key:
            allowed = [p for p, _ in found]
            raise ValueError(unknown_name_message("layers", getattr(item, "name", item), allowed))
        keep.add(by_key[key][0])
    return [(p, layer) for p, layer in found if p in keep]


def kernel_of(layer: Any) -> Any:
    """The layer's kernel variable (recurrent layers: the cell's input kernel), else None."""
    owner = layer.cell if isinstance(layer, L.RNN) and hasattr(layer, "cell") else layer
    for attribute in _KERNEL_ATTRIBUTES:
        variable = getattr(owner, attribute, None)
        if isinstance(variable, keras.Variable):
            return variable
    return None


def activation_name(layer: Any) -> str | None:
    """The name of the function applied last by ``layer`` (``"relu"``, ``"tanh"``, ...)."""
    for cls, known in _ACTIVATION_LAYER_NAMES.items():
        if isinstance(layer, cls):
            return known
    owner = layer.cell if isinstance(layer, L.RNN) and hasattr(layer, "cell") else layer
    name = getattr(getattr(owner, "activation", None), "__name__", None)
    return str(name) if name is not None else None
