"""How well the package reads every ``keras.applications`` family: prediction, alerts, auto.

    python benchmarks/bench_model_reading.py [--one-per-family] [--families ...]
        [--models ...] [--batch 16] [--seed 0] [--threads 1] [--details]

Every constructor of every family `tests/model_reading/families.py` finds in
``keras.applications`` by introspection (``--one-per-family``: the smallest of each,
``ResNet50``, ``ConvNeXtTiny``, ...), built with ``weights=None``, 10 classes, at the
smallest square input it accepts, re-drawn by ``initialize(model, "he_normal", seed=0)`` and
probed with ``--batch`` samples of iid N(0, 1) (``--seed`` seeds the probe, the targets and,
through ``keras.utils.set_random_seed``, dropout's masks in training mode). Printed as a
markdown table, per model:

* ``input``: the input size; ``rows``: the rows `keras_initlab.measure` records by default.
* ``inf``/``train``: `keras_initlab.testing.prediction_agreement` in inference and in
  training mode (BatchNormalization on the batch's statistics): the share of recorded rows
  `propagate` calls predicted, then median/p90/max over the predicted rows of
  ``|log(predicted / measured)|``, printed as ratios ``exp(.)`` (1.04 is 4% off either
  way), for the activation variance (``act``) and the gradient variance relative to the
  output's (``grad``, measured with the surrogate loss ``sum_j y_j u_j``).
* ``alerts``: the alerts a ``VarianceMonitor((x, labels))`` raises at step 0 of a fit of the
  model compiled with ``sparse_categorical_crossentropy`` and random labels: the monitor's
  own check on the step-0 record, ``measure(model, (x, labels), mode="training")``
  without a fit (the diagnosis, which names a cause and does not decide an alert, is
  skipped).
* ``auto ok``: after ``initialize(model, "auto", seed=0)``, the share of measured layers
  (the last, the classifier, excluded) whose activation variance on the same probe, in
  inference mode, lies within [0.25, 4].
* ``s``: wall time for the model, build to the last measurement.

A model that raises is listed with its error and the sweep goes on. Progress goes to
stderr, the report (markdown) to stdout. ``--details`` adds, per model, the not-predicted
rows by status and class, predicted values skipped (0 or NaN) and the worst predicted rows.
TensorFlow runs on ``--threads`` intra-op and inter-op threads (default 1: the machines are
shared). Against a ``keras_initlab`` from before ``prediction_agreement`` the script uses the
copy of ``keras_initlab/testing/_agreement.py`` beside it (its repository's). The alerts are
`tests/model_reading/judge.py`'s ``step0_alerts``, the check the family tests run.
"""

from __future__ import annotations

import argparse
import collections
import gc
import importlib.util
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

import keras_initlab

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


F = _load("families", ROOT / "tests" / "model_reading" / "families.py")
J = _load("judge", ROOT / "tests" / "model_reading" / "judge.py")
AUTO_BAND = J.AUTO_BAND  # the activation variance `auto` should keep every layer within
try:
    from keras_initlab.testing import _agreement as A
except ImportError:  # a keras_initlab from before it: the copy in this script's repository
    A = _load("agreement", ROOT / "keras_initlab" / "testing" / "_agreement.py")


def auto_share(model: Any, x: np.ndarray) -> float:
    """After ``initialize(model, "auto")``: the share of measured layers, the last excluded,
    whose inference-mode activation variance lies within ``AUTO_BAND``."""
    keras_initlab.initialize(model, "auto", seed=0)
    records = keras_initlab.measure(model, x, mode="inference")[:-1]
    low, high = AUTO_BAND
    inside = [low <= r["activation_var"] <= high for r in records]
    return sum(inside) / len(inside) if inside else math.nan


def _ratios(summary: Any) -> str:
    values = (summary.median, summary.p90, summary.max)
    if not all(math.isfinite(v) for v in values):
        return "-"
    return "/".join(A.ratio_text(v).removesuffix("x") for v in values)


