"""Distinct units on the host: which columns of a layer's (sketched) rows are twins.

The device sends per layer only its `screen_terms` (each column's norm and `SCREEN`
projections); the host finds candidate pairs among all layers at once and fetches the rows
of a layer only when a pair passes the screen (`distinct_counts`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from keras_initlab.measurement._statistics import gamma

ops = keras.ops

SKETCH_ROWS = 128  # rows `distinct_counts` compares at most (a sign sketch beyond)


@functools.lru_cache(maxsize=128)
def _signs(n: int, dtype: str) -> np.ndarray:
    """A fixed random +-1 for each of ``n`` rows (column vector)."""
    return np.random.default_rng(0).choice([-1.0, 1.0], (n, 1)).astype(dtype)


def sketch(rows: Any, size: int = SKETCH_ROWS, signs: dict[Any, Any] | None = None) -> Any:
    """``rows`` (n, units) as a sign sketch of ``size`` rows when ``n > size``: each row
    times a fixed random sign, then summed in ``size`` contiguous blocks of ``ceil(n /
    size)`` rows (a multiply and a reduction on device). Equal columns stay equal; for a
    difference ``d`` of two columns ``E|S d|^2 = |d|^2`` (the signs are independent).
    ``signs``: a dict that keeps the signs as one device tensor per ``(n, dtype)`` for the
    sketches of one trace (each is a constant of ``n`` values in the graph)."""
    n, units = rows.shape
    if n <= size:
        return rows
    per = -(-n // size)
    dtype = keras.backend.standardize_dtype(rows.dtype)
    key = (n, dtype)
    if signs is None:
        signs = {}
    if key not in signs:
        signs[key] = ops.convert_to_tensor(_signs(n, dtype))
    signed = rows * signs[key]
    if per * size > n:
        signed = ops.pad(signed, [(0, per * size - n), (0, 0)])
    return ops.sum(ops.reshape(signed, (size, per, units)), axis=1)


SCREEN = 4  # random projections that screen the pairs `distinct_counts` compares


@functools.lru_cache(maxsize=128)
def screen_directions(rows: int, dtype: str = "float64") -> np.ndarray:
    """The fixed Gaussian vectors (`SCREEN`, ``rows``) of `distinct_counts`' screen, in
    ``dtype`` (the values the projections are taken with)."""
    return np.random.default_rng(0).standard_normal((SCREEN, rows)).astype(dtype)


def screen_terms(rows: Any, dtype: str = "float32") -> Any:
    """``(1 + SCREEN, units)``: each column's norm, then its projections on
    `screen_directions`, in ``dtype`` as reductions (no matmul: TF32 on GPUs), each within
    `screen_error` relative of ``|r| |a|`` (any summation order)."""
    r = screen_directions(rows.shape[0], dtype)
    terms = [ops.sum(rows * rows, axis=0)]
    terms += [ops.sum(rows * r[k][:, None], axis=0) for k in range(SCREEN)]
    stacked = ops.stack(terms)
    return ops.concatenate([ops.sqrt(stacked[:1]), stacked[1:]], axis=0)


def screen_error(rows: int, dtype: str) -> float:
    """The relative error bound of `screen_terms` over ``rows`` rows: ``gamma_{rows+2}``."""
    return gamma(rows + 2, dtype)


@dataclass
class Screened:
    """One layer for `distinct_counts`: its `screen_terms` (float64 on the host), the
    compared rows (an array, or a function that fetches them: only layers with candidate
    pairs need them), their number and dtype."""

    terms: np.ndarray
    rows: Any
    count: int
    dtype: str = "float64"

    @classmethod
    def of(cls, rows: Any) -> Screened:
        """A host matrix screened in float64."""
        a = np.asarray(rows, np.float64)
        norms = np.sqrt(np.einsum("ij,ij->j", a, a))
        return cls(np.vstack([norms, screen_directions(a.shape[0]) @ a]), a, a.shape[0])

    def matrix(self) -> np.ndarray:
        return np.asarray(self.rows() if callable(self.rows) else self.rows, np.float64)


def _window_pairs(lows: np.ndarray, highs: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Every pair ``(i, j)`` of units with ``i`` in ``j``'s window ``order[lows[j]:highs[j]]``
    and ``i < j``, as an array (2, pairs) sorted by ``j``."""
    sizes = highs - lows
    j = np.repeat(np.arange(sizes.size), sizes)
    starts = np.repeat(lows - np.cumsum(sizes) + sizes, sizes)
    i = order[np.arange(j.size) + starts]
    keep = i < j
    return np.stack([i[keep], j[keep]])


