"""What ``keras-initlab transformer`` prints and writes: table, claims, plots, JSON, summary.

The report folder (written whole by the harness: `keras_initlab.compare.harness.write_report`)
holds ``results.json`` (the config, the text's SHA-256 and unigram loss, every run's stream
variances at initialization measured and predicted, its gradient variances, its test loss
at initialization and after each round, the table and the claims; NaN and infinity as
``null``; ``"partial": true`` only when interrupted), ``table.txt`` / ``table.md``,
``stream_profile.png`` (the stream's variance at each sum over the first sum's, measured
and predicted, per architecture), ``training_curves.png`` (test loss per round, median and
range over seeds) and ``summary.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_initlab.compare.datasets import Dataset
from keras_initlab.compare.harness.claims import Claim, claims_as_dicts, fmt, fmt_spread
from keras_initlab.compare.harness.report import partial_note, strict_json
from keras_initlab.compare.report.figures import (
    log10_or_nan,
    save_figures,
    scheme_colors,
    seed_band,
)
from keras_initlab.compare.transformer.claims import check_transformer_claims, verdict
from keras_initlab.compare.transformer.experiment import TransformerResult
from keras_initlab.compare.transformer.text import README_SHA256
from keras_initlab.text_table import format_table, markdown_table

COLUMNS = (
    "network",
    "scheme",
    "growth",
    "predicted",
    "initial loss",
    "final test loss",
    "verdict",
)
__all__ = [
    "COLUMNS",
    "format_transformer_table",
    "to_transformer_json",
    "transformer_files",
    "transformer_setup",
]


def _rows(result: TransformerResult) -> list[list[str]]:
    rows = []
    for arch, scheme in result.config.setups:
        if not result.of(arch, scheme):
            continue
        rows.append(
            [
                f"{arch} ({result.config.depth} blocks)",
                scheme,
                fmt_spread(result.spread_of(arch, scheme, "growth")),
                fmt_spread(result.spread_of(arch, scheme, "predicted_growth")),
                fmt_spread(result.spread_of(arch, scheme, "initial_loss")),
                fmt_spread(result.spread_of(arch, scheme, "final_test_loss")),
                verdict(result, arch, scheme),
            ]
        )
    return rows


def format_transformer_table(result: TransformerResult, *, markdown: bool = False) -> str:
    """One row per architecture and scheme: the stream's growth at initialization (last sum
    over first) measured and predicted by ``propagate``, the test loss at initialization and
    after training, the verdict (`keras_initlab.compare.transformer.claims.verdict`). Median
    over seeds ``[min..max]``."""
    render = markdown_table if markdown else format_table
    return "\n".join(render(COLUMNS, _rows(result)))


def to_transformer_json(result: TransformerResult, claims: Sequence[Claim] | None = None) -> dict:
    """The JSON document of ``results.json`` (strict JSON: NaN and infinity as null)."""
    claims = check_transformer_claims(result) if claims is None else claims
    return strict_json(
        {
            "config": dataclasses.asdict(result.config),
            "data": result.dataset,
            "seconds": result.seconds,
            "runs": [
                {
                    **dataclasses.asdict(r),
                    "growth": r.growth,
                    "predicted_growth": r.predicted_growth,
                    "diverged": r.diverged,
                }
                for r in result.runs
            ],
            "table": [dict(zip(COLUMNS, row, strict=True)) for row in _rows(result)],
            "claims": claims_as_dicts(claims),
            **({"partial": True} if result.partial else {}),
        }
    )


def _profile_figure(result: TransformerResult) -> Any:
    from matplotlib.figure import Figure

    archs = [
        a for a in result.config.architectures if any(r.architecture == a for r in result.runs)
    ]
    fig = Figure(figsize=(6.0 * len(archs) + 1.5, 4.8), layout="constrained")
    axes = fig.subplots(1, len(archs), squeeze=False)[0]
    x = list(range(1, 2 * result.config.depth + 1))
    for ax, arch in zip(axes, archs, strict=True):
        schemes = [s for a, s in result.config.setups if a == arch]
        for scheme, color in zip(schemes, scheme_colors(len(schemes)), strict=True):
            runs = result.of(arch, scheme)
            if not runs:
                continue
            measured = [[log10_or_nan(v / r.stream[1]) for v in r.stream[1:]] for r in runs]
            predicted = [[log10_or_nan(v / r.predicted[1]) for v in r.predicted[1:]] for r in runs]
            seed_band(ax, x, measured, color, scheme)
            ax.plot(x, [sum(c) / len(c) for c in zip(*predicted, strict=True)], color=color, ls=":")
        ax.set_xlabel("residual sum (2 per block)")
        ax.set_ylabel("log10 stream variance / first sum's, at init")
        ax.set_title(f"{arch}, {result.config.depth} blocks")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(
        "Residual stream at initialization (solid: measured, median and range over "
        "seeds; dotted: propagate())"
    )
    return fig


def _curves_figure(result: TransformerResult) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 5.0), layout="constrained")
    ax = fig.subplots()
    setups = [s for s in result.config.setups if result.of(*s)]
    steps = result.config.steps
    for (arch, scheme), color in zip(setups, scheme_colors(len(setups)), strict=True):
        runs = result.of(arch, scheme)
        x = [steps * i for i in range(len(runs[0].test_loss) + 1)]
        seed_band(ax, x, [[r.initial_loss, *r.test_loss] for r in runs], color, f"{arch} {scheme}")
    ax.axhline(result.unigram_loss, color="grey", ls=":", label="unigram loss")
    ax.set_ylim(0.0, 2.0 * result.unigram_loss)
    ax.set_xlabel("training step")
    ax.set_ylabel("test loss (nats per byte)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Test loss under each scheme (median; band: min-max over seeds)")
    fig.supxlabel(
        "A curve that stops: the loss became NaN or infinite; one missing: above twice the "
        "unigram loss throughout.",
        fontsize=7,
    )
    return fig


def transformer_setup(result: TransformerResult) -> list[str]:
    """``summary.md``'s lines before the table: a partial run's note, the text (and whether
    it is the README's), the networks and the training."""
    config, info = result.config, result.dataset
    lines = []
    if result.partial:
        total = len(config.setups) * config.seeds
        finished = [f"{r.architecture} {r.scheme} s{r.seed}" for r in result.runs]
        lines += [partial_note(finished, f"{total - len(result.runs)} runs"), ""]
    if info.get("sha256") != README_SHA256:
        lines += [
            f"The text differs from the README's run (sha256 {info.get('sha256')}, the "
            f"README's {README_SHA256}): this Python's standard library is another version, "
            "so the numbers differ from the README's.",
            "",
        ]
    return [
        *lines,
        f"Data: {info.get('description', '')}; {info.get('train')} training and "
        f"{info.get('test')} test windows; unigram loss {fmt(result.unigram_loss)} nats. "
        f"Decoder-only transformers of {config.depth} blocks, width {config.width}, "
        f"{config.heads} heads, no position embedding. Every scheme: weight seeds "
        f"{', '.join(map(str, config.seed_values))}; Adam (peak rate {config.learning_rate:g}, "
        f"betas {config.momentum:g}, {config.beta_2:g}), warmup over {config.warmup:.0%} of "
        f"{config.total_steps} steps of batch {config.batch_size}, cosine decay to a tenth; "
        f"the stream measured at initialization on {config.probe_size} test windows.",
        "",
    ]


def transformer_files(result: TransformerResult, folder: Path, data: Dataset | None) -> list[Path]:
    """The report's plots, ``stream_profile.png`` and ``training_curves.png``, in ``folder``."""
    return save_figures(
        folder,
        {
            "stream_profile.png": _profile_figure(result),
            "training_curves.png": _curves_figure(result),
        },
    )
