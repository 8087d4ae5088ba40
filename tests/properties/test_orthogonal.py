"""Orthogonal and DeltaOrthogonal kernels are (per gate) orthogonal, scaled and Haar-spread."""

from __future__ import annotations

import math

import keras
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from keras_initlab import initializers as ini
from keras_initlab import testing as kt

EXACT_RTOL = 1e-12  # closed-form targets agree up to float64 rounding
MEAN_SQUARE_RTOL = 1e-5  # sum of squares of a float32 orthogonal matrix: a few eps * dim
HAAR_MATRICES = 2_000  # square blocks per Haar check: mean trace bound about 0.15
MAX_HAAR_DIM = 6
HAAR_DRAWS_DELTA = 100  # separate calls (each costs milliseconds): a coarser Haar check
DELTA_SEED = 1234


def _blocks(values: np.ndarray, case: kt.InitializerCase) -> np.ndarray:
    """The ``(blocks, rows, cols)`` stack of orthogonal blocks of an Orthogonal kernel."""
    cols = case.shape[-1] // case.blocks
    flat = values.reshape(-1, case.blocks, cols)
    return np.transpose(flat, (1, 0, 2))


@given(case=kt.initializers(schemes=["Orthogonal"]))
def test_orthogonal_blocks(case):
    assert math.isclose(case.initializer.variance(case.shape), case.variance, rel_tol=EXACT_RTOL)
    for device in kt.each_device():
        w = case.initializer(case.shape)
        assert kt.on_device(w, device)
        values = kt.to_numpy(w)
        kt.assert_orthogonal(_blocks(values, case), gain=case.gain)
        assert math.isclose(np.mean(values**2), case.variance, rel_tol=MEAN_SQUARE_RTOL)


@given(case=kt.initializers(schemes=["DeltaOrthogonal"]))
def test_delta_orthogonal_centre_tap(case):
    assert math.isclose(case.initializer.variance(case.shape), case.variance, rel_tol=EXACT_RTOL)
    centre = tuple((k - 1) // 2 for k in case.shape[:-2])  # the tap "same" padding aligns
    for device in kt.each_device():
        w = case.initializer(case.shape)
        assert kt.on_device(w, device)
        values = kt.to_numpy(w)
        kt.assert_orthogonal(values[centre], gain=case.gain)
        off_centre = values.copy()
        off_centre[centre] = 0.0
        assert not np.any(off_centre)
        assert math.isclose(np.mean(values**2), case.variance, rel_tol=MEAN_SQUARE_RTOL)


@given(seed=kt.seeds(), size=st.integers(2, MAX_HAAR_DIM))
def test_orthogonal_is_haar_distributed(seed, size):
    """Many square blocks have mean trace 0: a QR factor without its sign fix does not."""
    init = ini.Orthogonal(seed=seed, layout="recurrent", layout_args={"gates": HAAR_MATRICES})
    for _ in kt.each_device():
        values = kt.to_numpy(init((size, HAAR_MATRICES * size)))
        stack = np.transpose(values.reshape(size, HAAR_MATRICES, size), (1, 0, 2))
        kt.assert_orthogonal(stack, haar=True)


def test_delta_orthogonal_is_haar_distributed():
    """The centre taps of many DeltaOrthogonal draws (one SeedGenerator) are Haar-spread.

    One fixed example: each call costs milliseconds, so this coarser check (the determinant
    mean catches a missing sign fix at 100 draws) is not repeated per Hypothesis example.
    """
    for _ in kt.each_device():
        init = ini.DeltaOrthogonal(gain=2.0, seed=keras.random.SeedGenerator(DELTA_SEED))
        taps = [kt.to_numpy(init((1, 3, 3)))[0] for _ in range(HAAR_DRAWS_DELTA)]
        kt.assert_orthogonal(np.stack(taps), gain=2.0, haar=True)
