"""The printed comparison tables (text and Markdown): one row per run and the finite-width
table, as ``keras-initlab compare`` prints them and ``table.txt`` / ``table.md`` hold."""

from __future__ import annotations

import math

from keras_initlab.compare.harness.claims import fmt_spread
from keras_initlab.compare.results import CompareResult, SchemeResult, WidthCheck
from keras_initlab.compare.spread import spread
from keras_initlab.text_table import format_table as text_table
from keras_initlab.text_table import markdown_table

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


def distinct_range(run: SchemeResult) -> tuple[int, int] | None:
    """Min and max distinct units over hidden layers and seeds (finite layers only)."""
    finite = [
        int(v) for r in run.runs for v in r.distinct_units if v is not None and math.isfinite(v)
    ]
    return (min(finite), max(finite)) if finite else None


def _distinct(run: SchemeResult) -> str:
    found = distinct_range(run)
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
    for run in result.all_runs:
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
        return "\n".join(
            markdown_table(TABLE_COLUMNS, [[r[c] for c in TABLE_COLUMNS] for r in rows])
        )
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in TABLE_COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in TABLE_COLUMNS).rstrip()]
    for i, r in enumerate(rows):
        if i == len(result.schemes) and result.contrast:
            lines.append("  ".join("-" * widths[c] for c in TABLE_COLUMNS))
        lines.append("  ".join(r[c].ljust(widths[c]) for c in TABLE_COLUMNS).rstrip())
    return "\n".join(lines)


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
    cells = [[r[c] for c in columns] for r in rows]
    if markdown:
        return "\n".join(markdown_table([c.strip() for c in columns], cells))
    return "\n".join(text_table([c.strip() for c in columns], cells))


def width_heading(check: WidthCheck) -> str:
    """The line above the finite-width table."""
    return (
        f"Finite width: he_normal ({check.activation}, {check.depth} hidden layers) at "
        f"initialization, {len(check.seeds)} seeds per width (seeds {check.seeds[0]}.."
        f"{check.seeds[-1]}):"
    )


def width_sections(result: CompareResult, markdown: bool) -> list[str]:
    """The finite-width check under its heading, when the run has one (else nothing)."""
    check = result.width_check
    if check is None:
        return []
    gap = "\n\n" if markdown else "\n"
    return [width_heading(check) + gap + format_width_check(check, markdown=markdown)]
