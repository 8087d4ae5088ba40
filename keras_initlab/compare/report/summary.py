"""``summary.md`` of ``keras-initlab compare``: its setup lines and footer around the
harness's page (`keras_initlab.compare.harness.summary_markdown`: title, table, claims,
plots)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from keras_initlab.compare.harness import report as harness_report
from keras_initlab.compare.harness.claims import Claim
from keras_initlab.compare.results import CompareResult
from keras_initlab.compare.verdicts import VERDICT_FACTOR

__all__ = ["summary_footer", "summary_markdown", "summary_setup"]


def summary_setup(result: CompareResult) -> list[str]:
    """The lines between the title and the table: a partial run's note, the data, the
    network, the training and how to read the table."""
    config = result.config
    info = result.dataset
    contrast = (
        f"; {', '.join(result.contrast)} also with {config.contrast_activation}"
        if result.contrast
        else ""
    )
    lines = []
    if result.partial:
        missing = [name for name in config.schemes if name not in result.schemes]
        finished = [f"{r.name} ({r.activation})" for r in result.all_runs]
        not_run = ", ".join(missing) if missing else "contrast runs"
        lines += [harness_report.partial_note(finished, not_run), ""]
    return [
        *lines,
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
    ]


def summary_footer(plots: Sequence[str]) -> list[str]:
    """The lines after the plots: the per-run heatmaps and the data files."""
    return [
        "Per-run heatmaps (layer x step, first seed): "
        + ", ".join(f"[{Path(p).stem}]({p})" for p in plots if "/" in p),
        "",
        "Data: `results.json`, `records.csv`, `history.csv`, `table.csv`, `width_check.csv`.",
        "",
    ]


def summary_markdown(result: CompareResult, claims: Sequence[Claim], plots: Sequence[str]) -> str:
    """The report's ``summary.md`` (``plots``: the plots' paths relative to the folder)."""
    from keras_initlab.compare.definition import COMPARE

    return harness_report.summary_markdown(COMPARE, result, claims, plots)
