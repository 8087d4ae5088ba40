"""Tensors that are, position by position, linear maps of one tensor, and the covariance of
two of them.

Attention multiplies each query by each key, and both are projections of one input ``x``
(shape ``(T, F)``: positions by features). Taken as independent, the score ``q_t . k_s`` has
mean 0. Off the diagonal it has (``t != s``: independent positions). On it, ``q_t`` and
``k_t`` read the same ``x_t``: ``E[q_t . k_t] = sum_f Var(x_f) sum_e A_q[e, f] A_k[e, f]``
(plus the means' product), ``A`` the maps, which is 0 only on average over independent
draws of the two kernels. Where the kernels share their draws it is large: keras_hub's
Llama, Mistral, Qwen2, Phi-3 and Gemma attentions pass one unseeded initializer instance to
their query, key, value and output projections, and Keras 3 draws the same numbers at each
call of one instance, so a query head's kernel equals its key head's; at Gemma's scale
(tiny config: 2 heads of 32 on width 64) each query then scores its own key about 6.5
above the others, and a softmax of that is far from uniform.

Each tensor that is such a map of one base (a projection without activation, and what
constant factors scale, re-layouts move and sums add of those: RoPE is ``x cos +
rotate_half(x) sin``) has a record ``Linear``: element ``i`` is ``sum_f maps[i, f]
base[pos[i], f]`` plus a constant. For two recorded tensors of one base, an ``einsum``
pairs elements ``a_i``, ``b_j``; where both read the same base position, ``Cov(a_i, b_j) =
sum_f maps_a[i, f] maps_b[j, f] Var(base[pos, f])`` (features and positions of the base
taken as independent, as everywhere in the walk), and for jointly Gaussian operands
``E[a b] = E[a] E[b] + C``, ``Var(a b) = E[a^2] E[b^2] - E[a]^2 E[b]^2 + C^2 + 2 E[a] E[b]
C`` (covariances between different pairs of one sum are left out: they are of the order of
the kernels' draws, small unless draws are shared). A sum ``a + b`` adds ``2 C``
(``a - b``: ``-2 C``) to the variance of each element. Records are kept only while the
maps hold at most `MAX_NUMBERS` numbers; beyond that the tensors are taken as
independent, as without this module.
"""

from __future__ import annotations

import string
import weakref
from dataclasses import dataclass

import numpy as np

from keras_initlab.propagate._signal import Signal, make

MAX_NUMBERS = 1 << 22  # numbers one record's maps may hold (32 MiB of float64)


@dataclass(frozen=True, eq=False)
class Linear:
    """``x[i] = sum_f maps[i, f] base[pos[i], f] + c_i`` for each element ``i`` of ``x``
    (flat); ``pos[i] = -1`` where the element is a constant, and its ``maps[i]`` are 0
    there (every record is built so: a re-layout's constants get zeros, a sum adds zeros)."""

    base: Signal
    maps: np.ndarray  # (x.size, F)
    pos: np.ndarray  # (x.size,) int


# Each recorded tensor's record, weakly (for as long as the walk keeps the signals).
_LINEAR: weakref.WeakKeyDictionary[Signal, Linear] = weakref.WeakKeyDictionary()


def _keep(x: Signal, base: Signal, maps: np.ndarray, pos: np.ndarray) -> None:
    if maps.size <= MAX_NUMBERS and maps.shape[0] == x.means.size:
        _LINEAR[x] = Linear(base, maps, pos)


def projected(out: Signal, x: Signal, jacobian: np.ndarray) -> None:
    """Record ``out`` ``(T, *E)`` as the projection of ``x`` ``(T, F)`` whose position
    ``t`` is ``x_t @ jacobian`` (``jacobian``: ``(F, *E)``)."""
    if len(x.shape) != 2 or out.shape[0] != x.shape[0] or jacobian.shape[0] != x.shape[1]:
        return
    t, f = x.shape
    if t * jacobian.size > MAX_NUMBERS or t * jacobian.size != out.means.size * f:
        return  # (before any copy: a large layer's maps are not built)
    per = jacobian.reshape(f, -1).T  # (E, F)
    maps = np.broadcast_to(per, (t, *per.shape)).reshape(-1, f)
    _keep(out, x, maps, np.repeat(np.arange(t), per.shape[0]))


def scaled(out: Signal, x: Signal, scale: np.ndarray) -> None:
    """Record ``out = scale x + shift`` (same shape) where ``x`` is recorded."""
    found = _LINEAR.get(x)
    if found is None or out.shape != x.shape:
        return
    factor = np.broadcast_to(np.asarray(scale, dtype=np.float64), x.shape).reshape(-1, 1)
    _keep(out, found.base, found.maps * factor, found.pos)


