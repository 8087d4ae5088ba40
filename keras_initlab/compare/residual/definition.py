"""``keras-initlab residual`` as a definition on the experiment harness (`RESIDUAL`).

The unnormalized residual MLP and CNN under every scheme and seed
(`experiment.plan_residual`), the claims variance propagation makes (`claims`), the
table, JSON document, plots and summary (`report`), and the command's own options.
Keras-free: the hooks that train or plot load on first use.
"""

from __future__ import annotations

import argparse
from typing import Any

from keras_initlab.compare.harness.experiment import Experiment, lazy
from keras_initlab.compare.harness.options import names
from keras_initlab.compare.residual.config import (
    ARCHITECTURES,
    RESIDUAL_QUICK,
    RESIDUAL_SCHEMES,
    ResidualConfig,
    check_residual_config,
)

__all__ = ["RESIDUAL"]


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--architectures", default="mlp,cnn", help="mlp and/or cnn (default mlp,cnn)"
    )
    parser.add_argument("--blocks", type=int, help="residual blocks of the MLP (default 32)")
    parser.add_argument("--width", type=int, help="units of the MLP (default 64)")
    parser.add_argument("--cnn-blocks", type=int, help="residual blocks of the CNN (default 16)")
    parser.add_argument("--channels", type=int, help="channels of the CNN (default 16)")


def _from_args(args: argparse.Namespace, values: dict[str, Any]) -> dict[str, Any]:
    return {"architectures": names(args.architectures, ARCHITECTURES)}


_EXPERIMENT = "keras_initlab.compare.residual.experiment"
_REPORT = "keras_initlab.compare.residual.report"
RESIDUAL = Experiment(
    name="residual",
    config_type=ResidualConfig,
    check=check_residual_config,
    schemes=RESIDUAL_SCHEMES,
    quick=RESIDUAL_QUICK,
    plan=lazy(_EXPERIMENT, "plan_residual"),
    check_data=lazy(_EXPERIMENT, "check_data"),
    claims=lazy("keras_initlab.compare.residual.claims", "check_residual_claims"),
    table=lazy(_REPORT, "format_residual_table"),
    to_json=lazy(_REPORT, "to_residual_json"),
    files=lazy(_REPORT, "residual_files"),
    setup=lazy(_REPORT, "residual_setup"),
    help="He, Xavier, LSUV, auto and residual rules on unnormalized residual networks",
    description="Train a deep residual MLP and a residual CNN without normalization "
    "under He, Xavier, LSUV, auto and He with each residual rule (zero, fixup, skipinit, "
    "scaled); print the stream's growth at initialization and the accuracy reached, "
    "check the claims and write a report folder.",
    quick_help="smoke run: 6 MLP / 3 CNN blocks, 2 epochs, 2 seeds, 256 training examples",
    default_out="initlab-residual-report",
    report_contents="plots, results.json",
    add_options=_add_options,
    options=("blocks", "width", "cnn_blocks", "channels"),
    from_args=_from_args,
)