def distinct_count(rows: Any, rtol: float) -> int:
    """Units (columns of ``rows``) whose outputs differ by more than ``rtol`` relative.

    Two columns are one unit when ``|a - b| <= rtol max(|a|, |b|)``; counted greedily (a
    column is new unless an earlier new one is its twin) on the host in float64; see
    `distinct_counts`, which counts many layers at once.

    Example:
    >>> import numpy as np
    >>> distinct_count(np.ones((8, 5)), 1e-3), distinct_count(np.eye(5), 1e-3)
    (1, 5)
    """
    return distinct_counts([Screened.of(rows)], rtol)[0]


@functools.lru_cache(maxsize=128)
def _mixers(n: int) -> np.ndarray:
    """A fixed random odd 64-bit integer for each of ``n`` rows (column vector)."""
    draw = np.random.default_rng(0).integers(1, 2**63, size=(n, 1), dtype=np.uint64)
    return draw | np.uint64(1)


def _first_copies(a: np.ndarray) -> np.ndarray:
    """The indices of the first occurrence of each distinct column of float64 ``a``, in
    order, and of any column not found equal to an earlier one.

    Each column is keyed by the wrapping sum of its values' bits times fixed odd integers
    (integer arithmetic: exact and independent of the order of the terms, so equal columns
    get equal keys; ``+ 0.0`` makes -0.0 and 0.0 alike), and a column is taken as a copy
    only where it equals its key's first column in every row (a key two different columns
    share keeps both). A sort of one key per column: ``np.unique(a, axis=1)`` compares
    columns row by row (MobileNetV2's dead units: 9 ms a layer against 1 ms).
    """
    a = np.ascontiguousarray(a, np.float64) + 0.0
    with np.errstate(over="ignore"):
        keys = (a.view(np.uint64) * _mixers(a.shape[0])).sum(axis=0, dtype=np.uint64)
    _, first, group = np.unique(keys, return_index=True, return_inverse=True)
    keep = ~np.all(a == a[:, first[group]], axis=0)
    keep[first] = True
    return np.flatnonzero(keep)


def _greedy(earlier: np.ndarray, later: np.ndarray, units: int) -> np.ndarray:
    """Which of ``units`` are kept by the greedy pass in unit order, where unit ``j`` goes
    when an earlier kept unit ``i`` is its twin (pairs ``(earlier[k], later[k])``,
    ``earlier < later``): in rounds, a unit with a kept earlier twin goes, one whose
    earlier twins have all gone (or that has none) stays, the rest wait (the same result
    as a loop over the pairs; a group of copies takes two rounds).
    """
    state = np.zeros(units, np.int8)  # 0: undecided, 1: kept, 2: gone
    while True:
        open_ = state == 0
        if not open_.any():
            return state == 1
        active = open_[later]
        by_kept = np.bincount(later[active & (state[earlier] == 1)], minlength=units) > 0
        waiting = np.bincount(later[active & (state[earlier] == 0)], minlength=units) > 0
        state[open_ & by_kept] = 2
        state[open_ & ~by_kept & ~waiting] = 1


