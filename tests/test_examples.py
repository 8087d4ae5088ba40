"""Smoke test: every script in examples/ runs to the end (its own asserts included).

To keep the suite fast, the examples share one fresh Python process (one TensorFlow
import), each run with ``runpy`` as ``__main__`` and its output captured; an example that
must configure TensorFlow's devices before TensorFlow starts (MirroredStrategy on two
logical CPUs) gets a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OWN_PROCESS = {"mirrored_strategy.py"}
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))
TIMEOUT_S = 600  # a hung example fails the test instead of hanging the suite

RUNNER = r"""
import contextlib, io, json, runpy, sys, traceback
results = {}
for path in sys.argv[2:]:
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


def _run(paths: list[str], workdir: Path) -> dict[str, dict[str, object]]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(workdir), *paths],
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
def results(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("examples")
    shared = [str(EXAMPLES / s) for s in SCRIPTS if s not in OWN_PROCESS]
    found = _run(shared, workdir)
    for script in sorted(OWN_PROCESS & set(SCRIPTS)):
        found.update(_run([str(EXAMPLES / script)], workdir))
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


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(results, script):
    found, _ = results
    assert found[script]["ok"], found[script]["output"][-3000:]


def test_monitor_fit_writes_its_plots(results):
    _, workdir = results
    for name in ("monitor_heatmap.png", "monitor_profile.png", "monitor_records.csv"):
        assert (workdir / name).stat().st_size > 0
