"""What the residual experiment claims, checked against what it measured.

Each claim follows from variance propagation through unnormalized residual sums
(``Var(x_{l+1}) = Var(x_l) + Var(f_l(x_l))``, `keras_initlab.compare.residual.models`):

* He: each branch ``W2 relu(W1 x)`` has variance ``2 Var(x)``, so the stream grows ``3x``
  per block, ``3**L`` after ``L`` blocks (at least ``MIN_HE_GROWTH``-fold for the depths
  here), and training starts from exploding logits.
* ``auto`` (`keras_initlab.initialize`) keeps every sum within a factor ``AUTO_BAND`` of the
  stem's variance and the MLP trains to ``HIGH_ACCURACY``.
* A zero-initialized branch (``zero``, ``fixup``, ``skipinit``) adds exactly nothing at
  initialization: every sum *equals* the stem's variance.
* ``scaled`` multiplies the last kernel of each branch by ``1/sqrt(L)``: the stream grows by
  ``1 + 2/L`` per block, ``(1 + 2/L)**L`` in all (``e**2 = 7.4`` as ``L`` grows), within the
  same factor ``AUTO_BAND`` of that.
"""

from __future__ import annotations

import math

from keras_initlab.compare.claims import HIGH_ACCURACY
from keras_initlab.compare.harness.claims import Claim, fmt_spread
from keras_initlab.compare.residual.experiment import ResidualResult

MIN_HE_GROWTH = 100.0  # the bar: He alone lets the stream grow at least 100x
AUTO_BAND = 3.0  # every sum within [1/3, 3] of the stem's variance
ZERO_RULES = ("he_normal+zero", "he_normal+fixup", "he_normal+skipinit")
__all__ = ["AUTO_BAND", "MIN_HE_GROWTH", "check_residual_claims", "verdict"]


def verdict(result: ResidualResult, architecture: str, scheme: str) -> str:
    """``diverged (k/n)`` if the loss of k of n seeds became non-finite, else ``trains`` when
    the median final test accuracy reaches ``HIGH_ACCURACY``, else ``slow``."""
    runs = result.of(architecture, scheme)
    diverged = sum(r.diverged for r in runs)
    if diverged:
        return f"diverged ({diverged}/{len(runs)})"
    accuracy = result.spread_of(architecture, scheme, "final_accuracy").median
    return "trains" if accuracy >= HIGH_ACCURACY else "slow"


def _worst_band(result: ResidualResult, architecture: str, scheme: str) -> float:
    """The largest factor by which any sum of any seed departs from the stem's variance."""
    values = [v for r in result.of(architecture, scheme) for v in r.relative_stream[1:]]
    if not values or not all(v > 0 and math.isfinite(v) for v in values):
        return math.inf
    return max(max(values), 1.0 / min(values))


def _claims_for(result: ResidualResult, arch: str) -> list[Claim]:
    blocks = result.config.depth(arch)
    schemes = result.config.schemes
    net = f"{arch}, {blocks} blocks"
    claims = []
    if "he_normal" in schemes:
        growth = result.spread_of(arch, "he_normal", "growth")
        per_block = growth.median ** (1 / blocks) if growth.median > 0 else math.nan
        claims.append(
            Claim(
                f"He alone lets the unnormalized stream grow about 3x per block ({net}: "
                f"3^{blocks} = {3.0**blocks:.3g}), at least {MIN_HE_GROWTH:g}x",
                growth.median >= MIN_HE_GROWTH if growth.n_finite else None,
                f"last sum / stem: {fmt_spread(growth)}; {per_block:.3g}x per block",
            )
        )
    if "auto" in schemes:
        worst = _worst_band(result, arch, "auto")
        claims.append(
            Claim(
                f"auto keeps every residual sum within [1/{AUTO_BAND:g}, {AUTO_BAND:g}] of the "
                f"stem's variance ({net})",
                worst <= AUTO_BAND,
                f"largest departure over sums and seeds: {worst:.3g}x",
            )
        )
        accuracy = result.spread_of(arch, "auto", "final_accuracy")
        claims.append(
            Claim(
                f"auto trains the unnormalized network to test accuracy >= {HIGH_ACCURACY:g} "
                f"in {result.config.epochs} epochs ({net})",
                accuracy.median >= HIGH_ACCURACY if accuracy.n_finite else False,
                f"final test accuracy {fmt_spread(accuracy)}",
            )
        )
    zeroed = [s for s in ZERO_RULES if s in schemes]
    if zeroed:
        departures = [
            abs(v - 1.0) for s in zeroed for r in result.of(arch, s) for v in r.relative_stream
        ]
        exact = bool(departures) and max(departures) == 0.0
        claims.append(
            Claim(
                f"A zero-initialized branch ({', '.join(zeroed)}) adds nothing at "
                f"initialization: every sum equals the stem's variance ({net})",
                exact,
                f"largest |sum / stem - 1|: {max(departures):.3g}",
            )
        )
    if "he_normal+scaled" in schemes:
        theory = (1 + 2 / blocks) ** blocks
        growth = result.spread_of(arch, "he_normal+scaled", "growth")
        ratio = growth.median / theory
        claims.append(
            Claim(
                f"Branches scaled by 1/sqrt(L) grow the stream by (1 + 2/L) per block, "
                f"{theory:.3g}x in all, within [1/{AUTO_BAND:g}, {AUTO_BAND:g}] of that ({net})",
                1 / AUTO_BAND <= ratio <= AUTO_BAND if math.isfinite(ratio) else False,
                f"last sum / stem: {fmt_spread(growth)}",
            )
        )
    return claims


def check_residual_claims(result: ResidualResult) -> list[Claim]:
    """Every claim the run's schemes allow, per architecture, judged on the measurements.

    Example:
    >>> from keras_initlab.compare.residual.config import ResidualConfig
    >>> from keras_initlab.compare.residual.experiment import ResidualResult, ResidualRun
    >>> run = ResidualRun("mlp", "he_normal", 0, [1.0, 3.0, 9.0], [1.0], [1.0], [0.5])
    >>> config = ResidualConfig(schemes=("he_normal",), architectures=("mlp",), blocks=2)
    >>> [c.holds for c in check_residual_claims(ResidualResult(config, {}, [run], 1.0))]
    [False]
    """
    return [c for arch in result.config.architectures for c in _claims_for(result, arch)]
