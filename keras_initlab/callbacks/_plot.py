"""`plot_variance`: the layer x step heatmaps and the depth profiles of a `VarianceMonitor`.

matplotlib is imported only when a plot is made, and the figures are created with
`matplotlib.figure.Figure` (no pyplot state, no GUI backend needed: Agg-safe).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

_QUANTITIES = ("activation_var", "gradient_var")
# log10 of a variance that is 0 or missing is drawn as this (below any real value).
_FLOOR = float("nan")


def _records_of(monitor_or_records: Any) -> list[dict[str, Any]]:
    records = getattr(monitor_or_records, "records", monitor_or_records)
    records = list(records)
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


def variance_grid(
    records: Sequence[dict[str, Any]], key: str
) -> tuple[list[str], list[int], list[list[float]]]:
    """``(layers, steps, grid)`` with ``grid[i][j] = log10(key)`` of layer i at the j-th record.

    Example:
    >>> rows = [{"layer": "a", "step": 0, "event": "train_begin", "activation_var": 100.0}]
    >>> variance_grid(rows, "activation_var")
    (['a'], [0], [[2.0]])
    """
    layers: list[str] = []
    snapshots: list[tuple[int, str]] = []
    values: dict[tuple[str, tuple[int, str]], float] = {}
    for r in records:
        snapshot = (int(r["step"]), str(r.get("event", "")))
        if r["layer"] not in layers:
            layers.append(r["layer"])
        if snapshot not in snapshots:
            snapshots.append(snapshot)
        values[(r["layer"], snapshot)] = _log10(r.get(key))
    grid = [[values.get((layer, s), _FLOOR) for s in snapshots] for layer in layers]
    return layers, [s for s, _ in snapshots], grid


def plot_variance(
    monitor_or_records: Any,
    *,
    steps: Iterable[int] | None = None,
    quantities: Sequence[str] = _QUANTITIES,
) -> dict[str, Any]:
    """Figures of how activation and gradient variance evolve across depth and training.

    Args:
        monitor_or_records: a `VarianceMonitor` or its ``records`` (list of dicts).
        steps: the steps whose depth profile is drawn (default: first and last record).
        quantities: record keys to draw (default activation and gradient variance).

    Returns:
        ``{"heatmap": Figure, "profile": Figure}``: log10 of each quantity as a layer x record
        heatmap, and log10 variance against layer depth at the chosen steps (a straight sloped
        line is exponential growth or decay: exploding or vanishing signals).

    Example:
    >>> rows = [{"layer": f"d{i}", "step": s, "event": "e", "activation_var": 2.0**i,
    ...          "gradient_var": 0.5**i} for s in (0, 5) for i in range(3)]
    >>> sorted(plot_variance(rows))
    ['heatmap', 'profile']
    """
    from matplotlib.figure import Figure

    records = _records_of(monitor_or_records)
    n = len(quantities)
    heatmap = Figure(figsize=(5.5 * n, 4.0), layout="constrained")
    axes = heatmap.subplots(1, n, squeeze=False)[0]
    for ax, key in zip(axes, quantities, strict=False):
        layers, record_steps, grid = variance_grid(records, key)
        image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis")
        ax.set_title(f"log10 {key}")
        ax.set_yticks(range(len(layers)), layers, fontsize=7)
        ticks = list(range(0, len(record_steps), max(1, len(record_steps) // 8)))
        ax.set_xticks(ticks, [str(record_steps[t]) for t in ticks])
        ax.set_xlabel("optimizer step")
        heatmap.colorbar(image, ax=ax)

    all_steps = sorted({int(r["step"]) for r in records})
    chosen = [all_steps[0], all_steps[-1]] if steps is None else list(steps)
    profile = Figure(figsize=(5.5 * n, 4.0), layout="constrained")
    axes = profile.subplots(1, n, squeeze=False)[0]
    for ax, key in zip(axes, quantities, strict=False):
        for step in dict.fromkeys(chosen):
            rows = [r for r in records if int(r["step"]) == step]
            if not rows:
                raise ValueError(
                    f"Argument `steps` must name recorded steps {all_steps}. Received: {step}"
                )
            seen: dict[str, float] = {}
            for r in rows:
                seen[r["layer"]] = _log10(r.get(key))
            ax.plot(range(len(seen)), list(seen.values()), marker="o", label=f"step {step}")
        ax.set_title(f"log10 {key} across depth")
        ax.set_xlabel("layer index")
        ax.legend()
    return {"heatmap": heatmap, "profile": profile}
