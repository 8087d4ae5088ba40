"""``audit``: compare every weight's spread with what its scheme prescribes on true fans."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from keras_initlab.fans import compute_fans
from keras_initlab.initialize import plan_weight
from keras_initlab.initializers._base import private_default_seeds
from keras_initlab.layer_weights import OtherWeight, WeightSpec, other_weights, weight_specs
from keras_initlab.schemes import as_scheme, for_weight
from keras_initlab.text_table import RowReport, format_table

# Flag a weight when its variance ratio is further from 1 than AUDIT_Z standard errors.
# The standard error of the variance ratio is sqrt((k - 1) / n) with kurtosis k = 3 (normal:
# the widest of the families used here), so a correct draw is flagged with probability
# about 6e-5 per weight, and a depthwise kernel initialized on Keras' fans (8x in std) always.
AUDIT_Z = 4.0
_NORMAL_KURTOSIS = 3.0


@dataclass(frozen=True)
class AuditRow:
    """One weight: its true fans, its std, the std its scheme prescribes, and a flag.

    ``note`` is empty for a weight audit handles; for a weight with no known layout
    (normalization layers, custom layers' own weights) it says "not handled" and why, and
    the fans and expected std are None.

    ``healthy_scheme``, ``healthy_ratio`` and ``healthy_flagged`` compare a kernel with its
    *healthy reference* (`keras_initlab.healthy`), the same reference `VarianceMonitor`'s
    alerts name: the scheme that suits the activation the kernel feeds (`HealthyRow.scheme`),
    std over the std that scheme prescribes on the true fans (equal to the
    `HealthyRow.ratio` the alert shows) and whether the kernel fits none of the healthy
    schemes (`HealthyRow.flagged`). They are filled for the kernels of ``audit(model)``
    (``scheme=None``) only; biases, weights that are not kernels and every row of an audit
    against an explicit scheme keep None, None and False.
    """

    layer: str
    path: str
    layout: str
    fan_in: float | None
    fan_out: float | None
    std: float
    expected_std: float | None
    ratio: float | None
    flagged: bool
    note: str = ""
    healthy_scheme: str | None = None
    healthy_ratio: float | None = None
    healthy_flagged: bool = False

    @property
    def handled(self) -> bool:
        return not self.note


class AuditReport(RowReport[AuditRow]):
    """The rows of ``audit``; ``str(report)`` is a table, ``report.flagged`` the bad rows.

    ``report.unhealthy`` are the kernels that fit none of the healthy schemes of the
    activation they feed (`AuditRow.healthy_flagged`). When some row has a healthy
    reference (``audit(model)``), the table has the columns ``healthy`` (the scheme) and
    ``healthy_ratio`` and a column ``unhealthy`` marked ``**`` for those kernels, before
    ``flag`` (``!!`` stays at the end of a flagged row). The table has a ``note`` column
    when some row is not handled.
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
    def _has_healthy(self) -> bool:
        return any(r.healthy_scheme is not None for r in self.rows)

    def __repr__(self) -> str:
        counts = f"{len(self.rows)} weights, {len(self.flagged)} flagged"
        if self._has_healthy:
            counts += f", {len(self.unhealthy)} unhealthy"
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
        if self.not_handled:
            columns.append("note")
            rows = [[*row, r.note] for row, r in zip(rows, self.rows, strict=True)]
        return "\n".join(format_table(columns, rows))


def _expected_std(spec: WeightSpec, scheme: Any, shape: tuple[int, ...]) -> float | None:
    """The std the weight should have: ``initialize``'s rule under ``scheme``, or (None)
    what the layer's own initializer prescribes on the true layout."""
    if scheme is None:
        source = as_scheme(spec.initializer)
        initializer = (
            None if source is None else for_weight(source, spec.layout, spec.layout_args, None)
        )
    else:
        initializer = as_scheme(plan_weight(as_scheme(scheme), spec, None).initializer)
    if initializer is None:
        return None
    try:
        return math.sqrt(initializer.variance(shape))
    except ValueError:  # the scheme does not apply to this shape (rank too small)
        return None


def _row(spec: WeightSpec, scheme: Any, z: float) -> AuditRow:
    shape = tuple(spec.variable.shape)
    values = np.asarray(spec.variable.numpy(), dtype=np.float64)
    std = float(values.std()) if values.size else 0.0
    fans: tuple[float | None, float | None] = (None, None)
    if not spec.is_bias:
        fans = compute_fans(shape, spec.layout, **spec.layout_args)
    expected = _expected_std(spec, scheme, shape) if values.size else None
    ratio = std / expected if expected else None
    flagged = False
    if ratio is not None:
        tolerance = z * math.sqrt((_NORMAL_KURTOSIS - 1.0) / values.size)
        flagged = abs(ratio**2 - 1.0) > tolerance
    return AuditRow(
        spec.layer_path, spec.path, spec.layout, fans[0], fans[1], std, expected, ratio, flagged
    )


def _unhandled_row(other: OtherWeight) -> AuditRow:
    values = np.asarray(other.variable.numpy(), dtype=np.float64)
    std = float(values.std()) if values.size else 0.0
    return AuditRow(
        other.layer_path,
        other.path,
        "-",
        None,
        None,
        std,
        None,
        None,
        False,
        f"not handled: {other.reason}",
    )


def _with_healthy(model: Any, rows: list[AuditRow]) -> list[AuditRow]:
    """``rows`` with the healthy reference of each kernel (`healthy_weights`, by weight path).

    Only ``audit(model)`` (``scheme=None``) calls this: `healthy_weights` itself audits each
    layer under explicit schemes, so there is no recursion.
    """
    from keras_initlab.healthy import HealthyRow, healthy_weights

    reference: dict[str, HealthyRow] = {}
    for healthy in healthy_weights(model):
        reference.setdefault(healthy.path, healthy)
    return [
        row
        if (h := reference.get(row.path)) is None
        else replace(row, healthy_scheme=h.scheme, healthy_ratio=h.ratio, healthy_flagged=h.flagged)
        for row in rows
    ]


def audit(model: Any, scheme: Any = None, *, z: float = AUDIT_Z) -> AuditReport:
    """One row per weight: true fans, actual std, expected std under the scheme, ratio, flag.

    The expected std is what ``initialize(model, scheme)`` draws for the weight (the same
    rule, ``keras_initlab.initialize.plan_weight``: the scheme on the true layout, recurrent
    kernels orthogonal per gate, biases and embeddings after the layer's own initializers),
    so an ``initialize``-d model passes the audit of its scheme. With ``scheme=None`` it is
    what the initializer each layer was configured with prescribes on the true layout
    (Keras' built-ins included), so a DepthwiseConv2D built with Keras' ``"he_normal"``
    (fans read as a dense kernel) is flagged. Weights with no known layout (normalization
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

    Args:
        model: a built Keras model or layer.
        scheme: None, a scheme name or an initializer.
        z: how many standard errors of the variance ratio make a flag.

    Returns:
        An ``AuditReport``; print it for a table.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((8, 8, 64)),
    ...     keras.layers.DepthwiseConv2D(3, depthwise_initializer="he_normal", name="dw")],
    ...     name="net")
    >>> [(row.path, round(row.ratio, 1)) for row in audit(model).flagged]
    [('net/dw/kernel', 0.1)]
    """
    specs = weight_specs(model)
    # The schemes built here only give variances: their default seeds must not advance the
    # user's global random state.
    with private_default_seeds():
        if scheme is not None and as_scheme(scheme) is None:
            raise TypeError(
                "Argument `scheme` must be a scheme name or initializer. "
                f"Received: scheme={scheme!r}"
            )
        rows = [_row(spec, scheme, z) for spec in specs]
    if scheme is None:
        rows = _with_healthy(model, rows)
    return AuditReport(rows + [_unhandled_row(other) for other in other_weights(model)])
