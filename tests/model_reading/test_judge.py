"""The judge's reason of the architecture for `auto` (`judge.expansive_rows`): given where it
is and only there.

A 40-layer Dense chain (width 64) after ``initialize(model, "auto")`` on a unit-variance probe
of ``judge.BATCH`` samples: with SiLU, whose mean square has slope 1.10-1.17 in its input's
scale, the deep rows rise above the band and the judge states the expansion; the same rows
of a ReLU chain, slope 1 exactly, and any list with a row below the band get no reason.
"""

from __future__ import annotations

import keras

import keras_initlab
from tests.model_reading import judge

DEPTH, WIDTH = 40, 64


def _chain(activation: str) -> keras.Model:
    inputs = keras.Input((WIDTH,))
    h = inputs
    for i in range(DEPTH):
        h = keras.layers.Activation(activation, name=f"a{i}")(
            keras.layers.Dense(WIDTH, name=f"d{i}")(h)
        )
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(h))


def test_an_expansive_chain_above_the_band_is_the_architectures() -> None:
    model = _chain("silu")
    share, outside, _ = judge.auto_outside(model, judge.probe(model, 0))
    assert share < judge.SHARE, (share, outside)
    assert all(float(v) > judge.AUTO_BAND[1] for _, v in outside), outside
    reason = judge.expansive_rows(model, outside)
    assert reason is not None
    assert "expansive" in reason
    below = [*outside, ("d0", f"{judge.AUTO_BAND[0] / 2}")]
    assert judge.expansive_rows(model, below) is None


def test_a_rectifier_chain_is_not_expansive() -> None:
    """The same rows of a ReLU chain, given as if above the band: its variance map has
    elasticity 1 at every row, so the judge finds no reason for them."""
    model = _chain("relu")
    keras_initlab.initialize(model, "auto", seed=0)
    rows = [(f"a{i}", "5.0") for i in range(DEPTH)]
    assert judge.expansive_rows(model, rows) is None
