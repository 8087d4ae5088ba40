"""No property is CPU-only by accident: every test that runs TensorFlow loops over devices.

A test that draws tensors must run its body under ``for ... in kt.each_device():`` so that a
GPU machine runs it on the GPU as well. Tests that only do host arithmetic (fans, targets)
are listed in ``HOST_ONLY`` with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).parent
HOST_ONLY = {
    "test_every_random_scheme_is_covered": "compares name lists",
    "test_compute_fans_matches_the_layout": "compute_fans is host arithmetic",
    "test_auto_layout_is_the_shape_rule": "compute_fans is host arithmetic",
    "test_variance_scaling_reads_the_true_fans": "variance() is host arithmetic",
    "test_property_tests_run_on_every_device": "reads source files",
    "test_repr_shows_the_config": "repr is host string formatting",
}


def test_property_tests_run_on_every_device():
    missing = []
    for path in sorted(HERE.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            uses_devices = any(
                isinstance(n, ast.Attribute) and n.attr == "each_device" for n in ast.walk(node)
            )
            if not uses_devices and node.name not in HOST_ONLY:
                missing.append(f"{path.name}::{node.name}")
    assert not missing, f"property tests that do not loop over kt.each_device(): {missing}"


def test_each_device_places_tensors():
    import keras

    from keras_initlab import testing as kt

    names = []
    for device in kt.each_device():
        names.append(device)
        assert kt.on_device(keras.random.normal((4,), seed=1), device)
    assert names == kt.devices()
