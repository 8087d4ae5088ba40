"""The CSV files of the report: ``records.csv``, ``history.csv``, ``table.csv`` (numbers only)
and ``width_check.csv``; a missing or NaN value is an empty cell."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_initlab.compare.report.table import distinct_range
from keras_initlab.compare.results import CompareResult
from keras_initlab.compare.spread import Spread

# Numeric columns of table.csv: each spread over seeds as median, min and max.
CSV_SPREADS = ("activation_ratio", "gradient_ratio", "loss", "test_accuracy")
CSV_COLUMNS = (
    "scheme",
    "activation",
    "seeds",
    *(f"{k}_{part}" for k in CSV_SPREADS for part in ("median", "min", "max")),
    "distinct_units_min",
    "distinct_units_max",
    "verdict",
    "verdict_seeds",
)


def _csv_number(value: float | None) -> float | None:
    """A CSV cell: the float, or None (an empty cell) when missing or NaN."""
    return None if value is None or math.isnan(value) else value


def csv_rows(result: CompareResult) -> list[dict[str, Any]]:
    """One row per run with numbers only (``CSV_COLUMNS``), for ``table.csv``."""
    rows = []
    for run in result.all_runs:
        spreads: dict[str, Spread] = {
            "activation_ratio": run.activation_spread,
            "gradient_ratio": run.gradient_spread,
            "loss": run.final("loss"),
            "test_accuracy": run.final("test_accuracy"),
        }
        row: dict[str, Any] = {"scheme": run.name, "activation": run.activation}
        row["seeds"] = len(run.runs)
        for key, value in spreads.items():
            row[f"{key}_median"] = _csv_number(value.median)
            row[f"{key}_min"] = _csv_number(value.low)
            row[f"{key}_max"] = _csv_number(value.high)
        distinct = distinct_range(run)
        row["distinct_units_min"], row["distinct_units_max"] = distinct or (None, None)
        row["verdict"] = run.verdict
        row["verdict_seeds"] = run.verdicts.count(run.verdict)
        rows.append(row)
    return rows


def _cell(value: Any) -> Any:
    """A CSV cell: empty for None and NaN, the value otherwise (``inf`` stays readable)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def _write_csv(path: Path, fields: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in fields})


def write_csvs(result: CompareResult, folder: Path) -> list[Path]:
    """``records.csv``, ``history.csv`` and ``table.csv`` in ``folder``."""
    records = [r for run in result.all_runs for r in run.records]
    keys: dict[str, None] = {"scheme": None}
    for r in records:
        keys.update(dict.fromkeys(r))
    history = [
        {
            "scheme": run.name,
            "activation": run.activation,
            "seed": seed_run.seed,
            "epoch": e + 1,
            "loss": seed_run.loss[e],
            "accuracy": seed_run.accuracy[e],
            "test_loss": seed_run.test_loss[e],
            "test_accuracy": seed_run.test_accuracy[e],
        }
        for run in result.all_runs
        for seed_run in run.runs
        for e in range(len(seed_run.loss))
    ]
    paths = [folder / "records.csv", folder / "history.csv", folder / "table.csv"]
    _write_csv(paths[0], list(keys), records)
    _write_csv(
        paths[1],
        ["scheme", "activation", "seed", "epoch", "loss", "accuracy", "test_loss", "test_accuracy"],
        history,
    )
    _write_csv(paths[2], CSV_COLUMNS, csv_rows(result))
    check = result.width_check
    if check is not None:
        paths.append(folder / "width_check.csv")
        _write_csv(
            paths[-1],
            ["width", "seed", "activation_ratio", "gradient_ratio"],
            [
                {
                    "width": w,
                    "seed": seed,
                    "activation_ratio": _csv_number(a),
                    "gradient_ratio": _csv_number(g),
                }
                for w in check.activation_ratio
                for seed, a, g in zip(
                    check.seeds, check.activation_ratio[w], check.gradient_ratio[w], strict=True
                )
            ],
        )
    return paths
