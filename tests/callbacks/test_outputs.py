"""Records out: CSV, DataFrame, Keras logs, TensorBoard, plots (Agg), mixed precision."""

from __future__ import annotations

import csv
import io
import math

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


def test_to_csv_takes_a_path_or_a_text_file_and_names_anything_else(trained, tmp_path):
    from keras_initlab import measure

    model, x, y = trained
    monitor = VarianceMonitor((x, y), alert=False)
    monitor.records = measure(model, x)
    monitor.to_csv(str(tmp_path / "r.csv"))
    text = io.StringIO()
    monitor.to_csv(text)
    assert not text.closed  # the caller's file stays open
    assert text.getvalue().replace("\r\n", "\n") == (tmp_path / "r.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text.getvalue())))
    assert [r["layer"] for r in rows] == ["h", "r", "o"]
    with open(tmp_path / "f.csv", "w", newline="") as f:
        monitor.to_csv(f)
    assert (tmp_path / "f.csv").read_text() == (tmp_path / "r.csv").read_text()
    allowed = r"Argument `path` must be a str or os\.PathLike path, or a text file object"
    for bad in (123, None, b"r.csv"):
        with pytest.raises(TypeError, match=rf"{allowed}.*Received: path={bad!r}"):
            monitor.to_csv(bad)
    with pytest.raises(TypeError, match=rf"{allowed} open for writing \(not a binary one\)"):
        monitor.to_csv(io.BytesIO())


def test_plot_variance_names_what_is_not_a_monitor_or_records(trained):
    model = trained[0]
    allowed = (
        r"Argument `monitor_or_records` must be a VarianceMonitor or its `records` "
        r"\(a list of record dicts"
    )
    with pytest.raises(TypeError, match=rf"{allowed}.*of type Sequential\. A model goes in "):
        plot_variance(model)
    with pytest.raises(TypeError, match=r"model goes in the `model=` argument"):
        plot_variance(model, model=model)
    record = {"layer": "h", "step": 0, "activation_var": 1.0}
    for bad, detail in [
        (3, "monitor_or_records=3 of type int"),
        ("records", "monitor_or_records='records' of type str"),
        (record, "of type dict \\(one record: pass a list of records\\)"),
        ([record, 2.0], "item 1 is of type float, not a dict"),
    ]:
        with pytest.raises(TypeError, match=rf"{allowed}.*{detail}"):
            plot_variance(bad)


def _cell_colors(figure, ax, cells):
    """The RGBA pixel drawn at the centre of each (row, column) cell of ``ax``'s image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())
    colors = []
    for row, column in cells:
        px, py = ax.transData.transform((column, row))
        colors.append(tuple(pixels[round(pixels.shape[0] - py), round(px)]))
    return colors


def test_heatmap_draws_a_non_finite_value_apart_from_no_record():
    from matplotlib.colors import to_rgba

    from keras_initlab.callbacks._plot import (
        NO_RECORD_COLOR,
        NO_RECORD_NOTE,
        NON_FINITE_COLOR,
        NON_FINITE_NOTE,
    )

    rows = [
        {
            "layer": layer,
            "step": step,
            "event": "batch",
            "source": "probe",
            "activation_var": math.nan if (layer, step) == ("b", 1) else 10.0 ** (i + step),
            "gradient_var": 1.0,
        }
        for step in (0, 1, 2)
        for i, layer in enumerate("abc")
        if (layer, step) != ("c", 1)  # c has no record at step 1
    ]
    figure = plot_variance(rows)["heatmap"]
    ax = figure.axes[0]
    values = ax.images[0].get_array()
    assert values.mask[1, 1]  # NaN: masked, drawn in the colormap's "bad" colour
    assert values.mask[2, 1]  # no record: masked too, and covered by the overlay
    assert not values.mask[0, 1]
    overlay = ax.images[1].get_array()  # covers the cells without a record, only those
    assert np.argwhere(~overlay.mask).tolist() == [[2, 1]]
    nan_cell, missing_cell, finite_cell = _cell_colors(figure, ax, [(1, 1), (2, 1), (0, 1)])
    colors = (NON_FINITE_COLOR, NO_RECORD_COLOR)
    rgba = [tuple(round(255 * c) for c in to_rgba(color)) for color in colors]
    assert [nan_cell, missing_cell] == rgba
    assert len({nan_cell, missing_cell, finite_cell}) == 3
    # gradient_var: every record finite, c's missing cell blank all the same
    assert _cell_colors(figure, figure.axes[1], [(2, 1)]) == rgba[1:]
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == [NON_FINITE_NOTE, NO_RECORD_NOTE]
    handles = [to_rgba(p.get_facecolor()) for p in figure.legends[0].get_patches()]
    assert handles == [to_rgba(NON_FINITE_COLOR), to_rgba(NO_RECORD_COLOR)]


def test_mixed_float16_statistics_match_float32(trained):
    _, x, y = trained
    keras.utils.set_random_seed(0)  # the weights (an overflowing step would be skipped)
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
            # Every step applied: the loss scale skipped none for an overflow (its step's
            # gradient would be non-finite, a different number, not a rounding).
            assert int(model.optimizer.iterations.numpy()) == len(x) // 8
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


def test_in_step_records_keep_their_batch_when_the_loss_scale_skips_a_step(trained):
    """A `LossScaleOptimizer` does not count a step it skips for an overflow; each in-step
    record is still that batch's (its ring-buffer row follows the steps run, not the
    optimizer's count): the hidden layer's variance is NumPy's on that batch."""
    _, x, _ = trained
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = keras.Sequential(
            [keras.Input((4,)), L.Dense(8, activation="tanh", name="h"), L.Dense(1, name="o")]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        y = np.full((len(x), 1), 3e3, "float32")  # dL/dy * 2^15 overflows float16
        monitor = VarianceMonitor((x, y), every_n_batches=1, alert=False)
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[monitor])
        skipped = len(x) // 4 - int(model.optimizer.iterations.numpy())
        layer = model.get_layer("h")
    finally:
        keras.config.set_dtype_policy("float32")
    assert skipped > 0  # the case under test happened
    records = [r for r in monitor.records if r["source"] == "in_step" and r["layer"] == "h"]
    assert [r["step"] for r in records] == list(range(1, len(x) // 4))
    for r in records:
        batch = x[4 * (r["step"] - 1) : 4 * r["step"]]
        h = np.asarray(layer(batch), np.float64)
        np.testing.assert_allclose(r["activation_var"], h.var(), rtol=8 * 2.0**-11)


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
