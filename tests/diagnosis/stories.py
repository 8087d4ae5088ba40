"""Four debugging stories: deep networks on the 8x8 digits that do not train as built.

Each story is a network whose initialization (or architecture) keeps it from learning,
built deterministically from a seed, so that tests of the diagnosis can check that the
alerts name the cause and that the fix they propose (``alert.fix``, keyword arguments of
``keras_initlab.initialize``) makes the network train.

* ``sigmoid_mlp``: 20 sigmoid Dense layers with Keras' default glorot_uniform. The
  gradient vanishes through the saturating sigmoids; no re-initialization fixes it (he_normal,
  glorot_normal and "auto" all stay at chance), the architecture does (ReLU with He:
  ``sigmoid_mlp(seed, activation="relu", kernel_initializer="he_normal")``).
* ``large_conv``: 12 ReLU Conv2D(64) layers drawn from ``RandomNormal(stddev=0.1)``, so each
  layer after the first multiplies the activations' variance by ``9 * 64 * 0.01 / 2 = 2.9``
  (the first, fan-in 9, divides it by 22): the last conv's mean square is about 1e3 where
  He gives 0.1. Fix: ``initialize(model, "he_normal")``. Under Adam the network as built
  trains anyway (about 0.97): the explosion is visible at initialization, not in the
  accuracy. At 32 filters there is no explosion left (0.4 against 0.1), hence 64.
* ``separable_cnn``: a Conv2D(64) stem and 6 depthwise-separable blocks (64 channels)
  without BatchNorm, every kernel Keras' ``he_normal``. Keras reads a depthwise kernel
  ``(3, 3, C, 1)``'s fan-in as ``9 * C`` instead of 9, so each depthwise layer shrinks the
  variance ``C = 64`` times: the signal vanishes (``64**6``). Fix:
  ``initialize(model, "he_normal")`` (true fans). Under Adam the network as built learns
  partly (0.3 to 0.8).
* ``residual_mlp``: 24 unnormalized residual blocks with He everywhere: each block about
  doubles the variance (``2**24`` over the network). Fix: ``initialize(model,
  "he_normal", residual="zero")`` or ``initialize(model, "auto")``. Under Adam the
  network as built learns partly (about 0.6, loss in the hundreds, not NaN).

The accuracies above are ``tests/diagnosis/measure_stories.py``'s, seeds 0 to 2.

``train`` compiles with Adam(1e-3) and sparse categorical cross-entropy and fits with a
fixed batch size and a seeded shuffle, so a run is reproducible under its seed (with
TensorFlow on one thread, as tests/conftest.py sets it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from keras_initlab.compare.datasets import Dataset, load_dataset

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)
BATCH_SIZE = 32
EPOCHS = 10
LEARNING_RATE = 1e-3

SIGMOID_DEPTH = 20
SIGMOID_WIDTH = 64
CONV_DEPTH = 12
CONV_FILTERS = 64
CONV_STDDEV = 0.1
SEPARABLE_STEM = 64
SEPARABLE_FILTERS = (64, 64, 64, 64, 64, 64)  # pointwise widths of the 6 blocks
RESIDUAL_BLOCKS = 24
RESIDUAL_WIDTH = 64


# ------------------------------------------------------------------------ data
def digits(seed: int = 0) -> Dataset:
    """The embedded 8x8 digits, split by ``seed`` and standardized with the training set's
    per-pixel mean and std (``keras_initlab.compare.datasets.load_dataset``); inputs are
    flattened ``(n, 64)`` vectors, labels integer classes."""
    return load_dataset("digits", seed=seed)


def as_images(data: Dataset) -> Dataset:
    """The same split with inputs reshaped to ``(n, 8, 8, 1)`` images (for the CNNs)."""
    return dataclasses.replace(
        data,
        x_train=data.x_train.reshape((-1, *IMAGE_SHAPE)),
        x_test=data.x_test.reshape((-1, *IMAGE_SHAPE)),
    )


def inputs_for(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """``x`` (flat vectors or images) reshaped to the model's input shape."""
    return x.reshape((-1, *model.input_shape[1:]))


# ------------------------------------------------------------------------ stories
def sigmoid_mlp(
    seed: int,
    *,
    activation: str = "sigmoid",
    kernel_initializer: str = "glorot_uniform",
) -> keras.Model:
    """Story 1: 20 hidden Dense(64, sigmoid) layers, Keras' default glorot_uniform.

    ``activation="relu", kernel_initializer="he_normal"`` builds the architectural fix.
    """
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(name="sigmoid_mlp")
    model.add(keras.Input((64,)))
    for i in range(SIGMOID_DEPTH):
        model.add(
            keras.layers.Dense(
                SIGMOID_WIDTH,
                activation=activation,
                kernel_initializer=kernel_initializer,
                name=f"dense_{i}",
            )
        )
    model.add(keras.layers.Dense(NUM_CLASSES, activation="softmax", name="head"))
    return model


