"""Initialize and monitor a model trained under tf.distribute.MirroredStrategy.

Splits the CPU into two logical devices so that the strategy has two replicas (on a machine
with GPUs it would use them), builds and initializes the model inside ``strategy.scope()``,
and trains it with a VarianceMonitor: the monitor adds per-replica sums before forming any
variance, so its records equal those of a single-device run on the same probe.

Run: python examples/mirrored_strategy.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402

import keras_initlab  # noqa: E402
from keras_initlab.callbacks import VarianceMonitor  # noqa: E402
from keras_initlab.compare.datasets import load_dataset  # noqa: E402

if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    data = load_dataset("digits")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print(f"replicas in sync: {strategy.num_replicas_in_sync}")
    with strategy.scope():
        model = keras.Sequential(
            [keras.Input((64,))]
            + [keras.layers.Dense(64, activation="relu") for _ in range(4)]
            + [keras.layers.Dense(10)]
        )
        keras_initlab.initialize(model, "he_normal", seed=0)
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    monitor = VarianceMonitor((data.x_test[:256], data.y_test[:256]), alert=False)
    history = model.fit(
        data.x_train, data.y_train, epochs=2, batch_size=64, verbose=0, callbacks=[monitor]
    )
    print("accuracy per epoch:", [round(a, 3) for a in history.history["accuracy"]])
    for r in (r for r in monitor.records if r["step"] == 0):
        print(
            f"step 0 {r['layer']:>8}: activation var {r['activation_var']:.4g}, "
            f"gradient var {r['gradient_var']:.4g}"
        )
    assert strategy.num_replicas_in_sync == 2
    assert history.history["accuracy"][-1] > history.history["accuracy"][0]
