"""What ``keras-initlab compare`` prints and writes: table, JSON, CSV, plots, summary.

The report folder holds:

* ``results.json``: the ``--json`` format of design.md (``dataset``, ``schemes`` with
  ``activation_var`` / ``gradient_var`` per layer at initialization, ``distinct_units`` per
  hidden layer after training, ``loss`` / ``accuracy`` per epoch) plus the configuration,
  the contrast runs, the verdicts and the claims. Those lists are the medians over seeds;
  ``seeds`` and ``per_seed`` hold every seed's own lists, ratios and verdict, and
  ``width_check`` the finite-width check. NaN and infinity are written as ``null``.
* ``records.csv`` (every VarianceMonitor record of every run and seed), ``history.csv``
  (loss and accuracy per epoch and seed), ``table.csv`` (numbers only: median, min and max
  over seeds in separate columns, an empty cell where a value is missing or not finite),
  ``table.txt`` and ``table.md`` (the printed table, as text and as Markdown),
  ``width_check.csv``.
* ``depth_profile.png``, ``heatmap.png``, ``loss_curves.png``, ``contrast.png``,
  ``width_check.png``, ``decision_boundaries.png`` (2-D datasets, first seed) and
  ``training/<scheme>_<activation>.png`` (the monitor's layer x step heatmap of the first
  seed of each run).
* ``summary.md``: the table, the claims and the plots.
* ``REPORT_MARKER``: says that the folder is a report, so a later run may replace it.

A report is written whole: into a new folder beside the target, then moved in place, so a
previous report is replaced all at once (never a mix of old and new plots) and a run that
fails while writing leaves the previous report as it was. A folder that holds anything
but a previous report is refused. An interrupted run's report says that it is partial
(``"partial": true`` in ``results.json``, a note at the top of ``summary.md``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_initlab.compare.claims import Claim, check_claims, claims_as_dicts, fmt_spread
from keras_initlab.compare.datasets import Dataset
from keras_initlab.compare.runner import CompareResult, SchemeResult, SeedRun, WidthCheck
from keras_initlab.compare.setups import describe_schemes
from keras_initlab.compare.spread import Spread, spread
from keras_initlab.compare.verdicts import VERDICT_FACTOR

TABLE_COLUMNS = (
    "scheme",
    "activation",
    "act var x",
    "grad var x",
    "distinct units",
    "loss",
    "test acc",
    "verdict",
)
# Numeric columns of table.csv: each spread over seeds as median, min and max.
CSV_SPREADS = ("activation_ratio", "gradient_ratio", "loss", "test_accuracy")
CSV_COLUMNS = (
    "scheme",
    "activation",
    "seeds",
    *(f"{k}_{part}" for k in CSV_SPREADS for part in ("median", "min", "max")),
    "distinct_units_min",
    "distinct_units_max",
    "verdict",
    "verdict_seeds",
)
REPORT_MARKER = ".keras-initlab-report"
_MARKER_TEXT = (
    "This folder is a `keras-initlab compare` report: a later run with --out here "
    "replaces the whole folder.\n"
)
HEATMAP_CLIP = 6.0  # colour scale of the heatmap: log10 ratios beyond +-6 share one colour
MAX_TICKS = 25  # depth profiles of deeper nets label every k-th layer only
BLANK_NOTE = "no finite value (a NaN or infinite variance, or 0/0 as under zeros)"
_DPI = 110


def _clean(value: Any) -> Any:
    """``value`` with NaN/Inf floats replaced by None, recursively (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _distinct_range(run: SchemeResult) -> tuple[int, int] | None:
    """Min and max distinct units over hidden layers and seeds (finite layers only)."""
    finite = [
        int(v) for r in run.runs for v in r.distinct_units if v is not None and math.isfinite(v)
    ]
    return (min(finite), max(finite)) if finite else None


def _distinct(run: SchemeResult) -> str:
    found = _distinct_range(run)
    if found is None:
        return "-"
    low, high = found
    return str(low) if low == high else f"{low}-{high}"


def _verdict_text(run: SchemeResult) -> str:
    if run.unanimous:
        return run.verdict
    return f"{run.verdict} ({run.verdicts.count(run.verdict)}/{len(run.verdicts)})"


def table_rows(result: CompareResult) -> list[dict[str, str]]:
    """One row per run (main runs, then contrast runs), formatted for printing.

    Every number is the median over seeds with its range ``[min..max]``.
    """
    rows = []
    for run in (*result.schemes.values(), *result.contrast.values()):
        rows.append(
            {
                "scheme": run.name,
                "activation": run.activation,
                "act var x": fmt_spread(run.activation_spread),
                "grad var x": fmt_spread(run.gradient_spread),
                "distinct units": _distinct(run),
                "loss": fmt_spread(run.final("loss")),
                "test acc": fmt_spread(run.final("test_accuracy")),
                "verdict": _verdict_text(run),
            }
        )
    return rows


def _csv_number(value: float | None) -> float | None:
    """A CSV cell: the float, or None (an empty cell) when missing or NaN."""
    return None if value is None or math.isnan(value) else value


def csv_rows(result: CompareResult) -> list[dict[str, Any]]:
    """One row per run with numbers only (``CSV_COLUMNS``), for ``table.csv``."""
    rows = []
    for run in (*result.schemes.values(), *result.contrast.values()):
        spreads: dict[str, Spread] = {
            "activation_ratio": run.activation_spread,
            "gradient_ratio": run.gradient_spread,
            "loss": run.final("loss"),
            "test_accuracy": run.final("test_accuracy"),
        }
        row: dict[str, Any] = {"scheme": run.name, "activation": run.activation}
        row["seeds"] = len(run.runs)
        for key, value in spreads.items():
            row[f"{key}_median"] = _csv_number(value.median)
            row[f"{key}_min"] = _csv_number(value.low)
            row[f"{key}_max"] = _csv_number(value.high)
        distinct = _distinct_range(run)
        row["distinct_units_min"], row["distinct_units_max"] = distinct or (None, None)
        row["verdict"] = run.verdict
        row["verdict_seeds"] = run.verdicts.count(run.verdict)
        rows.append(row)
    return rows


def format_table(result: CompareResult, *, markdown: bool = False) -> str:
    """The comparison table: a row per run.

    Columns: ``act var x``, the activation variance of the last hidden layer over the first
    at initialization; ``grad var x``, the gradient variance at the first hidden layer over
    the last (its growth on the way back to the input); ``distinct units``, after training,
    over the hidden layers and seeds (``min-max``); the final training loss and test
    accuracy; the verdict (``keras_initlab.compare.verdicts``; ``(k/n)``: the verdict of k
    of the n seeds). Numbers are medians over seeds with their range ``[min..max]``.
    """
    rows = table_rows(result)
    if markdown:
        lines = [
            "| " + " | ".join(TABLE_COLUMNS) + " |",
            "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|",
        ]
        lines += ["| " + " | ".join(r[c] for c in TABLE_COLUMNS) + " |" for r in rows]
        return "\n".join(lines)
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in TABLE_COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in TABLE_COLUMNS).rstrip()]
    for i, r in enumerate(rows):
        if i == len(result.schemes) and result.contrast:
            lines.append("  ".join("-" * widths[c] for c in TABLE_COLUMNS))
        lines.append("  ".join(r[c].ljust(widths[c]) for c in TABLE_COLUMNS).rstrip())
    return "\n".join(lines)


