"""Overhead of VarianceMonitor relative to a plain `fit`, as ratios measured in one process.

Each repetition fits a fresh model once per configuration (plain, default monitor,
every_n_batches=1, ...), in turn, so that machine load drifts hit every configuration alike.
Times are process CPU times with the backend (KERAS_BACKEND: TensorFlow, JAX or PyTorch) on
one thread, so that other load on the machine does not masquerade as overhead. On
TensorFlow the table also has Keras' own ``TensorBoard(histogram_freq=1)`` (weight
histograms only), the yardstick of the monitor-cost targets. Three numbers per
configuration, each the median over the repetitions of a ratio (or cost) taken within one
repetition:

* ``epoch``: steady-state overhead, the median epoch time of epochs 2.. (epoch end to epoch
  end, so the monitor's epoch-end record is included) over the plain fit's.
* ``fit``: the whole fit of EPOCHS + 1 epochs, tracing and the monitor's start-up (tracing
  its probe function, the step-0 record) included, over the plain fit.
* ``record``: the monitor's own epoch-end work in milliseconds (a clock callback before and
  one after it), and as a share of a plain epoch: the low-noise view of the default cost.
  The median over the epoch ends between the first (which traces the probe) and the last
  (which counts ``distinct_units``: the monitor's default ``distinct_units="ends"``);
  ``last`` is the last one's.

* ``record/step``: that epoch-end work over one plain training step of the same batch.

The small models (a 12 x 128 MLP, a 3-conv CNN) fit EPOCHS + 1 epochs of 64 steps of 64;
the keras.applications models (weights=None, 64 x 64 x 3, 10 classes, logits out) fit
APP_EPOCHS epochs of APP_STEPS steps of APP_BATCH, with fewer repetitions (``--app-repeats``).

    KERAS_BACKEND=jax python benchmarks/bench_monitor.py [--repeats 5] [--app-repeats 1]
        [--models mlp,cnn,...] [--configs default,every_batch,...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One thread and CPU time (not wall time): the ratios then measure work done and hardly move
# when other processes share the machine. (JAX reads its flags before it is imported.)
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import keras
import numpy as np

from keras_initlab.callbacks import VarianceMonitor, VarianceWarning

warnings.simplefilter("ignore", VarianceWarning)  # alerts are computed, not printed
BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
elif BACKEND == "torch":
    import torch

    torch.set_num_threads(1)

EPOCHS = 5
BATCH = 64
SAMPLES = 4096
APP_EPOCHS = 3
APP_BATCH = 16
APP_STEPS = 50


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


def application(name: str):
    def make() -> keras.Model:
        return getattr(keras.applications, name)(
            weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None
        )

    return make


# name: (make, epochs of the fit, batch, samples)
MODELS = {
    "mlp": (deep_mlp, EPOCHS + 1, BATCH, SAMPLES),
    "cnn": (small_cnn, EPOCHS + 1, BATCH, SAMPLES),
    **{
        name.lower(): (application(name), APP_EPOCHS, APP_BATCH, APP_STEPS * APP_BATCH)
        for name in ("MobileNetV2", "EfficientNetB0", "ResNet50")
    },
}


def data(model: keras.Model, samples: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, *model.input_shape[1:])).astype("float32")
    return x, rng.integers(0, 10, size=(samples,))


class Clock(keras.callbacks.Callback):
    """CPU time at every epoch end."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.process_time())


def run(make, callbacks_of, epochs: int, batch: int, samples: int) -> dict[str, float]:
    """One fit of ``epochs`` epochs: its CPU times (see the module docstring)."""
    model = make()
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, y = data(model, samples)
    before, after = Clock(), Clock()  # around the other callbacks
    start = time.process_time()
    model.fit(
        x,
        y,
        batch_size=batch,
        epochs=epochs,
        verbose=0,
        callbacks=[before, *callbacks_of(x, y), after],
    )
    epoch_times = [b - a for a, b in zip(after.ends, after.ends[1:], strict=False)]
    records = [b - a for a, b in zip(before.ends, after.ends, strict=True)]
    return {
        "epoch": statistics.median(epoch_times),
        "fit": after.ends[-1] - start,
        "record": statistics.median(records[1:-1]),
        "last": records[-1],
    }


CONFIGS = {
    "plain": lambda x, y: [],
    # True defaults: the probe is a training batch (BATCH rows), alerts on.
    "default": lambda x, y: [VarianceMonitor()],
    "every_batch": lambda x, y: [VarianceMonitor(every_n_batches=1)],
    # The same records by a second probe pass per batch instead of in-step taps.
    "every_batch_probe": lambda x, y: [VarianceMonitor(every_n_batches=1, in_step=False)],
}
if BACKEND == "tensorflow":  # Keras' TensorBoard writes through TensorFlow
    CONFIGS["tensorboard_hist"] = lambda x, y: [
        keras.callbacks.TensorBoard(tempfile.mkdtemp(), histogram_freq=1)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--app-repeats", type=int, default=1)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    configs = {c: CONFIGS[c] for c in ["plain", *args.configs.split(",")] if c in CONFIGS}
    for name in args.models.split(","):
        make, epochs, batch, samples = MODELS[name]
        repeats = args.repeats if name in ("mlp", "cnn") else args.app_repeats
        ratios: dict[str, dict[str, list[float]]] = {
            c: {"epoch": [], "fit": [], "record": [], "last": []} for c in configs if c != "plain"
        }
        plain_epochs = []
        for _ in range(repeats):
            times = {c: run(make, cb, epochs, batch, samples) for c, cb in configs.items()}
            base = times.pop("plain")
            plain_epochs.append(base["epoch"])
            for config, t in times.items():
                ratios[config]["epoch"].append(t["epoch"] / base["epoch"])
                ratios[config]["fit"].append(t["fit"] / base["fit"])
                ratios[config]["record"].append(t["record"] - base["record"])
                ratios[config]["last"].append(t["last"] - base["last"])
        epoch = statistics.median(plain_epochs)
        steps = samples // batch
        print(
            f"{name} ({BACKEND}): plain epoch {epoch:.3f} s CPU ({steps} steps of {batch}), fit of "
            f"{epochs} epochs; medians over {repeats} repetitions:",
            flush=True,
        )
        for config, r in ratios.items():
            lo, hi = min(r["epoch"]), max(r["epoch"])
            record, last = statistics.median(r["record"]), statistics.median(r["last"])
            print(
                f"  {config:18s} epoch {statistics.median(r['epoch']):.3f}x "
                f"(range {lo:.3f}-{hi:.3f})  fit {statistics.median(r['fit']):.3f}x  "
                f"record {1000 * record:.1f} ms = {record / epoch:.1%} of an epoch "
                f"= {record / (epoch / steps):.2f} steps; last {last / (epoch / steps):.2f} steps",
                flush=True,
            )


if __name__ == "__main__":
    main()
