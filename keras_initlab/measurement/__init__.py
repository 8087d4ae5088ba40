"""Measurement: per-layer activation and gradient statistics of a model on a probe.

`measure(model, probe)` returns the records of the model as it is now; `Measurement` keeps
the traced pass for repeated measurements (`VarianceMonitor`, ``keras-initlab inspect`` and
``keras-initlab compare`` all measure through it). On TensorFlow through its tape
(`_probe`); on JAX and PyTorch through the stateless core (`_core`).

>>> import keras, numpy as np
>>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
>>> [r["layer"] for r in measure(model, np.ones((4, 3), "float32"))] == [model.layers[0].name]
True
"""

from keras_initlab.measurement._measure import (
    DISTINCT_RTOL,
    MAX_DISTINCT_UNITS,
    MODES,
    Measurement,
    measure,
    probe_data,
)
from keras_initlab.measurement._records import COLUMNS, RECORD_KEYS

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
