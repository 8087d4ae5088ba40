"""Cost of ``lsuv`` on a 20-layer CNN, as a ratio to one plain forward pass, in one process.

    python benchmarks/bench_lsuv.py [--batch 256] [--size 16] [--width 16] [--depth 20]

Times (median of ``--repeats`` runs, after a warm-up):

* ``forward``: one eager ``model(x, training=False)``, the plain forward pass;
* ``compiled forward``: one call of a warm ``tf.function`` of the model;
* ``lsuv``: a whole ``lsuv(model, x)`` call: pre-initialization, tracing, every pass.

``lsuv`` runs about ``depth + 1`` compiled passes (one per layer plus the first), so its
ratio to the compiled forward pass should stay near ``depth + 1`` plus the tracing time.
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

from keras_initlab.lsuv import lsuv


def cnn(depth: int, size: int, width: int) -> keras.Model:
    """``depth`` weighted layers: ``depth - 1`` 3x3 ReLU convolutions and a Dense head."""
    layers: list = [keras.Input((size, size, 3))]
    for i in range(depth - 1):
        strides = 2 if i in (depth // 3, 2 * depth // 3) else 1
        layers.append(
            keras.layers.Conv2D(width, 3, strides=strides, padding="same", activation="relu")
        )
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    return keras.Sequential(layers)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=16, help="image side")
    parser.add_argument("--width", type=int, default=16, help="conv channels")
    parser.add_argument("--depth", type=int, default=20, help="weighted layers")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = cnn(args.depth, args.size, args.width)
    x = tf.constant(
        np.random.default_rng(0).normal(size=(args.batch, args.size, args.size, 3)), dtype="float32"
    )
    compiled = tf.function(lambda t: model(t, training=False))

    def forward():
        model(x, training=False).numpy()

    def compiled_forward():
        compiled(x).numpy()

    forward()
    compiled_forward()  # warm-up: traces once
    t_forward = median_time(forward, args.repeats)
    t_compiled = median_time(compiled_forward, args.repeats)
    lsuv(model, x, seed=0)  # warm-up: first use of the ops involved
    reports = []
    t_lsuv = median_time(lambda: reports.append(lsuv(model, x, seed=0)), args.repeats)
    report = reports[-1]

    devices = ", ".join(d.device_type for d in tf.config.list_logical_devices())
    print(
        f"model: {args.depth} weighted layers ({args.depth - 1} Conv2D {args.width}ch + Dense), "
        f"input {args.size}x{args.size}x3, batch {args.batch}; devices: {devices}"
    )
    print(
        f"lsuv: {len(report)} layers, converged={report.converged}, "
        f"{report.passes} compiled forward passes"
    )
    print(f"forward (eager)          {t_forward * 1e3:9.1f} ms")
    print(f"forward (compiled)       {t_compiled * 1e3:9.1f} ms")
    print(f"lsuv (whole call)        {t_lsuv * 1e3:9.1f} ms")
    print(f"ratio lsuv / eager forward     {t_lsuv / t_forward:6.1f}")
    print(f"ratio lsuv / compiled forward  {t_lsuv / t_compiled:6.1f}   (passes: {report.passes})")


if __name__ == "__main__":
    main()
