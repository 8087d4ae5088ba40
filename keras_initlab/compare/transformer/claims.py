"""What the transformer experiment claims, checked against what it measured.

The claims were fixed before the first full run; each holds or is reported as not holding.
``V_s`` is the stream's variance at initialization after sum ``s`` (``2N`` sums for ``N``
blocks), measured on held-out windows; "growth" is ``V_2N / V_1``; medians over seeds.

1. **Prediction**: `keras_initlab.propagate` predicts the growth of every setup within a
   factor `PREDICTION_FACTOR`.
2. **Pre-LN without depth scaling grows at least linearly** (Xiong et al. 2020, "On Layer
   Normalization in the Transformer Architecture": each pre-LN branch reads a normalized
   input, so it adds a variance that does not shrink with depth): under N(0, 0.02), He,
   LeCun and SmallInit the second half of the blocks adds at least `LINEAR_SHARE` of what
   the first half adds, ``V_2N - V_N >= LINEAR_SHARE (V_N - V_0)`` with ``V_0`` the
   embedding's variance (a linear stream adds as much in each half).
3. **GPT-2's projections**: the same N(0, 0.02) draw with each branch's output projection
   times ``1/sqrt(2N)`` makes each pre-LN branch add ``1/(2N)`` of the variance for the same
   normalized input, so the variance all sums add is at least ``2N`` times smaller than
   without the factor (the unscaled stream grows, and a LayerNormalization of a larger
   input gives a larger output where its epsilon is not negligible: the ratio only rises).
4. **Without normalization**: He's stream grows exponentially (each block at least doubles
   it: growth at least ``2^N``); T-Fixup's ``(9N)^(-1/4)`` keeps its growth below
   `BOUNDED_GROWTH` (Huang et al. 2020).
5. **Training without normalization**: He diverges or stalls; T-Fixup trains the same
   network below the unigram loss (the loss of the byte frequencies alone).
6. **Post-LN without depth scaling is the unstable one** (Liu et al. 2020, "Understanding
   the Difficulty of Training Transformers"; Xiong et al. 2020; Wang et al. 2022, DeepNet):
   post-LN under N(0, 0.02) or Xavier diverges, stalls, or ends with a higher test loss than
   both post-LN under DeepNet and pre-LN under N(0, 0.02).
7. **GPT-2's depth scaling trains at least as well** on pre-LN as the same draw without it
   (its final test loss not higher); the best final loss of every setup is in the evidence.

A run "diverges" when its loss becomes NaN or infinite and "stalls" when its final test loss
stays at or above the unigram loss.
"""

from __future__ import annotations

import math

from keras_initlab.compare.harness.claims import Claim, fmt, fmt_spread
from keras_initlab.compare.spread import spread
from keras_initlab.compare.transformer.experiment import TransformerResult, TransformerRun

PREDICTION_FACTOR = 2.0
LINEAR_SHARE = 2.0 / 3.0
BOUNDED_GROWTH = 2.0
UNSCALED_PRE_LN = ("normal_0.02", "he_normal", "lecun_normal", "small_init")
__all__ = ["check_transformer_claims", "verdict"]


def verdict(result: TransformerResult, architecture: str, scheme: str) -> str:
    """``diverged (k/n)`` if the loss of k of n seeds became non-finite, else ``stalls`` when
    the median final test loss is at or above the unigram loss, else ``trains``."""
    runs = result.of(architecture, scheme)
    diverged = sum(r.diverged for r in runs)
    if diverged:
        return f"diverged ({diverged}/{len(runs)})"
    final = result.spread_of(architecture, scheme, "final_test_loss").median
    return "trains" if final < result.unigram_loss else "stalls"


def _added(run: TransformerRun) -> float:
    """What the sums after the first add: ``V_2N - V_1``."""
    return run.stream[-1] - run.stream[1]


def _halves(run: TransformerRun) -> float:
    """What the second half of the blocks adds over what the first half adds:
    ``(V_2N - V_N) / (V_N - V_0)``, ``V_0`` the embedding's variance."""
    stream = run.stream
    middle = (len(stream) - 1) // 2
    first = stream[middle] - stream[0]
    return (stream[-1] - stream[middle]) / first if first > 0 else math.nan


