"""`distinct_units`: how many units of a layer compute different functions on the probe.

Units i and j are the same unit when ``||m_i - m_j||^2 <= rtol^2 max(s_i, s_j)``, with ``s_i =
||a_i||^2`` the exact square norm of unit i's output column ``a_i`` on the probe and ``m`` the
columns themselves (``m = a``) for a layer with few probe rows, else a *sketch* ``m = C a`` of
the rows (`sketch_rows`):

    C: SKETCH_DIM x rows, one +-1 per column (row r goes to bucket b(r) with sign s(r)),
       the buckets balanced: each holds L = ceil(rows / SKETCH_DIM) rows (rows are split
       across replicas: L is then that of every replica's share, times the replicas). The
       buckets are a seeded permutation of static rows; rows that are not static (a
       replica's share) go to bucket ``r mod SKETCH_DIM``, with seeded signs.

``C`` is linear, so identical columns stay identical and zero columns stay zero: constant
initialization still gives 1 unit, dead units still count once. Its error is one-sided in
a known way: ``||C d||^2 <= L ||d||^2`` (Cauchy-Schwarz per bucket), so a pair at distance
ratio ``rho <= rtol / sqrt(L)`` is always found to be the same unit; a pair with ``rho >
rtol`` is merged only if the sketch shrinks its distance by more than ``rho / rtol``. For a
difference spread over the rows each bucket sum is a signed sum of ``L`` terms, so that needs
all SKETCH_DIM bucket sums to cancel at once (about ``(rtol / rho)^SKETCH_DIM``: none for He
units, ``rho`` near 1.4). With several replicas every layer is sketched (the sketches add
across replicas; the rows do not).

The distinct units are those with no *earlier* twin (identical columns count once). The
comparison runs in two steps (`Twins`), so that its cost grows neither as ``rows x
units^2`` nor with a copy of its ops per layer:

1. A screen (`screen_terms`, `screen_flags`): each column is projected on ``k = SCREEN_DIM``
   orthonormal directions of m's space, ``p_i = R^T m_i`` (``||R||_2 = 1``, so ``||p_i -
   p_j|| <= ||m_i - m_j||``; for a sketched layer ``R^T C`` is applied to the rows, in the
   product that also gives the per-unit sums: `screen_lhs`). A unit is flagged when some
   other unit j has ``||p_i - p_j||^2 <= t_i + t_j``, ``t_i = rtol^2 s_i + slack n_i^2``
   (``n_i^2 >= ||m_i||^2``: ``L s_i`` for one replica's sketch, else ``||m_i||^2``). That
   holds for every pair of twins: ``rtol^2 max(s_i, s_j) <= rtol^2 (s_i + s_j)``, and the
   slack (`screen_slack`) bounds the rounding of ``p`` (float64 from the float32 outputs)
   and of the U x U comparison (float32, or float64 where float32 products use TF32). Its
   cost is one ``U x (k + 1) x U`` product and two passes over it. He units are not flagged
   (their projected distances are about ``sqrt(k / dim)`` of their distance, near 1.4 of
   their norm); twins, dead units and near-identical columns are.
2. The flagged units (typically none) of a float32 screen are screened again among
   themselves in float64 (a ``F x (k + 1) x F`` product for ``F`` flagged units, with
   float64's slack: it flags both units of every pair of twins too), then compared exactly,
   as the definition states, in float64 on the Gram matrix of their own columns of ``m``
   (`exact_twins`): a unit is never the twin of an unflagged one, since each screen flags
   both units of a pair.

The counts are those of the float64 comparison of all pairs (up to the order of its float64
sums).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from keras_initlab._roundoff import UNIT_ROUNDOFF
from keras_initlab.measurement._sums import to64

# Dimensions of the row sketch, and the fewest probe rows for which it is used (below, the
# rows themselves are as cheap).
SKETCH_DIM = 128
SKETCH_MIN_ROWS = 2 * SKETCH_DIM
# Directions of the screen's projection (`screen_terms`).
SCREEN_DIM = 8


def uses_sketch(rows: int | None, replicas: int = 1) -> bool:
    """Whether a layer with ``rows`` probe rows per replica (None: not static) is sketched."""
    return replicas > 1 or (rows is not None and rows >= SKETCH_MIN_ROWS)


def sketch_load(rows: int) -> float:
    """``L`` of one replica's sketch of ``rows`` static rows (1 unsketched): ``||m_i||^2 <= L
    s_i``."""
    return float(math.ceil(rows / SKETCH_DIM)) if uses_sketch(rows) else 1.0


def _sketch_map(rows: int, consts: dict[Any, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The buckets and signs of ``C`` for ``rows`` rows: a seeded permutation, so every call
    and every replica uses the same ``C``."""
    key = ("sketch", rows)
    if key not in consts:
        rng = np.random.default_rng(rows)
        buckets = rng.permutation(rows) % SKETCH_DIM
        signs = rng.choice(np.array([-1.0, 1.0]), size=(rows, 1))
        consts[key] = (buckets.astype(np.int32), signs)
    return consts[key]


