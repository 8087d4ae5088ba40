"""How much of `propagate`'s disagreement with one probe is that probe's own noise.

    python benchmarks/bench_probe_spread.py [--families ...] [--seeds 5] [--batch 16]
        [--threads 1]

``bench_model_reading.py`` compares the prediction with one probe of ``--batch`` samples.
A measured gradient variance is itself a random variable of the probe (the inputs ``x``,
the surrogate targets ``u``): every row below a classifier of 10 classes inherits the noise
of the few ``batch * 10`` values its gradient starts from, a common factor no prediction
can follow. Here each family's smallest constructor (as there: ``weights=None``, the
smallest input, ``initialize(model, "he_normal", seed=0)``, so the weights are the same for
every probe) is measured with `keras_initlab.testing.prediction_agreement` on ``--seeds``
probes (seeds 0, 1, ...: ``x``, ``u`` and dropout's masks), in both modes. Per mode, over
the rows predicted on every probe, for the gradient variance:

* ``one probe``: the median over the probes of the median ``|log(predicted / measured)|``
  (what one probe reports), and its range over the probes;
* ``spread``: the median over the rows of ``max / min`` of the measured value across the
  probes (how far one probe's value moves);
* ``pooled``: median/p90/max of ``|log(predicted / m)|`` with ``m`` the geometric mean of
  the row's measurements over the probes (the bias left once the probes' noise averages:
  its standard error is about ``log(spread) / (2 sqrt(seeds))``);
* ``act pooled``: the same median for the activation variance.

Printed as a markdown table (progress to stderr); ratios are ``exp(.)`` of the log errors.
"""

from __future__ import annotations

import argparse
import gc
import runpy
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import keras_initlab
from keras_initlab.testing import _agreement as A

ROOT = Path(__file__).resolve().parents[1]


# the families and their smallest builds, as the sweep loads them
F = runpy.run_path(str(ROOT / "benchmarks" / "bench_model_reading.py"))["F"]


def _ratio(values: Any) -> str:
    return A.ratio_text(float(np.median(values))).removesuffix("x")


def spread(constructor: Any, seeds: int, batch: int, mode: str) -> list[str]:
    """The cells of one model in one mode (see the module docstring)."""
    model, size = F.build_smallest(constructor)
    keras_initlab.initialize(model, "he_normal", seed=0)
    runs = []
    for seed in range(seeds):
        keras.utils.set_random_seed(seed)  # dropout's masks in training mode
        x = np.random.default_rng(seed).standard_normal((batch, size, size, 3)).astype("float32")
        runs.append(A.prediction_agreement(model, x, mode=mode, seed=seed))
    # one tuple per recorded row: its AgreementRow on every probe; kept where all predicted
    rows = [r for r in zip(*(a.rows for a in runs), strict=True) if all(x.predicted for x in r)]
    medians = [a.gradient.median for a in runs]
    cells = [f"{_ratio(medians)} ({_ratio(min(medians))}-{_ratio(max(medians))})"]
    for key in ("gradient", "activation"):
        measured = np.array([[getattr(x, f"measured_{key}_var") for x in r] for r in rows])
        predicted = np.array([getattr(r[0], f"predicted_{key}_var") for r in rows])
        ok = np.all(measured > 0, axis=1) & (predicted > 0) & np.all(np.isfinite(measured), 1)
        logs = np.log(measured[ok])
        errors = np.abs(np.log(predicted[ok]) - logs.mean(axis=1))
        if key == "gradient":
            cells.append(_ratio(logs.max(axis=1) - logs.min(axis=1)) + "x")
            cells.append("/".join(_ratio(q) for q in np.quantile(errors, [0.5, 0.9, 1.0])))
        else:
            cells.append(_ratio(errors))
    return cells


COLUMNS = ["family", "model", "mode", "one probe", "spread", "pooled", "act pooled", "s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="*", help="only these families (module names)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    families = F.application_families()
    print(
        f"keras {keras.__version__}, {args.seeds} probes of {args.batch}, "
        f"{args.threads} thread(s)\n"
    )
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for family, constructors in families.items():
        if args.families and family not in args.families:
            continue
        constructor = F.representative(constructors)
        for mode in ("inference", "training"):
            start = time.perf_counter()
            try:
                cells = spread(constructor, args.seeds, args.batch, mode)
            except Exception as error:  # a crash is a finding: list it and go on
                cells = [f"crash: {type(error).__name__}"] + [""] * 3
            finally:
                keras.backend.clear_session()
                gc.collect()
            row = [family, constructor.__name__, mode, *cells]
            print("| " + " | ".join([*row, f"{time.perf_counter() - start:.0f}"]) + " |")
            print(" | ".join(row), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
