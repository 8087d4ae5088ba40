"""What ``autoinit`` reports: per layer the scale chosen and the predicted variance after."""

from __future__ import annotations

from dataclasses import dataclass

from keras_initlab.autoinit._solve import EXPANSIVE
from keras_initlab.text_table import RowReport, format_table

SCALED, DRAWN, KEPT = "scaled", "drawn", "kept"  # AutoInitRow.kernel


@dataclass(frozen=True)
class AutoInitRow:
    """One layer of the walk, after AutoInit set every scale up to it.

    Attributes:
        layer: the layer's path (as ``propagate`` and ``measure`` name it).
        class_name: the layer's class.
        scale: the factor applied to the kernel drawn on its true fans (LeCun normal,
            ``Var(W) = 1 / fan_in``), None for a layer without a scaled kernel.
        kernel_std: the kernel's standard deviation after (None: no scaled kernel).
        target: the variance the scale aims at (None: no scaled kernel).
        activation_mean: predicted mean of the layer's output.
        activation_var: predicted variance of the layer's output.
        note: what the target is of (``variance after relu``, a residual share), or why
            the layer was left as drawn.
        kernel: what happened to the layer's kernel: ``"scaled"`` (drawn on its true fans,
            then scaled by ``scale``), ``"drawn"`` (drawn on its true fans, not scaled: the
            walk could not read the layer or does not reach it, ``note`` says which; its
            moments are NaN when the walk has no row for it), ``"kept"`` (an embedding
            table keeps its layer's own draw), or ``""`` (no kernel).
        slope: the elasticity of the mean square after the layer's activation in the
            variance before, at the scale chosen (`keras_initlab.autoinit._solve.slope`):
            1 for a rectifier, below 1 for an activation that pulls a sample's scale back
            towards the others' (ELU, tanh), above 1 for one that spreads the samples apart
            (SiLU 1.13); None without an activation or a scaled kernel.
    """

    layer: str
    class_name: str
    scale: float | None
    kernel_std: float | None
    target: float | None
    activation_mean: float
    activation_var: float
    note: str = ""
    kernel: str = ""
    slope: float | None = None


class AutoInitReport(RowReport[AutoInitRow]):
    """The rows of ``autoinit`` in execution order; ``str(report)`` is a table.

    Attributes:
        rows: one ``AutoInitRow`` per layer.
        input_var: the target variance.
    """

    _COLUMNS = (
        "layer",
        "class_name",
        "kernel",
        "scale",
        "kernel_std",
        "target",
        "slope",
        "activation_var",
        "note",
    )

    def __init__(self, rows: list[AutoInitRow], input_var: float) -> None:
        super().__init__(rows)
        self.input_var = input_var

    @property
    def scaled(self) -> list[AutoInitRow]:
        """The rows of the layers whose kernel was scaled."""
        return [r for r in self.rows if r.scale is not None]

    @property
    def unscaled(self) -> list[AutoInitRow]:
        """The rows of the layers whose kernel was drawn on its true fans and not scaled."""
        return [r for r in self.rows if r.kernel == DRAWN]

    @property
    def expansive(self) -> list[AutoInitRow]:
        """The rows of the kernels whose activation has a `AutoInitRow.slope` above
        ``EXPANSIVE = 1.01``: along a chain of them that nothing normalizes per sample
        (no LayerNormalization between), no scale holds the target for every sample (see
        `keras_initlab.autoinit`)."""
        return [r for r in self.rows if r.slope is not None and r.slope > EXPANSIVE]

    def by_layer(self) -> dict[str, AutoInitRow]:
        """``{layer path: row}``."""
        return {r.layer: r for r in self.rows}

    def __repr__(self) -> str:
        return (
            f"AutoInitReport({len(self.rows)} layers, {len(self.scaled)} scaled, "
            f"{len(self.unscaled)} drawn and not scaled, {len(self.expansive)} expansive, "
            f"input_var={self.input_var:g})"
        )

    def __str__(self) -> str:
        rows = [[getattr(r, c) for c in self._COLUMNS] for r in self.rows]
        return "\n".join([repr(self), *format_table(self._COLUMNS, rows)])
