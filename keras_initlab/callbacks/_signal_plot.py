"""`plot_signal`: the signal propagation plot of Brock et al. 2021, from measured records.

Brock, De and Smith 2021 (Characterizing signal propagation to close the performance gap in
unnormalized ResNets) draw, per residual block at initialization, three statistics of the
activations over a batch: the residual stream's average squared channel mean (a growing
mean is a signal the channels share: the network output loses its dependence on the
input), the stream's average channel variance (it should grow slowly, linearly in depth for
a normalized ResNet), and the residual branch's average channel variance (at the end of the
branch, just before the sum: it should stay near a fixed value, showing that the branch is
not suppressed or exploding). The records of `measure()` and `VarianceMonitor` carry the two
channel columns (``channel_mean_sq``, ``channel_var``); the blocks come from
`keras_initlab.residual_blocks`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from keras_initlab.callbacks._plot_records import (
    MAX_LAYER_TICKS,
    _of_source,
    _records_of,
    set_layer_ticks,
)
from keras_initlab.model.legacy import check_not_keras2
from keras_initlab.model.residual import ResidualBlock, ResidualReport, residual_blocks

_CHANNEL_KEYS = ("channel_mean_sq", "channel_var")
# Panels of the plot: (title, record key, where: "stream" at the Add, "branch" at its input).
_PANELS = (
    ("stream: average squared channel mean", "channel_mean_sq", "stream"),
    ("stream: average channel variance", "channel_var", "stream"),
    ("residual branch: average channel variance", "channel_var", "branch"),
)


def _value(record: dict[str, Any] | None, key: str) -> float:
    value = None if record is None else record.get(key)
    return float(value) if isinstance(value, (int, float)) else math.nan


def _predicted(row: Any, key: str) -> float:
    """The prediction of a channel column from a `PropagateRow`: its ``channel_var`` is the
    variance of the channel means, so ``channel_mean_sq = mean^2 + channel_var`` and the
    average within-channel variance is ``activation_var - channel_var``."""
    if row is None:
        return math.nan
    if key == "channel_mean_sq":
        return float(row.activation_mean) ** 2 + float(row.channel_var)
    return float(row.activation_var) - float(row.channel_var)


def _snapshot(
    records: list[dict[str, Any]], step: int | None, channels: bool = True
) -> dict[str, dict[str, Any]]:
    """The records of one step by layer (the last record of a layer at that step wins);
    ``channels``: they must carry the channel statistics."""
    steps = sorted({int(r["step"]) for r in records})
    chosen = steps[0] if step is None else step
    if isinstance(chosen, bool) or not isinstance(chosen, numbers.Integral) or chosen not in steps:
        raise ValueError(
            f"Argument `step` must be a recorded step {steps}. Received: step={step!r}"
        )
    by_layer = {r["layer"]: r for r in records if int(r["step"]) == chosen}
    if channels and not any(
        by_layer[name].get(key) is not None for name in by_layer for key in _CHANNEL_KEYS
    ):
        raise ValueError(
            "Argument `monitor_or_records` must carry the channel statistics "
            f"({', '.join(_CHANNEL_KEYS)}): probe records of `measure()` or a VarianceMonitor "
            "do; in-step records do not. Received: records without them at step "
            f"{chosen} (source {records[0].get('source', 'probe')!r})"
        )
    return by_layer


def _blocks_of(model: Any, blocks: Any) -> list[ResidualBlock]:
    if blocks is not None:
        if isinstance(blocks, ResidualReport):
            return list(blocks.rows)
        if isinstance(blocks, Sequence) and all(isinstance(b, ResidualBlock) for b in blocks):
            return list(blocks)
        raise TypeError(
            "Argument `blocks` must be the result of `keras_initlab.residual_blocks(model)` or "
            f"a list of its ResidualBlock rows. Received: blocks={blocks!r}"
        )
    if model is None:
        return []
    import keras

    check_not_keras2("model", model)
    if not isinstance(model, keras.Model):
        raise TypeError(f"Argument `model` must be a Keras model. Received: model={model!r}")
    return list(residual_blocks(model).rows)


def _stamped(
    series: dict[str, Any], records: list[dict[str, Any]], by_layer: dict[str, Any]
) -> dict[str, Any]:
    """``series`` with the ``source`` and ``step`` of the records drawn."""
    series["source"] = str(records[0].get("source", "probe"))
    series["step"] = int(next(iter(by_layer.values()))["step"])
    return series


def _branch_name(block: ResidualBlock, by_layer: dict[str, Any]) -> str:
    """The record that stands for a branch's output: its ``branch_output``, or where that is
    no recorded layer (a dropout after the last kernel, an ``x * gate`` operation) the
    branch's last kernel."""
    if block.branch_output in by_layer or block.last_kernel not in by_layer:
        return block.branch_output
    return block.last_kernel


