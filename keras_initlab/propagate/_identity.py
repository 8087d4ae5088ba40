"""Which tensors of a graph hold the same value: one operation applied to the same inputs.

The walk takes the inputs of a merge as independent; two of them can be the same value
instead. NASNet's normal cell adds two 3x3 average pools of one tensor
(``add([AveragePooling2D(p), AveragePooling2D(p)])``, ``normal_add_4_*``): the sum is
``2 pool(p)``, of variance ``4 Var(pool(p))``, not ``2 Var(pool(p))``. A tensor's value key
names what computed it: a graph input by its own moments' identity; a call's outputs by the
operation (the object itself where it holds weights, a shared layer, or where its class is
not Keras' own; else its class and configuration without its name, so two pools alike are
one function), the keys of its inputs (their numbers: the walk interns every key) and its
other arguments. An operation that draws random numbers (a layer holding a
``keras.random.SeedGenerator``: dropout, noise, augmentation) in training mode, or whose
arguments or configuration cannot be compared, gives a key of its own to each call.
"""

from __future__ import annotations

import hashlib
from typing import Any

import keras
import numpy as np

from keras_initlab.propagate._step import Arg

Key = tuple[Any, ...]


class _Unkeyed(Exception):
    """A value that cannot be compared (an object of no known kind)."""


def _static(value: Any) -> Any:
    """A hashable stand-in for an argument or a configuration entry (arrays by their
    bytes), or `_Unkeyed`."""
    if value is None or isinstance(value, bool | int | float | str | Arg):
        return value
    if isinstance(value, list | tuple):
        return (type(value).__name__, *(_static(v) for v in value))
    if isinstance(value, dict):
        return tuple(sorted((str(k), _static(v)) for k, v in value.items()))
    if isinstance(value, np.ndarray | np.generic):
        array = np.ascontiguousarray(value)
        digest = hashlib.sha1(array.tobytes()).hexdigest()
        return ("array", array.dtype.str, array.shape, digest)
    raise _Unkeyed(type(value).__name__)


def _random(operation: Any) -> bool:
    return isinstance(operation, keras.layers.Layer) and any(
        isinstance(v, keras.random.SeedGenerator) for v in vars(operation).values()
    )


def _own(operation: Any) -> bool:
    """Whether only the operation itself computes its value: it holds weights, or its
    class is not Keras' own (a user's layer may keep what its configuration omits)."""
    weights = isinstance(operation, keras.layers.Layer) and bool(operation.weights)
    return weights or not type(operation).__module__.startswith("keras.")


def value_key(operation: Any, inputs: list[int], args: Any, kwargs: Any, mode: str) -> Key | None:
    """The key of a call's value (its outputs are ``(key, i)``), or None where the call's
    value is its own (random in training mode, or not comparable).

    Example:
    >>> import keras
    >>> pool = lambda: keras.layers.AveragePooling2D(3, 1, "same")
    >>> a = value_key(pool(), [0], (Arg(0),), {}, "inference")
    >>> a == value_key(pool(), [0], (Arg(0),), {}, "inference")
    True
    >>> a == value_key(pool(), [1], (Arg(0),), {}, "inference")
    False
    """
    if mode == "training" and _random(operation):
        return None
    try:
        static = (_static(args), _static(kwargs))
        if _own(operation):
            what: Any = ("layer", id(operation))
        else:
            config = dict(operation.get_config())
            config.pop("name", None)
            what = (type(operation).__qualname__, _static(config))
    except (_Unkeyed, NotImplementedError, TypeError, AttributeError):
        return None
    return (what, tuple(inputs), static)


def copies(keys: list[int]) -> tuple[int, ...]:
    """For each input, the index of the first input with the same value key.

    >>> copies([7, 3, 7])
    (0, 1, 0)
    """
    first: dict[int, int] = {}
    return tuple(first.setdefault(k, i) for i, k in enumerate(keys))
