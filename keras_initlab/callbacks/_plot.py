"""`plot_variance`: the layer x step heatmaps and the depth profiles of a `VarianceMonitor`.

matplotlib is imported only when a plot is made, and the figures are created with
`matplotlib.figure.Figure` (no pyplot state, no GUI backend needed: Agg-safe).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from keras_initlab.callbacks._plot_records import (
    MAX_LAYER_TICKS,
    _of_source,
    _records_of,
    layer_ticks,
    set_layer_ticks,
)

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
def _log10(value: Any) -> float:
    if value is None or not isinstance(value, (int, float)) or not value > 0:
        return _FLOOR
    return math.log10(value) if math.isfinite(value) else _FLOOR


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
        set_layer_ticks(ax, list(seen))
        ax.set_title(f"log10 {key} across depth ({source})", fontsize=9)
        ax.set_xlabel(f"layer ({len(seen)})")
        ax.legend()
    figures = {"heatmap": heatmap, "profile": profile}
    if model is not None or blocks is not None:
        from keras_initlab.callbacks._signal_plot import plot_blocks, plot_signal

        figures["signal"] = plot_signal(records, model, blocks=blocks, step=chosen[0])
        figures["blocks"] = plot_blocks(
            records, model, blocks=blocks, step=chosen[0], quantities=quantities
        )
    return figures
