"""What ``keras-initlab compare`` prints and writes: table, JSON, CSV, plots, summary.

The report folder holds:

* ``results.json``: the ``--json`` format (keras_initlab/compare/README.md: ``dataset``,
  ``schemes`` with ``activation_var`` / ``gradient_var`` per layer at initialization,
  ``distinct_units`` per hidden layer after training, ``loss`` / ``accuracy`` per epoch)
  plus the configuration, the contrast runs, the verdicts and the claims. Those lists are
  the medians over seeds; ``seeds`` and ``per_seed`` hold every seed's own lists, ratios
  and verdict, and ``width_check`` the finite-width check. NaN and infinity are written as ``null``.
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

from keras_initlab.compare.harness.claims import format_claims
from keras_initlab.compare.report.csv_files import CSV_COLUMNS, CSV_SPREADS, csv_rows, write_csvs
from keras_initlab.compare.report.figures import BLANK_NOTE, HEATMAP_CLIP, MAX_TICKS, write_plots
from keras_initlab.compare.report.folder import REPORT_MARKER, check_report_folder, write_report
from keras_initlab.compare.report.json_format import to_json, write_json
from keras_initlab.compare.report.summary import summary_markdown
from keras_initlab.compare.report.table import (
    TABLE_COLUMNS,
    format_table,
    format_width_check,
    table_rows,
    width_heading,
)

__all__ = [
    "BLANK_NOTE",
    "CSV_COLUMNS",
    "CSV_SPREADS",
    "HEATMAP_CLIP",
    "MAX_TICKS",
    "REPORT_MARKER",
    "TABLE_COLUMNS",
    "check_report_folder",
    "csv_rows",
    "format_claims",
    "format_table",
    "format_width_check",
    "summary_markdown",
    "table_rows",
    "to_json",
    "width_heading",
    "write_csvs",
    "write_json",
    "write_plots",
    "write_report",
]
