"""The report folder of ``keras-initlab compare``: its files beside the harness's own.

The folder is written whole by `keras_initlab.compare.harness.write_report`
(``results.json``, ``table.txt``, ``table.md``, ``summary.md``); `report_files` adds the
CSV files and the plots.
"""

from __future__ import annotations

import os
from pathlib import Path

from keras_initlab.compare.datasets import Dataset
from keras_initlab.compare.harness import report as harness_report
from keras_initlab.compare.harness.folder import REPORT_MARKER, check_report_folder, write_folder
from keras_initlab.compare.report.csv_files import write_csvs
from keras_initlab.compare.report.figures import write_plots
from keras_initlab.compare.results import CompareResult

__all__ = ["REPORT_MARKER", "check_report_folder", "report_files", "write_folder", "write_report"]


def report_files(result: CompareResult, folder: Path, data: Dataset | None) -> list[Path]:
    """The CSV files and the plots of the report, written into ``folder``."""
    return [*write_csvs(result, folder), *write_plots(result, folder, data)]


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
    from keras_initlab.compare.definition import COMPARE

    return harness_report.write_report(COMPARE, result, folder, data)