def sketch_rows(a: tf.Tensor, consts: dict[Any, Any]) -> tf.Tensor:
    """``C a`` (SKETCH_DIM, units) for ``a`` (rows, units) float64. Rows not static (a
    replica's share of the probe): row r goes to bucket ``r mod SKETCH_DIM``, seeded signs."""
    if a.shape[0] is not None:
        buckets, signs = _sketch_map(a.shape[0], consts)
        return tf.math.unsorted_segment_sum(a * signs, buckets, SKETCH_DIM)
    n = tf.shape(a)[0]
    coin = tf.random.stateless_uniform(tf.stack([n, 1]), seed=(1, 0), dtype=tf.float64)
    signs = tf.where(coin < 0.5, tf.constant(-1.0, tf.float64), 1.0)
    return tf.math.unsorted_segment_sum(
        a * signs, tf.math.floormod(tf.range(n), SKETCH_DIM), SKETCH_DIM
    )


def _np_directions(dim: int, consts: dict[Any, Any]) -> np.ndarray:
    """``R``: ``dim x SCREEN_DIM`` with orthonormal columns (seeded; zero columns past
    ``dim``)."""
    key = ("directions", dim)
    if key not in consts:
        k = min(dim, SCREEN_DIM)
        q = np.linalg.qr(np.random.default_rng(dim).standard_normal((dim, k)))[0]
        consts[key] = np.concatenate([q, np.zeros((dim, SCREEN_DIM - k))], 1)
    return consts[key]


def _dynamic_directions(dim: Any) -> tf.Tensor:
    gaussian = tf.random.stateless_normal(
        tf.stack([dim, tf.minimum(dim, SCREEN_DIM)]), seed=(0, 0), dtype=tf.float64
    )
    q = tf.linalg.qr(gaussian)[0]
    return tf.pad(q, tf.stack([[0, 0], [0, SCREEN_DIM - tf.shape(q)[1]]]))


def screen_lhs(a: tf.Tensor, consts: dict[Any, Any], screened: bool) -> tuple[Any, Any]:
    """``lhs`` and ``ones`` for `unit_sums` of ``a`` (rows, units): a column of ones (the
    per-unit sums), and when ``screened`` next to it ``W`` with ``p = W^T a``: ``R`` for
    unsketched rows, ``C^T R`` for sketched ones (one product with the rows gives the sums
    and the projection of their sketch). ``R`` has SCREEN_DIM columns (zero columns when the
    rows are fewer: they change no distance)."""
    rows = a.shape[0]
    if rows is None:
        n = tf.shape(a)[0]
        ones = tf.ones(tf.stack([n, 1]), tf.float64)
        if not screened:
            return ones, ones
        return tf.concat([ones, _dynamic_directions(n)], 1), ones
    key = ("lhs", rows, screened)
    if key not in consts:
        ones = np.ones((rows, 1))
        if not screened:
            lhs = ones
        elif uses_sketch(rows):
            buckets, signs = _sketch_map(rows, consts)
            lhs = np.concatenate([ones, signs * _np_directions(SKETCH_DIM, consts)[buckets]], 1)
        else:
            lhs = np.concatenate([ones, _np_directions(rows, consts)], 1)
        consts[key] = tf.constant(lhs)
        consts["ones", rows] = consts[key] if not screened else tf.constant(ones)
    return consts[key], consts["ones", rows]


def project(m: tf.Tensor, consts: dict[Any, Any]) -> tf.Tensor:
    """``p = R^T m`` (k, units) for a sketch ``m`` (SKETCH_DIM, units)."""
    if ("R", SKETCH_DIM) not in consts:
        consts["R", SKETCH_DIM] = tf.constant(_np_directions(SKETCH_DIM, consts))
    return tf.matmul(consts["R", SKETCH_DIM], m, transpose_a=True)


