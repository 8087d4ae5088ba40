"""The host's count of distinct units (`_twins.distinct_counts`) is the definition.

The definition, counted greedily in unit order: a column is new unless an earlier new
column ``b`` is its twin, ``||a - b|| <= rtol * max(||a||, ||b||)``. The host reaches it by
shortcuts (zero columns counted as one unit without a comparison, exact copies found by a
hash of their bits, the greedy pass in vectorized rounds); each case here takes one of them
and is checked against a plain loop over the columns in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from keras_initlab.measurement import DISTINCT_RTOL, _twins
from keras_initlab.measurement._twins import Screened, _first_copies, _greedy, distinct_counts


def greedy_count(a: np.ndarray, rtol: float = DISTINCT_RTOL) -> int:
    """The definition, one column at a time."""
    kept: list[np.ndarray] = []
    for column in a.T:
        if not any(
            np.linalg.norm(column - b) <= rtol * max(np.linalg.norm(column), np.linalg.norm(b))
            for b in kept
        ):
            kept.append(column)
    return len(kept)


def _columns(kind: str, rows: int = 32, units: int = 160) -> np.ndarray:
    rng = np.random.default_rng(11)
    a = np.maximum(rng.standard_normal((rows, units)), 0.0)
    if kind == "dead":  # a third of the units dead, tiny units firing on one row each
        a[:, ::3] = 0.0
        a[:, 1::9] = 0.0
        a[rng.integers(0, rows, a[:, 1::9].shape[1]), np.arange(1, units, 9)] = 1e-30
    elif kind == "copies":  # 2 columns, each copied 80 times (crowded), in shuffled order
        a = a[:, rng.integers(0, 2, units)]
    elif kind == "copies_and_dead":
        a = a[:, rng.integers(0, 10, units)]
        a[:, rng.random(units) < 0.5] = 0.0
    elif kind == "near":  # pairs at a distance ratio just inside and just outside rtol
        a[:, 1::4] = a[:, ::4] * (1 + 0.9 * DISTINCT_RTOL)
        a[:, 2::4] = a[:, ::4] * (1 + 1.1 * DISTINCT_RTOL)
    elif kind == "chain":  # each unit a twin of the next only: the greedy order decides
        a = a[:, :1] * (1 + 0.6 * DISTINCT_RTOL) ** np.arange(units)
    elif kind == "signed_zeros":
        a[:, ::2] = 0.0
        a[:, 1::4] = -0.0
    return a


KINDS = ["he", "dead", "copies", "copies_and_dead", "near", "chain", "signed_zeros"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_count_is_the_definition(kind, monkeypatch):
    a = _columns(kind)
    found = []
    monkeypatch.setattr(_twins, "_first_copies", lambda m: found.append(m) or _first_copies(m))
    (count,) = distinct_counts([Screened.of(a)], DISTINCT_RTOL)
    assert count == greedy_count(a)
    # Crowded: the copies, and the chain's near-parallel columns (which have no copy).
    assert bool(found) == (kind in ("copies", "chain"))


def test_layers_counted_together_are_counted_as_alone():
    layers = [_columns(kind) for kind in KINDS]
    together = distinct_counts([Screened.of(a) for a in layers], DISTINCT_RTOL)
    assert together == [greedy_count(a) for a in layers]


def test_a_chain_keeps_every_other_unit():
    """Greedy, not transitive: unit 1 is unit 0's twin and goes, unit 2 is only unit 1's
    twin (gone) and stays."""
    a = _columns("chain", units=9)
    assert greedy_count(a) == 5
    assert distinct_counts([Screened.of(a)], DISTINCT_RTOL) == [5]


def test_greedy_rounds_are_the_loop_over_pairs():
    rng = np.random.default_rng(5)
    for _ in range(50):
        units = int(rng.integers(2, 40))
        pairs = {tuple(sorted(p)) for p in rng.integers(0, units, (3 * units, 2)) if p[0] != p[1]}
        earlier, later = (
            np.array(v, int) for v in zip(*sorted(pairs, key=lambda p: p[1]), strict=True)
        )
        kept = [True] * units
        for j in range(units):
            kept[j] = not any(kept[i] for i, jj in zip(earlier, later, strict=True) if jj == j)
        np.testing.assert_array_equal(_greedy(earlier, later, units), kept)


def test_first_copies_are_numpy_unique_and_a_shared_key_keeps_both(monkeypatch):
    a = _columns("copies_and_dead")
    a[:, 3] = -0.0 * a[:, 3]  # (a zero column with negative zeros: the same column)
    reference = np.sort(np.unique(a + 0.0, axis=1, return_index=True)[1])
    np.testing.assert_array_equal(_first_copies(a), reference)
    # Keys that collide (every multiplier 1: a column's key is the sum of its bits):
    # a column and its rows reversed share a key and both stay.
    monkeypatch.setattr(_twins, "_mixers", lambda n: np.ones((n, 1), np.uint64))
    b = np.stack([np.arange(4.0), np.arange(4.0)[::-1], np.arange(4.0)], axis=1)
    np.testing.assert_array_equal(_first_copies(b), [0, 1])
