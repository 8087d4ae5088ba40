"""Read a VarianceMonitor alert and apply its fix: two deep networks that will not train.

1. A 24-block residual MLP without normalization, He everywhere: the stream grows about 3x
   per block. The step-0 alert says so, names the cause (the architecture: no per-layer
   scheme keeps unnormalized residual sums) and gives a fix that the prediction checked on
   a copy of the model: ``keras_initlab.initialize(model, **alert.fix)``.
2. A 16-layer sigmoid MLP, Glorot: the gradient vanishes through the sigmoids. No
   initialization is predicted to fix it (``alert.fix`` is None); the alert names the
   change of activation that is.

Run: python examples/diagnose_and_fix.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import warnings

import keras
import numpy as np

import keras_initlab
from keras_initlab.callbacks import VarianceMonitor, VarianceWarning

L = keras.layers


def residual_mlp(blocks: int = 24) -> keras.Model:
    x = keras.Input((32,))
    h = L.Dense(32, kernel_initializer="he_normal", name="stem")(x)
    for i in range(blocks):
        branch = L.Dense(32, activation="relu", kernel_initializer="he_normal", name=f"b{i}_fc1")(h)
        branch = L.Dense(32, kernel_initializer="he_normal", name=f"b{i}_fc2")(branch)
        h = L.Add(name=f"b{i}_add")([h, branch])
    return keras.Model(x, L.Dense(10, activation="softmax", name="head")(h))


def sigmoid_mlp(depth: int = 16) -> keras.Model:
    layers = [L.Dense(64, activation="sigmoid", name=f"h{i}") for i in range(depth)]
    return keras.Sequential([keras.Input((32,)), *layers, L.Dense(10, activation="softmax")])


def step0_alerts(model: keras.Model, x: np.ndarray, y: np.ndarray) -> list:
    """The alerts of the record taken before the first update (a fit of 0 epochs)."""
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    monitor = VarianceMonitor((x, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VarianceWarning)  # printed below instead
        model.fit(x, y, epochs=0, verbose=0, callbacks=[monitor])
    return monitor.alerts


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 32)).astype("float32")
    y = rng.integers(0, 10, 128)

    keras.utils.set_random_seed(0)
    model = residual_mlp()
    alerts = step0_alerts(model, x, y)
    print(alerts[0])
    print("alert.cause:", alerts[0].cause, "| alert.fix:", alerts[0].fix)
    assert alerts[0].cause == "architecture"
    assert alerts[0].fix == {"scheme": "he_normal", "residual": "zero"}, alerts[0].fix

    keras_initlab.initialize(model, **alerts[0].fix, seed=0)  # the fix, literally
    assert step0_alerts(model, x, y) == []
    print("after keras_initlab.initialize(model, **alert.fix): no alert\n")

    keras.utils.set_random_seed(0)
    alerts = step0_alerts(sigmoid_mlp(), x, y)
    print(alerts[0])
    assert alerts[0].cause == "architecture"
    assert alerts[0].fix is None  # not an initialization
    assert "'relu'" in alerts[0].advice
