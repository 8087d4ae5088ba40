"""``audit``: compare every weight's spread with what its scheme prescribes on true fans."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_initlab.fans import compute_fans
from keras_initlab.initialize import plan_weight
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

    @property
    def handled(self) -> bool:
        return not self.note


class AuditReport(RowReport[AuditRow]):
    """The rows of ``audit``; ``str(report)`` is a table, ``report.flagged`` the bad rows.

    The table has a ``note`` column when some row is not handled.
    """

    _COLUMNS = ("layer", "path", "layout", "fan_in", "fan_out", "std", "expected_std", "ratio")

    @property
    def flagged(self) -> list[AuditRow]:
        return [r for r in self.rows if r.flagged]

    @property
    def not_handled(self) -> list[AuditRow]:
        return [r for r in self.rows if not r.handled]

    def __repr__(self) -> str:
        return f"AuditReport({len(self.rows)} weights, {len(self.flagged)} flagged)"

    def __str__(self) -> str:
        columns = [*self._COLUMNS, "flag"]
        rows = [
            [*(getattr(r, c) for c in self._COLUMNS), "!!" if r.flagged else ""] for r in self.rows
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
    if scheme is not None and as_scheme(scheme) is None:
        raise TypeError(
            f"Argument `scheme` must be a scheme name or initializer. Received: scheme={scheme!r}"
        )
    rows = [_row(spec, scheme, z) for spec in specs]
    return AuditReport(rows + [_unhandled_row(other) for other in other_weights(model)])
