"""How well the package reads every ``keras.applications`` constructor: #26's acceptance.

    python benchmarks/bench_model_reading.py [--one-per-family] [--families ...]
        [--models ...] [--details]

Every constructor of every family `tests/model_reading/families.py` finds in
``keras.applications`` by introspection (``--one-per-family``: the smallest of each, the
family tests' choice), built with ``weights=None``, 10 classes, at the smallest square input
it accepts, and judged by `tests/model_reading/judge.py` exactly as the family tests judge
their one constructor (re-drawn ``initialize(model, "he_normal", seed=0)``, probes of 16
samples of iid N(0, 1)), each in a process of its own (``python -m
tests.model_reading.judge --model NAME``, so that one model's crash is a row of the
table). Printed as a markdown table, per model:

* ``input``: the input size; ``rows``: the rows `keras_initlab.measure` records by default.
* ``inf``/``train``: in inference and in training mode (BatchNormalization on the batch's
  statistics), the share of recorded rows `propagate` predicts, then median/p90/max over
  the predicted rows of ``|log(predicted / measured)|``, printed as ratios ``exp(.)``
  (1.04 is 4% off either way), for the activation variance (``act``) and the gradient
  variance relative to the output's (``grad``), on one probe, or pooled over 5 where one
  misses a bound (``x5``: `keras_initlab.testing.pooled_agreement`), or of 20 (``x20``).
* ``alerts``: the alerts a ``VarianceMonitor`` raises at step 0 (`judge.step0_alerts`), and
  how many of them the prediction does not raise (``false``).
* ``auto ok``: after ``initialize(model, "auto", seed=0)``, the share of the recorded rows
  (the classifier excluded) whose inference-mode activation variance lies within [0.25, 4],
  less the rows `judge.out_of_reach` leaves out (their count after ``-``); ``expansive``
  where a share below 90% is the architecture's (`judge.expansive_rows`).
* ``verdict``: ``pass``, ``miss`` (an agreement bound missed) or ``fail`` (another check).
* ``s``: wall time of the model's process, Python's start-up included.

A model whose process fails is listed with the end of its error output and the sweep goes
on. Progress goes to stderr, the report (markdown) to stdout; ``--details`` adds each
model's failures and misses.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
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
    "alerts (false)",
    "auto ok",
    "verdict",
    "s",
]


def _load(name: str) -> Any:
    """``tests/model_reading/<name>.py``, loaded by path."""
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "tests" / "model_reading" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


F, J = _load("families"), _load("judge")


def judge(name: str) -> dict[str, Any]:
    """`judge.main`'s answer for the constructor ``name``, from a process of its own."""
    command = [sys.executable, "-m", "tests.model_reading.judge", "--model", name]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    answers = [line for line in done.stdout.splitlines() if line.startswith(J.JUDGED)]
    if done.returncode or not answers:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
    found: dict[str, Any] = json.loads(answers[-1].removeprefix(J.JUDGED))
    return found


def _ratios(values: list[float], probes: int) -> str:
    text = "/".join(f"{v:.3g}" for v in values)
    return text + (f" x{probes}" if probes > 1 else "")


def row_cells(family: str, r: dict[str, Any]) -> list[str]:
    figures = r["figures"]
    inf, train = figures["inference"], figures["training"]
    rows = str(inf["rows"]) if inf["rows"] == train["rows"] else f"{inf['rows']}/{train['rows']}"
    verdict = "fail" if r["failures"] else "miss" if r["misses"] else "pass"
    return [
        family,
        r["model"],
        str(r["input"]),
        rows,
        f"{100 * inf['predicted']:.0f}%",
        _ratios(inf["activation"], inf["probes"]),
        _ratios(inf["gradient"], inf["probes"]),
        f"{100 * train['predicted']:.0f}%",
        _ratios(train["activation"], train["probes"]),
        _ratios(train["gradient"], train["probes"]),
        f"{len(figures['alerts'])} ({len(figures['false_alerts'])})",
        f"{100 * figures['auto']:.0f}% -{figures['auto_left_out']}"
        + (" expansive" if figures.get("auto_cannot") else ""),
        verdict,
        f"{r['seconds']:.0f}",
    ]


def _markdown(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--one-per-family", action="store_true")
    parser.add_argument("--families", nargs="*", help="only these families (module names)")
    parser.add_argument("--models", nargs="*", help="only these constructors")
    parser.add_argument("--details", action="store_true")
    args = parser.parse_args()

    found = F.application_families()
    todo = []
    for family, constructors in found.items():
        if args.families and family not in args.families:
            continue
        chosen = [F.representative(constructors)] if args.one_per_family else constructors
        todo += [
            (family, c.__name__) for c in chosen if not args.models or c.__name__ in args.models
        ]
    import keras

    print(
        f"keras {keras.__version__}, {len(found)} families, "
        f"{sum(map(len, found.values()))} constructors; {len(todo)} swept"
    )
    table, notes, crashed = [], [], []
    total = time.perf_counter()
    for family, name in todo:
        try:
            result = judge(name)
            table.append(row_cells(family, result))
            notes += [f"- {name}: {line}" for line in result["failures"] + result["misses"]]
        except RuntimeError as error:  # a crash is a finding: list it and go on
            crashed.append(f"- {name}: {error}")
            table.append([family, name] + ["crash"] + [""] * (len(COLUMNS) - 3))
        print(" | ".join(table[-1]), file=sys.stderr, flush=True)  # progress
    print()
    print("\n".join(_markdown(table)))
    passed = sum(row[-2] == "pass" for row in table)
    print(f"\n{len(todo)} models in {time.perf_counter() - total:.0f} s; {passed} pass")
    if crashed:
        print("\nCrashed:\n" + "\n".join(crashed))
    if args.details and notes:
        print("\nDetails:\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
