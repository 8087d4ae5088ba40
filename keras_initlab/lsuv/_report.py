"""What ``lsuv`` reports: one row per layer, the row statuses, and the warning for failures."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from keras_initlab.text_table import RowReport, format_table

# Row statuses of the report; only the first one counts as converged.
CONVERGED = "converged"
STATUSES = {
    CONVERGED: "variance within tol of 1",
    "max_iter": "max_iter rescalings did not bring the variance within tol",
    "zero_output": "the output is all zeros (a dead ReLU before it, or an all-zero input)",
    "non_finite": "the output is NaN or Inf",
    "overflow": "the rescaled kernel would overflow its dtype",
    "not_called": "the forward pass never calls this layer",
    "changed": "a later rescaling changed its output (a layer called more than once)",
}


class LSUVWarning(RuntimeWarning):
    """Some layers could not be normalized by ``lsuv``; their weights are finite."""


@dataclass(frozen=True)
class LSUVLayer:
    """One normalized layer: rescalings made, and the variance and mean of its output at the end.

    ``variance`` and ``mean`` are measured on the batch LSUV saw, after every layer was done
    (None for a layer the forward pass never calls).
    """

    layer: str
    type: str
    iterations: int
    variance: float | None
    mean: float | None
    status: str

    @property
    def converged(self) -> bool:
        return self.status == CONVERGED


class LSUVReport(RowReport[LSUVLayer]):
    """What ``lsuv`` did, one row per layer in forward order; ``str(report)`` is a table.

    Attributes:
        rows: the ``LSUVLayer`` rows.
        skipped: names of weighted layers LSUV does not normalize (left as they were).
        skip_reasons: ``{name: reason}`` for each name in ``skipped``.
        passes: compiled forward passes run.
        tol: the tolerance used.
        seed: the base seed of the orthonormal pre-initialization (None if there was none).
    """

    _COLUMNS = ("layer", "type", "iterations", "variance", "mean", "status")

    def __init__(
        self,
        rows: list[LSUVLayer],
        *,
        skip_reasons: dict[str, str],
        passes: int,
        tol: float,
        seed: int | None,
    ):
        super().__init__(rows)
        self.skipped = list(skip_reasons)
        self.skip_reasons = dict(skip_reasons)
        self.passes = passes
        self.tol = tol
        self.seed = seed

    @property
    def converged(self) -> bool:
        """Whether every layer converged."""
        return all(r.converged for r in self.rows)

    @property
    def failed(self) -> list[LSUVLayer]:
        """The rows that did not converge."""
        return [r for r in self.rows if not r.converged]

    def __repr__(self) -> str:
        done = len(self.rows) - len(self.failed)
        return (
            f"LSUVReport({len(self.rows)} layers, {done} converged, "
            f"{self.passes} forward passes, tol={self.tol:g})"
        )

    def __str__(self) -> str:
        rows = [[getattr(r, c) for c in self._COLUMNS] for r in self.rows]
        lines = [repr(self), *format_table(self._COLUMNS, rows)]
        if self.skipped:
            lines.append("skipped (not normalized by LSUV):")
            lines += [
                f"  {name}: {self.skip_reasons.get(name, '')}".rstrip() for name in self.skipped
            ]
        return "\n".join(lines)


def _warn(model: Any, report: LSUVReport) -> None:
    failed = report.failed
    if failed:
        details = "; ".join(f"{r.layer}: {STATUSES[r.status]}" for r in failed)
        warnings.warn(
            f"LSUV left {len(failed)} of {len(report)} layers of model {model.name!r} "
            f"without unit variance (their weights are finite): {details}",
            LSUVWarning,
            stacklevel=3,
        )
