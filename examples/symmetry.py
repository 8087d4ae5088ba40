"""Claim 1: zero or constant weights keep every hidden unit identical, however wide the layer.

Two-feature toy data, a 3-layer ReLU MLP of width 16. With every kernel constant (and zero
biases) each hidden unit computes relu(alpha*x1 + alpha*x2 + ...), receives the same gradient
and stays equal to its neighbours for the whole of training: VarianceMonitor's
``distinct_units`` stays at 1. He initialization breaks the symmetry at once.

Run: python examples/symmetry.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

import keras_initlab
from keras_initlab.callbacks import VarianceMonitor
from keras_initlab.compare.datasets import load_dataset

WIDTH = 16


def distinct_units_after_training(scheme):
    keras.utils.set_random_seed(0)
    data = load_dataset("circles")
    model = keras.Sequential(
        [keras.Input((2,))]
        + [keras.layers.Dense(WIDTH, activation="relu", name=f"hidden_{i}") for i in (1, 2, 3)]
        + [keras.layers.Dense(2, name="output")]
    )
    keras_initlab.initialize(model, scheme, seed=0)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    monitor = VarianceMonitor((data.x_test, data.y_test), alert=False)
    history = model.fit(
        data.x_train, data.y_train, epochs=3, batch_size=64, verbose=0, callbacks=[monitor]
    )
    last = max(r["step"] for r in monitor.records)
    units = [
        r["distinct_units"]
        for r in monitor.records
        if r["step"] == last and r["layer"].startswith("hidden")
    ]
    return units, history.history["accuracy"][-1]


if __name__ == "__main__":
    for name, scheme in [
        ("constant 0.1", keras_initlab.Constant(0.1)),
        ("zeros", keras_initlab.Zeros()),
        ("he_normal", keras_initlab.HeNormal()),
    ]:
        units, accuracy = distinct_units_after_training(scheme)
        print(
            f"{name:>12}: distinct units per hidden layer after training {units} "
            f"(of {WIDTH}), training accuracy {accuracy:.3f}"
        )
        if name != "he_normal":
            assert all(u == 1 for u in units), units
        else:
            assert min(units) > 1, units
