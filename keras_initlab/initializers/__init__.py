"""Initializers: one ``keras.initializers.Initializer`` subclass per scheme.

Every class is registered as ``keras_initlab>ClassName`` for ``.keras`` saving, its
``get_config()`` keys equal its ``__init__`` arguments, and it follows Keras' seed contract:
an int seed gives the same values on every call, a ``keras.random.SeedGenerator`` advances,
None draws a seed once, reproducibly under ``keras.utils.set_random_seed``. Values are
sampled in float32 and cast to the requested float dtype. See README.md here for the fans.
"""

from keras_initlab.initializers._base import Scheme
from keras_initlab.initializers._constant import Constant, Zeros
from keras_initlab.initializers._identity import ScaledIdentity
from keras_initlab.initializers._orthogonal import DeltaOrthogonal, Orthogonal
from keras_initlab.initializers._random import RandomNormal, RandomUniform
from keras_initlab.initializers._variance_scaling import (
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    KaimingNormal,
    KaimingUniform,
    LecunNormal,
    LecunUniform,
    SmallInit,
    VarianceScaling,
    XavierNormal,
    XavierUniform,
)

__all__ = [
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
    "Scheme",
    "SmallInit",
    "VarianceScaling",
    "XavierNormal",
    "XavierUniform",
    "Zeros",
]