def signal_series(
    monitor_or_records: Any,
    model: Any = None,
    *,
    blocks: Any = None,
    step: int | None = None,
    source: str | None = None,
    prediction: Any = None,
) -> dict[str, Any]:
    """The numbers `plot_signal` draws, without drawing them.

    Returns ``{"x": labels, "by": "block" | "layer", "stream_mean_sq": [...],
    "stream_var": [...], "branch_var": [...] (per block; [] per layer),
    "predicted": {same three keys} (only with ``prediction``), "missing": names}``: per
    residual block (in graph order) the Add's ``channel_mean_sq`` and ``channel_var`` and
    the branch output's ``channel_var`` (the last kernel's where the branch output is not a
    recorded layer: a dropout after it); without residual blocks, per recorded layer. A
    value whose layer has no record (an ``x + y`` operation, a branch output that is not a
    measured layer) is NaN and its name is in ``missing``.
    """
    records = _of_source(_records_of(monitor_or_records), source)
    by_layer = _snapshot(records, step)
    rows = _blocks_of(model, blocks)
    if prediction is not None and not hasattr(prediction, "by_layer"):
        raise TypeError(
            "Argument `prediction` must be the result of `keras_initlab.propagate(model)`. "
            f"Received: prediction={prediction!r}"
        )
    predicted = prediction.by_layer() if prediction is not None else {}
    if rows:
        stream, branch = [b.add for b in rows], [_branch_name(b, by_layer) for b in rows]
    else:
        stream, branch = list(by_layer), []
    missing = [name for name in dict.fromkeys(stream + branch) if name not in by_layer]
    if len(missing) == len(set(stream + branch)):
        raise ValueError(
            "Argument `monitor_or_records` must hold records of the residual blocks' Adds or "
            f"branch outputs. Received: records of {sorted(by_layer)[:8]}..., none of "
            f"{missing[:8]} (an `x + y` operation is not a layer: use `keras.layers.Add`, or "
            "pass `layers=` to measure the branch outputs)"
        )
    series: dict[str, Any] = {"x": stream, "by": "block" if rows else "layer"}
    series["stream_mean_sq"] = [_value(by_layer.get(n), "channel_mean_sq") for n in stream]
    series["stream_var"] = [_value(by_layer.get(n), "channel_var") for n in stream]
    series["branch_var"] = [_value(by_layer.get(n), "channel_var") for n in branch]
    if prediction is not None:
        series["predicted"] = {
            "stream_mean_sq": [_predicted(predicted.get(n), "channel_mean_sq") for n in stream],
            "stream_var": [_predicted(predicted.get(n), "channel_var") for n in stream],
            "branch_var": [_predicted(predicted.get(n), "channel_var") for n in branch],
        }
    series["missing"] = missing
    return _stamped(series, records, by_layer)


