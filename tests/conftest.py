"""Suite-wide setup: single-threaded TensorFlow, Hypothesis profiles, quiet logs.

On the TensorFlow backend (KERAS_BACKEND, default tensorflow; the root conftest.py says which
tests run on the other backends), TensorFlow runs with one intra-op and one inter-op thread
so that results do not depend on the thread schedule (and mutmut can run the suite).
TensorFlow is imported only there. Hypothesis profiles are chosen by HYPOTHESIS_PROFILE; see
keras_initlab.testing for what each one means.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _single_threaded_tensorflow() -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


if os.environ["KERAS_BACKEND"] == "tensorflow":
    _single_threaded_tensorflow()

from keras_initlab import testing as kt  # noqa: E402  (after TensorFlow is configured)

kt.load_profile()
