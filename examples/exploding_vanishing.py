"""Claims 3 and 4: a deep stack of 1.5 I explodes, a stack of 0.5 I vanishes.

A linear network of ``DEPTH`` Dense(8) layers with every kernel ``k * I``: the output is
``k**DEPTH * x``, so the activation variance grows (k=1.5) or shrinks (k=0.5) by ``k**2`` per
layer and the gradient does the same on its way back. The measured depth profile
(VarianceMonitor) matches ``k**(2l)`` to float32 rounding; then a few SGD epochs show the
1.5 I cost blowing up and the 0.5 I cost stalling.

Run: python examples/exploding_vanishing.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import math

import keras
import numpy as np

import keras_initlab
from keras_initlab.callbacks import VarianceMonitor

DEPTH, WIDTH = 12, 8

rng = np.random.default_rng(0)
x = rng.standard_normal((512, WIDTH)).astype("float32")
y = (x @ rng.standard_normal((WIDTH, 1))).astype("float32")  # a linear target


def run(scale):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((WIDTH,))]
        + [keras.layers.Dense(WIDTH, name=f"d{i}") for i in range(DEPTH)]
        + [keras.layers.Dense(1, name="out")]
    )
    keras_initlab.initialize(model, keras_initlab.ScaledIdentity(scale))
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    monitor = VarianceMonitor((x, y), alert=False)
    history = model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[monitor])
    first = [r for r in monitor.records if r["step"] == 0]
    return first, history.history["loss"]


if __name__ == "__main__":
    for scale in (1.5, 0.5):
        rows, losses = run(scale)
        print(f"\nW = {scale} I, {DEPTH} linear layers")
        print("layer  activation var  theory k^(2l) Var(x)  gradient var")
        base = float(np.var(x))
        for layer, r in enumerate(rows[:DEPTH], start=1):
            theory = scale ** (2 * layer) * base
            print(
                f"{r['layer']:>5}  {r['activation_var']:14.4g}  {theory:20.4g}  "
                f"{r['gradient_var']:12.4g}"
            )
            assert math.isclose(r["activation_var"], theory, rel_tol=1e-4)
        print("loss per epoch:", " ".join(f"{v:.4g}" for v in losses))
    print("\n1.5 I: variance x1.5^2 per layer (exploding); 0.5 I: x0.25 per layer (vanishing).")
