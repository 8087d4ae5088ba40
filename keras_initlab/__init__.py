"""keras_initlab: choose, watch and verify weight initialization in Keras 3.

Importing the package is cheap: its names are loaded on first use, so that the
``keras-initlab`` command parses its arguments (and answers ``--help``) before Keras and
TensorFlow start. When Keras is already imported, the initializers are loaded at once,
which registers them (and ``ResidualGate``) with Keras' serialization
(``keras.saving.load_model`` of a model that uses them needs that); otherwise the first
use of any name does it.

>>> import keras, keras_initlab
>>> layer = keras.layers.Dense(64, kernel_initializer=keras_initlab.HeNormal(seed=0))
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy loading below provides, spelled out for type checkers
    from keras_initlab import callbacks, initializers, measurement
    from keras_initlab.audit import AuditReport, AuditRow, audit
    from keras_initlab.autoinit import AutoInitReport, AutoInitRow, autoinit
    from keras_initlab.fans import LAYOUTS, compute_fans
    from keras_initlab.gains import gain
    from keras_initlab.initialize import InitializeReport, InitializeRow, initialize
    from keras_initlab.initializers import (
        Constant,
        DeltaOrthogonal,
        GlorotNormal,
        GlorotUniform,
        HeNormal,
        HeUniform,
        KaimingNormal,
        KaimingUniform,
        LecunNormal,
        LecunUniform,
        Orthogonal,
        RandomNormal,
        RandomUniform,
        ScaledIdentity,
        SmallInit,
        VarianceScaling,
        XavierNormal,
        XavierUniform,
        Zeros,
    )
    from keras_initlab.lsuv import LSUV, LSUVLayer, LSUVReport, LSUVWarning, lsuv
    from keras_initlab.measurement import Measurement, measure
    from keras_initlab.model.registry import register_layer, unregister_layer
    from keras_initlab.model.residual import (
        ResidualBlock,
        ResidualReport,
        UnresolvedSum,
        residual_blocks,
    )
    from keras_initlab.propagate import PropagateReport, PropagateRow, propagate
    from keras_initlab.residual_gate import ResidualGate
    from keras_initlab.residual_init import ResidualInitReport
    from keras_initlab.schemes import SCHEMES, get_scheme

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {  # module -> the public names it provides
    "keras_initlab.audit": ("AuditReport", "AuditRow", "audit"),
    "keras_initlab.autoinit": ("AutoInitReport", "AutoInitRow", "autoinit"),
    "keras_initlab.fans": ("LAYOUTS", "compute_fans"),
    "keras_initlab.gains": ("gain",),
    "keras_initlab.initialize": ("InitializeReport", "InitializeRow", "initialize"),
    "keras_initlab.initializers": (
        "Constant",
        "DeltaOrthogonal",
        "GlorotNormal",
        "GlorotUniform",
        "HeNormal",
        "HeUniform",
        "KaimingNormal",
        "KaimingUniform",
        "LecunNormal",
        "LecunUniform",
        "Orthogonal",
        "RandomNormal",
        "RandomUniform",
        "ScaledIdentity",
        "SmallInit",
        "VarianceScaling",
        "XavierNormal",
        "XavierUniform",
        "Zeros",
    ),
    "keras_initlab.lsuv": ("LSUV", "LSUVLayer", "LSUVReport", "LSUVWarning", "lsuv"),
    "keras_initlab.measurement": ("Measurement", "measure"),
    "keras_initlab.model.registry": ("register_layer", "unregister_layer"),
    "keras_initlab.propagate": ("PropagateReport", "PropagateRow", "propagate"),
    "keras_initlab.model.residual": (
        "ResidualBlock",
        "ResidualReport",
        "UnresolvedSum",
        "residual_blocks",
    ),
    "keras_initlab.residual_gate": ("ResidualGate",),
    "keras_initlab.residual_init": ("ResidualInitReport",),
    "keras_initlab.schemes": ("SCHEMES", "get_scheme"),
}
_SUBPACKAGES = ("callbacks", "initializers", "measurement", "model")
_SOURCE = {name: module for module, names in _MODULES.items() for name in names}
# Functions named like the module that defines them: the import system binds a submodule
# to its name in the package once it is loaded, and these names must stay the functions.
_SHADOWED = frozenset(n for n, m in _SOURCE.items() if m == f"keras_initlab.{n}")

__all__ = [  # the same names as _SOURCE and _SUBPACKAGES (tests/test_package.py checks)
    "LAYOUTS",
    "LSUV",
    "SCHEMES",
    "AuditReport",
    "AuditRow",
    "AutoInitReport",
    "AutoInitRow",
    "Constant",
    "DeltaOrthogonal",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "InitializeReport",
    "InitializeRow",
    "KaimingNormal",
    "KaimingUniform",
    "LSUVLayer",
    "LSUVReport",
    "LSUVWarning",
    "LecunNormal",
    "LecunUniform",
    "Measurement",
    "Orthogonal",
    "PropagateReport",
    "PropagateRow",
    "RandomNormal",
    "RandomUniform",
    "ResidualBlock",
    "ResidualGate",
    "ResidualInitReport",
    "ResidualReport",
    "ScaledIdentity",
    "SmallInit",
    "UnresolvedSum",
    "VarianceScaling",
    "XavierNormal",
    "XavierUniform",
    "Zeros",
    "audit",
    "autoinit",
    "callbacks",
    "compute_fans",
    "gain",
    "get_scheme",
    "initialize",
    "initializers",
    "lsuv",
    "measure",
    "measurement",
    "model",
    "propagate",
    "register_layer",
    "residual_blocks",
    "unregister_layer",
]


class _Package(types.ModuleType):
    """The package module: loads a public name on first access."""

    def __getattr__(self, name: str) -> Any:
        if name in _SUBPACKAGES:
            value: Any = importlib.import_module(f"keras_initlab.{name}")
        elif name in _SOURCE:
            value = getattr(importlib.import_module(_SOURCE[name]), name)
        else:
            raise AttributeError(f"module 'keras_initlab' has no attribute {name!r}")
        setattr(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *__all__})


sys.modules[__name__].__class__ = _Package
if "keras" in sys.modules:  # Keras is loaded anyway: register the serializables now
    importlib.import_module("keras_initlab.initializers")
    importlib.import_module("keras_initlab.residual_gate")
