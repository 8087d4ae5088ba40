"""`plot_variance`: the layer x step heatmaps and the depth profiles of a `VarianceMonitor`.

matplotlib is imported only when a plot is made, and the figures are created with
`matplotlib.figure.Figure` (no pyplot state, no GUI backend needed: Agg-safe).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_QUANTITIES = ("activation_var", "gradient_var")
# log10 of a variance that is 0, NaN or Inf: a cell with no finite value.
_FLOOR = float("nan")
# Heatmap cells: no finite log10 (the record's variance is 0, NaN or Inf) is drawn in this
# colour (the compare report's heatmap uses it too); a layer with no record at a step (or a
# record without the statistic) is left blank in `NO_RECORD_COLOR`.
NON_FINITE_COLOR = "lightgray"
NO_RECORD_COLOR = "white"
NON_FINITE_NOTE = "recorded, no finite value (variance 0, NaN or Inf)"
NO_RECORD_NOTE = "no record at that step"
# At most this many layer labels on an axis; deeper models get block names or every k-th.
MAX_LAYER_TICKS = 40
# The block a layer belongs to, from Keras' naming in keras.applications and common code:
# "conv2_block1_1_conv" -> "conv2_block1", "block_3_expand" -> "block_3", "block1a_dwconv" ->
# "block1a", "..._stage_0_block_2_..." -> "..._stage_0_block_2", "stage3_conv" -> "stage3".
_BLOCK = re.compile(r"^(.*?(?:block|stage)_?\d+[a-z]?)(?:_|$)")


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _not_records(monitor_or_records: Any, detail: str = "") -> TypeError:
    """The TypeError of a `monitor_or_records` that is neither a monitor nor its records."""
    import keras

    if isinstance(monitor_or_records, keras.Model):
        detail += (
            ". A model goes in the `model=` argument, after the monitor or its records: "
            "`plot_variance(monitor, model=model)`, `plot_signal(records, model)`"
        )
    return TypeError(
        "Argument `monitor_or_records` must be a VarianceMonitor or its `records` (a list of "
        "record dicts, as `measure()` also returns). Received: "
        f"monitor_or_records={_short_repr(monitor_or_records)} of type "
        f"{type(monitor_or_records).__name__}{detail}"
    )


def _records_of(monitor_or_records: Any) -> list[dict[str, Any]]:
    """The records of a `VarianceMonitor` (its ``records``), or a list of record dicts.

    Raises:
        TypeError: anything else (a model, one record dict alone, a DataFrame, a number).
        ValueError: no records.
    """
    import keras

    records = getattr(monitor_or_records, "records", monitor_or_records)
    if isinstance(records, Mapping):
        raise _not_records(monitor_or_records, " (one record: pass a list of records)")
    if isinstance(records, (str, bytes, keras.Model)) or not isinstance(records, Iterable):
        raise _not_records(monitor_or_records)
    records = list(records)
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise _not_records(
                monitor_or_records, f" (item {i} is of type {type(record).__name__}, not a dict)"
            )
    if not records:
        raise ValueError(
            "Argument `monitor_or_records` must hold at least one record. Received: no records "
            "(was the monitor passed to `model.fit`?)"
        )
    return records


def _log10(value: Any) -> float:
    if value is None or not isinstance(value, (int, float)) or not value > 0:
        return _FLOOR
    return math.log10(value) if math.isfinite(value) else _FLOOR


def block_of(layer: str) -> str | None:
    """The block name of a layer record name, or None when the name shows no block.

    A nested path gives its outer model or layer (``"encoder/dense"`` -> ``"encoder"``);
    otherwise Keras' block naming is read (see `_BLOCK`).

    Example:
    >>> [block_of(n) for n in ("conv2_block1_1_conv", "block_3_expand", "dense_2", "enc/d")]
    ['conv2_block1', 'block_3', None, 'enc']
    """
    if "/" in layer:
        return layer.split("/", 1)[0]
    match = _BLOCK.match(layer)
    return match.group(1) if match else None


def layer_ticks(
    layers: Sequence[str], max_ticks: int = MAX_LAYER_TICKS
) -> tuple[list[int], list[str]]:
    """Positions and labels of the layer axis: every layer when there are few, else the first
    layer of each block (thinned to ``max_ticks``) or, without block names, every k-th layer
    labelled ``"index: name"``.

    Example:
    >>> layer_ticks(["a", "b"])
    ([0, 1], ['a', 'b'])
    >>> pos, labels = layer_ticks([f"block{i // 3}_{i % 3}" for i in range(300)])
    >>> len(pos) <= 40, labels[:2]
    (True, ['block0', 'block3'])
    """
    n = len(layers)
    if n <= max_ticks:
        return list(range(n)), list(layers)
    blocks = [block_of(name) for name in layers]
    starts = [
        i for i in range(n) if blocks[i] is not None and (i == 0 or blocks[i] != blocks[i - 1])
    ]
    if len(starts) >= 2 and sum(b is not None for b in blocks) >= n // 2:
        every = math.ceil(len(starts) / max_ticks)
        chosen = starts[::every]
        return chosen, [str(blocks[i]) for i in chosen]
    every = math.ceil(n / max_ticks)
    chosen = list(range(0, n, every))
    return chosen, [f"{i}: {layers[i]}" for i in chosen]


def _of_source(records: Sequence[dict[str, Any]], source: str | None) -> list[dict[str, Any]]:
    """The records of one source (``"probe"`` or ``"in_step"``): one picture never mixes the
    probe in inference mode with training batches in training mode."""
    sources = list(dict.fromkeys(str(r.get("source", "probe")) for r in records))
    if source is None:
        source = "probe" if "probe" in sources else sources[0]
    chosen = [r for r in records if str(r.get("source", "probe")) == source]
    if not chosen:
        raise ValueError(
            f"Argument `source` must be one of the recorded sources {sources}. "
            f"Received: source={source!r}"
        )
    return chosen


def variance_grid(
    records: Sequence[dict[str, Any]], key: str
) -> tuple[list[str], list[int], list[list[float | None]]]:
    """``(layers, steps, grid)`` with ``grid[i][j] = log10(key)`` of layer i at the j-th record.

    A recorded variance without a finite log10 (0, NaN or Inf) is NaN; a layer with no
    record at that snapshot (or a record without ``key``) is None: the heatmap draws the
    two differently.

    Example:
    >>> rows = [{"layer": "a", "step": 0, "event": "train_begin", "activation_var": 100.0}]
    >>> variance_grid(rows, "activation_var")
    (['a'], [0], [[2.0]])
    >>> rows += [{"layer": "b", "step": 5, "event": "epoch_end", "activation_var": math.inf}]
    >>> variance_grid(rows, "activation_var")
    (['a', 'b'], [0, 5], [[2.0, None], [None, nan]])
    """
    layers: list[str] = []
    snapshots: list[tuple[int, str]] = []
    values: dict[tuple[str, tuple[int, str]], float | None] = {}
    for r in records:
        snapshot = (int(r["step"]), str(r.get("event", "")))
        if r["layer"] not in layers:
            layers.append(r["layer"])
        if snapshot not in snapshots:
            snapshots.append(snapshot)
        value = r.get(key)
        values[(r["layer"], snapshot)] = None if value is None else _log10(value)
    grid = [[values.get((layer, s)) for s in snapshots] for layer in layers]
    return layers, [s for s, _ in snapshots], grid


def _draw_heatmap(ax: Any, grid: list[list[float | None]]) -> Any:
    """Draw ``grid`` (of `variance_grid`) on ``ax``; return the image of the values.

    Finite values are coloured by viridis, NaN (no finite log10) in `NON_FINITE_COLOR`
    (the colormap's "bad" colour) and None (no record) in `NO_RECORD_COLOR`, by an
    overlay image that covers those cells only.
    """
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    values = np.array([[math.nan if v is None else v for v in row] for row in grid], dtype=float)
    missing = np.array([[v is None for v in row] for row in grid], dtype=bool)
    cmap = colormaps["viridis"].with_extremes(bad=NON_FINITE_COLOR)
    image = ax.imshow(values, aspect="auto", interpolation="nearest", cmap=cmap)
    if missing.any():
        ax.imshow(
            np.ma.masked_array(np.zeros(values.shape), mask=~missing),
            aspect="auto",
            interpolation="nearest",
            cmap=ListedColormap([NO_RECORD_COLOR]),
            vmin=0.0,
            vmax=1.0,
        )
    return image


def plot_variance(
    monitor_or_records: Any,
    *,
    steps: Iterable[int] | None = None,
    quantities: Sequence[str] = _QUANTITIES,
    source: str | None = None,
    model: Any = None,
    blocks: Any = None,
) -> dict[str, Any]:
    """Figures of how activation and gradient variance evolve across depth and training.

    Args:
        monitor_or_records: a `VarianceMonitor` or its ``records`` (list of dicts).
        steps: the steps whose depth profile is drawn (default: first and last record).
        quantities: record keys to draw (default activation and gradient variance).
        source: the records drawn, ``"probe"`` or ``"in_step"`` (default: the probe's, else
            the only source). Sources are never mixed in one figure.
        model: the monitored model: adds the signal propagation plot of its residual blocks
            (``"signal"``, see `plot_signal`, at the first step drawn).
        blocks: ``residual_blocks(model)`` instead of ``model`` (adds ``"signal"`` too).

    Returns:
        ``{"heatmap": Figure, "profile": Figure}``: log10 of each quantity as a layer x record
        heatmap, and log10 variance against layer depth at the chosen steps (a straight sloped
        line is exponential growth or decay: exploding or vanishing signals). Deep models
        (more than `MAX_LAYER_TICKS` layers) get one label per block, or every k-th layer.
        In the heatmap a grey cell (`NON_FINITE_COLOR`) is a recorded variance that is 0,
        NaN or Inf, a blank one (`NO_RECORD_COLOR`) a layer without a record at that step;
        a legend below says so. With ``model`` or
        ``blocks``, also ``"signal"``: `plot_signal` of the same records (Brock et al.
        2021: per residual block, the stream's squared channel mean and channel variance
        and the residual branch's channel variance; per layer without residual blocks).

    Example:
    >>> rows = [{"layer": f"d{i}", "step": s, "event": "e", "activation_var": 2.0**i,
    ...          "gradient_var": 0.5**i} for s in (0, 5) for i in range(3)]
    >>> sorted(plot_variance(rows))
    ['heatmap', 'profile']
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    records = _of_source(_records_of(monitor_or_records), source)
    source = str(records[0].get("source", "probe"))
    n = len(quantities)
    depth = len(dict.fromkeys(r["layer"] for r in records))
    height = 4.0 + 4.0 * min(depth, 4 * MAX_LAYER_TICKS) / (4 * MAX_LAYER_TICKS)
    heatmap = Figure(figsize=(5.5 * n, height), layout="constrained")
    axes = heatmap.subplots(1, n, squeeze=False)[0]
    for ax, key in zip(axes, quantities, strict=True):
        layers, record_steps, grid = variance_grid(records, key)
        image = _draw_heatmap(ax, grid)
        ax.set_title(f"log10 {key} ({source})", fontsize=9)
        positions, labels = layer_ticks(layers)
        ax.set_yticks(positions, labels, fontsize=7 if len(labels) > 20 else 8)
        ax.set_ylabel(f"layer ({len(layers)})")
        ticks = list(range(0, len(record_steps), max(1, len(record_steps) // 8)))
        ax.set_xticks(ticks, [str(record_steps[t]) for t in ticks])
        ax.set_xlabel("optimizer step")
        heatmap.colorbar(image, ax=ax, label=f"log10 {key}")
    heatmap.legend(
        handles=[
            Patch(facecolor=NON_FINITE_COLOR, edgecolor="0.5", label=NON_FINITE_NOTE),
            Patch(facecolor=NO_RECORD_COLOR, edgecolor="0.5", label=NO_RECORD_NOTE),
        ],
        loc="outside lower center",
        ncols=2,
        fontsize=8,
    )

    all_steps = sorted({int(r["step"]) for r in records})
    chosen = [all_steps[0], all_steps[-1]] if steps is None else list(steps)
    profile = Figure(figsize=(5.5 * n, 4.0), layout="constrained")
    axes = profile.subplots(1, n, squeeze=False)[0]
    for ax, key in zip(axes, quantities, strict=True):
        for step in dict.fromkeys(chosen):
            rows = [r for r in records if int(r["step"]) == step]
            if not rows:
                raise ValueError(
                    f"Argument `steps` must name recorded steps {all_steps}. Received: {step}"
                )
            seen: dict[str, float] = {}
            for r in rows:
                seen[r["layer"]] = _log10(r.get(key))
            marker = "o" if len(seen) <= MAX_LAYER_TICKS else None
            ax.plot(range(len(seen)), list(seen.values()), marker=marker, label=f"step {step}")
        positions, labels = layer_ticks(list(seen))
        rotate = 90 if len(labels) > 8 else 0
        ax.set_xticks(positions, labels, rotation=rotate, fontsize=7 if rotate else 8)
        ax.set_title(f"log10 {key} across depth ({source})", fontsize=9)
        ax.set_xlabel(f"layer ({len(seen)})")
        ax.legend()
    figures = {"heatmap": heatmap, "profile": profile}
    if model is not None or blocks is not None:
        from keras_initlab.callbacks._signal_plot import plot_signal

        figures["signal"] = plot_signal(records, model, blocks=blocks, step=chosen[0])
    return figures
