"""Overhead of VarianceMonitor relative to a plain `fit`, as ratios measured in one process.

Runs are interleaved (plain, default monitor, every_n_batches=1, plain, ...) so that machine
load drifts hit every configuration alike; each configuration's median epoch time over the
repetitions is divided by the plain fit's median (the ratio of minima, robust to
interference from other processes, is printed next to it). Times are process CPU times with
TensorFlow on one thread, so that other load on the machine does not masquerade as overhead.
The first epoch of each fit (tracing) is excluded: each run fits EPOCHS + 1 epochs and times
epochs 2.. (epoch end to epoch end, the clock callback placed last so that the monitor's
epoch-end record is included).

    python benchmarks/bench_monitor.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from keras_initlab.callbacks import VarianceMonitor, VarianceWarning

warnings.simplefilter("ignore", VarianceWarning)  # alerts are computed, not printed
# One thread and CPU time (not wall time): the ratios then measure work done and hardly move
# when other processes share the machine.
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

EPOCHS = 3
BATCH = 64
SAMPLES = 4096


def deep_mlp() -> keras.Model:
    layers = [keras.Input((64,))]
    layers += [keras.layers.Dense(128, activation="relu") for _ in range(12)]
    layers.append(keras.layers.Dense(10))
    return keras.Sequential(layers)


def small_cnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )


def data(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, *model.input_shape[1:])).astype("float32")
    return x, rng.integers(0, 10, size=(SAMPLES,))


class EpochClock(keras.callbacks.Callback):
    """CPU time from one epoch end to the next (placed last: includes the monitor's work)."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.process_time())


def epoch_times(make, callbacks_of) -> list[float]:
    """Durations of epochs 2..EPOCHS+1 of one fit (epoch 1 holds the tracing)."""
    model = make()
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, y = data(model)
    clock = EpochClock()
    model.fit(
        x, y, batch_size=BATCH, epochs=EPOCHS + 1, verbose=0, callbacks=[*callbacks_of(x, y), clock]
    )
    return [b - a for a, b in zip(clock.ends, clock.ends[1:], strict=False)]


CONFIGS = {
    "plain": lambda x, y: [],
    # True defaults: the probe is a training batch (BATCH rows), alerts on.
    "default": lambda x, y: [VarianceMonitor()],
    "every_batch": lambda x, y: [VarianceMonitor(every_n_batches=1)],
    # The same records by a second probe pass per batch instead of in-step taps.
    "every_batch_probe": lambda x, y: [VarianceMonitor(every_n_batches=1, in_step=False)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for name, make in (("deep_mlp", deep_mlp), ("small_cnn", small_cnn)):
        times: dict[str, list[float]] = {c: [] for c in CONFIGS}
        for _ in range(args.repeats):
            for config, callbacks_of in CONFIGS.items():
                times[config].extend(epoch_times(make, callbacks_of))
        base = statistics.median(times["plain"])
        fastest = min(times["plain"])
        ratios = ", ".join(
            f"{c}={statistics.median(t) / base:.3f}x (min {min(t) / fastest:.3f}x)"
            for c, t in times.items()
            if c != "plain"
        )
        print(f"{name}: plain median epoch {base:.3f}s CPU; median ratio (min ratio): {ratios}")


if __name__ == "__main__":
    main()
