"""Audit a model whose depthwise and transposed convolutions Keras initialized on wrong fans.

Keras reads fans from the kernel shape alone: a DepthwiseConv2D kernel (3, 3, 64, 1) gets
fan_in 3*3*64 instead of 3*3 (He std 8x too small), a Conv2DTranspose kernel (k, k, out, in)
gets in and out swapped. ``keras_initlab.audit(model)`` finds each weight to be what its
initializer drew (no ``!!`` flag: the model is as Keras built it) and marks both unhealthy
(``**``: on their true fans they fit no healthy scheme of the activation they feed);
``keras_initlab.initialize`` re-draws every kernel on its true fans, and the audit against
He and the healthy reference come back clean.

Then a fault no fan rule shows: one unseeded initializer instance passed to two layers.
Keras draws the same numbers at every call of one instance, so the second kernel repeats
the first (keras_hub's Llama and Gemma attentions do this to their query, key, value and
output projections). The audit names the weight it repeats (``repeats``);
``initialize`` draws each kernel from its own seed.

Run: python examples/audit_and_fix.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

import keras_initlab

if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 64)),
            keras.layers.DepthwiseConv2D(
                3, padding="same", activation="relu", depthwise_initializer="he_normal"
            ),
            keras.layers.Conv2D(16, 1, activation="relu", kernel_initializer="he_normal"),
            keras.layers.Conv2DTranspose(
                64, 3, strides=1, padding="same", activation="relu", kernel_initializer="he_normal"
            ),
        ]
    )
    before = keras_initlab.audit(model)
    print("Audit against each layer's own initializer, as Keras drew it (its fans):")
    print(before)
    unhealthy = {row.layer for row in before.unhealthy}
    assert not before.flagged, before.flagged
    assert {"depthwise_conv2d", "conv2d_transpose"} <= unhealthy, unhealthy

    keras_initlab.initialize(model, "he_normal", seed=0)
    after = keras_initlab.audit(model, "he_normal")
    print("\nAfter keras_initlab.initialize(model, 'he_normal') (true fans):")
    print(after)
    assert not after.flagged, after.flagged
    assert not keras_initlab.audit(model).unhealthy

    shared = keras.initializers.GlorotUniform()  # one unseeded instance for two layers
    twins = keras.Sequential(
        [
            keras.Input((32,)),
            keras.layers.Dense(32, activation="tanh", kernel_initializer=shared, name="first"),
            keras.layers.Dense(32, activation="tanh", kernel_initializer=shared, name="second"),
        ],
        name="twins",
    )
    repeated = keras_initlab.audit(twins).repeated
    print("\nOne initializer instance for two layers: weights that repeat another's draws:")
    for row in repeated:
        print(f"  {row.path} repeats {row.repeats}")
    assert [row.path for row in repeated] == ["twins/second/kernel"], repeated
    keras_initlab.initialize(twins, "glorot_normal", seed=0)
    assert not keras_initlab.audit(twins).repeated
    print("After keras_initlab.initialize(twins, 'glorot_normal'): none.")