def large_conv(seed: int) -> keras.Model:
    """Story 2: 12 Conv2D(64, 3, same, relu) layers drawn from RandomNormal(stddev=0.1),
    global average pooling and a softmax head, on (8, 8, 1) images (at 4x4 the zero
    padding of 'same' would cost a 3x3 kernel a third of its taps per layer, a change of
    its own: kept at 8x8, where it is 0.84 per layer)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(name="large_conv")
    model.add(keras.Input(IMAGE_SHAPE))
    for i in range(CONV_DEPTH):
        model.add(
            keras.layers.Conv2D(
                CONV_FILTERS,
                3,
                padding="same",
                activation="relu",
                kernel_initializer=keras.initializers.RandomNormal(stddev=CONV_STDDEV),
                name=f"conv_{i}",
            )
        )
    model.add(keras.layers.GlobalAveragePooling2D(name="pool"))
    model.add(keras.layers.Dense(NUM_CLASSES, activation="softmax", name="head"))
    return model


def separable_cnn(seed: int) -> keras.Model:
    """Story 3: a Conv2D(64) stem then 6 blocks of DepthwiseConv2D(3, same) and a ReLU 1x1
    Conv2D, no BatchNorm, every kernel Keras' he_normal; global average pooling and a
    softmax head, on (8, 8, 1) images."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(name="separable_cnn")
    model.add(keras.Input(IMAGE_SHAPE))
    model.add(
        keras.layers.Conv2D(
            SEPARABLE_STEM,
            3,
            padding="same",
            activation="relu",
            kernel_initializer="he_normal",
            name="stem",
        )
    )
    for i, filters in enumerate(SEPARABLE_FILTERS):
        model.add(
            keras.layers.DepthwiseConv2D(
                3, padding="same", depthwise_initializer="he_normal", name=f"b{i}_depthwise"
            )
        )
        model.add(
            keras.layers.Conv2D(
                filters,
                1,
                activation="relu",
                kernel_initializer="he_normal",
                name=f"b{i}_pointwise",
            )
        )
    model.add(keras.layers.GlobalAveragePooling2D(name="pool"))
    model.add(
        keras.layers.Dense(
            NUM_CLASSES, activation="softmax", kernel_initializer="he_normal", name="head"
        )
    )
    return model


def residual_mlp(seed: int, *, gated: bool = False) -> keras.Model:
    """Story 4: a Dense(64) stem, 24 unnormalized residual blocks
    ``x = x + Dense(64)(Dense(64, relu)(x))``, he_normal everywhere, softmax head.

    ``gated=True`` ends each branch with a `keras_initlab.ResidualGate` (initial value 1:
    the same network), which the ``"skipinit"`` rule needs.
    """
    from keras_initlab import ResidualGate

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,), name="pixels")
    x = keras.layers.Dense(RESIDUAL_WIDTH, kernel_initializer="he_normal", name="stem")(inputs)
    for i in range(RESIDUAL_BLOCKS):
        h = keras.layers.Dense(
            RESIDUAL_WIDTH, activation="relu", kernel_initializer="he_normal", name=f"b{i}_fc1"
        )(x)
        h = keras.layers.Dense(RESIDUAL_WIDTH, kernel_initializer="he_normal", name=f"b{i}_fc2")(h)
        if gated:
            h = ResidualGate(1.0, name=f"b{i}_gate")(h)
        x = keras.layers.Add(name=f"b{i}_add")([x, h])
    outputs = keras.layers.Dense(
        NUM_CLASSES, activation="softmax", kernel_initializer="he_normal", name="head"
    )(x)
    return keras.Model(inputs, outputs, name="residual_mlp")


STORIES: dict[str, Callable[[int], keras.Model]] = {
    "sigmoid_mlp": sigmoid_mlp,
    "large_conv": large_conv,
    "separable_cnn": separable_cnn,
    "residual_mlp": residual_mlp,
}


def build(name: str, seed: int) -> keras.Model:
    """The story ``name``'s network, built, weights drawn from ``seed``, uncompiled."""
    return STORIES[name](seed)


# ------------------------------------------------------------------------ training
def train(
    model: keras.Model,
    data: Dataset,
    *,
    seed: int,
    epochs: int = EPOCHS,
    callbacks: Sequence[Any] = (),
    optimizer: Any = None,
) -> dict[str, Any]:
    """Compile ``model`` with Adam(1e-3) and sparse categorical cross-entropy and fit it on
    ``data`` (inputs reshaped to the model's input), batches of ``BATCH_SIZE`` in an order
    shuffled by ``seed`` each epoch. ``optimizer`` replaces Adam(1e-3) (a fresh instance:
    an optimizer is bound to the first model it trains).

    Returns:
        ``{"test_accuracy", "final_loss", "history"}``: the accuracy on the test split, the
        last epoch's training loss (NaN when training diverged) and ``history.history``.
    """
    import tensorflow as tf

    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE) if optimizer is None else optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x_train = inputs_for(model, data.x_train)
    x_test = inputs_for(model, data.x_test)
    batches = (
        tf.data.Dataset.from_tensor_slices((x_train, data.y_train))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(BATCH_SIZE)
    )
    # shuffle=False: the batches are already shuffled, by `seed`, each epoch
    history = model.fit(batches, epochs=epochs, shuffle=False, callbacks=list(callbacks), verbose=0)
    _, accuracy = model.evaluate(x_test, data.y_test, batch_size=len(x_test), verbose=0)
    losses = history.history.get("loss", [])
    return {
        "test_accuracy": float(accuracy),
        "final_loss": float(losses[-1]) if losses else math.nan,
        "history": history.history,
    }
