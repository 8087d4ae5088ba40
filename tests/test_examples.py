"""Smoke test: every script in examples/ runs to the end (its own asserts included).

To keep the suite fast, the examples share one fresh Python process (one TensorFlow
import), each run with ``runpy`` as ``__main__`` and its output captured; an example that
must configure TensorFlow's devices before TensorFlow starts (MirroredStrategy on two
logical CPUs) gets a process of its own. They run under the suite's own warning filters
(``filterwarnings`` in pyproject.toml: warnings are errors), applied in that process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OWN_PROCESS = {"mirrored_strategy.py"}
TENSORFLOW_SCRIPTS = {"mirrored_strategy.py"}  # tf.distribute: run on TensorFlow only
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))
RUNNABLE = [
    s for s in SCRIPTS if s not in TENSORFLOW_SCRIPTS or keras.backend.backend() == "tensorflow"
]
TIMEOUT_S = 600  # a hung example fails the test instead of hanging the suite

RUNNER = r"""
import builtins, contextlib, io, json, runpy, sys, traceback, warnings
for spec in json.loads(sys.argv[2]):  # pytest's order: a later filter takes precedence
    action, message, category, module, lineno = (spec.split(":", 4) + [""] * 4)[:5]
    warnings.filterwarnings(
        action, message, getattr(builtins, category) if category else Warning, module,
        int(lineno or 0),
    )
results = {}
for path in sys.argv[3:]:
    out = io.StringIO()
    sys.argv = [path, sys.argv[1]]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_path(path, run_name="__main__")
        results[path] = {"ok": True, "output": out.getvalue()}
    except BaseException:
        results[path] = {"ok": False, "output": out.getvalue() + traceback.format_exc()}
print(json.dumps(results))
"""


def _run(paths: list[str], workdir: Path, filters: list[str]) -> dict[str, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(workdir), json.dumps(filters), *paths],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def results(tmp_path_factory, pytestconfig):
    workdir = tmp_path_factory.mktemp("examples")
    filters = list(pytestconfig.getini("filterwarnings"))
    assert "error" in filters  # the suite's rule that the examples must obey too
    shared = [str(EXAMPLES / s) for s in RUNNABLE if s not in OWN_PROCESS]
    found = _run(shared, workdir, filters)
    for script in sorted(OWN_PROCESS & set(RUNNABLE)):
        found.update(_run([str(EXAMPLES / script)], workdir, filters))
    return {Path(k).name: v for k, v in found.items()}, workdir


def test_every_use_of_the_issue_has_an_example():
    assert set(SCRIPTS) >= {
        "symmetry.py",
        "exploding_vanishing.py",
        "xavier_vs_he.py",
        "monitor_fit.py",
        "audit_and_fix.py",
        "test_your_initializer.py",
        "mirrored_strategy.py",
    }


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(s, marks=pytest.mark.tensorflow) if s in TENSORFLOW_SCRIPTS else s
        for s in SCRIPTS
    ],
)
def test_example_runs(results, script):
    found, _ = results
    assert found[script]["ok"], found[script]["output"][-3000:]


def test_monitor_fit_writes_its_plots(results):
    _, workdir = results
    for name in ("monitor_heatmap.png", "monitor_profile.png", "monitor_records.csv"):
        assert (workdir / name).stat().st_size > 0
