"""Measure the four debugging stories of ``tests/diagnosis/stories.py`` (a script, not a test).

For each story and seed: the test accuracy as built and after each fix (applied with
``keras_initlab.initialize`` or, for the sigmoid MLP, the architectural change), whether
the training loss went NaN, and the wall and CPU time of each 10-epoch fit (TensorFlow on
one thread; the CPU time is the better measure when other processes share the cores).

    python tests/diagnosis/measure_stories.py --stories large_conv --seeds 0 --json out.json

``--fixes`` keeps only the fixes named (labels of ``FIXES``, separated by ``|``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import keras_initlab  # noqa: E402
from tests.diagnosis import stories  # noqa: E402

Fix = Callable[[int], Any]  # seed -> a built, (re-)initialized model


def _initialized(name: str, **kwargs: Any) -> Fix:
    def make(seed: int) -> Any:
        return keras_initlab.initialize(stories.build(name, seed), seed=seed, **kwargs)

    return make


# story -> [(fix label, seed -> model)]; "as built" first
FIXES: dict[str, list[tuple[str, Fix]]] = {
    "sigmoid_mlp": [
        ("as built", lambda s: stories.build("sigmoid_mlp", s)),
        ('initialize("he_normal")', _initialized("sigmoid_mlp", scheme="he_normal")),
        ('initialize("glorot_normal")', _initialized("sigmoid_mlp", scheme="glorot_normal")),
        ('initialize("auto")', _initialized("sigmoid_mlp", scheme="auto")),
        (
            "relu + he_normal (architecture)",
            lambda s: stories.sigmoid_mlp(s, activation="relu", kernel_initializer="he_normal"),
        ),
    ],
    "large_conv": [
        ("as built", lambda s: stories.build("large_conv", s)),
        ('initialize("he_normal")', _initialized("large_conv", scheme="he_normal")),
    ],
    "separable_cnn": [
        ("as built", lambda s: stories.build("separable_cnn", s)),
        ('initialize("he_normal")', _initialized("separable_cnn", scheme="he_normal")),
    ],
    "residual_mlp": [
        ("as built", lambda s: stories.build("residual_mlp", s)),
        ('initialize("he_normal")', _initialized("residual_mlp", scheme="he_normal")),
        (
            'initialize("he_normal", residual="zero")',
            _initialized("residual_mlp", scheme="he_normal", residual="zero"),
        ),
        ('initialize("auto")', _initialized("residual_mlp", scheme="auto")),
    ],
}


def measure(names: list[str], seeds: list[int], fixes: str | None) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        for label, make in FIXES[name]:
            if fixes is not None and label not in fixes.split("|"):
                continue
            for seed in seeds:
                data = stories.digits(seed)
                model = make(seed)
                start, cpu = time.perf_counter(), time.process_time()
                result = stories.train(model, data, seed=seed)
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
                losses = result["history"]["loss"]
                row = {
                    "story": name,
                    "fix": label,
                    "seed": seed,
                    "test_accuracy": result["test_accuracy"],
                    "final_loss": result["final_loss"],
                    "nan": any(math.isnan(v) for v in losses),
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    "losses": losses,
                }
                rows.append(row)
                print(
                    f"{name:14s} {label:42s} seed={seed} acc={row['test_accuracy']:.3f} "
                    f"loss={row['final_loss']:.4g} nan={row['nan']} "
                    f"{seconds:.1f}s wall {cpu:.1f}s cpu",
                    flush=True,
                )
                keras_clear()
    return rows


def keras_clear() -> None:
    import keras

    keras.backend.clear_session()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stories", default=",".join(stories.STORIES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fixes", default=None, help="fix labels separated by |")
    parser.add_argument("--json", default=None, help="write the rows to this file")
    args = parser.parse_args()
    rows = measure(args.stories.split(","), [int(s) for s in args.seeds.split(",")], args.fixes)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
