"""The report folder: which folders may be replaced, and writing every file at once."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from keras_initlab.compare.claims import check_claims
from keras_initlab.compare.datasets import Dataset
from keras_initlab.compare.report.csv_files import write_csvs
from keras_initlab.compare.report.figures import write_plots
from keras_initlab.compare.report.json_format import to_json
from keras_initlab.compare.report.summary import summary_markdown
from keras_initlab.compare.report.table import format_table
from keras_initlab.compare.results import CompareResult

REPORT_MARKER = ".keras-initlab-report"
_MARKER_TEXT = (
    "This folder is a `keras-initlab` report: a later run with --out here "
    "replaces the whole folder.\n"
)


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
    (folder / "summary.md").write_text(summary_markdown(result, claims, plots))
    paths["summary.md"] = folder / "summary.md"
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


def write_folder(
    folder: str | os.PathLike[str], write_files: Callable[[Path], dict[str, Path]]
) -> dict[str, Path]:
    """Write a report folder whole: ``write_files(staging)`` fills a new folder beside
    ``folder``, which is then moved in place (replacing a previous report) with the
    ``REPORT_MARKER`` file; a failure leaves ``folder`` as it was. Returns ``{name: path}``
    under ``folder``.

    Raises:
        ValueError: ``folder`` holds files that are not a previous report.
        OSError: the folder cannot be created or written.
    """
    check_report_folder(folder)
    target = Path(os.path.abspath(folder))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.writing-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        paths = write_files(staging)
        (staging / REPORT_MARKER).write_text(_MARKER_TEXT)
        _move_in_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {name: Path(folder) / path.relative_to(staging) for name, path in paths.items()}


def write_report(
    result: CompareResult, folder: str | os.PathLike[str], data: Dataset | None = None
) -> dict[str, Path]:
    """Write the report folder (see ``keras_initlab.compare.report``); return ``{name: path}``.

    The files are written into a new folder beside ``folder`` and moved in place at the
    end, replacing a previous report whole (`write_folder`).

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
    return write_folder(folder, lambda staging: _write_files(result, staging, data))
