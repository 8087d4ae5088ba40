"""Suite-wide setup: single-threaded TensorFlow, Hypothesis profiles, quiet logs.

TensorFlow runs with one intra-op and one inter-op thread so that results do not depend on
the thread schedule (and mutmut can run the suite). Hypothesis profiles are chosen by
HYPOTHESIS_PROFILE; see keras_initlab.testing for what each one means.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

from keras_initlab import testing as kt  # noqa: E402  (after TensorFlow is configured)

kt.load_profile()
