"""`plot_blocks` (and `plot_variance(..., model=)`'s ``"blocks"`` figure): a transformer
drawn per residual sum, its stream and its attention and FFN branches.

References: the records of `measure()` at each sum and branch output (as `residual_blocks`
finds them), compared exactly (the plot copies numbers); the rendered figure's text boxes
against the figure's own box, at 2 and 100 transformer blocks (labels never clipped).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from keras_initlab import initialize, measure, residual_blocks
from keras_initlab.callbacks import plot_signal, plot_variance
from keras_initlab.callbacks._signal_plot import block_series, plot_blocks
from keras_initlab.model.residual import ResidualBlock

L = keras.layers
T, WIDTH = 8, 16


def _transformer(blocks=3):
    x = keras.Input((T, WIDTH))
    h = x
    for b in range(blocks):
        n = L.LayerNormalization(name=f"ln{b}a")(h)
        h = L.Add(name=f"add{b}a")([h, L.MultiHeadAttention(2, 8, name=f"mha{b}")(n, n)])
        f = L.Dense(2 * WIDTH, activation="relu", name=f"in{b}")(L.LayerNormalization()(h))
        h = L.Add(name=f"add{b}f")([h, L.Dense(WIDTH, name=f"out{b}")(f)])
    return keras.Model(x, L.Dense(3, name="head")(L.GlobalAveragePooling1D()(h)))


def test_the_stream_and_each_branch_are_drawn_from_the_records():
    model = _transformer()
    initialize(model, "he_normal", seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, T, WIDTH)).astype("float32")
    model.compile(loss="sparse_categorical_crossentropy")
    records = measure(model, (x, rng.integers(0, 3, 16)))
    by_layer = {r["layer"]: r for r in records}
    blocks = list(residual_blocks(model))
    figure = plot_blocks(records, model)
    for ax, key in zip(figure.axes, ("activation_var", "gradient_var"), strict=True):
        stream, attention, other = (np.asarray(line.get_ydata(), float) for line in ax.lines)
        np.testing.assert_array_equal(stream, [by_layer[b.add][key] for b in blocks])
        for b, a, o in zip(blocks, attention, other, strict=True):
            (drawn, empty) = (a, o) if b.scores else (o, a)
            # MultiHeadAttention's own output has no record: its output projection's stands
            name = b.branch_output if b.branch_output in by_layer else b.last_kernel
            assert drawn == by_layer[name][key]
            assert math.isnan(empty)
    assert [bool(b.scores) for b in blocks] == [True, False] * 3
    assert "blocks" in plot_variance(records, model=model)


def _synthetic(layers):
    """Records and blocks of a causal LM's backbone with ``layers`` transformer layers: two
    sums each, the attention branch ending in a dropout with no record (its last kernel's
    record stands for it)."""
    blocks, records = [], []
    for i in range(layers):
        for part in ("attention", "ffn"):
            prefix = f"gpt2_backbone/transformer_layer_{i}"
            add = f"{prefix}/add" + ("" if part == "attention" else "_1")
            kernel = "self_attention/attention_output" if part == "attention" else "ffn_out"
            last = f"{prefix}/{kernel}"
            scores = (f"{prefix}/self_attention/query",) if part == "attention" else ()
            blocks.append(
                ResidualBlock(
                    add, "-", f"{prefix}/{part}_dropout", (last,), (), last, None, scores=scores
                )
            )
            for name, value in ((add, 1.0 + len(records)), (last, 0.5)):
                records.append(
                    {
                        "layer": name,
                        "step": 0,
                        "source": "probe",
                        "activation_var": value,
                        "gradient_var": 1.0 / value,
                        "channel_mean_sq": 0.01,
                        "channel_var": value,
                    }
                )
    return records, blocks


def _clipped(figure):
    """The texts of ``figure`` (tick labels, titles, axis labels, legends) that cross its
    edge once drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = figure.bbox
    texts = list(figure.texts)
    for ax in figure.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            ticks = axis.get_major_ticks() + axis.get_minor_ticks()
            texts += [
                t.label1 for t in ticks if t.label1.get_visible() and low <= t.get_loc() <= high
            ]
        legend = ax.get_legend()
        texts += [] if legend is None else legend.get_texts()
    out = []
    for text in texts:
        if not text.get_text():
            continue
        extent = text.get_window_extent(renderer)
        inside = (
            extent.x0 >= box.x0 - 0.5
            and extent.x1 <= box.x1 + 0.5
            and extent.y0 >= box.y0 - 0.5
            and extent.y1 <= box.y1 + 0.5
        )
        if not inside:
            out.append(text.get_text())
    return out


@pytest.mark.parametrize("layers", [2, 100])
def test_no_label_is_clipped_at_2_and_100_blocks(layers):
    records, blocks = _synthetic(layers)
    series = block_series(records, blocks=blocks)
    assert series["activation_var"]["attention"][0] == 0.5  # the last kernel's record
    for figure in (plot_blocks(records, blocks=blocks), plot_signal(records, blocks=blocks)):
        assert _clipped(figure) == []
        ticks = [t.get_text() for t in figure.axes[0].get_xticklabels()]
        assert len(ticks) <= 40
        if layers > 20:  # labelled per transformer layer, not per sum
            assert ticks[0] == "transformer_layer_0"