def _median(values: list[float]) -> float:
    return spread(values).median


def _has(result: TransformerResult, *setups: tuple[str, str]) -> bool:
    return all(result.of(*setup) for setup in setups)


def _prediction(result: TransformerResult) -> Claim:
    ratios = {}
    for arch, scheme in result.config.setups:
        if result.of(arch, scheme):
            measured = result.spread_of(arch, scheme, "growth").median
            predicted = result.spread_of(arch, scheme, "predicted_growth").median
            ratios[arch, scheme] = measured / predicted if predicted > 0 else math.nan
    if not ratios:
        return Claim("propagate() predicts each stream's growth", None, "no run")
    worst = max(ratios, key=lambda k: abs(math.log(ratios[k])) if ratios[k] > 0 else math.inf)
    off = [
        f"{a} {s}"
        for (a, s), r in ratios.items()
        if not 1 / PREDICTION_FACTOR <= r <= PREDICTION_FACTOR
    ]
    return Claim(
        f"propagate() predicts the stream's growth at initialization within "
        f"{PREDICTION_FACTOR:g}x on every setup",
        not off,
        f"measured / predicted {fmt(min(ratios.values()))}..{fmt(max(ratios.values()))}, "
        f"worst {worst[0]} {worst[1]} ({fmt(ratios[worst])})"
        + (f"; beyond: {', '.join(off)}" if off else ""),
    )


def _linear(result: TransformerResult) -> Claim:
    schemes = [s for s in UNSCALED_PRE_LN if result.of("pre_ln", s)]
    claim = (
        f"Without depth scaling the pre-LN stream grows at least linearly with depth: the "
        f"second half of the blocks adds at least {fmt(LINEAR_SHARE)} of what the first adds"
    )
    if not schemes or result.config.depth < 2:
        return Claim(claim, None, "no pre-LN run without depth scaling of 2 blocks or more")
    shares = {s: _median([_halves(r) for r in result.of("pre_ln", s)]) for s in schemes}
    growth = {s: result.spread_of("pre_ln", s, "growth") for s in schemes}
    return Claim(
        claim,
        all(v >= LINEAR_SHARE for v in shares.values()),
        "; ".join(
            f"{s}: second/first half {fmt(shares[s])}, growth {fmt_spread(growth[s])}"
            for s in schemes
        ),
    )


def _gpt2(result: TransformerResult) -> Claim:
    n = result.config.depth
    claim = (
        f"GPT-2's 1/sqrt(2N) projections cut what the pre-LN branches add at initialization "
        f"at least 2N = {2 * n}-fold against the same N(0, 0.02) draw"
    )
    if not _has(result, ("pre_ln", "normal_0.02"), ("pre_ln", "gpt2")):
        return Claim(claim, None, "needs pre_ln normal_0.02 and gpt2")
    flat = _median([_added(r) for r in result.of("pre_ln", "normal_0.02")])
    scaled = _median([_added(r) for r in result.of("pre_ln", "gpt2")])
    ratio = flat / scaled if scaled > 0 else math.inf
    return Claim(
        claim,
        ratio >= 2 * n,
        f"added variance {fmt(flat)} (N(0, 0.02)) vs {fmt(scaled)} (gpt2): {fmt(ratio)}x",
    )


def _no_norm(result: TransformerResult) -> Claim:
    n = result.config.depth
    claim = (
        f"Without normalization He's stream grows at least 2^N = {fmt(2.0**n)}-fold and "
        f"T-Fixup's less than {BOUNDED_GROWTH:g}-fold"
    )
    if not _has(result, ("no_norm", "he_normal"), ("no_norm", "t_fixup")):
        return Claim(claim, None, "needs no_norm he_normal and t_fixup")
    he = result.spread_of("no_norm", "he_normal", "growth")
    fixup = result.spread_of("no_norm", "t_fixup", "growth")
    return Claim(
        claim,
        he.median >= 2.0**n and fixup.median < BOUNDED_GROWTH,
        f"growth He {fmt_spread(he)}, T-Fixup {fmt_spread(fixup)}",
    )


