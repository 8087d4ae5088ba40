"""One record by the measurement core (float32) against TensorFlow's float64 sums path.

TensorFlow measures a single-replica model through the core (`_core.NeutralProbe` with the
`_tf_gradients` adapter) and a model on several replicas through `_probe` (float64 sums that
add across replicas). This script builds both for the same model, layers and probe (training
mode, targets), and alternates their calls with a plain training step of the same batch, in
one process: the first call (trace and instantiation) of each, then the median of each over
the repetitions, in milliseconds and in training steps. CPU time, TensorFlow on one thread.

    python benchmarks/bench_record_paths.py [--models mlp,mobilenetv2] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from keras_initlab.measurement import MAX_DISTINCT_UNITS, _selection
from keras_initlab.measurement._core import NeutralProbe
from keras_initlab.measurement._probe import make_probe_function
from keras_initlab.measurement._routing import install_taps

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)


def model_and_batch(name: str) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    if name == "mlp":
        model = keras.Sequential(
            [keras.Input((64,))]
            + [keras.layers.Dense(128, activation="tanh") for _ in range(12)]
            + [keras.layers.Dense(10)]
        )
        x = rng.standard_normal((64, 64)).astype("float32")
    else:
        make = {"mobilenetv2": "MobileNetV2", "efficientnetb0": "EfficientNetB0"}[name]
        model = getattr(keras.applications, make)(
            weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None
        )
        x = rng.standard_normal((16, 64, 64, 3)).astype("float32")
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, x, rng.integers(0, 10, len(x))


def cpu_ms(f, *args) -> float:
    start = time.process_time()
    f(*args)
    return (time.process_time() - start) * 1e3


def compare(name: str, repeats: int) -> None:
    model, x, y = model_and_batch(name)
    layers = [layer for _, layer in _selection.monitored_layers(model, None)]
    kernels = [_selection.kernel_of(layer) for layer in layers]
    activations = [_selection.activation_name(layer) for layer in layers]
    install_taps(layers)
    settings = {"rtol": 1e-3, "max_units": MAX_DISTINCT_UNITS, "training": True}
    data = (tf.constant(x), tf.constant(y), None)
    paths = {
        "core float32": NeutralProbe(
            model, layers, kernels, activations, loss_fn=None, dtype="float32", **settings
        ),
        "float64 sums": make_probe_function(
            model, layers, kernels, activations, loss_fn=None, **settings
        ),
    }
    first = {k: cpu_ms(f, *data) for k, f in paths.items()}

    def step(*_: object) -> None:
        model.train_on_batch(x, y)

    first["step"] = cpu_ms(step)
    calls = {**paths, "step": step}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for k, f in calls.items():
            times[k].append(cpu_ms(f, *data))
    one = statistics.median(times["step"])
    print(f"{name}: {len(layers)} measured layers, training step {one:.1f} ms")
    for k in paths:
        med = statistics.median(times[k])
        print(
            f"  {k:14s} first call {first[k] / 1e3:5.2f} s   "
            f"record {med:7.1f} ms = {med / one:.2f} steps"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,mobilenetv2")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    for name in args.models.split(","):
        compare(name, args.repeats)


if __name__ == "__main__":
    main()