def run(constructor: Any, batch: int, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)  # dropout's masks in training mode: the same every run
    model, size = F.build_smallest(constructor)
    keras_initlab.initialize(model, "he_normal", seed=0)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, CLASSES, batch)
    result: dict[str, Any] = {"size": size, "layers": len(model.layers)}
    for mode in ("inference", "training"):
        result[mode] = A.prediction_agreement(model, x, mode=mode, seed=seed)
    result["alerts"] = J.step0_alerts(model, x, labels)[0]
    result["auto"] = auto_share(model, x)
    result["seconds"] = time.perf_counter() - start
    return result


def _share(agreement: Any) -> str:
    return f"{100 * agreement.share:.0f}%"


def row_cells(family: str, name: str, r: dict[str, Any]) -> list[str]:
    inf, train = r["inference"], r["training"]
    rows = (
        str(inf.recorded) if inf.recorded == train.recorded else f"{inf.recorded}/{train.recorded}"
    )
    kinds = collections.Counter(a.kind for a in r["alerts"])
    alerts = str(len(r["alerts"])) + (f" ({', '.join(sorted(kinds))})" if r["alerts"] else "")
    return [
        family,
        name,
        str(r["size"]),
        rows,
        _share(inf),
        _ratios(inf.activation),
        _ratios(inf.gradient),
        _share(train),
        _ratios(train.activation),
        _ratios(train.gradient),
        alerts,
        "-" if math.isnan(r["auto"]) else f"{100 * r['auto']:.0f}%",
        f"{r['seconds']:.0f}",
    ]


COLUMNS = [
    "family",
    "model",
    "input",
    "rows",
    "inf pred",
    "inf act med/p90/max",
    "inf grad med/p90/max",
    "train pred",
    "train act med/p90/max",
    "train grad med/p90/max",
    "alerts",
    "auto ok",
    "s",
]


def details(name: str, r: dict[str, Any]) -> list[str]:
    lines = []
    for mode in ("inference", "training"):
        a = r[mode]
        missing = collections.Counter((row.status, row.class_name) for row in a.not_predicted)
        if missing:
            text = ", ".join(f"{n} {cls} {status}" for (status, cls), n in missing.most_common())
            lines.append(f"- {name} {mode}: not predicted: {text}")
        skipped = a.activation.skipped + a.gradient.skipped
        if skipped:
            lines.append(f"- {name} {mode}: {skipped} predicted value(s) skipped (0 or NaN)")
        for row in a.worst[:3]:
            lines.append(f"- {name} {mode} worst: {row.describe()}")
    return lines


def _markdown(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--one-per-family", action="store_true")
    parser.add_argument("--families", nargs="*", help="only these families (module names)")
    parser.add_argument("--models", nargs="*", help="only these constructors")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--details", action="store_true")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    families = F.application_families()
    todo = []
    for family, constructors in families.items():
        if args.families and family not in args.families:
            continue
        chosen = [F.representative(constructors)] if args.one_per_family else constructors
        todo += [(family, c) for c in chosen if not args.models or c.__name__ in args.models]
    print(
        f"keras {keras.__version__}, keras_initlab from {Path(keras_initlab.__file__).parent}, "
        f"{len(families)} families, {sum(map(len, families.values()))} constructors; "
        f"{len(todo)} swept, batch {args.batch}, seed {args.seed}, {args.threads} thread(s)"
    )
    table, notes, crashed = [], [], []
    total = time.perf_counter()
    for family, constructor in todo:
        name = constructor.__name__
        try:
            result = run(constructor, args.batch, args.seed)
            table.append(row_cells(family, name, result))
            if args.details:
                notes += details(name, result)
        except Exception as error:  # a crash is a finding: list it and go on
            crashed.append(
                f"- {name}: {type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
            )
            table.append([family, name] + ["crash"] + [""] * (len(COLUMNS) - 3))
        finally:
            keras.backend.clear_session()
            gc.collect()
        print(" | ".join(table[-1]), file=sys.stderr, flush=True)  # progress
    print()
    print("\n".join(_markdown(table)))
    print(f"\n{len(todo)} models in {time.perf_counter() - total:.0f} s")
    if crashed:
        print("\nCrashed:\n" + "\n".join(crashed))
    if notes:
        print("\nDetails:\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
