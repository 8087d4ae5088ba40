"""The tutorial's claims (seed.md), each checked against a comparison's measurements.

Each check returns a ``Claim``: what the tutorial says, whether the run shows it (None when
the run lacks the schemes it needs) and the measured evidence. The criteria:

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
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from keras_initlab.compare.runner import CompareResult, SchemeResult

HIGH_ACCURACY = 0.9  # "high accuracy" on the default data (digits: 10 balanced classes)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the tutorial and what the run measured.

    Attributes:
        claim: the tutorial's statement.
        holds: True / False as measured, None when the run lacks what it needs.
        evidence: the numbers behind the answer.
    """

    claim: str
    holds: bool | None
    evidence: str

    @property
    def mark(self) -> str:
        return {True: "yes", False: "NO", None: "n/a"}[self.holds]


def _find(result: CompareResult, name: str, activation: str) -> SchemeResult | None:
    for run in (*result.schemes.values(), *result.contrast.values()):
        if run.name == name and run.activation == activation:
            return run
    return None


def _hidden_outputs_zero(run: SchemeResult) -> bool:
    """Every hidden layer outputs exactly 0 on the probe after training (mean and var)."""
    last = max(int(r["step"]) for r in run.records)
    hidden = set(run.layers[:-1])
    rows = [
        r
        for r in run.records
        if int(r["step"]) == last and str(r["layer"]).split("/")[-1] in hidden
    ]
    return bool(rows) and all(
        r["activation_mean"] == 0.0 and r["activation_var"] == 0.0 and r["weight_var"] == 0.0
        for r in rows
    )


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3g}"


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
        units = {r.name: r.distinct_units for r in (zeros, constant)}
        holds = all(all(d == 1 for d in u) for u in units.values())
        evidence = "; ".join(
            f"{k}: distinct units per hidden layer {[_fmt(d) for d in v]}" for k, v in units.items()
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
                f"every hidden layer outputs exactly 0 after training: {frozen}; "
                f"final test accuracy {zeros.test_accuracy[-1]:.3f}, "
                f"loss {zeros.loss[0]:.3g} -> {zeros.loss[-1]:.3g}",
            )
        )
    else:
        claims.append(Claim("Zero initialization cannot learn", None, "needs scheme zeros"))

    small, he, large = get("too_small"), get("he_normal"), get("too_large")
    if small and he:
        claims.append(
            Claim(
                "Too-small weights learn slowly",
                small.loss[-1] > he.loss[-1],
                f"final loss too_small {_fmt(small.loss[-1])} vs he_normal {_fmt(he.loss[-1])}; "
                f"test accuracy {small.test_accuracy[-1]:.3f} vs {he.test_accuracy[-1]:.3f}",
            )
        )
    if large:
        claims.append(
            Claim(
                "Too-large weights diverge",
                large.verdict == "exploding",
                f"too_large: activation ratio {_fmt(large.activation_ratio)}, final loss "
                f"{_fmt(large.loss[-1])}, verdict {large.verdict}",
            )
        )

    for name, expected in (("identity_1.5", "exploding"), ("identity_0.5", "vanishing")):
        run = get(name)
        text = f"{name.replace('identity_', '')} I {expected.replace('ing', 'es')} with depth"
        if run:
            claims.append(
                Claim(
                    text,
                    run.verdict == expected,
                    f"activation ratio {_fmt(run.activation_ratio)}, gradient "
                    f"ratio {_fmt(run.gradient_ratio)}, verdict {run.verdict}",
                )
            )
        else:
            claims.append(Claim(text, None, f"needs scheme {name}"))

    for name, activation in (("he_normal", "relu"), ("xavier_normal", "tanh")):
        run = get(name, activation)
        text = f"{name} with {activation} keeps the variance across depth"
        if run:
            claims.append(
                Claim(
                    text,
                    run.verdict == "ok",
                    f"activation ratio {_fmt(run.activation_ratio)}, gradient "
                    f"ratio {_fmt(run.gradient_ratio)}, verdict {run.verdict}",
                )
            )
        else:
            claims.append(Claim(text, None, f"needs {name} trained with {activation}"))

    run = get("xavier_normal", "relu")
    text = "Xavier with relu shrinks the activations layer by layer"
    if run:
        per_layer = run.activation_ratio ** (1.0 / max(len(run.layers) - 2, 1))
        claims.append(
            Claim(
                text,
                run.activation_ratio < 1.0,
                f"activation ratio {_fmt(run.activation_ratio)} "
                f"({_fmt(per_layer)} per layer; theory 0.5)",
            )
        )
    else:
        claims.append(Claim(text, None, "needs xavier_normal trained with relu"))

    run = get("he_normal", "relu") or get("he_normal")
    text = f"He trains to high accuracy (test accuracy >= {HIGH_ACCURACY})"
    if run:
        claims.append(
            Claim(
                text,
                run.test_accuracy[-1] >= HIGH_ACCURACY,
                f"he_normal ({run.activation}) final test accuracy {run.test_accuracy[-1]:.3f}",
            )
        )
    else:
        claims.append(Claim(text, None, "needs scheme he_normal"))
    return claims


def claims_as_dicts(claims: list[Claim]) -> list[dict[str, Any]]:
    """JSON-ready claims."""
    return [dataclasses.asdict(c) for c in claims]
