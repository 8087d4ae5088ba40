"""The report's PNG figures: depth profiles, heatmap, loss curves, the finite-width check,
decision boundaries and the monitor's per-run heatmaps (matplotlib ``Figure``: no pyplot)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_initlab.compare.datasets import Dataset
from keras_initlab.compare.results import CompareResult, SchemeResult, WidthCheck
from keras_initlab.compare.spread import spread

HEATMAP_CLIP = 6.0  # colour scale of the heatmap: log10 ratios beyond +-6 share one colour
MAX_TICKS = 25  # depth profiles of deeper nets label every k-th layer only
BLANK_NOTE = "no finite value (a NaN or infinite variance, or 0/0 as under zeros)"
DPI = 110


def log10_or_nan(value: float) -> float:
    return (
        math.log10(value) if value is not None and value > 0 and math.isfinite(value) else math.nan
    )


def seed_band(ax: Any, x: Sequence[Any], rows: list[list[float]], color: Any, label: str) -> None:
    """Plot the median over seeds of ``rows`` (one list per seed, one value per ``x``) as a
    line, and their min-max range as a band where there are several seeds."""
    columns = [spread(list(c)) for c in zip(*rows, strict=True)]
    ax.plot(x, [c.median for c in columns], color=color, label=label)
    if len(rows) > 1:
        ax.fill_between(
            x, [c.low for c in columns], [c.high for c in columns], color=color, alpha=0.12
        )


def save_figures(folder: Path, figures: dict[str, Any]) -> list[Path]:
    """Save each matplotlib ``Figure`` of ``{file name: figure}`` in ``folder`` at `DPI`;
    return the paths in order."""
    paths = []
    for name, figure in figures.items():
        figure.savefig(folder / name, dpi=DPI)
        paths.append(folder / name)
    return paths


def scheme_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # the 10 strong colours first
    return [cmap(order[i % 20]) for i in range(n)]


def _layer_ticks(ax: Any, layers: Sequence[str], offset: int) -> None:
    """Label the layer axis: the ticks ``layer_ticks`` chooses for at most ``MAX_TICKS``
    labels, plus the last layer (the output), its ``hidden_`` prefix dropped."""
    from keras_initlab.callbacks._plot_records import layer_ticks

    positions, _ = layer_ticks(layers, MAX_TICKS)
    last = len(layers) - 1
    if positions[-1] != last:
        step = math.ceil(len(layers) / MAX_TICKS)
        if last - positions[-1] < step / 2:
            del positions[-1]  # keep the last layer's label clear of its neighbour's
        positions.append(last)
    ax.set_xticks(
        [i + offset for i in positions],
        [layers[i].replace("hidden_", "") for i in positions],
        fontsize=7,
    )


def _plot_profiles(runs: Sequence[SchemeResult], title: str) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("activation_var", "gradient_var"), strict=True):
        for run, color in zip(runs, scheme_colors(len(runs)), strict=True):
            per_seed = [[log10_or_nan(v) for v in getattr(r, key)] for r in run.runs]
            columns = [spread(c) for c in zip(*per_seed, strict=True)]
            median = [c.median for c in columns]
            label = f"{run.name} ({run.activation})"
            if all(math.isnan(v) for v in median):
                label += ": 0 or not finite"
            x = range(1, len(median) + 1)
            ax.plot(
                x,
                median,
                marker="o",
                ms=3 if len(median) <= MAX_TICKS else 0,
                color=color,
                label=label,
                linestyle="--" if run.activation != runs[0].activation else "-",
            )
            if len(run.runs) > 1:
                ax.fill_between(
                    x, [c.low for c in columns], [c.high for c in columns], color=color, alpha=0.15
                )
        _layer_ticks(ax, runs[0].layers, 1)
        ax.set_xlabel("layer (hidden 1..L, then output)")
        ax.set_ylabel(f"log10 {key} at init (median; band: min-max over seeds)", fontsize=8)
        ax.set_title(f"{key.replace('_', ' ')} across depth")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    fig.supxlabel(f"Gaps in a line: {BLANK_NOTE}.", fontsize=7)
    return fig


def _plot_heatmap(runs: Sequence[SchemeResult], title: str) -> Any:
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    # Every run measures the same layers, so every cell has a value; a grey cell has no
    # finite one, in the colour `plot_variance` (the report's training/ heatmaps) uses.
    from keras_initlab.callbacks._plot import NON_FINITE_COLOR

    fig = Figure(figsize=(12, 0.35 * len(runs) + 2.3), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("activation_var", "gradient_var"), strict=True):
        grid = []
        for run in runs:
            values = [log10_or_nan(v) for v in getattr(run, key)[:-1]]  # hidden layers, medians
            reference = values[0] if key == "activation_var" else values[-1]
            grid.append([v - reference for v in values])
        image = ax.imshow(
            np.array(grid, dtype=float),
            aspect="auto",
            cmap=colormaps["RdBu_r"].with_extremes(bad=NON_FINITE_COLOR),
            vmin=-HEATMAP_CLIP,
            vmax=HEATMAP_CLIP,
            interpolation="nearest",
        )
        ax.set_yticks(range(len(runs)), [f"{r.name} ({r.activation})" for r in runs], fontsize=7)
        _layer_ticks(ax, runs[0].layers[:-1], 0)
        ax.set_xlabel("hidden layer")
        where = "first" if key == "activation_var" else "last"
        ax.set_title(
            f"log10 {key} / {where} hidden layer's, at init (median over seeds)", fontsize=9
        )
        bar = fig.colorbar(image, ax=ax, extend="both")
        bar.set_label(f"log10 ratio (clipped at +-{HEATMAP_CLIP:g})", fontsize=8)
    fig.suptitle(title)
    fig.supxlabel(f"Grey cells: {BLANK_NOTE}.", fontsize=7)
    return fig


def _plot_curves(runs: Sequence[SchemeResult], title: str) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for run, color in zip(runs, scheme_colors(len(runs)), strict=True):
        epochs = range(1, len(run.loss) + 1)
        style = "--" if run.activation != runs[0].activation else "-"
        label = f"{run.name} ({run.activation})"
        for ax, key in zip(axes, ("loss", "test_accuracy"), strict=True):
            ax.plot(epochs, getattr(run, key), color=color, linestyle=style, label=label)
            if len(run.runs) > 1:
                columns = [
                    spread(c) for c in zip(*(getattr(r, key) for r in run.runs), strict=True)
                ]
                ax.fill_between(
                    epochs,
                    [c.low for c in columns],
                    [c.high for c in columns],
                    color=color,
                    alpha=0.12,
                )
    axes[0].set_yscale("log")
    axes[0].set_ylabel("training loss (median; band: min-max over seeds)")
    axes[1].set_ylabel("test accuracy (median; band: min-max over seeds)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    fig.supxlabel("A curve that stops: the loss became NaN or infinite.", fontsize=7)
    return fig


def _plot_width_check(check: WidthCheck, title: str) -> Any:
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    widths = sorted(check.activation_ratio)
    for ax, (key, values) in zip(
        axes,
        (
            ("activation ratio (last / first)", check.activation_ratio),
            ("gradient ratio (first / last)", check.gradient_ratio),
        ),
        strict=True,
    ):
        for i, w in enumerate(widths):
            logs = [log10_or_nan(v) for v in values[w]]
            jitter = np.linspace(-0.15, 0.15, len(logs))
            ax.scatter(i + jitter, logs, s=12, alpha=0.7)
            ax.plot([i - 0.25, i + 0.25], [spread(logs).median] * 2, color="black")
            ax.annotate(
                f"sd {check.log_sd(values[w]):.2f}",
                (i, spread(logs).high),
                ha="center",
                xytext=(0, 6),
                textcoords="offset points",
                fontsize=8,
            )
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(widths)), [str(w) for w in widths])
        ax.set_xlabel("width (units per hidden layer)")
        ax.set_ylabel(f"log10 {key}")
        ax.set_title(f"{key}: one dot per seed, bar: median", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def _plot_boundaries(runs: Sequence[SchemeResult], data: Dataset, title: str) -> Any:
    import numpy as np
    from matplotlib.figure import Figure

    columns = min(5, len(runs))
    rows = -(-len(runs) // columns)
    fig = Figure(figsize=(2.6 * columns, 2.6 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, run in zip(axes, runs, strict=False):
        if run.boundary is None:
            raise ValueError(
                f"Argument `runs` must hold runs with a decision boundary. Received: run "
                f"{run.name!r} ({run.activation}) without one"
            )
        xs, ys, classes = run.boundary
        # class i gets the i-th colour of both 9-colour maps (light areas, strong points)
        levels = np.arange(data.num_classes + 1) - 0.5
        ax.contourf(xs, ys, classes % 9, levels=levels, cmap="Pastel1", vmin=0, vmax=8)
        ax.scatter(
            data.x_test[:, 0],
            data.x_test[:, 1],
            c=data.y_test % 9,
            cmap="Set1",
            vmin=0,
            vmax=8,
            s=4,
        )
        accuracy = run.test_accuracy[-1] if run.test_accuracy else math.nan
        ax.set_title(f"{run.name} ({run.activation})\ntest acc {accuracy:.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(runs) :]:
        ax.axis("off")
    fig.suptitle(title)
    return fig


def write_plots(result: CompareResult, folder: Path, data: Dataset | None = None) -> list[Path]:
    """The PNG plots of the report (matplotlib ``Figure``: no pyplot, no GUI)."""
    from keras_initlab.callbacks import plot_variance

    runs = result.all_runs
    name = result.dataset["name"]
    main = list(result.schemes.values())
    figures = {
        "depth_profile.png": _plot_profiles(main, f"Depth profile at initialization ({name})"),
        "heatmap.png": _plot_heatmap(runs, f"Variance across depth, every scheme ({name})"),
        "loss_curves.png": _plot_curves(runs, f"Training under each scheme ({name})"),
    }
    if result.width_check is not None:
        check = result.width_check
        figures["width_check.png"] = _plot_width_check(
            check,
            f"He ({check.activation}, {check.depth} hidden layers) at initialization: "
            f"{len(check.seeds)} seeds per width ({name})",
        )
    pairs = [r for r in runs if r.name in result.contrast]
    if pairs:
        figures["contrast.png"] = _plot_profiles(
            pairs,
            "Xavier vs He by activation (solid: "
            f"{result.config.activation}, dashed: {result.config.contrast_activation})",
        )
    with_boundary = [r for r in runs if r.boundary is not None]
    if with_boundary and data is not None:
        figures["decision_boundaries.png"] = _plot_boundaries(
            with_boundary, data, f"Decision boundary after training ({name})"
        )
    paths = save_figures(folder, figures)
    training = folder / "training"
    training.mkdir(exist_ok=True)
    for run in runs:
        first = run.runs[0]
        figs = plot_variance(first.records)
        path = training / f"{run.name}_{run.activation}.png"
        figs["heatmap"].suptitle(
            f"{run.name} ({run.activation}), seed {first.seed}: variance by layer and step"
        )
        figs["heatmap"].savefig(path, dpi=DPI)
        paths.append(path)
    return paths
