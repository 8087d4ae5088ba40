"""What an expansive activation does to each sample's scale after ``initialize(model, "auto")``.

    python benchmarks/bench_expansive.py [--depth 40] [--width 256] [--samples 2048]

A chain of ``depth`` blocks ``Dense(width)`` then ``Activation(f)`` for ReLU, ELU, GELU and
SiLU, each drawn by ``initialize(model, "auto", seed=0)`` and run on ``samples`` iid N(0, 1)
inputs. Printed per activation and every 4th block: the activation's slope the report gives
(`keras_initlab.AutoInitRow.slope`), the batch variance (what AutoInit targets at 1), the
mean and the median over samples of each sample's mean square, and the standard deviation
of its log. With a slope above 1 (GELU, SiLU) the samples' scales spread apart with depth:
the median sample vanishes while the batch variance grows, driven by a few samples; with a
slope of 1 or below (ReLU, ELU) they stay together. The `keras_initlab.autoinit` docstring
quotes this run's defaults.
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

import keras_initlab


def chain(activation: str, depth: int, width: int) -> tuple[keras.Model, keras.Model]:
    """The model and one that returns every activation's output."""
    inputs = keras.Input((width,))
    h, ends = inputs, []
    for i in range(depth):
        h = keras.layers.Activation(activation, name=f"a{i}")(
            keras.layers.Dense(width, name=f"d{i}")(h)
        )
        ends.append(h)
    return keras.Model(inputs, h), keras.Model(inputs, ends)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=40)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--samples", type=int, default=2048)
    args = parser.parse_args()
    x = np.random.default_rng(0).standard_normal((args.samples, args.width)).astype("float32")
    print("| activation | slope | block | batch variance | mean square | median sample | sd log |")
    print("|---|---|---|---|---|---|---|")
    for activation in ("relu", "elu", "gelu", "silu"):
        model, ends = chain(activation, args.depth, args.width)
        report = keras_initlab.initialize(model, "auto", seed=0, report=True)
        slope = report.by_layer()["d1"].slope
        for i, out in enumerate(ends.predict(x, verbose=0)):
            if i % 4:
                continue
            a = out.astype(np.float64)
            per = np.mean(a * a, axis=1)
            print(
                f"| {activation} | {slope:.3f} | {i + 1} | {a.var():.3g} | {per.mean():.3g} "
                f"| {np.median(per):.3g} | {np.std(np.log(per)):.2f} |"
            )


if __name__ == "__main__":
    main()
