"""One word per trained network: ``symmetric``, ``exploding``, ``vanishing`` or ``ok``.

The verdict reads the depth profile at initialization by the depth rule
(`keras_initlab.depth_rule.judge`, the one the monitor's alerts and ``inspect`` use), on
the hidden layers as a plain chain: the activation variance forward, the gradient variance
backward (towards the input), the largest change between two layers at least three apart
(over fewer steps a change is one-off, so a network of fewer than four hidden layers is
judged only for non-finite and zero values) against ``VERDICT_FACTOR``. The table's
ratios (`forward_ratio`, `backward_ratio`) are last over first. The rules, in this order
(the first that applies):

* ``exploding``: a loss, activation variance or gradient variance that is NaN or infinite,
  or a growth beyond the rule. Checked first, so that a network whose units all read the
  same non-finite (or dead) value after diverging is never called symmetric.
* ``symmetric``: every hidden layer with finite outputs after training has one distinct unit
  (claim 1); layers whose outputs are not finite (NaN distinct units) are not judged.
* ``vanishing``: a shrink beyond the rule, or a signal that is exactly 0.
* ``ok``: otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from keras_initlab.depth_rule import DEPTH_FACTOR, judge

# A depth profile whose variance changes by more than this factor between two hidden layers
# is called exploding or vanishing (the depth rule's factor). With the default depth (10 layers) a
# per-layer drift of 1.29x (10**(1/9)) already reaches it; ReLU under Xavier (0.5 per layer)
# gives 0.5**9 = 0.002, He gives 1 up to sampling noise.
VERDICT_FACTOR = DEPTH_FACTOR


def ratio(numerator: float | None, denominator: float | None) -> float:
    """``numerator / denominator``, NaN when either is missing, non-finite or 0/0.

    Example:
    >>> ratio(4.0, 2.0)
    2.0
    >>> math.isnan(ratio(0.0, 0.0))
    True
    """
    if numerator is None or denominator is None:
        return math.nan
    if not (math.isfinite(numerator) and math.isfinite(denominator)):
        return math.nan
    if denominator == 0.0:
        return math.inf if numerator > 0.0 else math.nan
    return numerator / denominator


def forward_ratio(activation_var: Sequence[float]) -> float:
    """Activation variance of the last hidden layer over the first."""
    return ratio(activation_var[-1], activation_var[0]) if activation_var else math.nan


def backward_ratio(gradient_var: Sequence[float]) -> float:
    """Gradient variance at the first hidden layer over the last (growth towards the input)."""
    return ratio(gradient_var[0], gradient_var[-1]) if gradient_var else math.nan


def verdict(
    activation_var: Sequence[float],
    gradient_var: Sequence[float],
    distinct_units: Sequence[float],
    losses: Sequence[float],
    *,
    factor: float = VERDICT_FACTOR,
) -> str:
    """The one-word verdict for a network (hidden layers only, input side first).

    Args:
        activation_var: activation variance per hidden layer at initialization.
        gradient_var: gradient variance per hidden layer at initialization.
        distinct_units: distinct units per hidden layer after training (NaN: the layer's
            outputs were not finite, not judged).
        losses: training loss per epoch.
        factor: the allowed change of variance across depth.

    Returns:
        ``"symmetric"``, ``"exploding"``, ``"vanishing"`` or ``"ok"``.

    Example:
    >>> verdict([1.0, 1.2], [1.0, 0.9], [64, 64], [2.3, 0.1])
    'ok'
    >>> verdict([1.0, 1e4], [1.0, 1.0], [64, 64], [2.3, float("nan")])
    'exploding'
    >>> verdict([0.0, 0.0], [0.0, 0.0], [1, 1], [2.3, 2.3])
    'symmetric'
    """
    values = [*activation_var, *gradient_var]
    if any(not math.isfinite(v) for v in [*losses, *values] if v is not None):
        return "exploding"
    rows = [
        {"layer": f"hidden_{i}", "activation_var": a, "gradient_var": g}
        for i, (a, g) in enumerate(zip(activation_var, gradient_var, strict=True))
    ]
    judged = judge(rows, factor=factor).verdict
    if judged == "exploding":
        return judged
    judged_units = [d for d in distinct_units if d is not None and math.isfinite(d)]
    if judged_units and all(d == 1 for d in judged_units):
        return "symmetric"
    if judged == "vanishing" or any(v == 0.0 for v in values):
        return "vanishing"
    return "ok"
