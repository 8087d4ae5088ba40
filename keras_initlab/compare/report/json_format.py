"""``results.json``: the comparison in the ``--json`` format, as strict JSON."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_initlab.compare.claims import check_claims
from keras_initlab.compare.harness import report as harness_report
from keras_initlab.compare.harness.claims import Claim, claims_as_dicts
from keras_initlab.compare.harness.report import strict_json
from keras_initlab.compare.results import CompareResult, SchemeResult, SeedRun, WidthCheck
from keras_initlab.compare.setups import describe_schemes
from keras_initlab.compare.spread import Spread
from keras_initlab.compare.verdicts import VERDICT_FACTOR


def _seed_json(run: SeedRun) -> dict[str, Any]:
    return {
        "seed": run.seed,
        "activation_var": run.activation_var,
        "gradient_var": run.gradient_var,
        "final_activation_var": run.final_activation_var,
        "distinct_units": run.distinct_units,
        "loss": run.loss,
        "accuracy": run.accuracy,
        "test_loss": run.test_loss,
        "test_accuracy": run.test_accuracy,
        "activation_ratio": run.activation_ratio,
        "gradient_ratio": run.gradient_ratio,
        "verdict": run.verdict,
    }


def _spread_json(value: Spread) -> dict[str, Any]:
    return {"median": value.median, "min": value.low, "max": value.high, "finite": value.n_finite}


def _run_json(run: SchemeResult, initializer: str | None) -> dict[str, Any]:
    return {
        "activation_var": run.activation_var,
        "gradient_var": run.gradient_var,
        "distinct_units": run.distinct_units,
        "loss": run.loss,
        "accuracy": run.accuracy,
        "test_loss": run.test_loss,
        "test_accuracy": run.test_accuracy,
        "activation": run.activation,
        "layers": run.layers,
        "activation_ratio": run.activation_ratio,
        "gradient_ratio": run.gradient_ratio,
        "spread": {
            "activation_ratio": _spread_json(run.activation_spread),
            "gradient_ratio": _spread_json(run.gradient_spread),
            "loss": _spread_json(run.final("loss")),
            "test_accuracy": _spread_json(run.final("test_accuracy")),
        },
        "verdict": run.verdict,
        "verdicts": run.verdicts,
        "seeds": run.seeds,
        "per_seed": [_seed_json(r) for r in run.runs],
        "initializer": initializer,
        "seconds": run.seconds,
    }


def _width_json(check: WidthCheck) -> dict[str, Any]:
    return {
        "scheme": "he_normal",
        "activation": check.activation,
        "depth": check.depth,
        "seeds": check.seeds,
        "widths": {
            str(w): {
                "activation_ratio": check.activation_ratio[w],
                "gradient_ratio": check.gradient_ratio[w],
                "activation_ratio_log10_sd": check.log_sd(check.activation_ratio[w]),
                "gradient_ratio_log10_sd": check.log_sd(check.gradient_ratio[w]),
            }
            for w in check.activation_ratio
        },
    }


def to_json(result: CompareResult, claims: Sequence[Claim] | None = None) -> dict[str, Any]:
    """The results in the ``--json`` format, plus context; strict JSON values.

    The format is documented in keras_initlab/compare/README.md:

    ``{"dataset": name, "schemes": {NAME: {"activation_var": [per layer at init],
    "gradient_var": [per layer at init], "distinct_units": [per hidden layer, after
    training], "loss": [per epoch], "accuracy": [per epoch], ...}}, "contrast": {...},
    "claims": [...], "width_check": {...}, "partial": bool, ...}``; layers are the hidden
    layers then the output layer. Those lists are medians over the seeds (layer by layer,
    epoch by epoch); each scheme's ``per_seed`` holds the seeds' own values, ``spread`` the
    median, min and max of its ratios, final loss and final test accuracy. ``partial`` is true
    for an interrupted run (only the runs that finished).
    """
    config = result.config
    described = describe_schemes(config.width, config.activation)
    contrast_described = (
        describe_schemes(config.width, config.contrast_activation)
        if config.contrast_activation
        else {}
    )
    data = {
        "dataset": result.dataset["name"],
        "dataset_info": result.dataset,
        "config": {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
        },
        "verdict_factor": VERDICT_FACTOR,
        "schemes": {
            name: _run_json(run, described.get(name)) for name, run in result.schemes.items()
        },
        "contrast": {
            "activation": config.contrast_activation if result.contrast else None,
            "schemes": {
                name: _run_json(run, contrast_described.get(name))
                for name, run in result.contrast.items()
            },
        },
        "claims": claims_as_dicts(check_claims(result) if claims is None else claims),
        "width_check": None if result.width_check is None else _width_json(result.width_check),
        "seconds": result.seconds,
        "partial": result.partial,
    }
    return strict_json(data)


def write_json(result: CompareResult, path: str | os.PathLike[str]) -> Path:
    """Write ``to_json(result)`` to ``path`` (parent folders created); return the path."""
    from keras_initlab.compare.definition import COMPARE

    return harness_report.write_json(COMPARE, result, path)
