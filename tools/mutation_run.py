"""Mutation testing of the initializers and the fans code, in a scratch copy of the repo.

Usage (from the repository root):

    python tools/mutation_run.py                 # all mutants, 2 workers (about 20 min)
    python tools/mutation_run.py --keep          # resume an interrupted run
    python tools/mutation_run.py --report        # kill rate and every survivor's diff
    python tools/mutation_run.py --keep keras_initlab.fans.x_compute_fans__mutmut_92

mutmut 3 writes a ``mutants/`` folder next to ``pyproject.toml``; to keep the working tree
clean (and usable by others while it runs) the script copies ``keras_initlab/``, ``tests/``
and ``pyproject.toml`` (with its ``[tool.mutmut]`` section) to ``--workdir`` and runs
``mutmut run`` there with ``HYPOTHESIS_PROFILE=mutation`` (derandomized, no shrinking).
TensorFlow runs with one intra-op and one inter-op thread (tests/conftest.py), which
mutmut's fork-per-mutant needs.
``--report`` prints the count of each mutant status, the kill rate and the diff of every
survivor, so that each can be accounted for.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def prepare(workdir: Path) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
    shutil.copytree(ROOT / "keras_initlab", workdir / "keras_initlab", ignore=ignore)
    shutil.copytree(ROOT / "tests", workdir / "tests", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", workdir / "pyproject.toml")  # has [tool.mutmut]


def report(workdir: Path) -> None:
    """Print the count of each status, the kill rate and the diff of every survivor."""
    mutmut = [str(Path(sys.executable).parent / "mutmut")]
    out = subprocess.run(
        [*mutmut, "results", "--all", "true"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    statuses: collections.Counter[str] = collections.Counter()
    survivors = []
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if not name:
            continue
        statuses[status] += 1
        if status in ("survived", "no tests"):
            survivors.append(name)
    killed = sum(n for s, n in statuses.items() if s in KILLED)
    total = sum(statuses.values())
    print(dict(statuses))
    if total:
        print(f"kill rate: {killed}/{total} = {killed / total:.1%} (survived and untested count)")
    for name in survivors:
        diff = subprocess.run(
            [*mutmut, "show", name], cwd=workdir, capture_output=True, text=True, check=False
        ).stdout
        changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in "+++---"]
        print(f"== {name}", *changed, sep="\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/keras_initlab_mutation"))
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="reuse (resume) an existing workdir")
    parser.add_argument("--report", action="store_true", help="only summarize a finished run")
    parser.add_argument("mutants", nargs="*", help="mutant names to run (default: all)")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    if args.report:
        report(workdir)
        return 0
    if not (args.keep and workdir.exists()):
        prepare(workdir)
    # mutmut replaces this process, started from the workdir as from a shell: launched as a
    # child of another Python process, mutmut 3.8.1 recorded no test for any mutant here.
    env = {
        **os.environ,
        "HYPOTHESIS_PROFILE": "mutation",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PWD": str(workdir),
    }
    os.chdir(workdir)
    mutmut = str(Path(sys.executable).parent / "mutmut")
    os.execve(mutmut, [mutmut, "run", "--max-children", str(args.max_children), *args.mutants], env)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
