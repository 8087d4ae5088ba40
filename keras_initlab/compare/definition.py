"""``keras-initlab compare`` as a definition on the experiment harness (`COMPARE`).

The deep MLP trained under every scheme (`runner.plan_comparison`), the tutorial's
claims (`claims`), the table, JSON format, CSV files, plots and summary (`report`), and
the command's own options. Keras-free: the hooks that train or plot load on first use.
"""

from __future__ import annotations

import argparse
from typing import Any

from keras_initlab.compare.config import COMPARE_SCHEMES, QUICK, CompareConfig, check_config
from keras_initlab.compare.harness.experiment import Experiment, lazy

__all__ = ["COMPARE"]


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, help="hidden layers (default 10)")
    parser.add_argument("--width", type=int, help="units per hidden layer (default 64)")
    parser.add_argument("--activation", help="hidden activation (default relu)")
    parser.add_argument(
        "--contrast-activation",
        help="activation Xavier and He are also trained with (default: tanh, "
        "or relu when --activation tanh; 'none' to skip)",
    )


def _from_args(args: argparse.Namespace, values: dict[str, Any]) -> dict[str, Any]:
    """``--contrast-activation``: by default tanh, or relu when the activation is tanh."""
    contrast = args.contrast_activation
    if contrast is None:
        contrast = "relu" if values["activation"] == "tanh" else "tanh"
    return {"contrast_activation": None if contrast == "none" else contrast}


_REPORT = "keras_initlab.compare.report"
COMPARE = Experiment(
    name="compare",
    config_type=CompareConfig,
    check=check_config,
    schemes=COMPARE_SCHEMES,
    quick=QUICK,
    plan=lazy("keras_initlab.compare.runner", "plan_comparison"),
    claims=lazy("keras_initlab.compare.claims", "check_claims"),
    table=lazy(f"{_REPORT}.table", "format_table"),
    to_json=lazy(f"{_REPORT}.json_format", "to_json"),
    files=lazy(f"{_REPORT}.folder", "report_files"),
    setup=lazy(f"{_REPORT}.summary", "summary_setup"),
    sections=lazy(f"{_REPORT}.table", "width_sections"),
    footer=lazy(f"{_REPORT}.summary", "summary_footer"),
    claims_title="The tutorial's claims",
    help="train one deep network under every initialization scheme",
    description="Train one deep MLP under every initialization scheme with the same "
    "data, seed and optimizer; print a table and write a report folder.",
    quick_help="smoke run: depth 6, width 32, 2 epochs, 512 training examples",
    default_out="initlab-report",
    report_contents="plots, results.json, CSV",
    add_options=_add_options,
    options=("depth", "width", "activation"),
    from_args=_from_args,
)
