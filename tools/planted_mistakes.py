"""Plant each classic initialization mistake in a copy of the package and run the suite on it.

Usage (from the repository root):

    python tools/planted_mistakes.py            # every mistake, property suite, ci profile
    python tools/planted_mistakes.py --list     # the mistakes and where they are planted
    python tools/planted_mistakes.py slip swap  # only these

For each mistake the script copies ``keras_initlab/``, ``tests/`` and ``pyproject.toml`` to a
temporary directory, applies one textual patch there (the real tree is never edited),
checks that the copy is the package Python imports, and runs ``pytest tests/properties``
with ``HYPOTHESIS_PROFILE=ci``. A mistake is *caught* when the suite fails. The exit status
is 0 when every mistake is caught (and the unpatched copy passes), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VS = "keras_initlab/initializers/_variance_scaling.py"
ORTHO = "keras_initlab/initializers/_orthogonal.py"
RANDOM = "keras_initlab/initializers/_random.py"
FANS = "keras_initlab/fans.py"

# name -> (what it is, file, text to replace, replacement)
MISTAKES: dict[str, tuple[str, str, str, str]] = {
    "slip": (
        "the tutorial's slip: Var(W) = sqrt(2 / fan) (the std written as the variance)",
        VS,
        "        return self.scale * self._gain_value**2 / fan\n",
        "        return math.sqrt(self.scale * self._gain_value**2 / fan)\n",
    ),
    "slip_in_sampler": (
        "the slip in the sampler only: std = sqrt(sqrt(var))",
        VS,
        "        std = math.sqrt(self.variance(shape))\n",
        "        std = math.sqrt(math.sqrt(self.variance(shape)))\n",
    ),
    "swap": (
        "fan_in and fan_out swapped in the modes",
        VS,
        '            "fan_in": fan_in,\n            "fan_out": fan_out,\n',
        '            "fan_in": fan_out,\n            "fan_out": fan_in,\n',
    ),
    "swap_in_fans": (
        "fan_in and fan_out swapped for dense kernels in compute_fans",
        FANS,
        "        return fan_in, shape[-1]\n",
        '        return (shape[-1], fan_in) if layout == "dense" else (fan_in, shape[-1])\n',
    ),
    "truncation": (
        "the truncation correction 0.8796 missing",
        VS,
        "self._truncated_normal(shape, std / TRUNCATED_STD)",
        "self._truncated_normal(shape, std)",
    ),
    "uniform_limit": (
        "uniform limit sqrt(2 var) instead of sqrt(3 var)",
        VS,
        "UNIFORM_VARIANCE_FACTOR = 3.0",
        "UNIFORM_VARIANCE_FACTOR = 2.0",
    ),
    "sign_fix": (
        "the sign fix of the QR factor missing in Orthogonal",
        ORTHO,
        "    q = q * ops.expand_dims(ops.sign(ops.diagonal(r, axis1=-2, axis2=-1)), -2)\n",
        "",
    ),
    "default_stddev": (
        "a default changed: RandomNormal(stddev=0.05 -> 0.5)",
        RANDOM,
        "stddev: float = 0.05",
        "stddev: float = 0.5",
    ),
    "default_mode": (
        "a default changed: VarianceScaling(mode='fan_in' -> 'fan_avg')",
        VS,
        'mode: str = "fan_in"',
        'mode: str = "fan_avg"',
    ),
    "default_gain": (
        "a default changed: Orthogonal(gain=1.0 -> 1.1)",
        ORTHO,
        "        gain: float | str = 1.0,\n        seed: Any = None,\n        *,",
        "        gain: float | str = 1.1,\n        seed: Any = None,\n        *,",
    ),
    "depthwise_fan": (
        "Keras' shape rule for depthwise kernels (fan_in x in-channels)",
        FANS,
        "        return receptive, receptive * shape[-1]\n",
        "        return receptive * shape[-2], receptive * shape[-1]\n",
    ),
}


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
    shutil.copytree(ROOT / "keras_initlab", dest / "keras_initlab", ignore=ignore)
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _plant(dest: Path, path: str, old: str, new: str) -> None:
    target = dest / path
    text = target.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{path}: the text to replace occurs {text.count(old)} times: {old!r}")
    target.write_text(text.replace(old, new))


def run_suite(dest: Path, target: str) -> tuple[int, float, str]:
    env = {
        **os.environ,
        "HYPOTHESIS_PROFILE": "ci",
        "PYTHONPATH": str(dest),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    where = subprocess.run(
        [sys.executable, "-c", "import keras_initlab; print(keras_initlab.__file__)"],
        cwd=dest,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(dest)):
        raise SystemExit(f"the copy is not the package Python imports: {where}")
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            target,
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "--no-header",
        ],
        cwd=dest,
        env=env,
        capture_output=True,
        text=True,
    )
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED")]
    return proc.returncode, time.perf_counter() - start, (failed[0] if failed else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mistakes to plant (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mistakes and exit")
    parser.add_argument("--tests", default="tests/properties", help="the tests to run")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the run of the unpatched copy"
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, (what, path, _, _) in MISTAKES.items():
            print(f"{name:16s} {path}: {what}")
        return 0
    unknown = set(args.names) - set(MISTAKES)
    if unknown:
        parser.error(f"unknown mistakes {sorted(unknown)}; choose from {sorted(MISTAKES)}")
    ok = True
    if not args.no_baseline:
        with tempfile.TemporaryDirectory() as tmp:
            _copy_tree(Path(tmp))
            code, seconds, _ = run_suite(Path(tmp), args.tests)
        ok &= code == 0
        print(
            f"{'baseline':16s} {'passes' if code == 0 else 'FAILS'} ({seconds:.0f} s)", flush=True
        )
    for name in args.names or list(MISTAKES):
        what, path, old, new = MISTAKES[name]
        with tempfile.TemporaryDirectory() as tmp:
            _copy_tree(Path(tmp))
            _plant(Path(tmp), path, old, new)
            code, seconds, first = run_suite(Path(tmp), args.tests)
        caught = code == 1
        ok &= caught
        verdict = "caught" if caught else f"NOT CAUGHT (pytest exit {code})"
        print(f"{name:16s} {verdict} ({seconds:.0f} s) {what}; first failure: {first}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
