"""Run by test_distribute.py in a fresh process: VarianceMonitor under tf.distribute.

Usage: python _distributed_worker.py mirrored OUT.json
       python _distributed_worker.py multiworker OUT.json   (TF_CONFIG set by the caller)
Both run `model.fit` with the monitor (every_n_batches=1: in-step batch records); the
multi-worker case needs `_patch_keras_multi_worker` (Keras 3.15.1 bugs). Writes the monitor's
step-0 and final records and the reference numbers of the same model, computed on the whole
probe without any strategy, as JSON.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _patch_keras_multi_worker(model) -> None:
    """Work around two Keras 3.15.1 bugs that make `fit` fail under MultiWorkerMirroredStrategy
    with more than one worker (with or without callbacks; keras/src/backend/tensorflow/
    trainer.py). Test-only: the monitor itself needs no change.

    1. `_maybe_symbolic_build` (line 731) calls `strategy.reduce("MEAN", batch, axis=None)` on
       the whole `(x, y)` batch; multi-worker `reduce` cannot take a nest ("Attempt to convert
       a value (PerReplica...) with an unsupported type ... to a Tensor"). Here the build uses
       the first local shard of each leaf (only shapes and dtypes matter).
    2. `reduce_per_replica` (line 841) reduces the step's logs with
       `strategy.reduce("MEAN", v, axis=0)`; the logs are scalars ("Invalid reduction dimension
       0 for input with 0 dimensions", tensorflow/tensorflow#72388). Here they are averaged
       across replicas only (axis=None).
    """
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    strategy = model.distribute_strategy

    def local(v):
        if isinstance(v, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(v)[0]
        return v

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(local, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    object.__setattr__(model, "_maybe_symbolic_build", maybe_symbolic_build)

    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    trainer.reduce_per_replica = reduce_per_replica


def main(kind: str, out: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if kind == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras
    import numpy as np

    from keras_initlab.callbacks import VarianceMonitor

    rng = np.random.default_rng(0)
    # The probe has 31 rows: the two replicas get 15 and 16, so the per-replica shares matter.
    x = rng.normal(size=(31, 5)).astype("float32")
    y = rng.normal(size=(31, 1)).astype("float32")
    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = keras.Sequential(
            [
                keras.Input((5,)),
                keras.layers.Dense(6, activation="relu"),
                keras.layers.Dense(6, activation="tanh"),
                keras.layers.Dense(1),
            ]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    weights0 = model.get_weights()
    monitor = VarianceMonitor((x, y), every_n_batches=1, alert=False)
    if kind != "mirrored":
        _patch_keras_multi_worker(model)
    model.fit(
        x[:30], y[:30], batch_size=10, epochs=1, verbose=0, shuffle=False, callbacks=[monitor]
    )
    final = model.get_weights()

    def reference(weights, x=x, y=y):
        plain = keras.Sequential.from_config(model.get_config())
        plain.build((None, 5))
        plain.set_weights(weights)
        outs, rows = [], []
        with tf.GradientTape() as tape:
            h = tf.constant(x)
            for layer in plain.layers:
                h = tf.identity(layer(h))
                tape.watch(h)
                outs.append(h)
            loss = keras.losses.MeanSquaredError()(y, h)
        grads = tape.gradient(loss, outs + [layer.kernel for layer in plain.layers])
        for i, (o, g) in enumerate(zip(outs, grads, strict=False)):
            units = np.asarray(o, np.float64).reshape(-1, o.shape[-1])  # channels: last axis
            rows.append(
                {
                    "activation_var": float(np.var(np.asarray(o, np.float64))),
                    "channel_mean_sq": float(np.mean(units.mean(axis=0) ** 2)),
                    "channel_var": float(np.mean(units.var(axis=0))),
                    "gradient_var": float(np.var(np.asarray(g, np.float64))),
                    "weight_grad_var": float(np.var(np.asarray(grads[len(outs) + i], np.float64))),
                }
            )
        return rows

    # A layer called twice with outputs of different widths (a tied embedding): a record
    # per call, from sums added across the replicas (`tests.tied_embedding`).
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from keras_initlab import measure
    from tests.tied_embedding import tied_model

    with strategy.scope():
        tied, tokens, labels = tied_model()
    tied_records = measure(tied, (tokens, labels))

    begin = [r for r in monitor.records if r["event"] == "train_begin"]
    end = [r for r in monitor.records if r["event"] == "epoch_end"]
    batch = [r for r in monitor.records if r["event"] == "batch"]
    with open(out, "w") as f:
        json.dump(
            {
                "begin": begin,
                "end": end,
                "batch_sources": sorted({r["source"] for r in batch}) or None,
                "batch_steps": sorted({r["step"] for r in batch}),
                # Step 1's in-step record: the first training batch (shuffle=False) under the
                # initial weights, split across the replicas.
                "batch1": [r for r in batch if r["step"] == 1],
                "ref_batch1": reference(weights0, x[:10], y[:10]),
                "ref_begin": reference(weights0),
                "ref_end": reference(final),
                "replicas": strategy.num_replicas_in_sync,
                "tied": {
                    "records": tied_records,
                    "table": tied.get_weights()[0].tolist(),
                    "tokens": tokens.tolist(),
                    "labels": labels.tolist(),
                },
            },
            f,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
