"""The main job, ``keras-initlab compare``, as a library: train one deep MLP per scheme.

``run_comparison(CompareConfig(...))`` loads the data (``load_dataset``: the embedded
digits by default), trains the MLP (``build_mlp``) under every scheme of
``COMPARE_SCHEMES`` with the same split, seed and optimizer while a VarianceMonitor
measures each layer, and returns a ``CompareResult``; ``format_table``, ``check_claims``,
``to_json`` and ``write_report`` turn it into the table, the tutorial's claims, the
``--json`` format and the report folder. ``variance_profile`` is ``keras-initlab inspect``'s
forward and backward profile of any built model.

Example:
>>> from keras_initlab.compare import CompareConfig, run_comparison, format_table
>>> config = CompareConfig(dataset="circles", schemes=("zeros", "he_normal"), depth=2,
...     width=8, epochs=1, contrast_activation=None, train_limit=64, test_limit=32)
>>> result = run_comparison(config, progress=None)
>>> [run.verdict for run in result.schemes.values()]
['symmetric', 'ok']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what `__getattr__` below provides, spelled out for type checkers
    from keras_initlab.compare.claims import HIGH_ACCURACY, Claim, check_claims
    from keras_initlab.compare.config import COMPARE_SCHEMES, QUICK, CompareConfig
    from keras_initlab.compare.datasets import (
        BUILTIN_DATASETS,
        Dataset,
        DatasetUnavailable,
        load_dataset,
    )
    from keras_initlab.compare.inspection import Profile, load_model_file, variance_profile
    from keras_initlab.compare.models import build_mlp
    from keras_initlab.compare.report import format_table, to_json, write_json, write_report
    from keras_initlab.compare.results import CompareResult, SchemeResult
    from keras_initlab.compare.runner import run_comparison
    from keras_initlab.compare.setups import apply_scheme, scheme_initializer
    from keras_initlab.compare.trainer import Trainer
    from keras_initlab.compare.verdicts import VERDICT_FACTOR, verdict

# Public name -> the module that defines it. Loaded on first use, so that importing one
# Keras-free module of this package (`config`, `datasets`: the command line's checks of its
# arguments) does not start Keras and TensorFlow.
_SOURCE = {
    **dict.fromkeys(("HIGH_ACCURACY", "Claim", "check_claims"), "claims"),
    **dict.fromkeys(("COMPARE_SCHEMES", "QUICK", "CompareConfig"), "config"),
    **dict.fromkeys(
        ("BUILTIN_DATASETS", "Dataset", "DatasetUnavailable", "load_dataset"), "datasets"
    ),
    **dict.fromkeys(("Profile", "load_model_file", "variance_profile"), "inspection"),
    "build_mlp": "models",
    **dict.fromkeys(("format_table", "to_json", "write_json", "write_report"), "report"),
    **dict.fromkeys(("CompareResult", "SchemeResult"), "results"),
    "run_comparison": "runner",
    **dict.fromkeys(("apply_scheme", "scheme_initializer"), "setups"),
    "Trainer": "trainer",
    **dict.fromkeys(("VERDICT_FACTOR", "verdict"), "verdicts"),
}


def __getattr__(name: str) -> Any:
    if name not in _SOURCE:
        raise AttributeError(f"module 'keras_initlab.compare' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"keras_initlab.compare.{_SOURCE[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BUILTIN_DATASETS",
    "COMPARE_SCHEMES",
    "HIGH_ACCURACY",
    "QUICK",
    "VERDICT_FACTOR",
    "Claim",
    "CompareConfig",
    "CompareResult",
    "Dataset",
    "DatasetUnavailable",
    "Profile",
    "SchemeResult",
    "Trainer",
    "apply_scheme",
    "build_mlp",
    "check_claims",
    "format_table",
    "load_dataset",
    "load_model_file",
    "run_comparison",
    "scheme_initializer",
    "to_json",
    "variance_profile",
    "verdict",
    "write_json",
    "write_report",
]