def _seed_json(run: SeedRun) -> dict[str, Any]:
    return {
        "seed": run.seed,
        "activation_var": run.activation_var,
        "gradient_var": run.gradient_var,
        "final_activation_var": run.final_activation_var,
        "distinct_units": run.distinct_units,
        "loss": run.loss,
        "accuracy": run.accuracy,
        "test_loss": run.test_loss,
        "test_accuracy": run.test_accuracy,
        "activation_ratio": run.activation_ratio,
        "gradient_ratio": run.gradient_ratio,
        "verdict": run.verdict,
    }


def _spread_json(value: Spread) -> dict[str, Any]:
    return {"median": value.median, "min": value.low, "max": value.high, "finite": value.n_finite}


def _run_json(run: SchemeResult, initializer: str | None) -> dict[str, Any]:
    return {
        "activation_var": run.activation_var,
        "gradient_var": run.gradient_var,
        "distinct_units": run.distinct_units,
        "loss": run.loss,
        "accuracy": run.accuracy,
        "test_loss": run.test_loss,
        "test_accuracy": run.test_accuracy,
        "activation": run.activation,
        "layers": run.layers,
        "activation_ratio": run.activation_ratio,
        "gradient_ratio": run.gradient_ratio,
        "spread": {
            "activation_ratio": _spread_json(run.activation_spread),
            "gradient_ratio": _spread_json(run.gradient_spread),
            "loss": _spread_json(run.final("loss")),
            "test_accuracy": _spread_json(run.final("test_accuracy")),
        },
        "verdict": run.verdict,
        "verdicts": run.verdicts,
        "seeds": run.seeds,
        "per_seed": [_seed_json(r) for r in run.runs],
        "initializer": initializer,
        "seconds": run.seconds,
    }


