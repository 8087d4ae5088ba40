"""Test that initializers produce the statistics they claim: strategies and assertions.

Hypothesis strategies draw kernels of every layout with their true fans (``kernels``,
``kernel_shapes``), initializers with valid random arguments and their target statistics
(``initializers``), ``fan_modes``, ``distributions``, ``float_dtypes`` and ``seeds``.
Calibrated assertions (``assert_variance``, ``assert_mean``, ``assert_support``,
``assert_distribution``, ``assert_orthogonal``) fail a correct sampler with probability at
most ``alpha``, by default the suite budget's ``FALSE_ALARM_RATE / K`` (``budget()``), and
``detectable_variance_error`` says what a check at ``n`` draws can catch.

``prediction_agreement`` measures how well ``keras_initlab.propagate`` predicts a model: each
recorded layer's predicted against its measured activation and gradient variance (the
surrogate-loss measurement is ``surrogate_measure``; ``compare_prediction`` compares a report
with any measurement; ``pooled_agreement`` against several probes' geometric mean).

Example (copy into your own tests):
>>> import keras
>>> from keras_initlab import testing as kt
>>> init = keras.initializers.HeUniform(seed=0)  # any initializer: here Keras' own
>>> n = kt.required_sample_size(0.05, family="uniform")
>>> w = init((n // 64 + 1, 64))  # fan_in = n // 64 + 1
>>> kt.assert_variance(w, 2.0 / w.shape[0], family="uniform")
>>> kt.assert_support(w, variance=2.0 / w.shape[0], family="uniform")

(Keras' own ``HeNormal`` fails ``assert_support`` on PyTorch, rightly: Keras' torch backend
draws truncated normals beyond 2 standard deviations.)
"""

from keras_initlab.testing._agreement import (
    Agreement,
    AgreementRow,
    ErrorSummary,
    compare_prediction,
    pooled_agreement,
    prediction_agreement,
    surrogate_loss,
    surrogate_measure,
)
from keras_initlab.testing._assertions import (
    assert_distribution,
    assert_mean,
    assert_orthogonal,
    assert_support,
    assert_variance,
    detectable_variance_error,
    dkwm_epsilon,
    ks_distance,
    required_sample_size,
    variance_interval,
)
from keras_initlab.testing._budget import (
    CHECKS_PER_RUN,
    FALSE_ALARM_RATE,
    Budget,
    budget,
    checks_made,
)
from keras_initlab.testing._devices import devices, each_device, on_device
from keras_initlab.testing._families import (
    EDGE,
    FAMILIES,
    KURTOSIS,
    TRUNCATED_STD,
    TRUNCATION,
    support_limit,
)
from keras_initlab.testing._kernels import KERNEL_LAYOUTS, Kernel, kernel_shapes, kernels
from keras_initlab.testing._profiles import PROFILES, load_profile, register_profiles
from keras_initlab.testing._sampling import MAX_DRAWS, power_sample_size, stacked_draws, to_numpy
from keras_initlab.testing._strategies import (
    DOCUMENTED_DEFAULTS,
    SCHEME_NAMES,
    InitializerCase,
    distributions,
    fan_modes,
    float_dtypes,
    identity_kernel,
    initializers,
    seeds,
)

__all__ = [
    "CHECKS_PER_RUN",
    "DOCUMENTED_DEFAULTS",
    "EDGE",
    "FALSE_ALARM_RATE",
    "FAMILIES",
    "KERNEL_LAYOUTS",
    "KURTOSIS",
    "MAX_DRAWS",
    "PROFILES",
    "SCHEME_NAMES",
    "TRUNCATED_STD",
    "TRUNCATION",
    "Agreement",
    "AgreementRow",
    "Budget",
    "ErrorSummary",
    "InitializerCase",
    "Kernel",
    "assert_distribution",
    "assert_mean",
    "assert_orthogonal",
    "assert_support",
    "assert_variance",
    "budget",
    "checks_made",
    "compare_prediction",
    "detectable_variance_error",
    "devices",
    "distributions",
    "dkwm_epsilon",
    "each_device",
    "fan_modes",
    "float_dtypes",
    "identity_kernel",
    "initializers",
    "kernel_shapes",
    "kernels",
    "ks_distance",
    "load_profile",
    "on_device",
    "pooled_agreement",
    "power_sample_size",
    "prediction_agreement",
    "register_profiles",
    "required_sample_size",
    "seeds",
    "stacked_draws",
    "support_limit",
    "surrogate_loss",
    "surrogate_measure",
    "to_numpy",
    "variance_interval",
]