def screen_dtype() -> tf.DType:
    """float32, or float64 where float32 products run in TF32 (10-bit inputs) on a GPU."""
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    return tf.float64 if tf32 and tf.config.list_physical_devices("GPU") else tf.float32


def screen_slack(dtype: tf.DType, rows: int | None) -> float:
    """The ``slack`` of the screen in ``t_i`` (see the module), for projections formed from
    ``rows`` rows (None: not static, bounded by 2^31).

    With ``e = u + gamma_{rows + dim}(u64)`` the relative error of each projected coordinate
    (float64 products over the rows, the float64 sketch of the exact step next to them, then
    rounded to ``dtype``'s unit round-off ``u``) and ``gamma = gamma_{k + 4}(u)`` that of the
    comparison's product and sums (``gamma_n(u) = n u / (1 - n u)``), the computed ``||p_i -
    p_j||^2`` exceeds the exact one by at most ``(3 sqrt(k) e + 2 gamma (1 + sqrt(k) e)^2)
    (n_i + n_j)^2 <= slack (n_i^2 + n_j^2) / 2``; doubled for margin.
    """
    u = UNIT_ROUNDOFF[tf.as_dtype(dtype).name]
    k = SCREEN_DIM
    n = (2**31 if rows is None else rows) + SKETCH_DIM
    e = math.sqrt(k) * (u + _gamma(n, 2.0**-53))
    return 2.0 * 2.0 * (3.0 * e + 2.0 * _gamma(k + 4, u) * (1.0 + e) ** 2)


def _gamma(n: int, u: float) -> float:
    return n * u / (1.0 - n * u)


