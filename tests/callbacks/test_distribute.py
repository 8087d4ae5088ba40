"""VarianceMonitor in `model.fit` under MirroredStrategy (2 logical CPUs) and
MultiWorkerMirroredStrategy (two worker processes on localhost, TF_CONFIG).

Keras 3.15.1 `fit` fails under MultiWorkerMirroredStrategy with more than one worker (with or
without callbacks); the worker patches the two Keras functions responsible (see
`_distributed_worker._patch_keras_multi_worker`). Each case runs in fresh processes (logical
devices and TF_CONFIG must be set before TensorFlow initializes). The probe (31 rows) is split
across replicas; the records must equal a single-device computation on the whole probe, which
holds only if sums, not variances, are combined; so must the records of each call of a
layer called twice (`tests.tied_embedding`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.tied_embedding import check_records

WORKER = Path(__file__).with_name("_distributed_worker.py")
TIMEOUT_S = 120  # bound on a worker process; a hung collective fails the test, never hangs CI


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _check(result: dict, replicas: int) -> None:
    assert result["replicas"] == replicas
    for records, reference in (
        (result["begin"], result["ref_begin"]),
        (result["end"], result["ref_end"]),
    ):
        assert len(records) == len(reference) == 3
        for record, expected in zip(records, reference, strict=False):
            for key, value in expected.items():
                np.testing.assert_allclose(record[key], value, rtol=1e-4, err_msg=key)
    # In-step records of steps 1 and 2 (step 3 ends the epoch: the epoch-end record).
    tied = result["tied"]
    arrays = (np.asarray(tied[k]) for k in ("table", "tokens", "labels"))
    check_records(tied["records"], *arrays)
    assert result["batch_sources"] == ["in_step"]
    assert result["batch_steps"] == [1, 2]
    assert len(result["batch1"]) == 3
    for record, expected in zip(result["batch1"], result["ref_batch1"], strict=True):
        for key in ("activation_var", "gradient_var"):
            np.testing.assert_allclose(record[key], expected[key], rtol=1e-4, err_msg=key)


def test_mirrored_strategy_two_logical_cpus(tmp_path):
    out = tmp_path / "mirrored.json"
    subprocess.run(
        [sys.executable, str(WORKER), "mirrored", str(out)],
        env=_env(),
        check=True,
        timeout=TIMEOUT_S,
    )
    _check(json.loads(out.read_text()), replicas=2)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_mirrored_strategy_two_processes(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        out = str(tmp_path / f"w{index}.json")
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), "multiworker", out], env=_env(TF_CONFIG=config)
            )
        )
    try:
        codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0]
    results = [json.loads((tmp_path / f"w{i}.json").read_text()) for i in range(2)]
    for result in results:
        _check(result, replicas=2)
    assert results[0]["begin"] == results[1]["begin"]
    assert results[0]["end"] == results[1]["end"]
