"""``keras-initlab residual``: He, Xavier, LSUV, ``auto`` and the residual rules on
unnormalized residual networks, as a library.

``run_residual(ResidualConfig(...))`` trains a 32-block residual MLP and a 16-block
residual CNN (no normalization: `models`) on the embedded digits under every scheme of
`RESIDUAL_SCHEMES` and several seeds, with the same split, batches and optimizer, and
measures the stream's variance after every residual sum at initialization
(`experiment`); `check_residual_claims` judges what variance propagation predicts
(`claims`); `format_residual_table` and `write_residual_report` print and write the
result (`report`).

Example:
>>> from keras_initlab.compare.residual import ResidualConfig, run_residual
>>> config = ResidualConfig(schemes=("he_normal",), architectures=("mlp",), blocks=8,
...     width=16, epochs=1, seeds=1, train_limit=64, test_limit=32)
>>> run_residual(config).runs[0].growth > 3.0**4
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what `__getattr__` below provides, spelled out for type checkers
    from keras_initlab.compare.residual.claims import check_residual_claims, verdict
    from keras_initlab.compare.residual.config import (
        ARCHITECTURES,
        RESIDUAL_QUICK,
        RESIDUAL_SCHEMES,
        ResidualConfig,
        check_residual_config,
    )
    from keras_initlab.compare.residual.experiment import (
        ResidualResult,
        ResidualRun,
        apply_scheme,
        run_residual,
    )
    from keras_initlab.compare.residual.models import build_residual_cnn, build_residual_mlp
    from keras_initlab.compare.residual.report import (
        format_residual_table,
        print_residual,
        to_residual_json,
        write_residual_json,
        write_residual_report,
    )

# Public name -> its module, loaded on first use: the command line checks its arguments
# with the Keras-free `config` before TensorFlow starts.
_SOURCE = {
    **dict.fromkeys(("check_residual_claims", "verdict"), "claims"),
    **dict.fromkeys(
        (
            "ARCHITECTURES",
            "RESIDUAL_QUICK",
            "RESIDUAL_SCHEMES",
            "ResidualConfig",
            "check_residual_config",
        ),
        "config",
    ),
    **dict.fromkeys(
        ("ResidualResult", "ResidualRun", "apply_scheme", "run_residual"), "experiment"
    ),
    **dict.fromkeys(("build_residual_cnn", "build_residual_mlp"), "models"),
    **dict.fromkeys(
        (
            "format_residual_table",
            "print_residual",
            "to_residual_json",
            "write_residual_json",
            "write_residual_report",
        ),
        "report",
    ),
}


def __getattr__(name: str) -> Any:
    if name not in _SOURCE:
        raise AttributeError(f"module 'keras_initlab.compare.residual' has no attribute {name!r}")
    module = importlib.import_module(f"keras_initlab.compare.residual.{_SOURCE[name]}")
    globals()[name] = value = getattr(module, name)
    return value


__all__ = [
    "ARCHITECTURES",
    "RESIDUAL_QUICK",
    "RESIDUAL_SCHEMES",
    "ResidualConfig",
    "ResidualResult",
    "ResidualRun",
    "apply_scheme",
    "build_residual_cnn",
    "build_residual_mlp",
    "check_residual_claims",
    "check_residual_config",
    "format_residual_table",
    "print_residual",
    "run_residual",
    "to_residual_json",
    "verdict",
    "write_residual_json",
    "write_residual_report",
]