def screen_terms(
    p: tf.Tensor,
    squares: tf.Tensor,
    norms2: tf.Tensor,
    rtol2: tf.Tensor,
    slack: Any,
    dtype: tf.DType,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The operands of `screen_flags` for units ``p`` (k, units) float64 (of one layer or of
    many side by side: each unit's terms are its own), ``squares`` the exact ``s_i``,
    ``norms2`` the ``n_i^2 >= ||m_i||^2``, ``slack`` `screen_slack` (a number or per unit).

    ``left = [p; 1]``, ``right = [p; -half]`` and ``half = (q - t) / 2`` with ``q = ||p||^2``
    and ``t_i = rtol^2 s_i + slack n_i^2``, in ``dtype``.
    """
    t = rtol2 * squares + slack * norms2
    p, t = tf.cast(p, dtype), tf.cast(t, dtype)
    q = tf.reduce_sum(p * p, 0)
    half = 0.5 * (q - t)
    left = tf.concat([p, tf.ones_like(half)[None]], 0)
    right = tf.concat([p, -half[None]], 0)
    return left, right, half


def screen_flags(left: tf.Tensor, right: tf.Tensor, half: tf.Tensor) -> tf.Tensor:
    """Per unit of one layer, whether some other unit may be its twin (see the module; a
    superset), from its `screen_terms`. In one product: ``h_ij = p_i . p_j - (q_j - t_j) /
    2``, and unit i is flagged when ``max_{j != i} h_ij >= (q_i - t_i) / 2``."""
    h = tf.matmul(left, right, transpose_a=True)
    h = tf.linalg.set_diag(h, tf.fill(tf.shape(half), tf.constant(-np.inf, half.dtype)))
    return tf.reduce_max(h, 1) >= half


def exact_twins(
    m: tf.Tensor, flagged: tf.Tensor, squares: tf.Tensor, rtol2: tf.Tensor
) -> tf.Tensor:
    """Per unit, whether an earlier unit is its twin, by the definition in float64, among the
    ``flagged`` units; ``m`` holds the columns (sketch or rows) of the flagged units that are
    not dead (``s_i > 0``).

    Dead units (``m_i = 0``) need no column: two are always twins, and a dead unit and a
    live unit j are twins exactly when ``||m_j||^2 <= rtol^2 s_j`` (j's column is near zero:
    only a sketch can make it so). Such a j is flagged whenever a dead unit is, so
    training-time dead units (half of some MobileNetV2 layers after an epoch) cost nothing.
    """
    # (Gathers and broadcasts, not boolean masks and slices: fewer ops to trace.)
    index = _positions(flagged)
    s = tf.gather(squares, index)
    dead = tf.equal(s, 0.0)
    live_at = _positions(tf.logical_not(dead))
    live_index, dead_index = tf.gather(index, live_at), tf.gather(index, _positions(dead))
    s_live = tf.gather(s, live_at)
    g = tf.matmul(m, m, transpose_a=True)  # (live flagged, live flagged)
    norms = tf.linalg.diag_part(g)
    column = tf.expand_dims(norms, 1)
    scale = rtol2 * tf.maximum(tf.expand_dims(s_live, 1), s_live)
    close = column + norms - 2.0 * g <= scale
    earlier = live_index < tf.expand_dims(live_index, 1)
    near_zero = norms <= rtol2 * s_live
    # (The minimum of no index is the largest int64: "never".)
    first_dead = tf.reduce_min(dead_index)
    first_near_zero = tf.reduce_min(tf.where(near_zero, live_index, live_index.dtype.max))
    live_found = tf.logical_or(
        tf.reduce_any(tf.logical_and(close, earlier), 1),
        tf.logical_and(near_zero, first_dead < live_index),
    )
    dead_found = tf.logical_or(dead_index > first_dead, dead_index > first_near_zero)
    shape = tf.shape(flagged, out_type=tf.int64)
    return tf.logical_or(
        tf.scatter_nd(tf.expand_dims(live_index, 1), live_found, shape),
        tf.scatter_nd(tf.expand_dims(dead_index, 1), dead_found, shape),
    )


def _positions(mask: tf.Tensor) -> tf.Tensor:
    """The indices (int64) where ``mask`` is True."""
    return tf.reshape(tf.where(mask), (-1,))


class Twins:
    """`distinct_units` of many layers: per unit, whether an earlier unit is its twin.

    Each layer (`add`) is a range of the units of all layers, whose screen projections and
    exact sums of squares `run` receives as one matrix and one vector, and ``m``: its
    sketch, or its rows (sketched for the exact step when the layer is sketched). `run`
    compares all layers in one `tf.while_loop` (`screen_flags`, then `exact_twins` on the flagged
    columns), so the probe's graph holds one copy of the comparison however many layers
    there are (a copy per layer made its trace and its instantiation 2-3x slower on
    MobileNetV2, and each op costs time at every call).
    """

    def __init__(self, consts: dict[Any, Any]) -> None:
        self._consts = consts
        # Per layer: offset, units, m, load (0: from m), sketch map (-1: none), rows of p.
        self._jobs: list[tuple[Any, int, tf.Tensor, float, int, int | None]] = []
        self._maps: list[int] = []  # the static row counts of the sketched rows

    def add(
        self, offset: Any, units: int, m: tf.Tensor, load: float | None, sketch_of: Any
    ) -> None:
        """One layer: its units ``offset:offset + units``; ``m`` its rows (the output itself,
        float32: cast to float64 only in the flagged columns) or its sketch; ``load`` its
        ``L`` (None: ``m`` is the sketch, ``n_i^2 = ||m_i||^2``); ``sketch_of`` the static
        rows of ``m`` to sketch for the exact step (None: compare ``m`` itself)."""
        index = -1
        if sketch_of is not None:
            if sketch_of not in self._maps:
                self._maps.append(sketch_of)
            index = self._maps.index(sketch_of)
        rows = SKETCH_DIM if load is None else m.shape[0]  # (the projection's inner size)
        self._jobs.append((offset, units, m, 0.0 if load is None else load, index, rows))

    def run(self, p_all: tf.Tensor, squares_all: tf.Tensor) -> tf.Tensor:
        """The twin flags of the units of the added layers, concatenated in their order:
        ``p_all`` (SCREEN_DIM, all units) the projections, ``squares_all`` the ``s_i``."""
        n = len(self._jobs)
        rtol2 = self._consts["rtol2"]
        dtype = screen_dtype()
        # One dtype for all: float32 outputs, or float64 when any is (then all are cast).
        wide = any(j[2].dtype == tf.float64 for j in self._jobs)
        columns = [to64(j[2]) if wide else j[2] for j in self._jobs]
        ms = _tensor_list(columns, tf.float64 if wide else tf.float32, 2)
        maps = [_sketch_map(rows, self._consts) for rows in self._maps]
        buckets = _tensor_list((tf.constant(b) for b, _ in maps), tf.int32, 1)
        signs = _tensor_list((tf.constant(s) for _, s in maps), tf.float64, 2)
        # The screen's terms of all compared units at once (in the order of the layers), sliced
        # per layer in the loop: per unit, n_i^2 (L s_i, or ||m_i||^2 where m is a summed
        # sketch) and its layer's slack. Unit counts are static (a compared layer's are);
        # only the offsets after a layer whose units are not static are tensors.
        sizes = [j[1] for j in self._jobs]
        loads = [j[3] for j in self._jobs]
        starts = np.cumsum([0, *sizes[:-1]])
        table = tf.constant(np.stack([starts, sizes], 1).astype(np.int32).reshape(n, 2))

        def per_unit(values: list[float]) -> tf.Tensor:
            """One value per layer, repeated over its units."""
            return tf.constant(np.repeat(values, sizes))

        def slack_of(of: tf.DType) -> tf.Tensor:
            return per_unit([screen_slack(of, j[5]) for j in self._jobs])

        if all(isinstance(j[0], int) for j in self._jobs):
            index = tf.constant(np.concatenate([np.arange(o, o + u) for o, u, *_ in self._jobs]))
        else:
            index = tf.concat([tf.range(o, o + u) for o, u, *_ in self._jobs], 0)
        p = tf.gather(p_all, index, axis=1)
        squares = tf.gather(squares_all, index)
        if all(loads):
            norms2 = per_unit(loads) * squares
        else:  # (the summed sketch of several replicas: its own norms)
            norms2 = tf.concat([tf.reduce_sum(tf.square(to64(m)), 0) for m in columns], 0)
        left_all, right_all, half_all = screen_terms(
            p, squares, norms2, rtol2, slack_of(dtype), dtype
        )
        # In float32, a layer's flagged units are screened again among themselves in float64
        # (its slack is 1e-7 to 1e-5 of float32's): trained layers have many units within
        # float32's slack of another (MobileNetV2 after 4 steps: 11,500 live units flagged,
        # 2,300 in float64), and each costs its rows in the exact step. Every twin pair is
        # flagged by both screens, so no twin is lost.
        again = None
        if dtype != tf.float64:
            again = screen_terms(p, squares, norms2, rtol2, slack_of(tf.float64), tf.float64)
        map_of = tf.constant([j[4] for j in self._jobs], tf.int32)

        def body(i: tf.Tensor, out: tf.TensorArray) -> tuple[tf.Tensor, tf.TensorArray]:
            offset, size = table[i, 0], table[i, 1]
            begin, width = tf.stack([0, offset]), tf.stack([-1, size])
            flagged = screen_flags(
                tf.slice(left_all, begin, width),
                tf.slice(right_all, begin, width),
                tf.slice(half_all, offset[None], size[None]),
            )

            def exact() -> tf.Tensor:
                m, k = ms.read(i), map_of[i]
                s = tf.slice(squares, offset[None], size[None])
                flags = flagged
                if again is not None:  # screened again, among themselves, in float64
                    at = _positions(flagged)
                    units = tf.cast(offset, tf.int64) + at
                    rescreened = screen_flags(*(tf.gather(t, units, axis=-1) for t in again))
                    flags = tf.scatter_nd(at[:, None], rescreened, tf.shape(flagged, tf.int64))
                live = tf.logical_and(flags, tf.greater(s, 0.0))
                picked = to64(tf.gather(m, _positions(live), axis=1))
                picked = tf.cond(
                    k >= 0,
                    lambda: tf.math.unsorted_segment_sum(
                        picked * signs.read(k), buckets.read(k), SKETCH_DIM
                    ),
                    lambda: picked,
                )
                return exact_twins(picked, flags, s, rtol2)

            # (Most layers have no flagged unit: the exact step's ops are skipped.)
            found = tf.cond(tf.reduce_any(flagged), exact, lambda: tf.zeros_like(flagged))
            return i + 1, out.write(i, found)

        out = tf.TensorArray(tf.bool, size=n, infer_shape=False, element_shape=[None])
        _, out = tf.while_loop(lambda i, _: i < n, body, (tf.constant(0), out))
        return tf.reshape(out.concat(), (sum(j[1] for j in self._jobs),))


def _tensor_list(tensors: Any, dtype: tf.DType, rank: int) -> tf.TensorArray:
    """A TensorArray of tensors of one dtype and rank and of different shapes."""
    values = list(tensors)
    ta = tf.TensorArray(
        dtype, size=len(values), infer_shape=False, element_shape=tf.TensorShape([None] * rank)
    )
    for i, v in enumerate(values):
        ta = ta.write(i, v)
    return ta


def distinct_consts(rtol: float) -> dict[Any, Any]:
    """The shared constants of one trace (the tolerance; cached sketch maps, directions)."""
    return {
        "rtol2": tf.constant(rtol**2, tf.float64),
        "zero": tf.constant(0.0, tf.float64),
    }
