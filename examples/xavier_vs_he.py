"""Claims 5-8: which initialization keeps the variance of which activation across depth.

The forward and backward variance profile (``keras_initlab.compare.inspection``) of a
10-layer MLP of width 128 on unit-variance input, under Xavier and He with ReLU, Xavier
with tanh, and Xavier scaled by tanh's gain (``keras_initlab.gain("tanh")`` = 5/3).

What it shows: He keeps a ReLU network's variance; Xavier shrinks it by about 2x per ReLU
layer (each ReLU halves the second moment). With tanh, plain Xavier (gain 1) still loses
variance slowly, by 10-20% per layer, because tanh is contractive (tanh'(z) < 1 away
from 0): over a deep stack that adds up, and the gain 5/3 compensates for it.

Run: python examples/xavier_vs_he.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

import keras_initlab
from keras_initlab.compare.inspection import variance_profile

DEPTH, WIDTH = 10, 128


def profile(scheme, activation):
    model = keras.Sequential(
        [keras.Input((WIDTH,))]
        + [keras.layers.Dense(WIDTH, activation=activation) for _ in range(DEPTH)]
    )
    keras_initlab.initialize(model, scheme, seed=0)
    return variance_profile(model, samples=256, seed=0)


if __name__ == "__main__":
    tanh_gain = keras_initlab.gain("tanh")
    cases = [
        ("xavier_normal", "xavier_normal", "relu"),
        ("he_normal", "he_normal", "relu"),
        ("xavier_normal", "xavier_normal", "tanh"),
        (
            "xavier x gain(tanh)",
            keras_initlab.VarianceScaling(tanh_gain**2, "fan_avg", "normal"),
            "tanh",
        ),
    ]
    print(f"{DEPTH} Dense({WIDTH}) layers; variance ratios across depth at initialization")
    print(
        f"{'scheme':>20} {'activation':>10} {'act last/first':>15} {'per layer':>10} "
        f"{'grad first/last':>16} verdict"
    )
    results = {}
    for label, scheme, activation in cases:
        p = profile(scheme, activation)
        results[label, activation] = p
        per_layer = p.activation_ratio ** (1 / (DEPTH - 1))
        print(
            f"{label:>20} {activation:>10} {p.activation_ratio:15.3g} {per_layer:10.3f} "
            f"{p.gradient_ratio:16.3g} {p.verdict}"
        )
    assert results["he_normal", "relu"].verdict == "ok"
    assert results["xavier_normal", "relu"].verdict == "vanishing"
    assert results["xavier x gain(tanh)", "tanh"].verdict == "ok"
