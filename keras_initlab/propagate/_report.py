"""``PropagateReport``: one row per layer of the prediction, printable as a table."""

from __future__ import annotations

from dataclasses import dataclass

from keras_initlab.text_table import RowReport, format_table

PREDICTED, ASSUMED = "predicted", "assumed"


@dataclass(frozen=True)
class PropagateRow:
    """One layer's predicted output moments and output-gradient variance.

    Attributes:
        layer: the layer's path below the model (parents joined by ``/``), the name
            ``measure()`` and the VarianceMonitor records use.
        class_name: the layer's class.
        activation_mean: predicted mean of the output over all elements.
        activation_var: predicted variance of the output over all elements.
        gradient_var: predicted variance of dLoss/d(output), relative to the model output's.
        channel_var: the part of ``activation_var`` that is a fixed per-channel offset
            (variance of the channel means).
        status: ``"predicted"``, or ``"assumed"`` for a layer no rule covers (its output
            is taken as its input: variance unchanged).
        note: the reason for an assumption, or an approximation the rule makes.
    """

    layer: str
    class_name: str
    activation_mean: float
    activation_var: float
    gradient_var: float
    channel_var: float
    status: str = PREDICTED
    note: str = ""

    @property
    def predicted(self) -> bool:
        return self.status == PREDICTED


class PropagateReport(RowReport[PropagateRow]):
    """The rows of ``propagate``; ``str(report)`` is a table, ``report.assumed`` lists the
    layers no rule covers, ``report.by_layer()`` maps names to rows."""

    _COLUMNS = ("layer", "class_name", "activation_mean", "activation_var", "gradient_var")

    @property
    def assumed(self) -> list[PropagateRow]:
        return [r for r in self.rows if not r.predicted]

    def by_layer(self) -> dict[str, PropagateRow]:
        return {r.layer: r for r in self.rows}

    def __repr__(self) -> str:
        return f"PropagateReport({len(self.rows)} layers, {len(self.assumed)} assumed)"

    def __str__(self) -> str:
        columns = [*self._COLUMNS, "status", "note"]
        rows = [[*(getattr(r, c) for c in self._COLUMNS), r.status, r.note] for r in self.rows]
        return "\n".join(format_table(columns, rows))
