"""Alerts: what the depth rule finds in a record, its cause, and a checked fix.

One record (its rows in forward order) is judged by the depth rule
(`keras_initlab.depth_rule.judge`, the definition is there): a change that compounds with
depth, a gradient that is exactly 0 on the main path, or a value that is not finite. Each
finding becomes an `Alert` that names its cause:

* ``"weights"`` / ``"architecture"`` (`keras_initlab.diagnosis.diagnose`): kernels that
  depart from a healthy scheme on their true fans, or an architecture no per-layer scheme
  keeps; the fix is the first candidate predicted to pass the rule;
* ``"training"``: a value that turns non-finite, or a gradient that turns exactly 0 on
  the main path, after step 0. Where a step-0 alert foretold it, the alert points back to
  it and gives its checked fix; where the step-0 profile was healthy, the cause lies in the
  optimizer settings, and that advice is marked as not checked.

Depth changes are judged at step 0, before any update: that is the profile an
initialization sets. After updates a network's profile is what it learned (sparse
features, grown logits: a He-initialized 12-layer CNN that trains to 0.97 on the digits
shows a 200-fold activation spread after one epoch), which no initialization rule governs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from keras_initlab.depth_rule import Judgement

_OPTIMIZER_ADVICE = (
    "lower the learning rate, or clip gradients (optimizer argument clipnorm=1.0); not "
    "checked: no prediction covers the optimizer"
)


class VarianceWarning(UserWarning):
    """Category of the warnings a `VarianceMonitor` raises for its alerts."""


@dataclass(frozen=True)
class Alert:
    """One alert of a `VarianceMonitor`, in plain parts.

    Attributes:
        epoch, step: when the record was taken.
        layer: where it starts (the first layer of the change, the first kernel at fault,
            the first non-finite value).
        kind: ``"activation_var"``, ``"gradient_var"`` (a change across depth),
            ``"gradient_zero"`` (no gradient reaches the main path), ``"non_finite"``, or
            ``"logits"`` (the softmax a cross-entropy reads starts saturated:
            `keras_initlab.logits_rule`; ``factor`` is the logits' variance), or
            ``"attention"`` (an attention softmax starts collapsed:
            `keras_initlab.attention_rule`; ``factor`` is the scores' variance).
        factor: the change across depth (NaN for non-finite values, 0 for a zero gradient).
        cause: ``"weights"``, ``"architecture"`` or ``"training"``.
        what: what was measured, and where.
        why: the cause in words.
        advice: the fix in words (with its predicted effect where it is checked).
        fix: `keras_initlab.initialize` keyword arguments that apply the fix
            (``keras_initlab.initialize(model, **alert.fix)``), or None when the fix is not
            an initialization.
        checked: whether the fix was checked by prediction on this model.
    """

    epoch: int
    step: int
    layer: str
    kind: str
    factor: float
    cause: str
    what: str
    why: str
    advice: str
    fix: dict[str, Any] | None
    checked: bool

    @property
    def message(self) -> str:
        """The whole alert as text: what, why, fix."""
        checked = "" if self.checked else " [not checked]"
        return (
            f"VarianceMonitor, step {self.step}: {self.what}.\n"
            f"  cause ({self.cause}): {self.why}.\n"
            f"  fix{checked}: {self.advice}."
        )

    def __str__(self) -> str:
        return self.message


def alerts_for(
    rows: Sequence[dict[str, Any]],
    judgement: Judgement,
    *,
    epoch: int,
    step: int,
    diagnosis: Callable[[], Any],
    foretold: Alert | None = None,
) -> list[Alert]:
    """The alerts of one record.

    Args:
        rows: the record's rows, forward order.
        judgement: the depth rule on them.
        epoch, step: when the record was taken.
        diagnosis: returns the model's `keras_initlab.diagnosis.Diagnosis` (called only
            when a cause must be named).
        foretold: the first step-0 alert of the fit, if any (read by non-finite alerts
            after step 0).

    Example:
    >>> from keras_initlab.depth_rule import judge
    >>> rows = [{"layer": f"d{i}", "activation_var": 4.0**i, "gradient_var": 1.0}
    ...         for i in range(4)]
    >>> [a.kind for a in alerts_for(rows, judge(rows), epoch=0, step=0, diagnosis=None)]
    ['activation_var']
    """
    alerts = _non_finite(rows, epoch, step, diagnosis, foretold)
    if step == 0:  # depth changes are judged at initialization (module doc)
        for change in judgement.faults:
            what = change.describe()
            alerts.append(
                _diagnosed(epoch, step, change.start, change.key, change.factor, what, diagnosis)
            )
    if judgement.zero_gradient:
        zero = judgement.zero_gradient
        what = (
            f"the gradient is exactly 0 on the main path at {len(zero)} layer(s), from "
            f"{zero[0]!r} on: no signal reaches the weights there"
        )
        dead = [r for r in rows if r.get("dead_fraction") == 1.0]
        if dead:
            what += f" (every unit of layer {dead[0]['layer']!r} is dead: 0 on the whole probe)"
        if step > 0:
            alerts.append(
                _during_training(epoch, step, zero[0], "gradient_zero", 0.0, what, foretold)
            )
            return alerts
        alerts.append(_diagnosed(epoch, step, zero[0], "gradient_zero", 0.0, what, diagnosis))
    return alerts


def logits_alert(epoch: int, step: int, layer: str, finding: Any) -> Alert:
    """The alert of the logits rule (`keras_initlab.logits_rule`): the softmax a
    cross-entropy reads starts saturated. Its fix is named, not checked: no prediction of
    the loss covers it."""
    why = (
        f"the weights that make the logits (the output layer {layer!r}, or a tied embedding "
        "read as the output projection) are too large for a softmax over "
        f"{finding.classes} classes"
    )
    advice = (
        "draw those weights smaller: the logits' variance scales with their square, so a "
        f"std at most sqrt({finding.limit:.3g} / {finding.variance:.3g}) = "
        f"{math.sqrt(finding.limit / finding.variance):.3g} times the present one (GPT-2 "
        "draws its tied embedding from N(0, 0.02)); not checked: no prediction covers the loss"
    )
    return Alert(
        epoch,
        step,
        layer,
        "logits",
        finding.variance,
        "weights",
        finding.describe(),
        why,
        advice,
        None,
        False,
    )


def attention_alert(
    epoch: int, step: int, layer: str, finding: Any, collapsed: int, of: int
) -> Alert:
    """The alert of the attention rule (`keras_initlab.attention_rule`) at the first of
    ``collapsed`` (of ``of``) attention softmaxes that start collapsed. Its fix is named,
    not checked."""
    why = (
        f"the query and key projections of the attention around {layer!r} make scores too "
        f"large for a softmax over {finding.keys} keys (a lost 1/sqrt(d_head) scale "
        "multiplies their variance by d_head)"
    )
    advice = (
        "draw the query and key kernels smaller, or restore the scores' 1/sqrt(d_head) "
        "scale: the scores' variance scales with the product of the two kernels' variances, "
        f"so each std at most ({finding.limit:.3g} / {finding.variance:.3g})^(1/4) = "
        f"{(finding.limit / finding.variance) ** 0.25:.3g} times the present one; not "
        "checked: no prediction covers the softmax's saturation"
    )
    what = f"{finding.describe()} (in {collapsed} of {of} attention softmaxes)"
    return Alert(
        epoch, step, layer, "attention", finding.variance, "weights", what, why, advice, None, False
    )


def _diagnosed(
    epoch: int, step: int, layer: str, kind: str, factor: float, what: str, diagnosis: Any
) -> Alert:
    found = diagnosis() if diagnosis is not None else None
    if found is None:
        cause, why = "architecture", "the model's graph cannot be read, so no fix was checked"
        advice, fix, checked = _UNCHECKED_INIT, None, False
    else:
        cause, why, advice, fix, checked = (
            found.cause,
            found.why,
            found.advice,
            found.fix,
            found.checked,
        )
        if cause == "weights" and found.weights:
            layer = found.weights[0].layer
    return Alert(epoch, step, layer, kind, factor, cause, what, why, advice, fix, checked)


_UNCHECKED_INIT = (
    "keras_initlab.initialize(model, 'auto') or the scheme of each activation (He before "
    "ReLU, Glorot before tanh/sigmoid)"
)


def _non_finite(
    rows: Sequence[dict[str, Any]],
    epoch: int,
    step: int,
    diagnosis: Any,
    foretold: Alert | None,
) -> list[Alert]:
    """One alert for NaN/Inf: the first layer holding non-finite weights (read from the
    weights: a fused MatMul + ReLU maps NaN to 0 on some CPUs), else the first non-finite
    activation (forward) or gradient (backward)."""
    bad = [r for r in rows if r.get("non_finite_weights")]
    if bad:
        layer = str(bad[0]["layer"])
        others = f" ({len(bad) - 1} more layer(s) too)" if len(bad) > 1 else ""
        what = (
            f"layer {layer!r} holds {bad[0]['non_finite_weights']} weight value(s) that are "
            f"not finite (NaN/Inf){others}"
        )
    else:
        found = [
            (key, str(r["layer"]), r[key])
            for key in ("activation_var", "gradient_var")
            for r in (rows if key == "activation_var" else list(reversed(rows)))
            if r.get(key) is not None and not math.isfinite(float(r[key]))
        ]
        if not found:
            return []
        key, layer, value = found[0]
        what = f"the {key.replace('_', ' ')} of layer {layer!r} is not finite ({value})"
    if step == 0:
        return [_diagnosed(epoch, step, layer, "non_finite", math.nan, what, diagnosis)]
    return [_during_training(epoch, step, layer, "non_finite", math.nan, what, foretold)]


def _during_training(
    epoch: int, step: int, layer: str, kind: str, factor: float, what: str, foretold: Any
) -> Alert:
    """An alert after step 0: it points back to the step-0 alert that foretold it and gives
    that alert's checked fix, or, after a healthy step 0, names the training dynamics."""
    if foretold is not None:
        why = f"the step-0 profile foretold it: {foretold.what} (cause: {foretold.cause})"
        advice, fix, checked = foretold.advice, foretold.fix, foretold.checked
    else:
        why = (
            "the profile at step 0 was healthy by the depth rule, so the cause lies in the "
            "training dynamics: the optimizer's step size or the loss"
        )
        advice, fix, checked = _OPTIMIZER_ADVICE, None, False
    return Alert(epoch, step, layer, kind, factor, "training", what, why, advice, fix, checked)
