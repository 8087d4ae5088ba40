"""What ``keras-initlab residual`` prints and writes: table, claims, plots, JSON, summary.

The report folder (written whole by the harness, like ``keras-initlab compare``'s:
`keras_initlab.compare.harness.write_report`) holds ``results.json`` (the config, every
run's stream variances at initialization and per-epoch loss / test accuracy, the table's
numbers and the claims; NaN and infinity as ``null``; ``"partial": true`` only when the
run was interrupted), ``table.txt`` / ``table.md``, ``stream_profile.png`` (the stream's
variance at initialization after each block over the stem's, median over seeds, with
He's ``3**l``), ``training_curves.png`` (training loss and test accuracy per epoch, median
and range over seeds) and ``summary.md``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_initlab.compare.datasets import Dataset
from keras_initlab.compare.harness import report as harness_report
from keras_initlab.compare.harness.claims import Claim, claims_as_dicts, fmt_spread
from keras_initlab.compare.harness.report import partial_note, strict_json
from keras_initlab.compare.report.figures import (
    log10_or_nan,
    save_figures,
    scheme_colors,
    seed_band,
)
from keras_initlab.compare.residual.claims import check_residual_claims, verdict
from keras_initlab.compare.residual.experiment import ResidualResult
from keras_initlab.compare.spread import spread
from keras_initlab.text_table import format_table, markdown_table

COLUMNS = ("network", "scheme", "last sum / stem", "max sum / stem", "test acc", "verdict")
__all__ = [
    "COLUMNS",
    "format_residual_table",
    "print_residual",
    "residual_files",
    "residual_setup",
    "to_residual_json",
    "write_residual_json",
    "write_residual_report",
]


def _rows(result: ResidualResult) -> list[list[str]]:
    rows = []
    for arch in result.config.architectures:
        net = f"{arch} ({result.config.depth(arch)} blocks)"
        for scheme in result.config.schemes:
            runs = result.of(arch, scheme)
            if not runs:
                continue
            peaks = spread([max(r.relative_stream) for r in runs])
            rows.append(
                [
                    net,
                    scheme,
                    fmt_spread(result.spread_of(arch, scheme, "growth")),
                    fmt_spread(peaks),
                    fmt_spread(result.spread_of(arch, scheme, "final_accuracy")),
                    verdict(result, arch, scheme),
                ]
            )
    return rows


def format_residual_table(result: ResidualResult, *, markdown: bool = False) -> str:
    """One row per network and scheme: the stream's variance at initialization after the
    last block and at its largest, over the stem's; the final test accuracy; the verdict
    (`keras_initlab.compare.residual.claims.verdict`). Median over seeds ``[min..max]``."""
    render = markdown_table if markdown else format_table
    return "\n".join(render(COLUMNS, _rows(result)))


def to_residual_json(result: ResidualResult, claims: Sequence[Claim] | None = None) -> dict:
    """The JSON document of ``results.json`` (strict JSON: NaN and infinity as null)."""
    claims = check_residual_claims(result) if claims is None else claims
    return strict_json(
        {
            "config": dataclasses.asdict(result.config),
            "data": result.dataset,
            "seconds": result.seconds,
            "runs": [
                {**dataclasses.asdict(r), "growth": r.growth, "diverged": r.diverged}
                for r in result.runs
            ],
            "table": [dict(zip(COLUMNS, row, strict=True)) for row in _rows(result)],
            "claims": claims_as_dicts(claims),
            **({"partial": True} if result.partial else {}),
        }
    )


def write_residual_json(
    result: ResidualResult, path: str | os.PathLike[str], claims: Sequence[Claim] | None = None
) -> Path:
    """Write ``to_residual_json(result)`` to ``path`` (parent folders created); return it."""
    from keras_initlab.compare.residual.definition import RESIDUAL

    return harness_report.write_json(RESIDUAL, result, path, claims)


def _profile_figure(result: ResidualResult) -> Any:
    from matplotlib.figure import Figure

    archs = result.config.architectures
    fig = Figure(figsize=(6.5 * len(archs), 4.8), layout="constrained")
    axes = fig.subplots(1, len(archs), squeeze=False)[0]
    schemes = result.config.schemes
    for ax, arch in zip(axes, archs, strict=True):
        blocks = result.config.depth(arch)
        x = list(range(blocks + 1))
        for scheme, color in zip(schemes, scheme_colors(len(schemes)), strict=True):
            rows = [[log10_or_nan(v) for v in r.relative_stream] for r in result.of(arch, scheme)]
            if rows:
                seed_band(ax, x, rows, color, scheme)
        ax.plot(x, [i * math.log10(3.0) for i in x], color="grey", ls=":", label="3^l (He theory)")
        ax.set_xlabel("block (0: stem)")
        ax.set_ylabel("log10 stream variance / stem's, at init")
        ax.set_title(f"{arch}, {blocks} blocks, no normalization")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"Residual stream at initialization ({result.dataset.get('name', '')})")
    return fig


def _curves_figure(result: ResidualResult) -> Any:
    from matplotlib.figure import Figure

    archs = result.config.architectures
    fig = Figure(figsize=(12, 4.2 * len(archs)), layout="constrained")
    axes = fig.subplots(len(archs), 2, squeeze=False)
    schemes = result.config.schemes
    for row, arch in zip(axes, archs, strict=True):
        for scheme, color in zip(schemes, scheme_colors(len(schemes)), strict=True):
            runs = result.of(arch, scheme)
            if not runs:
                continue
            x = list(range(1, len(runs[0].loss) + 1))
            seed_band(row[0], x, [[log10_or_nan(v) for v in r.loss] for r in runs], color, scheme)
            seed_band(row[1], x, [r.test_accuracy for r in runs], color, scheme)
        row[0].set_ylabel(f"{arch}: log10 training loss")
        row[1].set_ylabel(f"{arch}: test accuracy")
        for ax in row:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        row[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Training under each scheme (median; band: min-max over seeds)")
    fig.supxlabel("A curve that stops: the loss became NaN or infinite.", fontsize=7)
    return fig


def residual_setup(result: ResidualResult) -> list[str]:
    """``summary.md``'s lines before the table: a partial run's note, the data, networks
    and training."""
    config, info = result.config, result.dataset
    nets = "; ".join(
        f"{arch}: {config.depth(arch)} residual blocks"
        + (f" of Dense({config.width})" if arch == "mlp" else f" of 3x3 conv({config.channels})")
        for arch in config.architectures
    )
    lines = []
    if result.partial:
        total = len(config.architectures) * len(config.schemes) * config.seeds
        finished = [f"{r.architecture} {r.scheme} s{r.seed}" for r in result.runs]
        lines += [partial_note(finished, f"{total - len(result.runs)} runs"), ""]
    return [
        *lines,
        f"Data: {info.get('description', '')}; {info.get('train')} training and "
        f"{info.get('test')} test examples. Networks without normalization ({nets}). "
        f"Every scheme: weight seeds {', '.join(map(str, config.seed_values))}, SGD(learning "
        f"rate {config.learning_rate}, momentum {config.momentum}), {config.epochs} epochs of "
        f"batch {config.batch_size}; the stream measured at initialization on "
        f"{min(config.probe_size, int(info.get('test') or 0))} test examples.",
        "",
    ]


def residual_files(result: ResidualResult, folder: Path, data: Dataset | None) -> list[Path]:
    """The report's plots, ``stream_profile.png`` and ``training_curves.png``, in ``folder``."""
    return save_figures(
        folder,
        {
            "stream_profile.png": _profile_figure(result),
            "training_curves.png": _curves_figure(result),
        },
    )


def write_residual_report(
    result: ResidualResult, folder: str | os.PathLike[str]
) -> dict[str, Path]:
    """Write the report folder; return ``{name: path}``.

    Raises:
        ValueError: ``result`` has no runs, or ``folder`` holds files that are not a report.
    """
    from keras_initlab.compare.residual.definition import RESIDUAL

    return harness_report.write_report(RESIDUAL, result, folder)


def print_residual(result: ResidualResult) -> str:
    """The text the command prints: the table, then the claims."""
    from keras_initlab.compare.residual.definition import RESIDUAL

    return harness_report.report_text(RESIDUAL, result)
