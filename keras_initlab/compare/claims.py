"""The tutorial's claims (README.md's quick start), each checked against a comparison.

Each check returns a ``Claim``: what the tutorial says, whether the run shows it (None when
the run lacks the schemes it needs) and the measured evidence (medians and ranges over the
seeds). A claim holds only when it holds for every seed; seeds are paired by index where
two schemes are compared. The criteria:

1. ``zeros`` and ``constant`` keep symmetry: 1 distinct unit in every hidden layer after
   training.
2. ``zeros`` cannot learn: after training every hidden layer still outputs exactly 0 and
   its kernel has variance 0 (no gradient reaches it; only the output bias moves, so the
   network predicts the class prior).
3. ``too_small`` learns slowly: its final training loss is above ``he_normal``'s;
   ``too_large`` diverges: its verdict is ``exploding``.
4. ``identity_1.5`` explodes and ``identity_0.5`` vanishes with depth (their verdicts).
5. He with ReLU and Xavier with tanh keep the variance across depth: verdict ``ok``
   (both variance ratios within ``verdicts.VERDICT_FACTOR`` of 1).
6. Xavier with ReLU shrinks the activations layer by layer: activation ratio below 1.
7. He trains to high accuracy: final test accuracy of ``he_normal`` at least
   ``HIGH_ACCURACY``.
8. The finite-width effect (Hanin & Rolnick 2018): He's activation ratio across depth
   fluctuates from seed to seed, less at a larger width: the standard deviation of
   ``log10`` of the ratio over seeds is smaller at the largest checked width than at the
   smallest.
"""

from __future__ import annotations

from keras_initlab.compare.harness.claims import Claim, fmt, fmt_spread
from keras_initlab.compare.results import CompareResult, SchemeResult, WidthCheck
from keras_initlab.compare.spread import spread

__all__ = ["HIGH_ACCURACY", "Claim", "check_claims", "fmt_spread", "width_claim"]

HIGH_ACCURACY = 0.9  # "high accuracy" on the default data (digits: 10 balanced classes)


def _find(result: CompareResult, name: str, activation: str) -> SchemeResult | None:
    for run in (*result.schemes.values(), *result.contrast.values()):
        if run.name == name and run.activation == activation:
            return run
    return None


def _hidden_outputs_zero(run: SchemeResult) -> bool:
    """Every hidden layer of every seed outputs exactly 0 on the probe after training."""
    hidden = set(run.layers[:-1])
    for seed_run in run.runs:
        last = max(int(r["step"]) for r in seed_run.records)
        rows = [r for r in seed_run.records if int(r["step"]) == last and r["layer"] in hidden]
        if not rows or not all(
            r["activation_mean"] == 0.0 and r["activation_var"] == 0.0 and r["weight_var"] == 0.0
            for r in rows
        ):
            return False
    return True


def _verdicts(run: SchemeResult) -> str:
    counts = {v: run.verdicts.count(v) for v in dict.fromkeys(run.verdicts)}
    return ", ".join(f"{v} {n}/{len(run.verdicts)}" for v, n in counts.items())


def _ratios(run: SchemeResult) -> str:
    return (
        f"activation ratio {fmt_spread(run.activation_spread)}, gradient ratio "
        f"{fmt_spread(run.gradient_spread)}, verdicts {_verdicts(run)}"
    )


def width_claim(check: WidthCheck) -> Claim:
    """Claim 8: the seed-to-seed spread of He's depth ratio shrinks as the width grows."""
    widths = sorted(check.activation_ratio)
    sds = {w: check.log_sd(check.activation_ratio[w]) for w in widths}
    narrow, wide = widths[0], widths[-1]
    holds = len(widths) > 1 and sds[wide] < sds[narrow]
    evidence = "; ".join(
        f"width {w}: activation ratio {fmt_spread(spread(check.activation_ratio[w]))}, "
        f"sd of log10 {fmt(sds[w])}"
        for w in widths
    )
    return Claim(
        f"He's depth ratio fluctuates less at larger width (Hanin & Rolnick 2018; "
        f"{len(check.seeds)} seeds per width)",
        holds if len(widths) > 1 else None,
        evidence + "; theory: sd shrinks like sqrt(depth / width)",
    )


