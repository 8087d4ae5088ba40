"""What the monitor's alert checks cost at fit start: the depth rule and the diagnosis.

With ``alert=True`` a `VarianceMonitor` judges its first record (step 0) by the depth rule
(`keras_initlab.depth_rule.judge`, on the main path of `keras_initlab.model.path` with the
one-off factors of `structural_factors`, both computed once per fit) and, when an alert
fires, calls `keras_initlab.diagnosis.diagnose` once per fit, which clones the model and
predicts each candidate fix. Everything is measured in one process, TensorFlow on one
intra-op and one inter-op thread, as process CPU time (other load on the machine then hardly
moves the figures); each figure is the median over the repetitions.

* ``step``: one training step of a plain warm fit (epoch time over its steps).
* ``record``: the monitor's ``on_train_begin`` with ``alert=False`` (the step-0 probe pass
  and its record), between a clock callback before it and one after it.
* ``checks``: the same window with ``alert=True`` minus ``record``, taken within one
  repetition: what judging, the main path, the one-off factors and, on an alert, the
  diagnosis add at fit start; in milliseconds and in training steps (``/step``).
* ``fit d``: the whole fit (1 epoch of STEPS steps) with ``alert=True`` minus with
  ``alert=False``: the same cost seen from outside (noisier).
* ``judge``, ``path``, ``diagnose``: the parts timed alone on one record of
  `keras_initlab.measure(model, probe, mode="training")`: `judge` with the path and
  factors; `model_path` plus `structural_factors` (a `propagate` pass, made only when the
  path has one-off layers); `diagnose(model, probe)` (which the monitor calls only on an
  alert; MobileNetV2's record is healthy, so there it is what an alert would add).

A second table gives the record's verdict, the diagnosis' cause, how many candidate fixes it
tried and the one it chose. Each fit starts from the same weights and a zeroed optimizer
step (the model and its traces are built once and warmed up first; every fit has a fresh
monitor, so every fit computes its path and diagnosis anew, as a real fit does).

Models: a 20-layer Dense(64, sigmoid) MLP (glorot_uniform), 12 ReLU Conv2D(64, 3) on
8 x 8 x 1 with RandomNormal(0.1), a 24-block unnormalized residual MLP (he_normal), all
with a 10-way softmax head and batches of 64; MobileNetV2 (weights=None, 64 x 64 x 3, 10
classes) re-drawn with He, batches of 16, fewer repetitions (``--app-repeats``).

    python benchmarks/bench_diagnosis.py [--repeats 5] [--app-repeats 3] [--models ...]
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

import keras_initlab
from keras_initlab.callbacks import VarianceMonitor, VarianceWarning
from keras_initlab.depth_rule import judge, structural_factors
from keras_initlab.diagnosis import diagnose
from keras_initlab.healthy import probe_moments
from keras_initlab.model.path import model_path
from keras_initlab.text_table import format_table

warnings.simplefilter("ignore", VarianceWarning)  # alerts are computed, not printed
# Predictions of exploding candidates overflow float64 on the way (judged as not finite).
warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(numpy|keras_initlab)")
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

STEPS = 4  # steps of the one-epoch fits
BATCH = 64
APP_BATCH = 16
MODE = "training"  # the monitor's default probe mode


def sigmoid_mlp() -> keras.Model:
    layers = [keras.Input((64,))]
    layers += [keras.layers.Dense(64, activation="sigmoid") for _ in range(20)]
    layers.append(keras.layers.Dense(10, activation="softmax"))
    return keras.Sequential(layers)


def relu_cnn() -> keras.Model:
    init = keras.initializers.RandomNormal(stddev=0.1, seed=0)
    layers = [keras.Input((8, 8, 1))]
    layers += [
        keras.layers.Conv2D(64, 3, padding="same", activation="relu", kernel_initializer=init)
        for _ in range(12)
    ]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")]
    return keras.Sequential(layers)


def residual_mlp() -> keras.Model:
    inputs = keras.Input((64,))
    x = keras.layers.Dense(64, kernel_initializer="he_normal")(inputs)
    for _ in range(24):
        h = keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal")(x)
        x = keras.layers.Add()([x, keras.layers.Dense(64, kernel_initializer="he_normal")(h)])
    outputs = keras.layers.Dense(10, activation="softmax", kernel_initializer="he_normal")(x)
    return keras.Model(inputs, outputs)


def mobilenet() -> keras.Model:
    model = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), classes=10)
    keras_initlab.initialize(model, "he_normal", seed=0)
    return model


# name: (make, batch)
MODELS = {
    "sigmoid_mlp20": (sigmoid_mlp, BATCH),
    "relu_cnn12": (relu_cnn, BATCH),
    "residual_mlp24": (residual_mlp, BATCH),
    "mobilenetv2": (mobilenet, APP_BATCH),
}


class Clock(keras.callbacks.Callback):
    """CPU time at train begin and at every epoch end."""

    def __init__(self) -> None:
        super().__init__()
        self.begin = 0.0
        self.ends: list[float] = []

    def on_train_begin(self, logs=None):
        self.begin = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.process_time())


def cpu(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` and its CPU time."""
    start = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - start


