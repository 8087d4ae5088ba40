"""Records out: CSV, DataFrame, Keras logs, TensorBoard, plots (Agg), mixed precision."""

from __future__ import annotations

import csv
import io

import keras
import matplotlib
import numpy as np
import pytest

from keras_initlab.callbacks import RECORD_KEYS, VarianceMonitor, plot_variance

matplotlib.use("Agg")
L = keras.layers


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(8, activation="tanh", name="h"),
            L.Dense(8, activation="relu", name="r"),
            L.Dense(1, name="o"),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model, x, y


def test_csv_dataframe_logs_and_tensorboard(trained, tmp_path):
    model, x, y = trained
    monitor = VarianceMonitor((x, y), log_dir=str(tmp_path / "tb"), log_summary=True, alert=False)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor])
    assert {"vm_activation_var_ratio", "vm_gradient_var_ratio", "vm_min_distinct_units"} <= set(
        history.history
    )
    assert history.history["vm_min_distinct_units"] == [1.0, 1.0]  # the 1-unit output layer

    frame = monitor.to_dataframe()
    assert list(frame.columns) == list(RECORD_KEYS)
    assert len(frame) == 9
    monitor.to_csv(tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    for row, record in zip(rows, monitor.records, strict=False):
        assert float(row["activation_var"]) == record["activation_var"]
        assert row["weight_var"] != ""
        assert (row["saturation_fraction"] == "") == (record["saturation_fraction"] is None)

    import tensorflow as tf

    tags = set()
    for path in (tmp_path / "tb").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags |= {v.tag for v in event.summary.value}
    assert "variance_monitor/h/activation_var" in tags
    assert "variance_monitor/h/kernel" in tags


def test_plots_under_agg(trained):
    model, x, y = trained
    monitor = VarianceMonitor((x, y), every_n_batches=1, in_step=False, alert=False)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    first = monitor.records[0]["step"]
    figures = plot_variance(monitor, steps=[first, first + 2])
    assert set(figures) == {"heatmap", "profile"}
    for figure in figures.values():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        assert buffer.getvalue()[:4] == b"\x89PNG"
    image = figures["heatmap"].axes[0].images[0].get_array()
    assert image.shape == (3, 3)  # 3 layers x records at 3 steps
    np.testing.assert_allclose(
        image[0, 0], np.log10(monitor.records[0]["activation_var"]), rtol=1e-12
    )
    with pytest.raises(ValueError, match="steps"):
        plot_variance(monitor.records, steps=[first + 7])
    with pytest.raises(ValueError, match="at least one record"):
        plot_variance([])


def test_mixed_float16_statistics_match_float32(trained):
    _, x, y = trained
    weights = None
    results = {}
    for policy in ("float32", "mixed_float16"):
        keras.config.set_dtype_policy(policy)
        try:
            model = keras.Sequential(
                [
                    keras.Input((4,)),
                    L.Dense(8, activation="tanh", name="h"),
                    L.Dense(1, name="o", dtype="float32"),
                ]
            )
            model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
            if weights is None:
                weights = model.get_weights()
            model.set_weights(weights)
            # every_n_batches=1: the in-step taps (inside the loss-scaled training step) too
            monitor = VarianceMonitor((x, y), every_n_batches=1, alert=False)
            model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[monitor])
            results[policy] = monitor.records
        finally:
            keras.config.set_dtype_policy("float32")
    # float16 keeps 11 significant bits (unit roundoff u = 2^-11); inputs, weights, the matmul
    # result and tanh are each rounded once, so each element is within ~4u relative and a
    # variance within ~8u = 0.4%. A missing unscaling would be off by the loss scale (2^15).
    tolerance = 8 * 2.0**-11
    assert len(results["float32"]) == len(results["mixed_float16"]) > 0
    for a, b in zip(results["float32"], results["mixed_float16"], strict=True):
        assert (a["step"], a["source"], a["layer"]) == (b["step"], b["source"], b["layer"])
        for key in ("activation_var", "gradient_var", "weight_grad_var"):
            if a[key] is not None:
                np.testing.assert_allclose(b[key], a[key], rtol=tolerance, err_msg=key)
    assert {r["source"] for r in results["mixed_float16"]} == {"probe", "in_step"}


def test_plots_never_mix_sources(trained):
    model, x, y = trained
    monitor = VarianceMonitor((x, y), every_n_batches=1, alert=False)  # in-step + probe
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor])
    by_source = {}
    for r in monitor.records:
        by_source.setdefault(r["source"], set()).add((r["step"], r["event"]))
    assert set(by_source) == {"probe", "in_step"}
    for source in ("probe", "in_step"):
        image = plot_variance(monitor, source=source)["heatmap"].axes[0].images[0].get_array()
        assert image.shape[1] == len(by_source[source]), source
    default = plot_variance(monitor)["heatmap"].axes[0].images[0].get_array()
    assert default.shape[1] == len(by_source["probe"])
    with pytest.raises(ValueError, match="source"):
        plot_variance(monitor, source="train_batch")


@pytest.mark.parametrize("depth", [10, 120, 500])
def test_deep_models_get_readable_layer_labels(depth):
    """Keras-style block names (MobileNetV2: block_<i>_<part>) label blocks, not layers."""
    names = [f"block_{i // 4}_{('expand', 'dw', 'project', 'bn')[i % 4]}" for i in range(depth)]
    rows = [
        {
            "layer": n,
            "step": 0,
            "event": "train_begin",
            "source": "probe",
            "activation_var": 1.0 + i,
            "gradient_var": 1.0,
        }
        for i, n in enumerate(names)
    ]
    figures = plot_variance(rows)
    labels = [t.get_text() for t in figures["heatmap"].axes[0].get_yticklabels()]
    assert 2 <= len(labels) <= 40
    if depth <= 40:
        assert labels == names
    else:
        assert all(label.startswith("block_") and label.count("_") == 1 for label in labels)
    assert len(figures["profile"].axes[0].get_xticklabels()) <= 40
