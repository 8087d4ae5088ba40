"""``summary.md``: the report's Markdown page (setup, table, claims, plots)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from keras_initlab.compare.claims import Claim
from keras_initlab.compare.report.table import format_table, format_width_check, width_heading
from keras_initlab.compare.results import CompareResult
from keras_initlab.compare.verdicts import VERDICT_FACTOR


def summary_markdown(result: CompareResult, claims: Sequence[Claim], plots: Sequence[str]) -> str:
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
            + ", ".join(f"{r.name} ({r.activation})" for r in result.all_runs)
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
