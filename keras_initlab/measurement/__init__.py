"""Measurement: per-layer activation and gradient statistics of a model on a probe.

`measure(model, probe)` returns the records of the model as it is now; `Measurement` keeps
the traced pass for repeated measurements (`VarianceMonitor`, ``keras-initlab inspect`` and
``keras-initlab compare`` all measure through it). Needs the TensorFlow backend.

>>> import keras, numpy as np
>>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
>>> [r["layer"] for r in measure(model, np.ones((4, 3), "float32"))] == [model.layers[0].name]
True
"""

import keras

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "keras_initlab.measurement (and VarianceMonitor, `keras-initlab inspect` and "
        "`compare`, which measure through it) needs Keras' TensorFlow backend. Received: "
        f"KERAS_BACKEND={keras.backend.backend()!r}; the initializers, `initialize`, `audit` "
        "and `lsuv` work on every backend."
    )

from keras_initlab.measurement._measure import (
    DISTINCT_RTOL,
    MAX_DISTINCT_UNITS,
    MODES,
    Measurement,
    measure,
    probe_data,
)
from keras_initlab.measurement._probe import COLUMNS
from keras_initlab.measurement._records import RECORD_KEYS

__all__ = [
    "COLUMNS",
    "DISTINCT_RTOL",
    "MAX_DISTINCT_UNITS",
    "MODES",
    "RECORD_KEYS",
    "Measurement",
    "measure",
    "probe_data",
]