def plot_signal(
    monitor_or_records: Any,
    model: Any = None,
    *,
    blocks: Any = None,
    step: int | None = None,
    source: str | None = None,
    prediction: Any = None,
) -> Any:
    """The signal propagation plot (Brock et al. 2021) of measured records.

    For residual block ``b`` with sum ``x_b = x_{b-1} + f_b(x_{b-1})`` (found by
    `keras_initlab.residual_blocks`), with ``m_c`` and ``v_c`` the mean and variance of
    channel ``c`` (the last axis) over the batch and all positions:

        stream mean:      mean_c m_c^2        of x_b       (record ``channel_mean_sq``)
        stream variance:  mean_c v_c          of x_b       (record ``channel_var``)
        branch variance:  mean_c v_c          of f_b(...)  (``channel_var`` of the
                                                            block's ``branch_output``)

    on a log scale against the block index. A healthy normalized ResNet keeps the mean
    small, the stream variance growing about linearly and the branch variance flat;
    a mean that grows with depth, or a branch variance that collapses or explodes, is what
    the plot is for. A model without residual blocks gets the two stream panels per
    recorded layer. With ``prediction``, the prediction of `keras_initlab.propagate` is
    drawn dashed over the measurement (its ``channel_var`` is the variance of the channel
    means: ``mean_sq = activation_mean^2 + channel_var``, within-channel variance
    ``activation_var - channel_var``); propagate it with the probe's input moments.

    Args:
        monitor_or_records: a `VarianceMonitor` or records (of it or of `measure()`).
        model: the measured model, to find its residual blocks.
        blocks: the blocks instead of ``model`` (``residual_blocks(model)`` or its rows).
        step: the recorded step drawn (default: the first, the initialization).
        source: ``"probe"`` (default) or another recorded source carrying the columns.
        prediction: ``keras_initlab.propagate(model)`` to overlay, or None.

    Returns:
        A matplotlib `Figure` (no pyplot state) with one panel per quantity; the numbers
        drawn are `signal_series` of the same arguments. A point whose layer has no record
        is left out (NaN) and counted in the title.

    Example:
    >>> import keras, numpy as np
    >>> from keras_initlab import measure
    >>> x = keras.Input((8, 8, 4))
    >>> h = x
    >>> for i in range(3):
    ...     b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name=f"c{i}")(h)
    ...     b = keras.layers.BatchNormalization(name=f"bn{i}")(b)
    ...     h = keras.layers.Add(name=f"add{i}")([h, b])
    >>> model = keras.Model(x, h)
    >>> probe = np.random.default_rng(0).standard_normal((16, 8, 8, 4)).astype("float32")
    >>> figure = plot_signal(measure(model, probe), model)
    >>> [ax.get_yscale() for ax in figure.axes]
    ['log', 'log', 'log']
    """
    from matplotlib.figure import Figure

    series = signal_series(
        monitor_or_records, model, blocks=blocks, step=step, source=source, prediction=prediction
    )
    panels = [p for p in _PANELS if p[2] == "stream" or series["by"] == "block"]
    figure = Figure(figsize=(5.0 * len(panels), 4.0), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    names = series["x"]
    marker = "o" if len(names) <= MAX_LAYER_TICKS else None
    missing = f"; {len(series['missing'])} not recorded" if series["missing"] else ""
    for ax, (title, key, where) in zip(axes, panels, strict=True):
        name = {"channel_mean_sq": "stream_mean_sq", "channel_var": "stream_var"}[key]
        name = "branch_var" if where == "branch" else name
        ax.plot(range(len(names)), series[name], marker=marker, label="measured")
        if "predicted" in series:
            ax.plot(range(len(names)), series["predicted"][name], linestyle="--", label="predicted")
            ax.legend()
        ax.set_yscale("log")
        set_layer_ticks(ax, names)
        ax.set_xlabel(f"{series['by']} ({len(names)})")
        ax.set_title(f"{title}\n({series['source']}, step {series['step']}{missing})", fontsize=9)
    return figure


_BRANCHES = (("attention", "attention branch", "^"), ("other", "other branch (FFN, MLP)", "s"))


def block_series(
    monitor_or_records: Any,
    model: Any = None,
    *,
    blocks: Any = None,
    step: int | None = None,
    source: str | None = None,
    quantities: Sequence[str] = ("activation_var", "gradient_var"),
) -> dict[str, Any]:
    """The numbers `plot_blocks` draws: per residual sum (graph order), each quantity of
    the stream at the sum and of the branch that feeds it, attention branches (a branch
    with attention scores, `ResidualBlock.scores`) apart from the others.

    Returns ``{"x": sums, "kind": ["attention" | "other", ...], quantity: {"stream": [...],
    "attention": [...], "other": [...]}, "missing": names, "source", "step"}``; a value
    whose record is missing, or a branch of the other kind, is NaN. The branch's value is
    its output's record, or its last kernel's where the output is not a recorded layer.

    Raises:
        ValueError: no residual blocks, or records of none of their sums.
    """
    records = _of_source(_records_of(monitor_or_records), source)
    by_layer = _snapshot(records, step, channels=False)
    rows = _blocks_of(model, blocks)
    if not rows:
        raise ValueError(
            "Argument `model` (or `blocks`) must have residual sums: the per-block plot draws "
            "the stream at each. Received: no residual block (keras_initlab.residual_blocks)"
        )
    stream = [b.add for b in rows]
    branch = [_branch_name(b, by_layer) for b in rows]
    kinds = ["attention" if b.scores else "other" for b in rows]
    missing = [n for n in dict.fromkeys(stream + branch) if n not in by_layer]
    if all(n in missing for n in stream):
        raise ValueError(
            "Argument `monitor_or_records` must hold records of the residual sums. Received: "
            f"records of none of {stream[:8]} (an `x + y` operation is not a layer: use "
            "`keras.layers.Add`, or pass `layers=` to measure them)"
        )
    series: dict[str, Any] = {"x": stream, "kind": kinds, "missing": missing}
    for key in quantities:
        series[key] = {"stream": [_value(by_layer.get(n), key) for n in stream]}
        for kind, _, _ in _BRANCHES:
            series[key][kind] = [
                _value(by_layer.get(n), key) if k == kind else math.nan
                for n, k in zip(branch, kinds, strict=True)
            ]
    return _stamped(series, records, by_layer)


def plot_blocks(
    monitor_or_records: Any,
    model: Any = None,
    *,
    blocks: Any = None,
    step: int | None = None,
    source: str | None = None,
    quantities: Sequence[str] = ("activation_var", "gradient_var"),
) -> Any:
    """Per residual sum: the stream and the branches that feed it, one panel per quantity.

    A transformer's profile drawn per layer zig-zags between its query, key, value and FFN
    rows; drawn here, its stream is one line through the sums (two per transformer block:
    attention, then FFN) and each branch a point at the sum it feeds: ``Var(x_b)`` of the
    stream ``x_b = x_{b-1} + f_b(x_{b-1})`` and ``Var(f_b)`` of the branch, attention
    branches (triangles) apart from the others (squares), on a log scale. A stream that
    grows linearly with depth (pre-LN) is a straight line on a log axis of the sum index
    only at its start; one that compounds is straight against the index itself.

    Args:
        monitor_or_records: a `VarianceMonitor` or records (of it or of `measure()`).
        model: the measured model, to find its residual blocks.
        blocks: the blocks instead of ``model`` (``residual_blocks(model)`` or its rows).
        step: the recorded step drawn (default: the first, the initialization).
        source: ``"probe"`` (default) or another recorded source.
        quantities: record keys to draw.

    Returns:
        A matplotlib `Figure` (no pyplot state); the numbers are `block_series` of the same
        arguments. The sum axis is labelled per sum up to `MAX_LAYER_TICKS` sums, else at
        the first sum of each block (transformer layer) shown.

    Example:
    >>> import keras, numpy as np
    >>> from keras_initlab import measure
    >>> x = keras.Input((8,))
    >>> h = x
    >>> for i in range(3):
    ...     h = keras.layers.Add(name=f"add{i}")([h, keras.layers.Dense(8, name=f"d{i}")(h)])
    >>> model = keras.Model(x, h)
    >>> probe = np.random.default_rng(0).standard_normal((16, 8)).astype("float32")
    >>> figure = plot_blocks(measure(model, probe), model, quantities=("activation_var",))
    >>> [line.get_label() for line in figure.axes[0].get_lines()][:2]
    ['stream (at each sum)', 'other branch (FFN, MLP)']
    """
    from matplotlib.figure import Figure

    series = block_series(
        monitor_or_records, model, blocks=blocks, step=step, source=source, quantities=quantities
    )
    names = series["x"]
    figure = Figure(figsize=(6.0 * len(quantities), 4.5), layout="constrained")
    axes = figure.subplots(1, len(quantities), squeeze=False)[0]
    index = range(len(names))
    missing = f"; {len(series['missing'])} not recorded" if series["missing"] else ""
    for ax, key in zip(axes, quantities, strict=True):
        marker = "o" if len(names) <= MAX_LAYER_TICKS else None
        ax.plot(index, series[key]["stream"], marker=marker, label="stream (at each sum)")
        for kind, label, shape in _BRANCHES:
            if any(k == kind for k in series["kind"]):
                ax.plot(index, series[key][kind], linestyle="none", marker=shape, label=label)
        ax.set_yscale("log")
        set_layer_ticks(ax, names)
        ax.set_xlabel(f"residual sum ({len(names)})")
        ax.set_title(f"{key} per block\n({series['source']}, step {series['step']}{missing})")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    return figure