def moved(out: Signal, xs: list[Signal], index: np.ndarray) -> None:
    """Record a re-layout's ``out`` whose element ``i`` copies element ``index[i]`` of the
    inputs ``xs`` flattened one after the other (-1: a constant), where every input is
    recorded on one base."""
    found = [_LINEAR.get(x) for x in xs]
    if any(f is None for f in found) or len({id(f.base) for f in found if f}) != 1:
        return
    records = [f for f in found if f is not None]
    maps = np.concatenate([f.maps for f in records])
    pos = np.concatenate([f.pos for f in records])
    flat = index.reshape(-1)
    copied = flat >= 0
    at = np.maximum(flat, 0)
    _keep(
        out,
        records[0].base,
        np.where(copied[:, None], maps[at], 0.0),
        np.where(copied, pos[at], -1),
    )


def _paired(a: Linear, b: Linear, size: int) -> np.ndarray | None:
    """``Cov(a_i, b_i)`` per element ``i`` of two recorded tensors of one shape (None:
    not of one base)."""
    if a.base is not b.base or a.maps.shape[0] != size or b.maps.shape[0] != size:
        return None
    same = (a.pos == b.pos) & (a.pos >= 0)
    var = a.base.variances[np.maximum(a.pos, 0)]  # (size, F)
    return np.where(same, np.sum(a.maps * b.maps * var, axis=1), 0.0)


def summed(out: Signal, a: Signal, b: Signal, sign: float) -> Signal:
    """``out = a + sign b`` (both of ``out``'s shape) with the covariance of recorded
    operands of one base added to its variance (``2 sign C``), recorded itself."""
    la, lb = _LINEAR.get(a), _LINEAR.get(b)
    if la is None or lb is None or a.shape != out.shape or b.shape != out.shape:
        return out
    cov = _paired(la, lb, out.means.size)
    if cov is None:
        return out
    corrected = make(out.means, out.variances + 2.0 * sign * cov.reshape(out.shape))
    corrected = corrected.with_positions(out.positions)
    same = (la.pos == lb.pos) | (lb.pos < 0)
    if np.all(same | (la.pos < 0)):
        pos = np.where(la.pos >= 0, la.pos, lb.pos)
        _keep(corrected, la.base, la.maps + sign * lb.maps, pos)
    return corrected


def _position_first(record: Linear, x: Signal) -> bool:
    """Whether ``x``'s first axis is its base's positions (every element reads the base
    position of its index there, or is a constant)."""
    n = record.base.shape[0]
    if len(x.shape) < 2 or x.shape[0] != n:
        return False
    own = np.arange(x.means.size) // (x.means.size // n)
    return bool(np.all((record.pos == own) | (record.pos < 0)))


def contracted(equation: str, a: Signal, b: Signal) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mean, variance)`` to add to ``einsum(equation, a, b)`` (per sample, two tensor
    operands) for the covariance of the element pairs it multiplies, where both are
    recorded on one base with its positions as their first axis (module docstring); None
    where they are not."""
    la, lb = _LINEAR.get(a), _LINEAR.get(b)
    if la is None or lb is None or la.base is not lb.base or "..." in equation:
        return None
    if not (_position_first(la, a) and _position_first(lb, b)):
        return None
    inputs, out = equation.split("->")
    ta, tb = inputs.split(",")
    p, s = ta[0], tb[0]
    if s in ta[1:] or p in tb[1:]:
        return None
    if s != p and (p in out) != (s in out):
        return None
    z = next(c for c in string.ascii_letters if c not in equation)
    tb_p = tb.replace(s, p)  # b read at a's position: the pairs that share one
    union = "".join(dict.fromkeys(ta + tb_p))
    f = la.base.shape[1]
    maps_a = la.maps.reshape(*a.shape, f)  # (0 where an element is a constant)
    maps_b = lb.maps.reshape(*b.shape, f)
    # b's elements at the positions a reads: b's first axis is the base's positions too
    c = np.einsum(f"{ta}{z},{tb_p}{z},{p}{z}->{union}", maps_a, maps_b, la.base.variances)
    out_p = out.replace(s, "") if s != p else out
    mean = np.einsum(f"{union}->{out_p}", c)
    cross = np.einsum(f"{ta},{tb_p},{union}->{out_p}", a.means, b.means, c)
    var = np.einsum(f"{union}->{out_p}", c * c) + 2.0 * cross
    if s != p and p in out:  # onto the diagonal of the two position axes
        eye = np.eye(a.shape[0])
        mean = np.einsum(f"{out_p},{p}{s}->{out}", mean, eye)
        var = np.einsum(f"{out_p},{p}{s}->{out}", var, eye)
    return mean, var


def reshaped(x: Signal, shape: tuple[int, ...]) -> Signal:
    """``x`` reshaped (C order), its record kept."""
    out = make(x.means.reshape(shape), x.variances.reshape(shape))
    found = _LINEAR.get(x)
    if found is not None:
        _LINEAR[out] = found
    return out