def distinct_counts(layers: Sequence[Screened], rtol: float) -> list[int]:
    """`distinct_count` of each layer, all screened at once.

    Only pairs that pass a screen are compared: for a fixed Gaussian vector ``r``,
    ``|r.a - r.b| <= |r| |a - b|``, so a twin pair lies within ``|r| rtol max(|a|, |b|)`` on
    each of `SCREEN` projections, widened by the terms' rounding (`screen_error`: a
    necessary condition, no twin is missed). Candidate pairs are found by sorting the
    first projection (a twin of ``b`` has a norm of at most ``|b| / (1 - rtol)``, which
    bounds ``b``'s window), every layer's units in one sorted array (each layer's terms
    divided by its largest norm, which keeps the relative test, and set apart by a gap
    wider than any window), and screened on all projections at once; only the pairs that
    pass are compared, on the rows in float64. A column whose computed norm is zero (a dead
    unit; or one whose squares all underflow, as ``dead_fraction`` counts it) is a twin of
    every other such column and of no other (``rtol < 1``): they count as one unit, without
    a comparison. A layer with many other equal columns (constant: more candidate pairs
    than ``64 units + 64``) is counted on its first copies: an
    exact copy is never new, and it is a twin of whatever its first copy is a twin of. The
    measurement compares a layer's `sketch` (at most `SKETCH_ROWS` rows): equal columns
    stay equal there, and a pair of different columns is merged only where the sketch
    shrinks their difference below ``rtol`` (for a difference spread over many rows, a
    chance that falls exponentially with the sketch's rows).

    Example:
    >>> import numpy as np
    >>> distinct_counts([Screened.of(np.ones((8, 5))), Screened.of(np.eye(5))], 1e-3)
    [1, 5]
    """
    counts = [0] * len(layers)
    zeros = [0] * len(layers)  # 1 where a layer has a zero column (one unit of its own)
    parts = []  # (index, norms, projections, reach, columns) of the layers screened together
    for index, layer in enumerate(layers):
        terms = np.asarray(layer.terms, np.float64)
        if terms.shape[1] == 0:
            continue
        top = float(np.max(terms[0]))
        if top == 0.0:  # all columns zero: one unit
            counts[index] = 1
            continue
        error = screen_error(layer.count, layer.dtype)
        r = np.linalg.norm(screen_directions(layer.count, layer.dtype).astype(np.float64), axis=1)
        # |p_a - p_b| <= |r| (rtol + 2 error) max(|a|, |b|), with |a| <= computed / (1 - error).
        reach = r * (rtol + 2.0 * error) / (1.0 - error) ** 2
        columns = np.arange(terms.shape[1])
        if rtol < 1.0:  # zero columns are twins of each other and of no other column
            columns = np.flatnonzero(terms[0] > 0.0)
            zeros[index] = int(columns.size < terms.shape[1])
        terms = terms[:, columns]
        parts.append((index, terms[0] / top, terms[1:] / top, reach, columns))
    if not parts:
        return counts
    layer_of = np.concatenate([np.full(p[1].size, k) for k, p in enumerate(parts)])
    local = np.concatenate([p[4] for p in parts])
    norms = np.concatenate([p[1] for p in parts])
    projected = np.concatenate([p[2] for p in parts], axis=1)  # (SCREEN, units)
    reach = np.stack([p[3] for p in parts], axis=1)[:, layer_of]  # (SCREEN, units)
    width = reach[0] * (1.0 if rtol >= 1.0 else norms / (1.0 - rtol))
    # Layers apart by more than any window (normalized projections are within |r|).
    gap = 2.0 * (np.max(np.abs(projected[0])) + np.max(width)) + 1.0
    key = projected[0] + gap * layer_of
    slack = 4.0 * np.finfo(np.float64).eps * gap * len(parts)  # (rounding of the key)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    lows = np.searchsorted(sorted_key, key - width - slack, "left")
    highs = np.searchsorted(sorted_key, key + width + slack, "right")
    pairs = np.bincount(layer_of, weights=highs - lows, minlength=len(parts))
    crowded = pairs > 64 * np.bincount(layer_of, minlength=len(parts)) + 64
    mats: dict[int, np.ndarray] = {}
    for k in map(int, np.flatnonzero(crowded)):
        a = mats[k] = layers[parts[k][0]].matrix()
        first = _first_copies(a)
        if first.size < a.shape[1]:
            counts[parts[k][0]] = distinct_count(a[:, first], rtol)
        else:  # no copies: compare them all below
            crowded[k] = False
    skip = crowded[layer_of]
    highs[skip] = lows[skip]
    i, j = _window_pairs(lows, highs, order)
    same = layer_of[i] == layer_of[j]
    i, j = i[same], j[same]
    scale = np.maximum(norms[i], norms[j])
    screened = np.all(np.abs(projected[:, i] - projected[:, j]) <= reach[:, j] * scale, axis=0)
    i, j = i[screened], j[screened]
    # The definition on every screened pair, layer by layer, in chunks of pairs.
    twin = np.zeros(i.size, bool)
    for at in map(int, np.unique(layer_of[j])):
        if at not in mats:
            mats[at] = layers[parts[at][0]].matrix()
        a = mats[at]
        norm = np.linalg.norm(a, axis=0)
        (where,) = np.nonzero(layer_of[j] == at)
        for chunk in np.array_split(where, -(-where.size * a.shape[0] // 2**22)):
            ci, cj = local[i[chunk]], local[j[chunk]]
            gap = np.linalg.norm(a[:, ci] - a[:, cj], axis=0)
            twin[chunk] = gap <= rtol * np.maximum(norm[ci], norm[cj])
    kept = _greedy(i[twin], j[twin], layer_of.size)
    totals = np.bincount(layer_of, weights=kept, minlength=len(parts))
    for k, part in enumerate(parts):
        if not crowded[k]:
            counts[part[0]] = int(totals[k]) + zeros[part[0]]
    return counts
