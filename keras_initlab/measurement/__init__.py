"""Measurement: per-layer activation and gradient statistics of a model on a probe.

`measure(model, probe)` returns the records of the model as it is now; `Measurement` keeps
the traced pass for repeated measurements (`VarianceMonitor`, ``keras-initlab inspect`` and
``keras-initlab compare`` all measure through it), on every backend through one core
(`_core`: a pass with one small gradient adapter per backend, the statistics written once
in `keras.ops`); a TensorFlow model on several replicas through `_probe` (sums added
across replicas).

>>> import keras, numpy as np
>>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
>>> [r["layer"] for r in measure(model, np.ones((4, 3), "float32"))] == [model.layers[0].name]
True
"""

from keras_initlab.measurement._measure import (
    DISTINCT_RTOL,
    MAX_DISTINCT_UNITS,
    MODES,
    PRECISIONS,
    Measurement,
    check_precision,
    measure,
    probe_data,
)
from keras_initlab.measurement._records import COLUMNS, RECORD_KEYS

__all__ = [
    "COLUMNS",
    "DISTINCT_RTOL",
    "MAX_DISTINCT_UNITS",
    "MODES",
    "PRECISIONS",
    "RECORD_KEYS",
    "Measurement",
    "check_precision",
    "measure",
    "probe_data",
]
