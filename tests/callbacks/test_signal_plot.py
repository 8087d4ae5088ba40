"""`plot_signal` (and `plot_variance(..., model=)`): the signal propagation plot of Brock et
al. 2021 draws the records' own channel statistics, per residual block or per layer.

Reference: the records of `measure()` at each block's Add and branch output (as found by
`residual_blocks`), and the formulas of the prediction overlay applied to `propagate()`'s
rows. Drawn data are compared exactly: the plot copies numbers, it computes none.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_initlab import HeNormal, initialize, measure, propagate, residual_blocks
from keras_initlab.callbacks import VarianceMonitor, plot_signal, plot_variance

L = keras.layers


def resnet_like(seed: int = 0) -> keras.Model:
    """A Conv/BN/ReLU stem and three residual blocks, the second with a projection shortcut."""
    init = iter(HeNormal(seed=seed + i) for i in range(20))

    def conv(filters, h, name, stride=1, kernel=3):
        h = L.Conv2D(filters, kernel, stride, "same", kernel_initializer=next(init), name=name)(h)
        return L.BatchNormalization(name=f"{name}_bn")(h)

    x = keras.Input((32, 32, 3))
    h = L.ReLU(name="stem_relu")(conv(8, x, "stem"))
    for i, (filters, stride) in enumerate([(8, 1), (16, 2), (16, 1)]):
        b = L.ReLU(name=f"b{i}_relu")(conv(filters, h, f"b{i}_c1", stride))
        b = conv(filters, b, f"b{i}_c2")
        skip = conv(filters, h, f"b{i}_proj", stride, kernel=1) if stride > 1 else h
        h = L.ReLU(name=f"b{i}_out")(L.Add(name=f"b{i}_add")([skip, b]))
    out = L.Dense(10, kernel_initializer=next(init), name="head")(L.GlobalAveragePooling2D()(h))
    return keras.Model(x, out)


def _probe(shape: tuple[int, ...], n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, *shape)).astype("float32")


def _drawn(figure) -> list[list[np.ndarray]]:
    """Per panel, the y data of each line (measured first, then the prediction)."""
    return [[np.asarray(line.get_ydata(), float) for line in ax.lines] for ax in figure.axes]


def _expected(records, blocks) -> list[list[float]]:
    by_layer = {r["layer"]: r for r in records}
    return [
        [by_layer[b.add]["channel_mean_sq"] for b in blocks],
        [by_layer[b.add]["channel_var"] for b in blocks],
        [by_layer[b.branch_output]["channel_var"] for b in blocks],
    ]


@pytest.fixture(scope="module")
def mobilenet():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3))
    initialize(model, "he_normal")
    return model, measure(model, _probe((32, 32, 3)))


def test_resnet_like_blocks_draw_the_records():
    model = resnet_like()
    records = measure(model, _probe((32, 32, 3)))
    blocks = residual_blocks(model).rows
    assert [b.add for b in blocks] == ["b0_add", "b1_add", "b2_add"]
    assert [b.branch_output for b in blocks] == ["b0_c2_bn", "b1_c2_bn", "b2_c2_bn"]
    figure = plot_signal(records, model)
    drawn = _drawn(figure)
    assert [len(lines) for lines in drawn] == [1, 1, 1]
    for lines, want in zip(drawn, _expected(records, blocks), strict=True):
        np.testing.assert_array_equal(lines[0], want)
    assert all(ax.get_yscale() == "log" for ax in figure.axes)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == [b.add for b in blocks]
    # The blocks may be passed instead of the model: the same figure data.
    assert all(
        np.array_equal(a[0], b[0])
        for a, b in zip(_drawn(plot_signal(records, blocks=blocks)), drawn, strict=True)
    )


def test_mobilenet_v2_blocks_and_the_prediction_overlay(mobilenet):
    model, records = mobilenet
    blocks = residual_blocks(model).rows
    assert len(blocks) == 10  # MobileNetV2's identity-skip inverted residuals
    prediction = propagate(model)
    drawn = _drawn(plot_signal(records, model, prediction=prediction))
    rows = prediction.by_layer()
    predicted = [
        [rows[b.add].activation_mean ** 2 + rows[b.add].channel_var for b in blocks],
        [rows[b.add].activation_var - rows[b.add].channel_var for b in blocks],
        [rows[b.branch_output].activation_var - rows[b.branch_output].channel_var for b in blocks],
    ]
    for lines, want, want_predicted in zip(
        drawn, _expected(records, blocks), predicted, strict=True
    ):
        np.testing.assert_array_equal(lines[0], want)
        np.testing.assert_array_equal(lines[1], want_predicted)


def test_a_model_without_residual_blocks_is_drawn_per_layer():
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            L.Conv2D(8, 3, activation="relu", kernel_initializer=HeNormal(seed=0), name="c1"),
            L.Conv2D(8, 3, activation="relu", kernel_initializer=HeNormal(seed=1), name="c2"),
            L.GlobalAveragePooling2D(),
            L.Dense(4, kernel_initializer=HeNormal(seed=2), name="head"),
        ]
    )
    records = measure(model, _probe((16, 16, 3)))
    assert not residual_blocks(model).rows
    for figure in (plot_signal(records, model), plot_signal(records)):
        drawn = _drawn(figure)
        assert len(drawn) == 2  # no branch panel
        np.testing.assert_array_equal(drawn[0][0], [r["channel_mean_sq"] for r in records])
        np.testing.assert_array_equal(drawn[1][0], [r["channel_var"] for r in records])


def test_plot_variance_adds_the_signal_plot_of_a_monitor_given_the_model():
    model = resnet_like()
    model.compile(optimizer="sgd", loss="mse")
    x = _probe((32, 32, 3))
    y = np.zeros((16, 10), "float32")
    monitor = VarianceMonitor((x, y), alert=False)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[monitor])
    assert sorted(plot_variance(monitor)) == ["heatmap", "profile"]  # unchanged without it
    figures = plot_variance(monitor, model=model)
    assert sorted(figures) == ["blocks", "heatmap", "profile", "signal"]
    step0 = [r for r in monitor.records if r["step"] == 0]
    for lines, want in zip(
        _drawn(figures["signal"]), _expected(step0, residual_blocks(model).rows), strict=True
    ):
        np.testing.assert_array_equal(lines[0], want)
    # At the last step instead: `steps` chooses it.
    last = plot_variance(monitor, model=model, steps=[1])["signal"]
    step1 = [r for r in monitor.records if r["step"] == 1]
    want = _expected(step1, residual_blocks(model).rows)
    np.testing.assert_array_equal(_drawn(last)[0][0], want[0])


def test_bad_arguments_are_named():
    model = resnet_like()
    records = measure(model, _probe((32, 32, 3)))
    with pytest.raises(ValueError, match=r"Argument `step` must be a recorded step \[0\]"):
        plot_signal(records, model, step=3)
    with pytest.raises(TypeError, match=r"Argument `blocks` must be .*Received: blocks='b0'"):
        plot_signal(records, blocks="b0")
    with pytest.raises(TypeError, match=r"Argument `model` must be a Keras model.*model=3"):
        plot_signal(records, 3)
    with pytest.raises(TypeError, match=r"Argument `prediction` must .*prediction=1\.0"):
        plot_signal(records, model, prediction=1.0)
    without = [dict(r, channel_mean_sq=None, channel_var=None) for r in records]
    with pytest.raises(ValueError, match=r"must carry the channel statistics.*in-step"):
        plot_signal(without, model)
    others = measure(model, _probe((32, 32, 3)), layers=["stem"])
    with pytest.raises(ValueError, match=r"records of the residual blocks.*'b0_add'"):
        plot_signal(others, model)
    with pytest.raises(ValueError, match=r"at least one record"):
        plot_signal([], model)
    # the model first, in place of the records: named, and where it goes instead
    with pytest.raises(
        TypeError,
        match=r"Argument `monitor_or_records` must be a VarianceMonitor or its `records`.*"
        r"of type Functional\. A model goes in the `model=` argument",
    ):
        plot_signal(model)
