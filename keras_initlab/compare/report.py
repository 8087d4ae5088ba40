"""What ``keras-initlab compare`` prints and writes: table, JSON, CSV, plots, summary.

The report folder holds:

* ``results.json``: the ``--json`` format of design.md (``dataset``, ``schemes`` with
  ``activation_var`` / ``gradient_var`` per layer at initialization, ``distinct_units`` per
  hidden layer after training, ``loss`` / ``accuracy`` per epoch) plus the configuration,
  the contrast runs, the verdicts and the claims. NaN and infinity are written as ``null``.
* ``records.csv`` (every VarianceMonitor record of every run), ``history.csv`` (loss and
  accuracy per epoch), ``table.csv`` and ``table.txt`` (the printed table).
* ``depth_profile.png``, ``heatmap.png``, ``loss_curves.png``, ``contrast.png``,
  ``decision_boundaries.png`` (2-D datasets) and ``training/<scheme>_<activation>.png``
  (the monitor's layer x step heatmap of each run).
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

from keras_initlab.compare.claims import Claim, check_claims, claims_as_dicts
from keras_initlab.compare.datasets import Dataset
from keras_initlab.compare.runner import CompareResult, SchemeResult
from keras_initlab.compare.setups import describe_schemes
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
REPORT_MARKER = ".keras-initlab-report"
_MARKER_TEXT = (
    "This folder is a `keras-initlab compare` report: a later run with --out here "
    "replaces the whole folder.\n"
)
HEATMAP_CLIP = 6.0  # colour scale of the heatmap: log10 ratios beyond +-6 share one colour
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


def _number(value: float, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and (abs(value) >= 10**digits or abs(value) < 10 ** -(digits - 1)):
        return f"{value:.2e}"
    return f"{value:.{digits}g}"


def _distinct(values: Sequence[float]) -> str:
    finite = [int(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "-"
    low, high = min(finite), max(finite)
    return str(low) if low == high else f"{low}-{high}"


def table_rows(result: CompareResult) -> list[dict[str, str]]:
    """One row per run (main runs, then contrast runs), formatted for printing."""
    rows = []
    for run in (*result.schemes.values(), *result.contrast.values()):
        rows.append(
            {
                "scheme": run.name,
                "activation": run.activation,
                "act var x": _number(run.activation_ratio),
                "grad var x": _number(run.gradient_ratio),
                "distinct units": _distinct(run.distinct_units),
                "loss": _number(run.loss[-1] if run.loss else math.nan),
                "test acc": _number(run.test_accuracy[-1] if run.test_accuracy else math.nan),
                "verdict": run.verdict,
            }
        )
    return rows


def format_table(result: CompareResult, *, markdown: bool = False) -> str:
    """The comparison table: a row per run.

    Columns: ``act var x``, the activation variance of the last hidden layer over the first
    at initialization; ``grad var x``, the gradient variance at the first hidden layer over
    the last (its growth on the way back to the input); ``distinct units``, after training,
    over the hidden layers (``min-max``); the final training loss and test accuracy; the
    verdict (``keras_initlab.compare.verdicts``).
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
        "verdict": run.verdict,
        "initializer": initializer,
        "seconds": run.seconds,
    }


