"""Custom layers as users write them, shared by the model-reading tests.

``ResidualBlock`` keeps its sum inside ``call`` (read through the traced call);
``BackendBlock`` is the same block written with a backend op, which no trace on
KerasTensors can read (opaque).
"""

from __future__ import annotations

from typing import Any

import keras

L = keras.layers


class ResidualBlock(L.Layer):
    """``x + d2(d1(x))``: a Dense-ReLU-Dense branch and an identity skip."""

    def __init__(self, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.d1 = L.Dense(width, activation="relu", name="d1")
        self.d2 = L.Dense(width, name="d2")

    def call(self, x: Any) -> Any:
        return x + self.d2(self.d1(x))


class BackendBlock(ResidualBlock):
    """The same block with the sum written as ``tf.math.add``."""

    def call(self, x: Any) -> Any:
        import tensorflow as tf

        return tf.math.add(x, self.d2(self.d1(x)))

    def compute_output_shape(self, shape: Any) -> Any:
        return shape
