"""The deep multilayer perceptron every scheme is trained on.

``depth`` hidden ``Dense(width, activation)`` layers of one constant width (so the hidden
kernels are square and ``k * I`` is defined), then a linear ``Dense(num_classes)`` output
giving logits. Layers are named ``hidden_1`` ... ``hidden_<depth>`` and ``output`` so the
reports can refer to them by depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from keras_initlab._validation import check_choice, check_positive_int
from keras_initlab.compare.config import ACTIVATIONS
from keras_initlab.compare.harness.stacking import build_stacked, tower_name

__all__ = [
    "HIDDEN_PREFIX",
    "OUTPUT_NAME",
    "build_mlp",
    "build_stacked_mlp",
    "hidden_names",
    "tower_name",
]

HIDDEN_PREFIX = "hidden_"
OUTPUT_NAME = "output"


def hidden_names(depth: int) -> list[str]:
    """Names of the hidden layers, input side first.

    Example:
    >>> hidden_names(2)
    ['hidden_1', 'hidden_2']
    """
    return [f"{HIDDEN_PREFIX}{i}" for i in range(1, depth + 1)]


def build_mlp(
    num_features: int,
    num_classes: int,
    *,
    depth: int = 10,
    width: int = 64,
    activation: str = "relu",
    name: str | None = None,
) -> keras.Model:
    """A built ``Sequential`` MLP: ``depth`` hidden layers of ``width`` units, logits out.

    The weights it is built with are placeholders: ``keras-initlab compare`` re-initializes
    every one of them with the scheme under test.

    Args:
        num_features: input size.
        num_classes: output size (logits).
        depth: number of hidden layers.
        width: units of every hidden layer.
        activation: hidden activation (``ACTIVATIONS``).
        name: the model's name (default ``mlp_<depth>x<width>_<activation>``).

    Returns:
        A built ``keras.Sequential``.

    Example:
    >>> model = build_mlp(64, 10, depth=3, width=16)
    >>> [layer.name for layer in model.layers]
    ['hidden_1', 'hidden_2', 'hidden_3', 'output']
    """
    check_positive_int("num_features", num_features)
    check_positive_int("num_classes", num_classes)
    check_positive_int("depth", depth)
    check_positive_int("width", width)
    check_choice("activation", activation, ACTIVATIONS)
    layers: list[Any] = [keras.Input((num_features,))]
    layers += [
        keras.layers.Dense(width, activation=activation, name=name) for name in hidden_names(depth)
    ]
    layers.append(keras.layers.Dense(num_classes, name=OUTPUT_NAME))
    return keras.Sequential(layers, name=name or f"mlp_{depth}x{width}_{activation}")


def build_stacked_mlp(
    num_features: int,
    num_classes: int,
    seeds: Sequence[int],
    *,
    depth: int = 10,
    width: int = 64,
    activation: str = "relu",
) -> keras.Model:
    """One functional model holding an independent ``build_mlp`` per seed, side by side
    (`keras_initlab.compare.harness.stacking.build_stacked`).

    Every tower (a ``Sequential`` named ``tower_name(seed)``) reads the same input and has
    its own logits output (output key ``tower_name(seed)``).

    Args:
        num_features, num_classes, depth, width, activation: as in ``build_mlp``.
        seeds: one tower per seed (distinct values).

    Returns:
        A built ``keras.Model``; ``model.get_layer(tower_name(seed))`` is a tower.

    Example:
    >>> model = build_stacked_mlp(4, 3, [0, 1], depth=2, width=8)
    >>> [layer.name for layer in model.layers[1:]], sorted(model.output)
    (['seed_0', 'seed_1'], ['seed_0', 'seed_1'])
    """
    return build_stacked(
        (num_features,),
        seeds,
        lambda tower: build_mlp(
            num_features, num_classes, depth=depth, width=width, activation=activation, name=tower
        ),
        name=f"stacked_{len(seeds)}x_mlp_{depth}x{width}",
    )