class Bench:
    """One model, compiled and traced once; every fit starts from its initial weights."""

    def __init__(self, make, batch: int) -> None:
        keras.utils.set_random_seed(0)
        self.model = make()
        self.model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        shape = self.model.input_shape[1:]
        self.x = rng.normal(size=(STEPS * batch, *shape)).astype("float32")
        self.y = rng.integers(0, 10, size=(STEPS * batch,))
        self.probe = (self.x[:batch], self.y[:batch])
        self.batch = batch
        self.weights = self.model.get_weights()

    def fit(self, alert: bool | None) -> dict[str, float]:
        """One fit of one epoch; ``alert`` None: no monitor."""
        model = self.model
        model.set_weights(self.weights)
        model.optimizer.iterations.assign(0)
        before, after = Clock(), Clock()  # around the monitor
        monitor = [] if alert is None else [VarianceMonitor(self.probe, alert=alert)]
        start = time.process_time()
        model.fit(
            self.x,
            self.y,
            batch_size=self.batch,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[before, *monitor, after],
        )
        return {
            "begin": after.begin - before.begin,
            "fit": after.ends[-1] - start,
            "steps": (after.ends[-1] - after.begin) / STEPS,
            "alerts": len(monitor[0].alerts) if alert else 0,
        }

    def parts(self, with_diagnosis: bool) -> dict[str, object]:
        """The checks timed alone on one `measure` record of the initial weights."""
        model = self.model
        model.set_weights(self.weights)
        rows = keras_initlab.measure(model, self.probe, mode=MODE)

        def judging_path():
            path = model_path(model, MODE)
            factors = {}
            if path.one_off and not path.assumed:
                moments = probe_moments(self.probe[0], model)
                report = keras_initlab.propagate(model, mode=MODE, **moments)
                factors = structural_factors(report, path)
            return path, factors

        (path, factors), path_time = cpu(judging_path)
        judgement, judge_time = cpu(judge, rows, path=path, structural=factors)
        out = {"path": path_time, "judge": judge_time, "verdict": judgement.verdict}
        if with_diagnosis:
            d, out["diagnose"] = cpu(diagnose, model, self.probe[0], mode=MODE)
            out["diagnosis"] = d
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--app-repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    timing, found = [], []
    for name in args.models.split(","):
        make, batch = MODELS[name]
        wall = time.perf_counter()
        repeats = args.repeats if batch == BATCH else args.app_repeats
        bench = Bench(make, batch)
        for alert in (None, False, True):  # warm-up: traces of the step, probe, measure
            bench.fit(alert)
        bench.parts(with_diagnosis=False)
        steps, records, checks, fits, alerts = [], [], [], [], []
        judges, paths, diagnoses = [], [], []
        diagnosis = None
        for _ in range(repeats):
            plain, off, on = (bench.fit(alert) for alert in (None, False, True))
            steps.append(plain["steps"])
            records.append(off["begin"])
            checks.append(on["begin"] - off["begin"])
            fits.append(on["fit"] - off["fit"])
            alerts.append(on["alerts"])
            # The diagnosis of a healthy model is timed too (the monitor does not call it).
            parts = bench.parts(with_diagnosis=True)
            judges.append(parts["judge"])
            paths.append(parts["path"])
            diagnoses.append(parts["diagnose"])
            diagnosis, verdict = parts["diagnosis"], parts["verdict"]
        step, check = statistics.median(steps), statistics.median(checks)
        timing.append(
            [
                name,
                f"{batch}",
                f"{repeats}",
                f"{1000 * step:.1f}",
                f"{1000 * statistics.median(records):.1f}",
                f"{1000 * check:.1f}",
                f"{check / step:.1f}",
                f"{1000 * statistics.median(fits):.1f}",
                f"{1000 * statistics.median(judges):.2f}",
                f"{1000 * statistics.median(paths):.1f}",
                f"{1000 * statistics.median(diagnoses):.1f}",
            ]
        )
        fix = diagnosis.chosen.label if diagnosis.chosen is not None else "none passes"
        found.append(
            [
                name,
                verdict,
                f"{max(alerts)}",
                diagnosis.cause if verdict != "ok" else "- (not called)",
                f"{len(diagnosis.candidates)}",
                fix,
            ]
        )
        print(f"{name}: {time.perf_counter() - wall:.0f} s wall", flush=True)
    print(f"\nCPU ms, medians; fits of 1 epoch of {STEPS} steps, probe = one batch")
    columns = ["model", "batch", "reps", "step", "record", "checks", "/step", "fit d"]
    columns += ["judge", "path", "diagnose"]
    print("\n".join(format_table(columns, timing)))
    print("\nstep-0 record: its verdict, the monitor's alerts, diagnose(model, probe)")
    columns = ["model", "verdict", "alerts", "cause", "tried", "fix"]
    print("\n".join(format_table(columns, found)))


if __name__ == "__main__":
    main()
