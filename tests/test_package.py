"""The package's lazy names: ``import keras_initlab`` is cheap, every name still resolves."""

from __future__ import annotations

import importlib
import subprocess
import sys

import keras_initlab


def test_all_lists_every_lazy_name():
    lazy = set(keras_initlab._SOURCE) | set(keras_initlab._SUBPACKAGES)
    assert set(keras_initlab.__all__) == lazy
    assert len(keras_initlab.__all__) == len(lazy)


def test_every_name_is_the_object_of_its_module():
    for name in keras_initlab.__all__:
        value = getattr(keras_initlab, name)
        if name in keras_initlab._SUBPACKAGES:
            assert value is importlib.import_module(f"keras_initlab.{name}")
        else:
            source = importlib.import_module(keras_initlab._SOURCE[name])
            assert value is getattr(source, name), name


_FRESH = """
import sys
import keras_initlab
print("keras" in sys.modules, "tensorflow" in sys.modules)
import keras_initlab.initialize, keras_initlab.audit, keras_initlab.lsuv  # the submodules
print(keras_initlab.initialize.__name__, keras_initlab.audit.__name__,
      keras_initlab.lsuv.__name__, callable(keras_initlab.initialize))
"""


def test_import_is_lazy_and_functions_keep_their_names():
    # A submodule named like its function (keras_initlab.initialize) is bound to the package
    # by the import system when it loads; the package keeps the function under that name.
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "False False"
    assert lines[1] == "initialize audit lsuv True"  # the functions, not the modules
