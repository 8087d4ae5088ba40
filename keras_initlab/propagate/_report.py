"""``PropagateReport``: one row per layer of the prediction, printable as a table."""

from __future__ import annotations

from dataclasses import dataclass

from keras_initlab.text_table import RowReport, format_table

PREDICTED, ASSUMED = "predicted", "assumed"
DOWNSTREAM, UPSTREAM = "downstream", "upstream"
STATUSES = (PREDICTED, ASSUMED, DOWNSTREAM, UPSTREAM)


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
        status: ``"predicted"`` (activation and gradient rest on rules only);
            ``"assumed"`` for a layer no rule covers (its output is taken as its input:
            variance unchanged); ``"downstream"`` when the activation rests on an assumed
            layer above it; ``"upstream"`` when the activation is predicted but the gradient
            passes back through an assumed layer below it, or through one whose rule does
            not predict the gradient it passes back (a softmax saturated beyond its dtype's
            rounding: `keras_initlab.propagate._activations.saturation`).
        note: the reason for an assumption, the assumed layers a row rests on, or an
            approximation the rule makes.
        assumes: the assumed layers the activation moments rest on (itself first if
            assumed).
        gradient_assumes: the assumed layers the gradient variance rests on.
    """

    layer: str
    class_name: str
    activation_mean: float
    activation_var: float
    gradient_var: float
    channel_var: float
    status: str = PREDICTED
    note: str = ""
    assumes: tuple[str, ...] = ()
    gradient_assumes: tuple[str, ...] = ()

    @property
    def predicted(self) -> bool:
        """Both the activation moments and the gradient variance rest on rules only."""
        return self.status == PREDICTED

    @property
    def activation_predicted(self) -> bool:
        """The activation moments rest on rules only (the gradient may not)."""
        return not self.assumes


class PropagateReport(RowReport[PropagateRow]):
    """The rows of ``propagate``; ``str(report)`` is a table, ``report.assumed`` lists the
    rows that rest on an assumption (``assumed``, ``downstream``, ``upstream``),
    ``report.counts()`` counts each status, ``report.by_layer()`` maps names to rows."""

    _COLUMNS = ("layer", "class_name", "activation_mean", "activation_var", "gradient_var")

    @property
    def assumed(self) -> list[PropagateRow]:
        return [r for r in self.rows if not r.predicted]

    def counts(self) -> dict[str, int]:
        """How many rows have each status (every status listed, zeros included)."""
        return {s: sum(r.status == s for r in self.rows) for s in STATUSES}

    def by_layer(self) -> dict[str, PropagateRow]:
        return {r.layer: r for r in self.rows}

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items() if n)
        return f"PropagateReport({len(self.rows)} layers: {counts or 'none'})"

    def __str__(self) -> str:
        columns = [*self._COLUMNS, "status", "note"]
        rows = [[*(getattr(r, c) for c in self._COLUMNS), r.status, r.note] for r in self.rows]
        return "\n".join(format_table(columns, rows))