def check_claims(result: CompareResult) -> list[Claim]:
    """Check every claim the run has the schemes for.

    Args:
        result: a ``CompareResult`` (``run_comparison``).

    Returns:
        One ``Claim`` per statement, in the tutorial's order.
    """
    claims: list[Claim] = []
    main = result.config.activation

    def get(name: str, activation: str = main) -> SchemeResult | None:
        return _find(result, name, activation)

    zeros, constant = get("zeros"), get("constant")
    if zeros and constant:
        pairs = [(r.name, seed_run) for r in (zeros, constant) for seed_run in r.runs]
        holds = all(all(d == 1 for d in run.distinct_units) for _, run in pairs)
        evidence = "; ".join(
            f"{r.name}: distinct units per hidden layer (median over seeds) "
            f"{[fmt(d) for d in r.distinct_units]}"
            for r in (zeros, constant)
        )
    else:
        holds, evidence = None, "needs schemes zeros and constant"
    claims.append(
        Claim(
            "Zero or constant initialization keeps every hidden unit identical (distinct units 1)",
            holds,
            evidence,
        )
    )

    if zeros:
        frozen = _hidden_outputs_zero(zeros)
        claims.append(
            Claim(
                "Zero initialization cannot learn",
                frozen,
                f"every hidden layer of every seed outputs exactly 0 after training: {frozen}; "
                f"final test accuracy {fmt_spread(zeros.final('test_accuracy'))}",
            )
        )
    else:
        claims.append(Claim("Zero initialization cannot learn", None, "needs scheme zeros"))

    small, he, large = get("too_small"), get("he_normal"), get("too_large")
    if small and he:
        slower = [s.loss[-1] > h.loss[-1] for s, h in zip(small.runs, he.runs, strict=True)]
        claims.append(
            Claim(
                "Too-small weights learn slowly",
                all(slower),
                f"final loss too_small {fmt_spread(small.final('loss'))} vs he_normal "
                f"{fmt_spread(he.final('loss'))} (higher in {sum(slower)}/{len(slower)} seeds); "
                f"test accuracy {fmt_spread(small.final('test_accuracy'))} vs "
                f"{fmt_spread(he.final('test_accuracy'))}",
            )
        )
    if large:
        claims.append(
            Claim(
                "Too-large weights diverge",
                all(v == "exploding" for v in large.verdicts),
                f"too_large: activation ratio {fmt_spread(large.activation_spread)}, final "
                f"loss {fmt_spread(large.final('loss'))}, verdicts {_verdicts(large)}",
            )
        )

    for name, expected in (("identity_1.5", "exploding"), ("identity_0.5", "vanishing")):
        run = get(name)
        text = f"{name.replace('identity_', '')} I {expected.replace('ing', 'es')} with depth"
        if run:
            claims.append(Claim(text, all(v == expected for v in run.verdicts), _ratios(run)))
        else:
            claims.append(Claim(text, None, f"needs scheme {name}"))

    for name, activation in (("he_normal", "relu"), ("xavier_normal", "tanh")):
        run = get(name, activation)
        text = f"{name} with {activation} keeps the variance across depth"
        if run:
            claims.append(Claim(text, all(v == "ok" for v in run.verdicts), _ratios(run)))
        else:
            claims.append(Claim(text, None, f"needs {name} trained with {activation}"))

    run = get("xavier_normal", "relu")
    text = "Xavier with relu shrinks the activations layer by layer"
    if run:
        ratios = run.activation_spread
        per_layer = ratios.median ** (1.0 / max(len(run.layers) - 2, 1))
        claims.append(
            Claim(
                text,
                ratios.all_finite and ratios.high < 1.0,
                f"activation ratio {fmt_spread(ratios)} ({fmt(per_layer)} per layer; theory 0.5)",
            )
        )
    else:
        claims.append(Claim(text, None, "needs xavier_normal trained with relu"))

    run = get("he_normal", "relu") or get("he_normal")
    text = f"He trains to high accuracy (test accuracy >= {HIGH_ACCURACY} in every seed)"
    if run:
        accuracy = run.final("test_accuracy")
        claims.append(
            Claim(
                text,
                accuracy.all_finite and accuracy.low >= HIGH_ACCURACY,
                f"he_normal ({run.activation}) final test accuracy {fmt_spread(accuracy)}",
            )
        )
    else:
        claims.append(Claim(text, None, "needs scheme he_normal"))
    if result.width_check is not None:
        claims.append(width_claim(result.width_check))
    return claims