def _width_json(check: WidthCheck) -> dict[str, Any]:
    return {
        "scheme": "he_normal",
        "activation": check.activation,
        "depth": check.depth,
        "seeds": check.seeds,
        "widths": {
            str(w): {
                "activation_ratio": check.activation_ratio[w],
                "gradient_ratio": check.gradient_ratio[w],
                "activation_ratio_log10_sd": check.log_sd(check.activation_ratio[w]),
                "gradient_ratio_log10_sd": check.log_sd(check.gradient_ratio[w]),
            }
            for w in check.activation_ratio
        },
    }


def to_json(result: CompareResult, claims: list[Claim] | None = None) -> dict[str, Any]:
    """The results in the ``--json`` format (design.md), plus context; strict JSON values.

    ``{"dataset": name, "schemes": {NAME: {"activation_var": [per layer at init],
    "gradient_var": [per layer at init], "distinct_units": [per hidden layer, after
    training], "loss": [per epoch], "accuracy": [per epoch], ...}}, "contrast": {...},
    "claims": [...], "width_check": {...}, "partial": bool, ...}``; layers are the hidden
    layers then the output layer. Those lists are medians over the seeds (layer by layer,
    epoch by epoch); each scheme's ``per_seed`` holds the seeds' own values, ``spread`` the
    median, min and max of its ratios, final loss and final test accuracy. ``partial`` is true
    for an interrupted run (only the runs that finished).
    """
    config = result.config
    described = describe_schemes(config.width, config.activation)
    contrast_described = (
        describe_schemes(config.width, config.contrast_activation)
        if config.contrast_activation
        else {}
    )
    data = {
        "dataset": result.dataset["name"],
        "dataset_info": result.dataset,
        "config": {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
        },
        "verdict_factor": VERDICT_FACTOR,
        "schemes": {
            name: _run_json(run, described.get(name)) for name, run in result.schemes.items()
        },
        "contrast": {
            "activation": config.contrast_activation if result.contrast else None,
            "schemes": {
                name: _run_json(run, contrast_described.get(name))
                for name, run in result.contrast.items()
            },
        },
        "claims": claims_as_dicts(check_claims(result) if claims is None else claims),
        "width_check": None if result.width_check is None else _width_json(result.width_check),
        "seconds": result.seconds,
        "partial": result.partial,
    }
    return _clean(data)


def write_json(result: CompareResult, path: str | os.PathLike[str]) -> Path:
    """Write ``to_json(result)`` to ``path`` (parent folders created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(result), indent=1, allow_nan=False) + "\n")
    return path


def _runs(result: CompareResult) -> list[SchemeResult]:
    return [*result.schemes.values(), *result.contrast.values()]


def _cell(value: Any) -> Any:
    """A CSV cell: empty for None and NaN, the value otherwise (``inf`` stays readable)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def _write_csv(path: Path, fields: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in fields})


