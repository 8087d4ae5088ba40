"""Alerts: the activation or gradient variance changes too much across depth, or is not finite.

For one record (one step), the activation variances of the hidden layers are read in forward
order and the gradient variances in backward order. When ``max/min`` over that depth profile
exceeds ``factor``, an alert names the layer with the largest single change, the overall factor
and the likely fix, chosen from the activations and layer types involved.
"""

from __future__ import annotations

import math
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Any

# Activations by how they treat the variance (read by the advice here and in _reference).
RELU_FAMILY = {"relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "prelu"}
SQUASHING = {"tanh", "sigmoid", "hard_sigmoid", "softsign"}


DEPTH_KINDS = ("activation_var", "gradient_var")  # alerts on a change across depth


class VarianceWarning(UserWarning):
    """Category of the warnings a `VarianceMonitor` raises for its alerts."""


@dataclass(frozen=True)
class Alert:
    """One alert of a `VarianceMonitor`.

    Attributes:
        epoch, step: when the record was taken.
        layer: the layer with the largest change (or the first non-finite value).
        kind: ``"activation_var"``, ``"gradient_var"`` (a change across depth),
            ``"gradient_zero"`` (no gradient reaches some layers) or ``"non_finite"``.
        factor: the overall change across depth (``max/min``; NaN for non-finite values).
        message: the full text, including the suggested fix.
        fix: the suggested fix alone.
    """

    epoch: int
    step: int
    layer: str
    kind: str
    factor: float
    message: str
    fix: str

    def __str__(self) -> str:
        return self.message


def _suggest_fix(rows: Sequence[dict[str, Any]], grows: bool) -> str:
    activations = {r.get("activation") for r in rows}
    classes = {r.get("layer_class") for r in rows}
    fixes = []
    if any("Depthwise" in str(c) or "Separable" in str(c) for c in classes):
        fixes.append(
            "depthwise kernels have fan_in = prod(kernel_size), not kernel_size x channels: "
            "use a keras_initlab initializer (true fans) or keras_initlab.initialize(model, ...)"
        )
    if activations & RELU_FAMILY:
        fixes.append("ReLU-family layers: use He (Kaiming) initialization, Var(W) = 2/fan_in")
    if activations & SQUASHING:
        fixes.append("tanh/sigmoid layers: use Glorot (Xavier), Var(W) = 2/(fan_in + fan_out)")
    if not fixes:
        fixes.append(
            "linear layers: use LeCun/Glorot so that fan_in * Var(W) = 1 "
            "(or an orthogonal init with gain 1)"
        )
    fixes.append("the weights are too large" if grows else "the weights are too small")
    return "; ".join(fixes)


_NON_FINITE_FIX = (
    "lower the learning rate or the initial weight scale, or clip gradients (optimizer "
    "argument clipnorm=1.0)"
)


def _non_finite(rows: Sequence[dict[str, Any]], step: int, epoch: int) -> list[Alert]:
    """Alerts for NaN/Inf: the first layer holding non-finite weights (read from the weights
    themselves), the first layer whose activations are not finite (forward order) and the
    deepest layer whose gradient is not finite (gradients flow backward); one per layer."""
    found: dict[str, str] = {}
    bad = [r for r in rows if r.get("non_finite_weights")]
    if bad:
        others = f" ({len(bad) - 1} more layer(s) too)" if len(bad) > 1 else ""
        found[str(bad[0]["layer"])] = (
            f"layer {bad[0]['layer']!r} holds {bad[0]['non_finite_weights']} weight value(s) "
            f"that are not finite (NaN/Inf){others}"
        )
    for key, ordered in (("activation_var", list(rows)), ("gradient_var", list(reversed(rows)))):
        row = next(
            (r for r in ordered if r.get(key) is not None and not math.isfinite(r[key])), None
        )
        if row is not None and str(row["layer"]) not in found:
            found[str(row["layer"])] = f"{key} of layer {row['layer']!r} is not finite ({row[key]})"
    return [
        Alert(
            epoch,
            step,
            layer,
            "non_finite",
            math.nan,
            f"VarianceMonitor: {what} at step {step}. Likely fix: {_NON_FINITE_FIX}.",
            _NON_FINITE_FIX,
        )
        for layer, what in found.items()
    ]


def _vanished_gradient(
    profile: Sequence[tuple[dict[str, Any], float]], epoch: int, step: int
) -> Alert | None:
    """An alert when the gradient is exactly 0 at some layers with a kernel (in backward
    order): no signal reaches weights there, which no max/min ratio shows. (Layers without a
    kernel are left out: an input `Normalization`, for one, passes no gradient back.)"""
    profile = [(r, v) for r, v in profile if r.get("weight_var") is not None]
    zero = [r for r, v in profile if v == 0]
    if not zero or len(profile) < 2:
        return None
    layer = str(zero[0]["layer"])
    everywhere = len(zero) == len(profile)
    fix = (
        "the loss is saturated or the units are dead: check the output scale (a softmax or "
        "sigmoid head with too-large weights), ReLU units that never fire (too-negative "
        "biases, too-large learning rate), or layers the loss does not depend on"
    )
    where = "every monitored layer" if everywhere else f"{len(zero)} layer(s), from {layer!r} on"
    message = (
        f"VarianceMonitor: the gradient is exactly 0 at {where} at step {step}. Likely fix: {fix}."
    )
    return Alert(epoch, step, layer, "gradient_zero", 0.0, message, fix)


def check_depth(
    rows: Sequence[dict[str, Any]],
    factor: float,
    *,
    epoch: int,
    step: int,
    skip: Container[tuple[str, str]] = (),
    reference: Any = None,
) -> list[Alert]:
    """Alerts for one record: ``rows`` are its per-layer dicts in forward order.

    An alert whose ``(kind, layer)`` is in ``skip`` (already reported) is not built again.

    With a ``reference`` (`keras_initlab.callbacks._reference.Reference`: the variances a
    healthy initialization of this architecture predicts), the profile judged is
    ``measured / predicted`` per layer: an architecture that changes the variance by design
    (pooling, BatchNorm, residual sums) gives a flat profile, and the alert names the layer
    where measurement and prediction part, with advice from this model's own faults.

    The output layer (last row) is left out of the depth profile when there are at least three
    rows: its variance is set by the task (softmax, logits), not by the initialization.

    Example:
    >>> rows = [{"layer": f"d{i}", "activation_var": 4.0**i, "gradient_var": 1.0,
    ...          "activation": None} for i in range(4)]
    >>> [a.layer for a in check_depth(rows, 10.0, epoch=0, step=0)]
    ['d1']
    """
    alerts = [a for a in _non_finite(rows, step, epoch) if (a.kind, a.layer) not in skip]
    hidden = list(rows[:-1]) if len(rows) >= 3 else list(rows)
    for key, direction in (("activation_var", "forward"), ("gradient_var", "backward")):
        finite = [
            (r, float(r[key])) for r in hidden if r.get(key) is not None and math.isfinite(r[key])
        ]
        if direction == "backward":
            finite.reverse()
        if key == "gradient_var":
            vanished = _vanished_gradient(finite, epoch, step)
            if vanished is not None and (vanished.kind, vanished.layer) not in skip:
                alerts.append(vanished)
        profile = [(r, v) for r, v in finite if v > 0]
        if reference is not None:
            predicted = reference.values(key)
            profile = [
                (r, v / predicted[r["layer"]])
                for r, v in profile
                if predicted.get(r["layer"], 0.0) > 0 and math.isfinite(predicted[r["layer"]])
            ]
        if len(profile) < 2:
            continue
        values = [v for _, v in profile]
        overall = max(values) / min(values)
        if overall <= factor:
            continue
        steps = [values[i] / values[i - 1] for i in range(1, len(values))]
        worst = max(range(len(steps)), key=lambda i: abs(math.log(steps[i])))
        layer = str(profile[worst + 1][0]["layer"])
        if (key, layer) in skip:
            continue
        grows = values[-1] > values[0]
        trend = "grows" if grows else "shrinks"
        if reference is None:
            fix = _suggest_fix([r for r, _ in profile], grows)
            what = f"{key.replace('_', ' ')} {trend} by a factor of {values[-1] / values[0]:.3g}"
            where = f"largest single change x{steps[worst]:.3g}"
        else:
            fix = reference.fix(layer, grows)  # growth along the signal either way: too large
            what = (
                f"{key.replace('_', ' ')} {trend} against what a healthy "
                f"({reference.scheme}) initialization of this architecture predicts, by a "
                f"factor of {values[-1] / values[0]:.3g}"
            )
            where = f"measurement and prediction part most (x{steps[worst]:.3g})"
        message = (
            f"VarianceMonitor: {what} across depth ({direction}; max/min = {overall:.3g} > "
            f"{factor:g}) at step {step}; {where} at layer {layer!r}. Likely fix: {fix}."
        )
        alerts.append(Alert(epoch, step, layer, key, overall, message, fix))
    return alerts
