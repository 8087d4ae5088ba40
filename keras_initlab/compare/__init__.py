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

from keras_initlab.compare.claims import HIGH_ACCURACY, Claim, check_claims
from keras_initlab.compare.datasets import (
    BUILTIN_DATASETS,
    Dataset,
    DatasetUnavailable,
    load_dataset,
)
from keras_initlab.compare.inspection import Profile, load_model_file, variance_profile
from keras_initlab.compare.models import build_mlp
from keras_initlab.compare.report import format_table, to_json, write_json, write_report
from keras_initlab.compare.runner import (
    QUICK,
    CompareConfig,
    CompareResult,
    SchemeResult,
    Trainer,
    run_comparison,
)
from keras_initlab.compare.setups import COMPARE_SCHEMES, apply_scheme, scheme_initializer
from keras_initlab.compare.verdicts import VERDICT_FACTOR, verdict

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