def write_csvs(result: CompareResult, folder: Path) -> list[Path]:
    """``records.csv``, ``history.csv`` and ``table.csv`` in ``folder``."""
    records = [r for run in _runs(result) for r in run.records]
    keys: dict[str, None] = {"scheme": None}
    for r in records:
        keys.update(dict.fromkeys(r))
    history = [
        {
            "scheme": run.name,
            "activation": run.activation,
            "seed": seed_run.seed,
            "epoch": e + 1,
            "loss": seed_run.loss[e],
            "accuracy": seed_run.accuracy[e],
            "test_loss": seed_run.test_loss[e],
            "test_accuracy": seed_run.test_accuracy[e],
        }
        for run in _runs(result)
        for seed_run in run.runs
        for e in range(len(seed_run.loss))
    ]
    paths = [folder / "records.csv", folder / "history.csv", folder / "table.csv"]
    _write_csv(paths[0], list(keys), records)
    _write_csv(
        paths[1],
        ["scheme", "activation", "seed", "epoch", "loss", "accuracy", "test_loss", "test_accuracy"],
        history,
    )
    _write_csv(paths[2], CSV_COLUMNS, csv_rows(result))
    check = result.width_check
    if check is not None:
        paths.append(folder / "width_check.csv")
        _write_csv(
            paths[-1],
            ["width", "seed", "activation_ratio", "gradient_ratio"],
            [
                {
                    "width": w,
                    "seed": seed,
                    "activation_ratio": _csv_number(a),
                    "gradient_ratio": _csv_number(g),
                }
                for w in check.activation_ratio
                for seed, a, g in zip(
                    check.seeds, check.activation_ratio[w], check.gradient_ratio[w], strict=True
                )
            ],
        )
    return paths


def _log10(value: float) -> float:
    return (
        math.log10(value) if value is not None and value > 0 and math.isfinite(value) else math.nan
    )


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # the 10 strong colours first
    return [cmap(order[i % 20]) for i in range(n)]


