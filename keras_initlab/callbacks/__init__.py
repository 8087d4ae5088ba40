"""Callbacks that watch initialization at work: `VarianceMonitor` and its plots.

>>> from keras_initlab.callbacks import VarianceMonitor
>>> VarianceMonitor(every_n_batches=10, alert=False)
VarianceMonitor(every_n_batches=10, layers=None, log_dir=None, alert=False, records=0, alerts=0)
"""

from keras_initlab.callbacks._alerts import Alert, VarianceWarning
from keras_initlab.callbacks._monitor import VarianceMonitor
from keras_initlab.callbacks._plot import plot_variance
from keras_initlab.callbacks._signal_plot import plot_blocks, plot_signal
from keras_initlab.measurement import RECORD_KEYS

__all__ = [
    "RECORD_KEYS",
    "Alert",
    "VarianceMonitor",
    "VarianceWarning",
    "plot_blocks",
    "plot_signal",
    "plot_variance",
]
