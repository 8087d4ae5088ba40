"""Watch a fit: VarianceMonitor records, CSV, and the heatmap / depth-profile plots.

Trains a 6-layer ReLU MLP on the embedded 8x8 digits with Xavier initialization (which
shrinks ReLU activations with depth), records every 10 optimizer steps, and writes
``monitor_heatmap.png``, ``monitor_profile.png`` and ``monitor_records.csv`` into the folder
given as the first argument (default: the current folder).

Run: python examples/monitor_fit.py [OUTPUT_FOLDER]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import sys
from pathlib import Path

import keras

import keras_initlab
from keras_initlab.callbacks import VarianceMonitor, plot_variance
from keras_initlab.compare.datasets import load_dataset

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    data = load_dataset("digits")
    model = keras.Sequential(
        [keras.Input((64,))]
        + [keras.layers.Dense(64, activation="relu") for _ in range(6)]
        + [keras.layers.Dense(10)]
    )
    keras_initlab.initialize(model, "xavier_normal", seed=0)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    monitor = VarianceMonitor(
        (data.x_test[:256], data.y_test[:256]), every_n_batches=10, alert=False
    )
    model.fit(data.x_train, data.y_train, epochs=2, batch_size=64, verbose=0, callbacks=[monitor])
    figures = plot_variance(monitor)
    figures["heatmap"].savefig(out / "monitor_heatmap.png", dpi=100)
    figures["profile"].savefig(out / "monitor_profile.png", dpi=100)
    monitor.to_csv(out / "monitor_records.csv")
    steps = sorted({r["step"] for r in monitor.records})
    print(f"{len(monitor.records)} records at steps {steps}")
    for r in (r for r in monitor.records if r["step"] == 0):
        print(
            f"step 0 {r['layer']:>8}: activation var {r['activation_var']:.4g}, "
            f"gradient var {r['gradient_var']:.4g}, distinct units {r['distinct_units']}"
        )
    print(
        f"wrote {out / 'monitor_heatmap.png'}, {out / 'monitor_profile.png'}, "
        f"{out / 'monitor_records.csv'}"
    )
