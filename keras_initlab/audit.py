"""``audit``: compare every weight's spread with what its scheme prescribes on true fans."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from keras_initlab.healthy import HealthyRow, healthy_weights
from keras_initlab.model.weights import other_weights
from keras_initlab.prescribed import AUDIT_Z, AuditRow, scheme_rows, unhandled_row
from keras_initlab.repeated_draws import repeated_draws
from keras_initlab.text_table import RowReport, format_table

__all__ = ["AUDIT_Z", "AuditReport", "AuditRow", "audit"]


class AuditReport(RowReport[AuditRow]):
    """The rows of ``audit``; ``str(report)`` is a table, ``report.flagged`` the bad rows.

    ``report.unhealthy`` are the kernels that fit none of the healthy schemes of the
    activation they feed (`AuditRow.healthy_flagged`). When some row has a healthy
    reference (``audit(model)``), the table has the columns ``healthy`` (the scheme) and
    ``healthy_ratio`` and a column ``unhealthy`` marked ``**`` for those kernels, before
    ``flag`` (``!!`` stays at the end of a flagged row). The table has a ``note`` column
    when some row is not handled, and a ``repeats`` column (the weight whose draws a row
    repeats) when some row repeats another's (``report.repeated``).
    """

    _COLUMNS = ("layer", "path", "layout", "fan_in", "fan_out", "std", "expected_std", "ratio")
    _HEALTHY_COLUMNS = ("healthy", "healthy_ratio", "unhealthy")
    UNHEALTHY_MARK = "**"
    FLAG_MARK = "!!"

    @property
    def flagged(self) -> list[AuditRow]:
        return [r for r in self.rows if r.flagged]

    @property
    def not_handled(self) -> list[AuditRow]:
        return [r for r in self.rows if not r.handled]

    @property
    def unhealthy(self) -> list[AuditRow]:
        return [r for r in self.rows if r.healthy_flagged]

    @property
    def repeated(self) -> list[AuditRow]:
        return [r for r in self.rows if r.repeats]

    @property
    def _has_healthy(self) -> bool:
        return any(r.healthy_scheme is not None for r in self.rows)

    def __repr__(self) -> str:
        counts = f"{len(self.rows)} weights, {len(self.flagged)} flagged"
        if self._has_healthy:
            counts += f", {len(self.unhealthy)} unhealthy"
        if self.repeated:
            counts += f", {len(self.repeated)} repeating another's draws"
        return f"AuditReport({counts})"

    def __str__(self) -> str:
        healthy = self._has_healthy
        columns = [*self._COLUMNS, *(self._HEALTHY_COLUMNS if healthy else ()), "flag"]
        rows = [
            [
                *(getattr(r, c) for c in self._COLUMNS),
                *(
                    (
                        r.healthy_scheme,
                        r.healthy_ratio,
                        self.UNHEALTHY_MARK if r.healthy_flagged else "",
                    )
                    if healthy
                    else ()
                ),
                self.FLAG_MARK if r.flagged else "",
            ]
            for r in self.rows
        ]
        if self.repeated:
            columns.append("repeats")
            rows = [[*row, r.repeats] for row, r in zip(rows, self.rows, strict=True)]
        if self.not_handled:
            columns.append("note")
            rows = [[*row, r.note] for row, r in zip(rows, self.rows, strict=True)]
        return "\n".join(format_table(columns, rows))


def _with_healthy(model: Any, rows: list[AuditRow]) -> list[AuditRow]:
    """``rows`` with the healthy reference of each kernel (`healthy_weights`, by weight path).

    Only ``audit(model)`` (``scheme=None``) calls this: `healthy_weights` reads each layer's
    rows under explicit schemes (`keras_initlab.prescribed`), not `audit`.
    """
    reference: dict[str, HealthyRow] = {}
    for healthy in healthy_weights(model):
        reference.setdefault(healthy.path, healthy)
    return [
        row
        if (h := reference.get(row.path)) is None
        else replace(row, healthy_scheme=h.scheme, healthy_ratio=h.ratio, healthy_flagged=h.flagged)
        for row in rows
    ]


def audit(
    model: Any, scheme: Any = None, *, residual: str | None = None, z: float = AUDIT_Z
) -> AuditReport:
    """One row per weight: true fans, actual std, expected std under the scheme, ratio, flag.

    The expected std is what ``initialize(model, scheme)`` draws for the weight (the same
    rule, ``keras_initlab.draw.plan_weight``: the scheme on the true layout, recurrent
    kernels orthogonal per gate, biases and embeddings after the layer's own initializers),
    so an ``initialize``-d model passes the audit of its scheme. With ``scheme=None`` it is
    what the initializer each layer was configured with draws as Keras calls it, with the
    weight's shape alone (Keras' shape rule for its fans, or the axes the initializer was
    configured with: Keras' built-ins, keras_hub's and keras_initlab's), so a stock model
    is never flagged: a DepthwiseConv2D built with Keras' ``"he_normal"`` (its fans read as
    a dense kernel's, std 1/8 of He's on the true fans) passes, and its healthy reference
    (below) marks it unhealthy. Weights with no known layout (normalization
    layers, custom layers' own ``add_weight`` weights) get a row marked not handled. A row
    is flagged when the variance ratio ``(std / expected)**2`` is further from 1 than
    ``z * sqrt(2 / n)``, n the weight's size.

    With ``scheme=None`` each kernel's row also carries its healthy reference
    (`keras_initlab.healthy.healthy_weights`, matched by weight path), the same one
    `VarianceMonitor`'s alerts name: ``healthy_scheme``, the scheme that suits the
    activation the kernel feeds; ``healthy_ratio``, std over the std that scheme prescribes
    on the true fans (equal to the `HealthyRow.ratio` an alert shows); ``healthy_flagged``,
    whether the kernel fits none of the healthy schemes (``report.unhealthy``). A kernel
    can pass the audit of its configured initializer and still be unhealthy (a
    ``RandomNormal(stddev=0.1)`` kernel before a ReLU), or the reverse. With an explicit
    ``scheme`` these stay None/False: the scheme is the reference.

    With a ``residual`` rule (`keras_initlab.residual_init`) the expected std of each weight
    the rule changes is multiplied by the rule's factor, as ``initialize(model, scheme,
    residual=rule)`` draws it (a weight the rule zeroes is flagged unless it is 0); the
    gammas and gates a rule changes keep their not-handled rows. A recipe name
    (`keras_initlab.recipes`) brings its own rule and embedding draw: the stock keras_hub
    GPT-2, every kernel at 0.02, audited against ``"gpt2"`` has its attention-output and
    FFN-output kernels flagged with ratio ``sqrt(2N)``, ``N`` blocks.

    Whatever the scheme, a weight whose random draws repeat an earlier weight's (up to a
    factor: one unseeded initializer instance passed to several layers, whose every call
    Keras draws from one seed) names that weight in its ``repeats`` (`keras_initlab.
    repeated_draws`, at the same ``z``): stock keras_hub Llama and Gemma attentions have
    query, key, value and output kernels of the same numbers. ``initialize(model,
    scheme)`` draws each kernel from its own seed, and re-draws an embedding table that
    repeats another weight's draws from its own initializer under its own seed; a weight
    it does not handle (keras_hub's untied ``reverse_embeddings``) keeps its draws and its
    ``repeats``.

    Args:
        model: a built Keras model or layer.
        scheme: None, a scheme name, a recipe name (``keras_initlab.recipes.RECIPES``) or
            an initializer.
        residual: None or a residual rule (``keras_initlab.residual_init.RULES``), with a
            scheme.
        z: how many standard errors of the variance ratio make a flag.

    Returns:
        An ``AuditReport``; print it for a table.

    Raises:
        TypeError: ``scheme`` is neither None, a name nor an initializer.
        ValueError: an unknown ``residual`` rule, a rule with ``scheme=None`` or with a
            recipe, a rule on a model without residual sums.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((8, 8, 64)),
    ...     keras.layers.DepthwiseConv2D(3, depthwise_initializer="he_normal", name="dw")],
    ...     name="net")
    >>> report = audit(model)
    >>> report.flagged, [(row.path, round(row.healthy_ratio, 1)) for row in report.unhealthy]
    ([], [('net/dw/kernel', 0.2)])
    """
    rows = scheme_rows(model, scheme, z, residual)
    if scheme is None:
        rows = _with_healthy(model, rows)
    rows = rows + [unhandled_row(other) for other in other_weights(model)]
    repeats = {r.path: r.of for r in repeated_draws(model.weights, z)}
    return AuditReport([replace(r, repeats=repeats.get(r.path, "")) for r in rows])