def _final(result: TransformerResult, arch: str, scheme: str) -> float:
    """The median final test loss, infinite where a seed diverged."""
    if any(r.diverged for r in result.of(arch, scheme)):
        return math.inf
    return result.spread_of(arch, scheme, "final_test_loss").median


def _trains(result: TransformerResult, arch: str, scheme: str) -> bool:
    return verdict(result, arch, scheme) == "trains"


def _no_norm_training(result: TransformerResult) -> Claim:
    claim = "Without normalization He diverges or stalls and T-Fixup trains"
    if not _has(result, ("no_norm", "he_normal"), ("no_norm", "t_fixup")):
        return Claim(claim, None, "needs no_norm he_normal and t_fixup")
    he, fixup = verdict(result, "no_norm", "he_normal"), verdict(result, "no_norm", "t_fixup")
    return Claim(
        claim,
        he != "trains" and fixup == "trains",
        f"He {he} ({fmt(_final(result, 'no_norm', 'he_normal'))}), T-Fixup {fixup} "
        f"({fmt(_final(result, 'no_norm', 't_fixup'))}); unigram loss "
        f"{fmt(result.unigram_loss)}",
    )


def _post_ln(result: TransformerResult) -> Claim:
    claim = (
        "Post-LN without depth scaling is the unstable one: under N(0, 0.02) or Xavier it "
        "diverges, stalls or ends above both post-LN DeepNet and pre-LN N(0, 0.02)"
    )
    unscaled = [s for s in ("normal_0.02", "xavier_normal") if result.of("post_ln", s)]
    if not unscaled or not _has(result, ("post_ln", "deepnet"), ("pre_ln", "normal_0.02")):
        return Claim(
            claim,
            None,
            "needs post_ln deepnet and normal_0.02 or xavier_normal, pre_ln normal_0.02",
        )
    deepnet = _final(result, "post_ln", "deepnet")
    pre = _final(result, "pre_ln", "normal_0.02")
    holds = all(
        not _trains(result, "post_ln", s) or _final(result, "post_ln", s) > max(deepnet, pre)
        for s in unscaled
    )
    shown = ", ".join(
        f"post-LN {s} {verdict(result, 'post_ln', s)} {fmt(_final(result, 'post_ln', s))}"
        for s in unscaled
    )
    return Claim(
        claim, holds, f"{shown}; post-LN DeepNet {fmt(deepnet)}, pre-LN N(0, 0.02) {fmt(pre)}"
    )


def _gpt2_training(result: TransformerResult) -> Claim:
    claim = "GPT-2's depth scaling trains pre-LN at least as well as the same draw without it"
    finals = {(a, s): _final(result, a, s) for a, s in result.config.setups if result.of(a, s)}
    best = min(finals, key=lambda k: finals[k]) if finals else None
    evidence = f"best: {best[0]} {best[1]} {fmt(finals[best])}" if best else ""
    if not _has(result, ("pre_ln", "normal_0.02"), ("pre_ln", "gpt2")):
        return Claim(claim, None, f"needs pre_ln normal_0.02 and gpt2; {evidence}")
    scaled, flat = _final(result, "pre_ln", "gpt2"), _final(result, "pre_ln", "normal_0.02")
    return Claim(
        claim,
        _trains(result, "pre_ln", "gpt2") and scaled <= flat,
        f"final test loss gpt2 {fmt(scaled)}, N(0, 0.02) {fmt(flat)}; {evidence}",
    )


def check_transformer_claims(result: TransformerResult) -> list[Claim]:
    """Every claim of the module docstring, judged on ``result`` (n/a where a run is missing).

    Example:
    >>> from keras_initlab.compare.transformer.config import TransformerConfig
    >>> from keras_initlab.compare.transformer.experiment import TransformerResult
    >>> claims = check_transformer_claims(
    ...     TransformerResult(TransformerConfig(), {"unigram_loss": 3.0}, [], 0.0))
    >>> [c.mark for c in claims]
    ['n/a', 'n/a', 'n/a', 'n/a', 'n/a', 'n/a', 'n/a']
    """
    return [
        _prediction(result),
        _linear(result),
        _gpt2(result),
        _no_norm(result),
        _no_norm_training(result),
        _post_ln(result),
        _gpt2_training(result),
    ]
