"""What a record and an in-step statistic cost at the least, next to what the monitor costs.

The monitor's default record is one probe pass (the model's forward and backward pass on
the probe batch, inference mode, differentiated with respect to every measured output and
kernel) plus statistics of every measured output and gradient. This script times, in one
process and interleaved (CPU time, TensorFlow on one thread, medians), in training steps
of the same batch (a plain ``fit`` epoch over its steps):

* ``record``: the monitor's probe pass (``Measurement`` of the default layers), as its
  records between the first and the last use it (``distinct=False``);
* ``record + distinct``: the same with ``distinct_units`` (the monitor's first and last
  records, and `keras_initlab.measure`);
* ``pass``: the same forward and backward pass with no statistic at all (Grappler on);
* ``pass + 1 read``: plus one float32 ``reduce_sum`` of every output and gradient, the
  cheapest op that reads each element once: no statistic can cost less;
* ``pass + f32 moments``: plus the float32 sum and sum of squares of each (the layer mean
  and variance only, in float32);
* ``pass + f64 moments``: the same from float64 casts (what the exactness tests hold);

and, for ``every_n_batches=1``, a bare training step (forward, backward, SGD update, no
Keras ``fit`` loop around it), then the same with one read, float32 and float64 moments of
every output and gradient inside the step, over the plain ``fit`` step. The first call of
each (trace and instantiation; for ``record`` its second, since a `Measurement`'s first pass
runs eagerly, and the first, the model's build included, as ``one-shot record``) is printed
next to a first 2-step ``fit``, which traces the training step: the start-up side of the
same floor.

    python benchmarks/bench_record_floor.py [--models mlp,cnn,mobilenetv2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import keras
import tensorflow as tf
from bench_monitor import MODELS, data

from keras_initlab.measurement import Measurement
from keras_initlab.measurement._selection import monitored_layers

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
STEPS = 50  # steps of the plain fit epoch that gives the step time


def moments(tensors: list[tf.Tensor], kind: str) -> list[tf.Tensor]:
    """The statistics ``kind`` of every tensor (``""``: none)."""
    out: list[tf.Tensor] = []
    for t in tensors:
        if kind == "read":
            out.append(tf.cast(tf.reduce_sum(t), tf.float64))
        elif kind in ("f32", "f64"):
            t = tf.cast(t, tf.float64) if kind == "f64" else t
            out += [
                tf.cast(tf.reduce_sum(t), tf.float64),
                tf.cast(tf.reduce_sum(t * t), tf.float64),
            ]
    return out


def functions(
    taps: keras.Model, optimizer: keras.optimizers.Optimizer, kind: str, step: bool
) -> tf.types.experimental.Function:
    """The probe pass (``step=False``) or a bare training step with the statistics ``kind``;
    ``taps`` returns every measured output, then the model's output."""

    @tf.function(autograph=False)
    def f(x, y):
        with tf.GradientTape() as tape:
            outs = taps(x, training=step)
            loss = LOSS(y, outs[-1])
        outs, weights = outs[:-1], taps.trainable_variables
        grads = tape.gradient(loss, outs + weights)
        if step:
            optimizer.apply(grads[len(outs) :], weights)
        stats = moments([t for t in outs + grads[: len(outs)] if t is not None], kind)
        # Every gradient is returned, so none of the pass is pruned.
        return [tf.cast(loss, tf.float64), *stats, *(g for g in grads if g is not None)]

    return f


VARIANTS = [
    ("pass", "", False),
    ("pass + 1 read", "read", False),
    ("pass + f32 moments", "f32", False),
    ("pass + f64 moments", "f64", False),
    ("bare step", "", True),
    ("bare step + 1 read", "read", True),
    ("bare step + f32 moments", "f32", True),
    ("bare step + f64 moments", "f64", True),
]


def bench(name: str, repeats: int) -> None:
    """Print the costs of model ``name`` in plain fit steps."""
    make, _, batch, _ = MODELS[name]
    model = make()
    model.compile(optimizer="sgd", loss=LOSS)
    x, y = (tf.constant(v) for v in data(model, batch * STEPS))
    probe = (x[:batch], y[:batch])
    measurement = Measurement(model)
    layers = [layer for _, layer in monitored_layers(model)]
    taps = keras.Model(model.inputs, [layer.output for layer in layers] + list(model.outputs))
    optimizer = keras.optimizers.SGD(0.01)
    optimizer.build(taps.trainable_variables)
    runs: dict[str, Callable[[], object]] = {
        "record": lambda: measurement(probe, distinct=False),
        "record + distinct": lambda: measurement(probe),
    }
    for label, kind, training in VARIANTS:
        runs[label] = functools.partial(functions(taps, optimizer, kind, training), *probe)
    start = time.process_time()
    measurement(probe)  # a one-shot `measure`: eager, no trace
    one_shot = time.process_time() - start
    first = {}
    for label, run in runs.items():  # traced and instantiated
        start = time.process_time()
        run()
        first[label] = time.process_time() - start
    start = time.process_time()
    model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, verbose=0)
    first_fit = time.process_time() - start
    times: dict[str, list[float]] = {"step": [], **{k: [] for k in runs}}
    for _ in range(repeats):
        start = time.process_time()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        times["step"].append((time.process_time() - start) / STEPS)
        for _ in range(3):
            for label, run in runs.items():
                start = time.process_time()
                run()
                times[label].append(time.process_time() - start)
    step = statistics.median(times.pop("step"))
    print(
        f"{name}: plain fit step {1000 * step:.1f} ms CPU (batch {batch}); a first fit of "
        f"2 steps (tracing the training step) {first_fit:.2f} s; a one-shot record "
        f"(eager, model built) {one_shot:.2f} s",
        flush=True,
    )
    for label, t in times.items():
        cost = statistics.median(t)
        print(
            f"  {label:24s} {1000 * cost:8.1f} ms = {cost / step:.2f} steps; "
            f"first call {first[label]:.2f} s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn,mobilenetv2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    for name in args.models.split(","):
        bench(name, args.repeats)


if __name__ == "__main__":
    main()
