"""What every experiment prints and writes: its text, ``results.json`` and the report folder.

The report folder of an experiment (`write_report`, written whole by
`keras_initlab.compare.harness.folder.write_folder`) holds ``results.json`` (the
experiment's JSON document with its claims, strict JSON: NaN and infinity as ``null``),
the experiment's own files (CSV, plots), ``table.txt`` and ``table.md`` (the printed
table as text and Markdown) and ``summary.md``: the title, the experiment's setup lines,
the table and its other sections, the claims, the plots and the experiment's footer.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_initlab.compare.datasets import Dataset
from keras_initlab.compare.harness.claims import Claim, format_claims
from keras_initlab.compare.harness.experiment import Experiment
from keras_initlab.compare.harness.folder import write_folder

__all__ = [
    "partial_note",
    "report_text",
    "strict_json",
    "summary_markdown",
    "write_json",
    "write_report",
]


def strict_json(value: Any) -> Any:
    """``value`` with NaN/Inf floats replaced by None, recursively (strict JSON).

    Example:
    >>> strict_json({"a": [1.0, float("nan")], "b": (float("inf"),)})
    {'a': [1.0, None], 'b': [None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_json(
    experiment: Experiment,
    result: Any,
    path: str | os.PathLike[str],
    claims: Sequence[Claim] | None = None,
) -> Path:
    """Write ``experiment.to_json(result, claims)`` to ``path`` (parent folders created).

    Args:
        experiment: the definition.
        result: what `keras_initlab.compare.harness.run_experiment` returned.
        path: the file, overwritten.
        claims: the result's claims (default: ``experiment.claims(result)``).

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = experiment.to_json(result, experiment.claims(result) if claims is None else claims)
    path.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
    return path


def report_text(experiment: Experiment, result: Any) -> str:
    """What the command prints: the table, the experiment's other sections, the claims."""
    parts = [experiment.table(result), *experiment.sections(result, False)]
    return "\n\n".join([*parts, format_claims(experiment.claims(result))])


def partial_note(finished: Sequence[str], not_run: str) -> str:
    """``summary.md``'s note on an interrupted run: what finished, what did not run.

    Example:
    >>> partial_note(["zeros (relu)"], "he_normal")[:44]
    '**Partial report: the run was interrupted.**'
    """
    return (
        "**Partial report: the run was interrupted.** Finished: "
        + ", ".join(finished)
        + f"; not run: {not_run}. The claims below are judged on the finished runs only."
    )


def summary_markdown(
    experiment: Experiment, result: Any, claims: Sequence[Claim], plots: Sequence[str]
) -> str:
    """``summary.md``: title, setup, tables, claims, the plots of the folder's top level
    (``plots``: paths relative to the folder) and the experiment's footer."""
    lines = [f"# keras-initlab {experiment.name}: {result.dataset.get('name', '')}", ""]
    lines += experiment.setup(result)
    lines += [experiment.table(result, markdown=True), ""]
    for section in experiment.sections(result, True):
        lines += [section, ""]
    lines += [f"## {experiment.claims_title}", ""]
    lines += [f"- **{c.mark}**: {c.claim}. {c.evidence}" for c in claims]
    lines += ["", "## Plots", ""]
    lines += [f"![{p}]({p})" for p in plots if "/" not in p]
    lines += ["", *experiment.footer(list(plots))]
    return "\n".join(lines)


def write_report(
    experiment: Experiment,
    result: Any,
    folder: str | os.PathLike[str],
    data: Dataset | None = None,
) -> dict[str, Path]:
    """Write the report folder of ``result`` whole (see the module); return ``{name: path}``.

    Args:
        experiment: the definition.
        result: what `keras_initlab.compare.harness.run_experiment` returned
            (``result.partial``: the report says so).
        folder: the report folder: missing, empty or a previous report.
        data: the dataset trained on (the experiment's plots may draw it).

    Raises:
        ValueError: ``folder`` holds files that are not a previous report, or ``result``
            has no finished run.
        OSError: the folder cannot be created or written.
    """
    if not result.finished:
        raise ValueError("Argument `result` must hold at least one finished run. Received: none")
    claims = experiment.claims(result)

    def write(staging: Path) -> dict[str, Path]:
        paths = {"results.json": write_json(experiment, result, staging / "results.json", claims)}
        for name, markdown in (("table.txt", False), ("table.md", True)):
            paths[name] = staging / name
            paths[name].write_text(experiment.table(result, markdown=markdown) + "\n")
        files = [str(p.relative_to(staging)) for p in experiment.files(result, staging, data)]
        paths.update({name: staging / name for name in files})
        plots = [name for name in files if name.endswith(".png")]
        paths["summary.md"] = staging / "summary.md"
        paths["summary.md"].write_text(summary_markdown(experiment, result, claims, plots))
        return paths

    return write_folder(folder, write)
