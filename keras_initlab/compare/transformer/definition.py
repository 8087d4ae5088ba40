"""``keras-initlab transformer`` as a definition on the experiment harness (`TRANSFORMER`).

Deep decoder-only transformers (pre-LN, post-LN, without normalization) trained as byte-level
language models on the standard library's source under every scheme and seed
(`experiment.plan_transformer`), the claims (`claims`), the table, JSON document, plots and
summary (`report`), and the command's own options. Keras-free: the hooks that train or plot
load on first use.
"""

from __future__ import annotations

import argparse
from typing import Any

from keras_initlab.compare.harness.experiment import Experiment, lazy
from keras_initlab.compare.harness.options import names
from keras_initlab.compare.transformer.config import (
    ARCHITECTURES,
    TRANSFORMER_QUICK,
    TRANSFORMER_SCHEMES,
    TransformerConfig,
    check_transformer_config,
)

__all__ = ["TRANSFORMER"]


def _add_options(parser: argparse.ArgumentParser) -> None:
    default = TransformerConfig()
    parser.add_argument(
        "--architectures",
        default="all",
        help=f"{', '.join(ARCHITECTURES)} or 'all' (default)",
    )
    parser.add_argument("--depth", type=int, help=f"transformer blocks (default {default.depth})")
    parser.add_argument("--width", type=int, help=f"the stream's width (default {default.width})")
    parser.add_argument("--heads", type=int, help=f"attention heads (default {default.heads})")
    parser.add_argument("--length", type=int, help=f"tokens per window (default {default.length})")
    parser.add_argument(
        "--steps", type=int, help=f"training steps per round (default {default.steps})"
    )


def _from_args(args: argparse.Namespace, values: dict[str, Any]) -> dict[str, Any]:
    return {"architectures": names(args.architectures, ARCHITECTURES)}


_EXPERIMENT = "keras_initlab.compare.transformer.experiment"
_REPORT = "keras_initlab.compare.transformer.report"
TRANSFORMER = Experiment(
    name="transformer",
    config_type=TransformerConfig,
    check=check_transformer_config,
    schemes=TRANSFORMER_SCHEMES,
    quick=TRANSFORMER_QUICK,
    plan=lazy(_EXPERIMENT, "plan_transformer"),
    load_data=lazy(_EXPERIMENT, "load_data"),
    check_data=lazy(_EXPERIMENT, "check_data"),
    claims=lazy("keras_initlab.compare.transformer.claims", "check_transformer_claims"),
    table=lazy(_REPORT, "format_transformer_table"),
    to_json=lazy(_REPORT, "to_transformer_json"),
    files=lazy(_REPORT, "transformer_files"),
    setup=lazy(_REPORT, "transformer_setup"),
    help="N(0, 0.02), He, LeCun, SmallInit, auto and the LLM depth rules on deep transformers",
    description="Train deep, narrow decoder-only transformers (pre-LN, post-LN, without "
    "normalization) as byte-level language models on Python's standard library under "
    "N(0, 0.02), He, LeCun, SmallInit, auto, GPT-2's scaled projections, DeepNet and "
    "T-Fixup; print the stream's growth at initialization (measured and predicted) and the "
    "test loss reached, check the claims and write a report folder.",
    dataset_help="stdlib (default: Python's own standard-library source, read offline)",
    quick_help="smoke run: 4 blocks of width 32, 8 steps, 2 seeds",
    default_out="initlab-transformer-report",
    report_contents="plots, results.json",
    add_options=_add_options,
    options=("depth", "width", "heads", "length", "steps"),
    from_args=_from_args,
    optimizer="Adam",
    momentum_help="Adam's beta_1",
    epochs_help="evaluation rounds, each of --steps steps",
)
