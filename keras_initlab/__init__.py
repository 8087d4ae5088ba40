"""keras_initlab: choose, watch and verify weight initialization in Keras 3.

>>> import keras, keras_initlab
>>> layer = keras.layers.Dense(64, kernel_initializer=keras_initlab.HeNormal(seed=0))
"""

import os

# Hide TensorFlow's C++ INFO lines (CPU feature notes) that would otherwise precede every
# message of the command-line tool; warnings and errors still show, and a value the user
# has set wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from keras_initlab import callbacks, initializers
from keras_initlab.audit import AuditReport, AuditRow, audit
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
    VarianceScaling,
    XavierNormal,
    XavierUniform,
    Zeros,
)
from keras_initlab.lsuv import LSUV, LSUVLayer, LSUVReport, LSUVWarning, lsuv
from keras_initlab.schemes import SCHEMES, get_scheme

__version__ = "0.1.0"

__all__ = [
    "LAYOUTS",
    "LSUV",
    "SCHEMES",
    "AuditReport",
    "AuditRow",
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
    "Orthogonal",
    "RandomNormal",
    "RandomUniform",
    "ScaledIdentity",
    "VarianceScaling",
    "XavierNormal",
    "XavierUniform",
    "Zeros",
    "audit",
    "callbacks",
    "compute_fans",
    "gain",
    "get_scheme",
    "initialize",
    "initializers",
    "lsuv",
]
