"""Enough draws for a powerful check: stacked draws with the kernel's fans pinned.

A kernel of a few hundred entries is too small for a variance check with power; calling the
initializer thousands of times is too slow. ``stacked_draws`` draws ``n`` entries in one call
with the same target statistics as the kernel, and ``power_sample_size`` says how many a
check needs (capped at ``MAX_DRAWS``).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import keras
import numpy as np

from keras_initlab.initializers import VarianceScaling
from keras_initlab.testing._assertions import required_sample_size
from keras_initlab.testing._strategies import InitializerCase

MAX_DRAWS = 300_000  # cap on one stacked draw (n near 300k keeps the suite fast)
_MAX_DENOMINATOR = 10**4  # transposed-conv fans are ratios of small ints
TARGET_ERROR = 0.05  # every variance check must catch a 5% error with power 0.999


def to_numpy(tensor: Any) -> np.ndarray:
    """A tensor as a NumPy array of the same dtype (the assertions read its precision).

    A 0-d bfloat16 tensor converts to a NumPy scalar that `np.asarray` cannot take (its
    ``__array__`` returns no array), so it goes through shape (1,).

    Example:
    >>> import keras
    >>> to_numpy(keras.ops.cast(1.5, "bfloat16")).shape
    ()
    """
    if tuple(getattr(tensor, "shape", ())) == ():
        return to_numpy(keras.ops.reshape(tensor, (1,))).reshape(())
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def power_sample_size(family: str, *, error: float = TARGET_ERROR) -> int:
    """The draws a variance check needs for power 0.999 against ``error``, capped.

    Example:
    >>> power_sample_size("uniform") < power_sample_size("normal") <= MAX_DRAWS
    True
    """
    return min(MAX_DRAWS, required_sample_size(error, family=family))


def stacked_draws(case: InitializerCase, n: int) -> Any:
    """``n`` draws from the case's initializer with the kernel's fans pinned (shape ``(n,)``).

    A variance-scaling initializer is rebuilt as a ``VarianceScaling`` with the same scale,
    mode, family, gain and seed and the layout ``explicit`` on the kernel's true fans, so one
    call yields ``n`` entries of the same target variance. A fan that is not whole (a strided
    transposed convolution) is multiplied by ``m``, and the scale too, which leaves
    ``scale / fan`` unchanged for every mode. Schemes whose variance does not depend on the
    shape draw ``(n,)`` directly.

    Example:
    >>> from keras_initlab.initializers import HeNormal
    >>> from keras_initlab.testing import Kernel
    >>> case = InitializerCase(HeNormal(seed=0), Kernel((3, 3, 8, 4), "conv", {}, 72, 36),
    ...                        "truncated_normal", 0.0, 2.0 / 72)
    >>> tuple(stacked_draws(case, 1000).shape)
    (1000,)
    """
    init = case.initializer
    if not isinstance(init, VarianceScaling):
        return init((n,))
    fans = (
        Fraction(case.kernel.fan_in).limit_denominator(_MAX_DENOMINATOR),
        Fraction(case.kernel.fan_out).limit_denominator(_MAX_DENOMINATOR),
    )
    m = math.lcm(fans[0].denominator, fans[1].denominator)
    pinned = VarianceScaling(
        init.scale * m,
        init.mode,
        init.distribution,
        init.seed,
        gain=init.gain,
        layout="explicit",
        layout_args={"fan_in": int(fans[0] * m), "fan_out": int(fans[1] * m)},
    )
    return pinned((n,))