def _layer_ticks(ax: Any, layers: Sequence[str], offset: int) -> None:
    """Label the layer axis, every k-th layer only when there are more than ``MAX_TICKS``."""
    step = max(1, math.ceil(len(layers) / MAX_TICKS))
    positions = [i for i in range(len(layers)) if i % step == 0 or i == len(layers) - 1]
    if len(positions) > 1 and positions[-1] - positions[-2] < step / 2:
        del positions[-2]  # keep the last layer's label clear of its neighbour's
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
        for run, color in zip(runs, _colors(len(runs)), strict=True):
            per_seed = [[_log10(v) for v in getattr(r, key)] for r in run.runs]
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

    fig = Figure(figsize=(12, 0.35 * len(runs) + 2.3), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("activation_var", "gradient_var"), strict=True):
        grid = []
        for run in runs:
            values = [_log10(v) for v in getattr(run, key)[:-1]]  # hidden layers, medians
            reference = values[0] if key == "activation_var" else values[-1]
            grid.append([v - reference for v in values])
        image = ax.imshow(
            np.array(grid, dtype=float),
            aspect="auto",
            cmap=colormaps["RdBu_r"].with_extremes(bad="lightgray"),
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
    for run, color in zip(runs, _colors(len(runs)), strict=True):
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
            logs = [_log10(v) for v in values[w]]
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
        assert run.boundary is not None
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

    runs = _runs(result)
    name = result.dataset["name"]
    main = list(result.schemes.values())
    paths = []
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
    for filename, fig in figures.items():
        fig.savefig(folder / filename, dpi=_DPI)
        paths.append(folder / filename)
    training = folder / "training"
    training.mkdir(exist_ok=True)
    for run in runs:
        first = run.runs[0]
        figs = plot_variance(first.records)
        path = training / f"{run.name}_{run.activation}.png"
        figs["heatmap"].suptitle(
            f"{run.name} ({run.activation}), seed {first.seed}: variance by layer and step"
        )
        figs["heatmap"].savefig(path, dpi=_DPI)
        paths.append(path)
    return paths


def format_width_check(check: WidthCheck, *, markdown: bool = False) -> str:
    """The finite-width table: per width, He's ratios over seeds and their log10 spread."""
    columns = ("width", "act var x", "sd log10", "grad var x", "sd log10 ")
    rows = [
        {
            "width": str(w),
            "act var x": fmt_spread(spread(check.activation_ratio[w])),
            "sd log10": f"{check.log_sd(check.activation_ratio[w]):.3f}",
            "grad var x": fmt_spread(spread(check.gradient_ratio[w])),
            "sd log10 ": f"{check.log_sd(check.gradient_ratio[w]):.3f}",
        }
        for w in sorted(check.activation_ratio)
    ]
    if markdown:
        lines = ["| " + " | ".join(c.strip() for c in columns) + " |"]
        lines.append("|" + "|".join("---" for _ in columns) + "|")
        lines += ["| " + " | ".join(r[c] for c in columns) + " |" for r in rows]
        return "\n".join(lines)
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def width_heading(check: WidthCheck) -> str:
    """The line above the finite-width table."""
    return (
        f"Finite width: he_normal ({check.activation}, {check.depth} hidden layers) at "
        f"initialization, {len(check.seeds)} seeds per width (seeds {check.seeds[0]}.."
        f"{check.seeds[-1]}):"
    )


def format_claims(claims: Sequence[Claim]) -> str:
    """One line per claim: yes / NO / n/a, the claim, the evidence."""
    return "\n".join(f"[{c.mark:>3}] {c.claim}: {c.evidence}" for c in claims)


def _summary(result: CompareResult, claims: Sequence[Claim], plots: Sequence[str]) -> str:
    config = result.config
    info = result.dataset
    contrast = (
        f"; {', '.join(result.contrast)} also with {config.contrast_activation}"
        if result.contrast
        else ""
    )
    lines = [f"# keras-initlab compare: {info['name']}", ""]
    if result.partial:
        missing = [name for name in config.schemes if name not in result.schemes]
        lines += [
            "**Partial report: the run was interrupted.** Finished: "
            + ", ".join(f"{r.name} ({r.activation})" for r in _runs(result))
            + (f"; not run: {', '.join(missing)}" if missing else "; not run: contrast runs")
            + ". The claims below are judged on the finished runs only.",
            "",
        ]
    lines += [
        f"Data: {info['description']}; {info['train']} training and {info['test']} test "
        f"examples, {info['features']} features, {info['classes']} classes.",
        f"Network: {config.depth} hidden Dense({config.width}, {config.activation}) layers "
        f"and a linear output{contrast}. Every scheme: weight seeds "
        f"{', '.join(map(str, config.seed_values))} (trained together, one model per seed), "
        f"split and batch order seed {config.seed}, SGD(learning rate "
        f"{config.learning_rate}, momentum {config.momentum}), {config.epochs} epochs of "
        f"batch {config.batch_size}; variances measured by VarianceMonitor on "
        f"{min(config.probe_size, info['test'])} test examples.",
        "",
        "`act var x`: activation variance of the last hidden layer over the first, at "
        "initialization; `grad var x`: gradient variance at the first hidden layer over the "
        "last (growth towards the input); `distinct units`: after training, min-max over "
        "hidden layers and seeds. Numbers: median over seeds `[min..max]`. Verdict: "
        f"exploding when a value is not finite or a ratio is beyond a factor {VERDICT_FACTOR:g}, "
        "symmetric when every hidden layer with finite outputs has one distinct unit, "
        "vanishing below 1/"
        f"{VERDICT_FACTOR:g}; `(k/n)`: the verdict of k of the n seeds.",
        "",
        format_table(result, markdown=True),
        "",
    ]
    if result.width_check is not None:
        lines += [
            width_heading(result.width_check),
            "",
            format_width_check(result.width_check, markdown=True),
            "",
        ]
    lines += [
        "## The tutorial's claims",
        "",
    ]
    lines += [f"- **{c.mark}**: {c.claim}. {c.evidence}" for c in claims]
    lines += ["", "## Plots", ""]
    lines += [f"![{p}]({p})" for p in plots if "/" not in p]
    lines += [
        "",
        "Per-run heatmaps (layer x step, first seed): "
        + ", ".join(f"[{Path(p).stem}]({p})" for p in plots if "/" in p),
        "",
        "Data: `results.json`, `records.csv`, `history.csv`, `table.csv`, `width_check.csv`.",
        "",
    ]
    return "\n".join(lines)


def check_report_folder(folder: str | os.PathLike[str], argument: str = "folder") -> None:
    """Raise ValueError unless ``folder`` is missing, empty or a previous report.

    A previous report is recognized by its ``REPORT_MARKER`` file; anything else in the
    folder (a user's files, another program's output) is never overwritten or deleted.

    Example:
    >>> check_report_folder("no/such/folder/yet")
    """
    path = Path(folder)
    if not path.exists():
        return
    if not path.is_dir():
        raise ValueError(
            f"Argument `{argument}` must be a folder. Received: {argument}={str(folder)!r} "
            "(exists and is not a directory)"
        )
    entries = sorted(p.name for p in path.iterdir())
    if entries and REPORT_MARKER not in entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise ValueError(
            f"Argument `{argument}` must be a new or empty folder, or a previous "
            f"keras-initlab report (replaced whole). Received: {argument}={str(folder)!r}, "
            f"which holds {len(entries)} other entries ({shown}); choose another folder "
            "with --out"
        )


def _write_files(result: CompareResult, folder: Path, data: Dataset | None) -> dict[str, Path]:
    claims = check_claims(result)
    paths = {"results.json": folder / "results.json"}
    paths["results.json"].write_text(
        json.dumps(to_json(result, claims), indent=1, allow_nan=False) + "\n"
    )
    for path in write_csvs(result, folder):
        paths[path.name] = path
    (folder / "table.txt").write_text(format_table(result) + "\n")
    paths["table.txt"] = folder / "table.txt"
    (folder / "table.md").write_text(format_table(result, markdown=True) + "\n")
    paths["table.md"] = folder / "table.md"
    plots = [str(p.relative_to(folder)) for p in write_plots(result, folder, data)]
    for plot in plots:
        paths[plot] = folder / plot
    (folder / "summary.md").write_text(_summary(result, claims, plots))
    paths["summary.md"] = folder / "summary.md"
    (folder / REPORT_MARKER).write_text(_MARKER_TEXT)
    return paths


def _move_in_place(staging: Path, folder: Path) -> None:
    """Put ``staging`` at ``folder``, removing what was there (a previous report) after."""
    if not folder.exists():
        staging.rename(folder)
        return
    old = folder.with_name(f".{folder.name}.old-{secrets.token_hex(4)}")
    folder.rename(old)
    try:
        staging.rename(folder)
    except OSError:
        old.rename(folder)
        raise
    shutil.rmtree(old)


def write_report(
    result: CompareResult, folder: str | os.PathLike[str], data: Dataset | None = None
) -> dict[str, Path]:
    """Write the report folder (see the module docstring); return ``{name: path}``.

    The files are written into a new folder beside ``folder`` and moved in place at the
    end, replacing a previous report whole.

    Args:
        result: what ``run_comparison`` returned (``result.partial``: marked partial).
        folder: the report folder: missing, empty or a previous report.
        data: the dataset trained on; adds ``decision_boundaries.png`` for 2-D datasets.

    Raises:
        ValueError: ``folder`` holds files that are not a previous report, or ``result``
            has no runs.
        OSError: the folder cannot be created or written.
    """
    if not result.schemes:
        raise ValueError("Argument `result` must hold at least one finished run. Received: none")
    check_report_folder(folder)
    target = Path(os.path.abspath(folder))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.writing-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        paths = _write_files(result, staging, data)
        _move_in_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {name: Path(folder) / path.relative_to(staging) for name, path in paths.items()}