def to_json(result: CompareResult, claims: list[Claim] | None = None) -> dict[str, Any]:
    """The results in the ``--json`` format (design.md), plus context; strict JSON values.

    ``{"dataset": name, "schemes": {NAME: {"activation_var": [per layer at init],
    "gradient_var": [per layer at init], "distinct_units": [per hidden layer, after
    training], "loss": [per epoch], "accuracy": [per epoch], ...}}, "contrast": {...},
    "claims": [...], "partial": bool, ...}``; layers are the hidden layers then the output
    layer; ``partial`` is true for an interrupted run (only the runs that finished).
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


def _write_csv(path: Path, fields: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in fields})


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
            "epoch": e + 1,
            "loss": run.loss[e],
            "accuracy": run.accuracy[e],
            "test_loss": run.test_loss[e],
            "test_accuracy": run.test_accuracy[e],
        }
        for run in _runs(result)
        for e in range(len(run.loss))
    ]
    paths = [folder / "records.csv", folder / "history.csv", folder / "table.csv"]
    _write_csv(paths[0], list(keys), records)
    _write_csv(
        paths[1],
        ["scheme", "activation", "epoch", "loss", "accuracy", "test_loss", "test_accuracy"],
        history,
    )
    _write_csv(paths[2], TABLE_COLUMNS, table_rows(result))
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


def _plot_profiles(runs: Sequence[SchemeResult], title: str) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("activation_var", "gradient_var"), strict=True):
        for run, color in zip(runs, _colors(len(runs)), strict=True):
            values = [_log10(v) for v in getattr(run, key)]
            label = f"{run.name} ({run.activation})"
            if all(math.isnan(v) for v in values):
                label += ": 0 or NaN"
            ax.plot(
                range(1, len(values) + 1),
                values,
                marker="o",
                ms=3,
                color=color,
                label=label,
                linestyle="--" if run.activation != runs[0].activation else "-",
            )
        ax.set_xticks(
            range(1, len(runs[0].layers) + 1),
            [n.replace("hidden_", "") for n in runs[0].layers],
            fontsize=7,
        )
        ax.set_xlabel("layer (hidden 1..L, then output)")
        ax.set_ylabel(f"log10 {key} at initialization")
        ax.set_title(f"{key.replace('_', ' ')} across depth")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    return fig


def _plot_heatmap(runs: Sequence[SchemeResult], title: str) -> Any:
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 0.35 * len(runs) + 2.0), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("activation_var", "gradient_var"), strict=True):
        grid = []
        for run in runs:
            values = [_log10(v) for v in getattr(run, key)[:-1]]  # hidden layers
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
        ax.set_xticks(
            range(len(runs[0].layers) - 1),
            [str(i + 1) for i in range(len(runs[0].layers) - 1)],
            fontsize=7,
        )
        ax.set_xlabel("hidden layer")
        where = "first" if key == "activation_var" else "last"
        ax.set_title(f"log10 {key} / {where} hidden layer's, at init")
        fig.colorbar(image, ax=ax)
    fig.suptitle(title)
    return fig


def _plot_curves(runs: Sequence[SchemeResult], title: str) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for run, color in zip(runs, _colors(len(runs)), strict=True):
        epochs = range(1, len(run.loss) + 1)
        style = "--" if run.activation != runs[0].activation else "-"
        label = f"{run.name} ({run.activation})"
        axes[0].plot(epochs, run.loss, color=color, linestyle=style, label=label)
        axes[1].plot(epochs, run.test_accuracy, color=color, linestyle=style, label=label)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("training loss")
    axes[1].set_ylabel("test accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
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
        figs = plot_variance(run.records)
        path = training / f"{run.name}_{run.activation}.png"
        figs["heatmap"].suptitle(f"{run.name} ({run.activation}): variance by layer and step")
        figs["heatmap"].savefig(path, dpi=_DPI)
        paths.append(path)
    return paths


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
        f"and a linear output{contrast}. Every scheme: seed {config.seed}, SGD(learning rate "
        f"{config.learning_rate}, momentum {config.momentum}), {config.epochs} epochs of "
        f"batch {config.batch_size}; variances measured by VarianceMonitor on "
        f"{min(config.probe_size, info['test'])} test examples.",
        "",
        "`act var x`: activation variance of the last hidden layer over the first, at "
        "initialization; `grad var x`: gradient variance at the first hidden layer over the "
        "last (growth towards the input); `distinct units`: after training, min-max over "
        f"hidden layers. Verdict: exploding / vanishing beyond a factor {VERDICT_FACTOR:g}, "
        "symmetric when every hidden layer has one distinct unit.",
        "",
        format_table(result, markdown=True),
        "",
        "## The tutorial's claims",
        "",
    ]
    lines += [f"- **{c.mark}**: {c.claim}. {c.evidence}" for c in claims]
    lines += ["", "## Plots", ""]
    lines += [f"![{p}]({p})" for p in plots if "/" not in p]
    lines += [
        "",
        "Per-run heatmaps (layer x step): "
        + ", ".join(f"[{Path(p).stem}]({p})" for p in plots if "/" in p),
        "",
        "Data: `results.json`, `records.csv`, `history.csv`, `table.csv`.",
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
