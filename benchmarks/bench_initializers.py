"""Time each keras_initlab initializer against its Keras built-in counterpart.

Shapes: a 4096x4096 dense kernel and a 3x3x256x256 conv kernel. The two initializers of a
pair run alternately (interleaved, after a warm-up call each), ``REPEATS`` times; the script
prints the median time of each and the ratio ours / Keras. Target: median ratio <= 1.0.

Run: ``python benchmarks/bench_initializers.py [--repeats N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import tensorflow as tf

import keras_initlab as ki

K = keras.initializers
PAIRS = [
    ("HeNormal", lambda: ki.HeNormal(seed=1), lambda: K.HeNormal(seed=1)),
    ("HeUniform", lambda: ki.HeUniform(seed=1), lambda: K.HeUniform(seed=1)),
    ("GlorotNormal", lambda: ki.GlorotNormal(seed=1), lambda: K.GlorotNormal(seed=1)),
    ("GlorotUniform", lambda: ki.GlorotUniform(seed=1), lambda: K.GlorotUniform(seed=1)),
    ("LecunNormal", lambda: ki.LecunNormal(seed=1), lambda: K.LecunNormal(seed=1)),
    ("LecunUniform", lambda: ki.LecunUniform(seed=1), lambda: K.LecunUniform(seed=1)),
    (
        "VarianceScaling(normal)",
        lambda: ki.VarianceScaling(2.0, "fan_in", "normal", seed=1),
        lambda: K.VarianceScaling(2.0, "fan_in", "untruncated_normal", seed=1),
    ),
    ("RandomNormal", lambda: ki.RandomNormal(seed=1), lambda: K.RandomNormal(seed=1)),
    ("RandomUniform", lambda: ki.RandomUniform(seed=1), lambda: K.RandomUniform(seed=1)),
    ("Orthogonal", lambda: ki.Orthogonal(seed=1), lambda: K.Orthogonal(seed=1)),
    ("Constant", lambda: ki.Constant(0.5), lambda: K.Constant(0.5)),
    ("Zeros", lambda: ki.Zeros(), lambda: K.Zeros()),
    ("ScaledIdentity", lambda: ki.ScaledIdentity(1.5), lambda: K.Identity(1.5)),
]
SHAPES = {"dense 4096x4096": (4096, 4096), "conv 3x3x256x256": (3, 3, 256, 256)}


def _time(init, shape) -> float:
    start = time.perf_counter()
    values = init(shape)
    _ = values.numpy()  # make sure the work is done, not only scheduled
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="TF threads (0: TF default)")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    ratios = []
    print(f"{'initializer':26s} {'shape':18s} {'ours ms':>9s} {'keras ms':>9s} {'ratio':>7s}")
    for name, ours, theirs in PAIRS:
        for label, shape in SHAPES.items():
            if name == "ScaledIdentity" and len(shape) > 2:
                continue  # keras.initializers.Identity only takes 2-D shapes
            a, b = ours(), theirs()
            _time(a, shape), _time(b, shape)  # warm-up: tracing and allocation
            repeats = max(3, args.repeats // 2) if name == "Orthogonal" else args.repeats
            t_ours, t_keras = [], []
            for _ in range(repeats):
                t_ours.append(_time(a, shape))
                t_keras.append(_time(b, shape))
            mo, mk = statistics.median(t_ours), statistics.median(t_keras)
            ratios.append(mo / mk)
            print(f"{name:26s} {label:18s} {1e3 * mo:9.1f} {1e3 * mk:9.1f} {mo / mk:7.3f}")
    print(f"median ratio ours/keras over {len(ratios)} cases: {statistics.median(ratios):.3f}")
    delta = ki.DeltaOrthogonal(seed=1)
    ms = 1e3 * statistics.median(_time(delta, (3, 3, 256, 256)) for _ in range(3))
    print(f"DeltaOrthogonal conv 3x3x256x256: {ms:.1f} ms (no Keras counterpart)")


if __name__ == "__main__":
    main()
