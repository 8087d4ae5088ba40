"""The real architectures ``propagate`` is checked on (tests and the benchmark), small inputs.

Each builder takes the input size and returns a model initialized as the issue states:
keras.applications models with ``weights=None`` after ``initialize(model, "he_normal")``, a
Transformer encoder (MultiHeadAttention, LayerNormalization, residual adds), a 12-layer tanh
MLP under Xavier (``glorot_normal``) and a small U-Net (skip concatenations, max pooling,
transposed convs). Outputs are linear: the gradient is then that of the output itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

import keras_initlab

L = keras.layers


def application(name: str) -> Callable[[int], keras.Model]:
    def build(size: int) -> keras.Model:
        model = getattr(keras.applications, name)(
            weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None
        )
        keras_initlab.initialize(model, "he_normal")
        return model

    return build


def transformer(size: int) -> keras.Model:
    """Two post-norm encoder blocks on ``size // 2`` tokens of width 32."""
    inputs = keras.Input((max(size // 2, 4), 32))
    h = inputs
    for b in range(2):
        attention = L.MultiHeadAttention(4, 8, name=f"mha{b}")(h, h)
        h = L.LayerNormalization(name=f"ln{b}a")(L.Add(name=f"res{b}a")([h, attention]))
        f = L.Dense(64, activation="gelu", name=f"ff{b}")(h)
        f = L.Dropout(0.1, name=f"drop{b}")(L.Dense(32, name=f"fo{b}")(f))
        h = L.LayerNormalization(name=f"ln{b}b")(L.Add(name=f"res{b}b")([h, f]))
    pooled = L.GlobalAveragePooling1D(name="pool")(h)
    model = keras.Model(inputs, L.Dense(10, name="out")(pooled))
    keras_initlab.initialize(model, "glorot_uniform")
    return model


def tanh_mlp(size: int) -> keras.Model:
    layers: list[Any] = [keras.Input((256,))]
    layers += [L.Dense(256, activation="tanh", name=f"tanh{i}") for i in range(12)]
    model = keras.Sequential([*layers, L.Dense(10, name="out")])
    keras_initlab.initialize(model, "xavier_normal")
    return model


def unet(size: int) -> keras.Model:
    inputs = keras.Input((size, size, 3))

    def block(h: Any, filters: int, name: str) -> Any:
        h = L.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_a")(h)
        return L.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_b")(h)

    d1 = block(inputs, 16, "down1")
    d2 = block(L.MaxPooling2D(name="pool1")(d1), 32, "down2")
    mid = block(L.MaxPooling2D(name="pool2")(d2), 64, "mid")
    u2 = L.Conv2DTranspose(32, 2, strides=2, name="up2")(mid)
    u2 = block(L.Concatenate(name="cat2")([u2, d2]), 32, "dec2")
    u1 = L.UpSampling2D(name="up1")(u2)
    u1 = block(L.Concatenate(name="cat1")([u1, d1]), 16, "dec1")
    model = keras.Model(inputs, L.Conv2D(2, 1, name="head")(u1))
    keras_initlab.initialize(model, "he_normal")
    return model


MODELS: dict[str, Callable[[int], keras.Model]] = {
    "mobilenetv2": application("MobileNetV2"),
    "resnet50": application("ResNet50"),
    "efficientnetb0": application("EfficientNetB0"),
    "transformer": transformer,
    "tanh_mlp": tanh_mlp,
    "unet": unet,
}


def input_shape(model: keras.Model) -> tuple[int, ...]:
    return tuple(int(d) for d in model.inputs[0].shape[1:])
