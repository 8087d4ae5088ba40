"""One experiment harness for the command-line experiments (``compare``, ``residual``, ...).

An experiment is a definition, an `Experiment` (its config, the `Plan` of its runs, its
claims, report parts and options); the harness runs it (`run_experiment`: data limits,
progress lines, Ctrl-C), prints and writes its report (`report_text`, `write_json`,
`write_report`), reads its options (`add_options`, `config_from_args`) and stacks seeds
(`stacking`). keras_initlab/compare/README.md describes it; the definitions are
`keras_initlab.compare.definition.COMPARE` and
`keras_initlab.compare.residual.definition.RESIDUAL`.

Example:
>>> from keras_initlab.compare.harness import run_experiment, report_text
>>> from keras_initlab.compare.residual.definition import RESIDUAL
>>> from keras_initlab.compare.residual.config import ResidualConfig
>>> config = ResidualConfig(schemes=("he_normal+zero",), architectures=("mlp",), blocks=2,
...     width=8, epochs=1, seeds=1, train_limit=64, test_limit=32)
>>> result = run_experiment(RESIDUAL, config)
>>> print(report_text(RESIDUAL, result).splitlines()[-1].split(" adds")[0])
[yes] A zero-initialized branch (he_normal+zero)
"""

from keras_initlab.compare.harness.claims import (
    Claim,
    claims_as_dicts,
    fmt,
    fmt_spread,
    format_claims,
)
from keras_initlab.compare.harness.experiment import Experiment, OnEpoch, Plan, lazy
from keras_initlab.compare.harness.folder import REPORT_MARKER, check_report_folder, write_folder
from keras_initlab.compare.harness.options import add_options, config_from_args, names
from keras_initlab.compare.harness.report import (
    partial_note,
    report_text,
    strict_json,
    summary_markdown,
    write_json,
    write_report,
)
from keras_initlab.compare.harness.runner import (
    ExperimentInterrupted,
    limit_data,
    load_data,
    make_reproducible,
    run_experiment,
)

__all__ = [
    "REPORT_MARKER",
    "Claim",
    "Experiment",
    "ExperimentInterrupted",
    "OnEpoch",
    "Plan",
    "add_options",
    "check_report_folder",
    "claims_as_dicts",
    "config_from_args",
    "fmt",
    "fmt_spread",
    "format_claims",
    "lazy",
    "limit_data",
    "load_data",
    "make_reproducible",
    "names",
    "partial_note",
    "report_text",
    "run_experiment",
    "strict_json",
    "summary_markdown",
    "write_folder",
    "write_json",
    "write_report",
]
