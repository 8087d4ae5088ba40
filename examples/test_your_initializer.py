"""Property-test your own initializer with keras_initlab.testing (Hypothesis + pytest).

``MyHe`` is a user's He-normal initializer. The property test draws Dense and conv kernels
with their true fans (``kernels()``) and seeds (``seeds()``), and checks the variance with a
calibrated chi-square bound (``assert_variance``): no tolerance is guessed. ``SlipHe``
implements the tutorial's slip, ``Var(W) = sqrt(2 / n_in)``, and the same test catches it.

Run: python examples/test_your_initializer.py      (or: pytest examples/test_your_initializer.py)
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import math

import keras
from hypothesis import given, settings

from keras_initlab import testing as kt

# Enough draws that a 5% variance error is caught (the statistical power of the check).
N = kt.required_sample_size(0.05)


class MyHe(keras.initializers.Initializer):
    """W ~ N(0, 2 / fan_in), fan_in given explicitly (the user knows the layer)."""

    def __init__(self, fan_in, seed=None):
        self.fan_in, self.seed = fan_in, seed

    def __call__(self, shape, dtype=None):
        std = math.sqrt(2.0 / self.fan_in)
        return keras.random.normal(shape, stddev=std, dtype=dtype, seed=self.seed)


class SlipHe(MyHe):
    """The slip: uses sqrt(2 / fan_in) as the variance, so std = (2 / fan_in) ** 0.25."""

    def __call__(self, shape, dtype=None):
        std = (2.0 / self.fan_in) ** 0.25
        return keras.random.normal(shape, stddev=std, dtype=dtype, seed=self.seed)


def check(cls, kernel, seed):
    draws = cls(kernel.fan_in, seed=seed)((N,))  # N draws at the kernel's true fan_in
    kt.assert_variance(draws, 2.0 / kernel.fan_in)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(kt.kernels(layouts=["dense", "conv"], max_fan_in=512), kt.seeds())
def test_my_he_has_variance_2_over_fan_in(kernel, seed):
    check(MyHe, kernel, seed)


if __name__ == "__main__":
    test_my_he_has_variance_2_over_fan_in()
    print(f"MyHe passes: variance 2/fan_in on 10 drawn kernels ({N} draws each).")
    caught = []
    for fan_in in (9, 64, 512):
        try:
            check(SlipHe, kt.Kernel((fan_in, 4), "dense", {}, fan_in, 4), seed=0)
        except AssertionError as error:
            caught.append(fan_in)
            print(f"SlipHe caught at fan_in={fan_in}: {str(error)[:90]}...")
    assert caught == [9, 64, 512], caught
