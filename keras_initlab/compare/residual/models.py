"""The unnormalized residual networks of the experiment: a deep MLP and a small CNN.

Both have no normalization layer, so nothing resets the stream's scale: each block adds its
branch's variance to the stream's, ``Var(x_{l+1}) = Var(x_l) + Var(f_l(x_l))`` (the branch
is independent of the stream at initialization), and the initialization alone decides
whether the stream stays bounded. Under He a branch ``W2 relu(W1 x)`` has variance
``2 Var(x)`` (``W1`` keeps the second moment through the ReLU, ``W2`` doubles it), so the
stream grows ``3x`` per block: ``3**L`` after ``L`` blocks.

Names: ``stem``, ``block_<i>_dense_1`` / ``_2`` (``_conv_1`` / ``_2``), ``block_<i>_gate``
(with a gate), ``block_<i>_add``, ``output``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras

from keras_initlab._validation import check_positive_int

L = keras.layers
STEM = "stem"
OUTPUT = "output"


def add_name(block: int) -> str:
    """The name of block ``block``'s residual sum (1-based).

    Example:
    >>> add_name(3)
    'block_3_add'
    """
    return f"block_{block}_add"


def _blocks(
    h: Any, blocks: int, branch: Callable[[Any, int], Any], gate: Callable[[str], Any] | None
) -> Any:
    for i in range(1, blocks + 1):
        b = branch(h, i)
        if gate is not None:
            b = gate(f"block_{i}_gate")(b)
        h = L.Add(name=add_name(i))([h, b])
    return h


def image_side(num_features: int) -> int:
    """The side of the square one-channel images of ``num_features`` pixels, or ValueError.

    Example:
    >>> image_side(64)
    8
    """
    side = math.isqrt(num_features)
    if side * side != num_features:
        raise ValueError(
            "Argument `num_features` must be a perfect square for the residual CNN (square "
            f"one-channel images). Received: num_features={num_features}"
        )
    return side


def build_residual_mlp(
    num_features: int,
    num_classes: int,
    *,
    blocks: int = 32,
    width: int = 64,
    gate: Callable[[str], Any] | None = None,
) -> keras.Model:
    """``x -> Dense(width) -> blocks x [x + Dense(relu(Dense(x)))] -> Dense(classes)``.

    Args:
        num_features, num_classes: input size and number of logits.
        blocks: residual blocks.
        width: units of the stem and of both Dense layers of every branch.
        gate: called with a name, returns a layer put at the end of every branch (a
            SkipInit gate); None: no gate.

    Example:
    >>> model = build_residual_mlp(64, 10, blocks=2, width=8)
    >>> [layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)]
    ['block_1_add', 'block_2_add']
    """
    for name, value in (("num_features", num_features), ("num_classes", num_classes)):
        check_positive_int(name, value)
    check_positive_int("blocks", blocks)
    check_positive_int("width", width)

    def branch(h: Any, i: int) -> Any:
        b = L.Dense(width, activation="relu", name=f"block_{i}_dense_1")(h)
        return L.Dense(width, name=f"block_{i}_dense_2")(b)

    x = keras.Input((num_features,))
    h = _blocks(L.Dense(width, name=STEM)(x), blocks, branch, gate)
    return keras.Model(x, L.Dense(num_classes, name=OUTPUT)(h), name=f"residual_mlp_{blocks}")


def build_residual_cnn(
    num_features: int,
    num_classes: int,
    *,
    blocks: int = 16,
    channels: int = 16,
    gate: Callable[[str], Any] | None = None,
) -> keras.Model:
    """Square images ``side x side x 1`` (flattened in the data), a 3x3 conv stem, ``blocks``
    blocks ``x + Conv(relu(Conv(x)))`` (3x3, ``channels``), ReLU, global average pooling,
    ``Dense(classes)``.

    Args:
        num_features: pixels per image, a perfect square (digits: 64 = 8 x 8).
        num_classes, blocks, gate: as in `build_residual_mlp`.
        channels: channels of the stem and of every conv.

    Example:
    >>> model = build_residual_cnn(64, 10, blocks=1, channels=4)
    >>> model.output.shape
    (None, 10)
    """
    side = image_side(num_features)
    check_positive_int("blocks", blocks)
    check_positive_int("channels", channels)

    def branch(h: Any, i: int) -> Any:
        b = L.Conv2D(channels, 3, padding="same", activation="relu", name=f"block_{i}_conv_1")(h)
        return L.Conv2D(channels, 3, padding="same", name=f"block_{i}_conv_2")(b)

    x = keras.Input((num_features,))
    h = L.Conv2D(channels, 3, padding="same", name=STEM)(L.Reshape((side, side, 1))(x))
    h = L.GlobalAveragePooling2D()(L.ReLU()(_blocks(h, blocks, branch, gate)))
    return keras.Model(x, L.Dense(num_classes, name=OUTPUT)(h), name=f"residual_cnn_{blocks}")
