"""Kernels with known fans: the ``kernels()`` / ``kernel_shapes()`` Hypothesis strategies.

A ``Kernel`` is a shape in one of the layouts of ``keras_initlab.fans.LAYOUTS`` together with
its true fans, computed here from the way the shape was built (not by ``compute_fans``), so a
test can check ``compute_fans`` and every initializer's variance against them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from keras_initlab._validation import check_positive_int

KERNEL_LAYOUTS = (
    "auto",
    "conv",
    "conv_transpose",
    "dense",
    "depthwise",
    "einsum",
    "embedding",
    "explicit",
    "recurrent",
)
RECURRENT_GATES = (1, 3, 4)  # SimpleRNN, GRU, LSTM
MAX_KERNEL_SIZE = 5  # largest spatial kernel size drawn per axis
MAX_SPATIAL_DIMS = 3  # conv 1-D, 2-D and 3-D
MAX_GROUPS = 4
MAX_STRIDES = 3
MAX_FREE_DIM = 64  # depthwise input channels and embedding vocabulary do not enter the fans
DEFAULT_MAX_FAN = 1024
DEFAULT_MAX_SIZE = 2**16  # entries of one kernel: keeps each draw to a few milliseconds


@dataclass(frozen=True)
class Kernel:
    """A kernel shape, its layout and its true fans.

    Example:
    >>> Kernel((3, 3, 8, 16), "conv", {"groups": 2}, 36, 72).size
    1152
    """

    shape: tuple[int, ...]
    layout: str
    layout_args: dict[str, Any] = field(default_factory=dict)
    fan_in: float = 1
    fan_out: float = 1

    @property
    def size(self) -> int:
        """The number of entries, ``prod(shape)``."""
        return math.prod(self.shape)


def _check_bound(name: str, value: Any) -> int:
    """``check_positive_int``, raising Hypothesis' InvalidArgument as strategies do."""
    try:
        return check_positive_int(name, value)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(str(error)) from None


def _check_bounds(
    min_fan_in: Any, max_fan_in: Any, min_fan_out: Any, max_fan_out: Any, max_size: Any
) -> None:
    for name, value in [
        ("min_fan_in", min_fan_in),
        ("max_fan_in", max_fan_in),
        ("min_fan_out", min_fan_out),
        ("max_fan_out", max_fan_out),
        ("max_size", max_size),
    ]:
        _check_bound(name, value)
    for low, high, lo, hi in [
        ("min_fan_in", "max_fan_in", min_fan_in, max_fan_in),
        ("min_fan_out", "max_fan_out", min_fan_out, max_fan_out),
    ]:
        if lo > hi:
            raise InvalidArgument(
                f"Argument `{low}` must be at most `{high}`. Received: {low}={lo}, {high}={hi}"
            )
    if min_fan_in * min_fan_out > max_size:
        raise InvalidArgument(
            "Argument `max_size` must allow a kernel of the smallest fans. Received: "
            f"max_size={max_size}, min_fan_in={min_fan_in}, min_fan_out={min_fan_out}"
        )


def _check_layouts(layouts: Any) -> tuple[str, ...]:
    if isinstance(layouts, str):
        layouts = (layouts,)
    try:
        layouts = tuple(layouts)
    except TypeError:
        raise InvalidArgument(
            f"Argument `layouts` must be a sequence of layout names. Received: layouts={layouts!r}"
        ) from None
    bad = [name for name in layouts if name not in KERNEL_LAYOUTS]
    if not layouts or bad:
        raise InvalidArgument(
            f"Argument `layouts` must be a non-empty sequence of {list(KERNEL_LAYOUTS)}. "
            f"Received: layouts={layouts!r}"
        )
    return layouts


def _possible(layout: str, min_fan_in: int, max_fan_in: int) -> bool:
    """Whether ``layout`` has kernels with a fan-in in the range at all."""
    if layout == "embedding":
        return min_fan_in <= 1
    if layout == "depthwise":
        return min_fan_in <= MAX_KERNEL_SIZE**MAX_SPATIAL_DIMS
    return True


def _between(draw: Any, lo: float, hi: float) -> int:
    """An int in [ceil(lo), floor(hi)]; the example is rejected when that is empty."""
    lo, hi = math.ceil(lo), math.floor(hi)
    if lo > hi:
        reject()
    return draw(st.integers(lo, hi))


def _fan(value: float) -> float:
    """A fan as an int when it is whole (as ``compute_fans`` returns it)."""
    return int(value) if float(value).is_integer() else value


@st.composite
def _kernel(draw: Any, layout: str, fi: tuple[int, int], fo: tuple[int, int], size: int) -> Kernel:
    (min_in, max_in), (min_out, max_out) = fi, fo
    if layout == "auto" and draw(st.booleans()):
        # bias-like shapes: () reads as fans (1, 1), (n,) as (n, n)
        if draw(st.booleans()):
            if max(min_in, min_out) > 1:
                reject()
            return Kernel((), layout, {}, 1, 1)
        n = _between(draw, max(min_in, min_out), min(max_in, max_out, size))
        return Kernel((n,), layout, {}, n, n)
    if layout == "dense" or (layout == "auto" and draw(st.booleans())):
        n_in = _between(draw, min_in, min(max_in, size / min_out))
        n_out = _between(draw, min_out, min(max_out, size / n_in))
        if layout == "dense" and n_in > 1 and draw(st.booleans()):
            # a rank-3 dense kernel (a, b, out), as EinsumDense flattens it: fan_in = a * b
            head = draw(st.sampled_from([d for d in range(2, n_in + 1) if n_in % d == 0]))
            return Kernel((head, n_in // head, n_out), layout, {}, n_in, n_out)
        return Kernel((n_in, n_out), layout, {}, n_in, n_out)
    if layout == "explicit":
        fan_in = draw(st.integers(min_in, max_in))
        fan_out = draw(st.integers(min_out, max_out))
        rows = draw(st.integers(1, MAX_FREE_DIM))
        cols = _between(draw, 1, min(MAX_FREE_DIM, size / rows))
        return Kernel((rows, cols), layout, {"fan_in": fan_in, "fan_out": fan_out}, fan_in, fan_out)
    if layout == "einsum":
        rank = draw(st.integers(2, 4))
        shape = tuple(draw(st.lists(st.integers(1, 8), min_size=rank, max_size=rank)))
        if math.prod(shape) > size:
            reject()
        order = draw(st.permutations(range(rank)))
        n_in = draw(st.integers(1, rank - 1))
        n_out = draw(st.integers(1, rank - n_in))
        in_axes, out_axes = sorted(order[:n_in]), sorted(order[n_in : n_in + n_out])
        fan_in = math.prod(shape[a] for a in in_axes)
        fan_out = math.prod(shape[a] for a in out_axes)
        if not (min_in <= fan_in <= max_in and min_out <= fan_out <= max_out):
            reject()
        negative = draw(st.booleans())  # axes may be given from the end
        args: dict[str, Any] = {
            "in_axes": tuple(a - rank if negative else a for a in in_axes),
            "out_axes": out_axes[0] if len(out_axes) == 1 else tuple(out_axes),
        }
        return Kernel(shape, layout, args, fan_in, fan_out)
    if layout == "recurrent":
        gates = draw(st.sampled_from(RECURRENT_GATES))
        n_in = _between(draw, min_in, min(max_in, size / (gates * min_out)))
        units = _between(draw, min_out, min(max_out, size / (gates * n_in)))
        args = {"gates": gates} if gates > 1 or draw(st.booleans()) else {}
        return Kernel((n_in, gates * units), layout, args, n_in, units)
    if layout == "embedding":
        if min_in > 1:
            reject()
        dim = _between(draw, min_out, min(max_out, size))
        vocab = _between(draw, 1, min(MAX_FREE_DIM, size / dim))
        return Kernel((vocab, dim), layout, {}, 1, dim)
    spatial = tuple(
        draw(st.lists(st.integers(1, MAX_KERNEL_SIZE), min_size=1, max_size=MAX_SPATIAL_DIMS))
    )
    taps = math.prod(spatial)
    if layout == "depthwise":
        if not min_in <= taps <= max_in:
            reject()
        mult = _between(draw, min_out / taps, min(max_out / taps, size / taps))
        channels = _between(draw, 1, min(MAX_FREE_DIM, size / (taps * mult)))
        return Kernel((*spatial, channels, mult), layout, {}, taps, taps * mult)
    if layout == "conv_transpose":
        per_axis = draw(
            st.lists(st.integers(1, MAX_STRIDES), min_size=len(spatial), max_size=len(spatial))
        )
        step = math.prod(per_axis)
        # fan_in = taps * in / step: an average number of taps, not always whole
        n_in = _between(
            draw, min_in * step / taps, min(max_in * step / taps, size / (taps * min_out))
        )
        n_out = _between(draw, min_out / taps, min(max_out / taps, size / (taps * n_in)))
        uniform = len(set(per_axis)) == 1 and draw(st.booleans())
        strides: Any = per_axis[0] if uniform else tuple(per_axis)
        args = {} if strides == 1 else {"strides": strides}
        return Kernel((*spatial, n_out, n_in), layout, args, _fan(taps * n_in / step), taps * n_out)
    groups = draw(st.integers(1, MAX_GROUPS)) if layout == "conv" else 1
    per_group_in = _between(draw, min_in / taps, min(max_in / taps, size / (taps * groups)))
    per_group_out = _between(
        draw, min_out / taps, min(max_out / taps, size / (taps * groups * per_group_in))
    )
    args = {"groups": groups} if groups > 1 else {}
    return Kernel(
        (*spatial, per_group_in, groups * per_group_out),
        layout,
        args,
        taps * per_group_in,
        taps * per_group_out,
    )


def kernels(
    *,
    layouts: Any = KERNEL_LAYOUTS,
    min_fan_in: int = 1,
    max_fan_in: int = DEFAULT_MAX_FAN,
    min_fan_out: int = 1,
    max_fan_out: int = DEFAULT_MAX_FAN,
    max_size: int = DEFAULT_MAX_SIZE,
) -> st.SearchStrategy[Kernel]:
    """Kernels of the given layouts with fans in the given ranges, and their true fans.

    Layouts: ``dense`` (in, out) or (a, b, out); ``conv`` 1/2/3-D, grouped
    (k..., in/groups, out); ``conv_transpose`` with strides (k..., out, in), whose fan-in
    ``prod(k) * in / prod(strides)`` need not be whole; ``depthwise`` (k..., in, mult);
    ``recurrent`` (in, gates * units) for SimpleRNN, GRU and LSTM; ``embedding``
    (vocab, dim); ``einsum`` (any shape, in/out axes); ``explicit`` (fans given);
    ``auto`` (a scalar, vector, dense or conv shape read by Keras' shape rule). Fans follow
    ``keras_initlab.fans`` and lie in ``[min_fan_in, max_fan_in] x [min_fan_out, max_fan_out]``
    (a depthwise fan-in is the number of taps, an embedding's is 1: those layouts only
    appear when the ranges allow it). At most ``max_size`` entries.

    Raises:
        InvalidArgument: a bound that is not a positive int, min above max, or an unknown
            layout.

    Example:
    >>> from hypothesis import given
    >>> @given(kernels(layouts=["conv"], max_fan_in=64))
    ... def test(kernel):
    ...     assert kernel.fan_in <= 64
    >>> test()
    """
    layouts = _check_layouts(layouts)
    _check_bounds(min_fan_in, max_fan_in, min_fan_out, max_fan_out, max_size)
    possible = tuple(name for name in layouts if _possible(name, min_fan_in, max_fan_in))
    if not possible:
        raise InvalidArgument(
            f"No kernel of the layouts {list(layouts)} has a fan-in in "
            f"[{min_fan_in}, {max_fan_in}]. Received: layouts={layouts!r}"
        )
    layouts = possible
    fi, fo = (min_fan_in, max_fan_in), (min_fan_out, max_fan_out)
    return st.sampled_from(layouts).flatmap(lambda layout: _kernel(layout, fi, fo, max_size))


def kernel_shapes(
    *,
    layout: str = "dense",
    min_fan_in: int = 1,
    max_fan_in: int = DEFAULT_MAX_FAN,
    min_fan_out: int = 1,
    max_fan_out: int = DEFAULT_MAX_FAN,
    max_size: int = DEFAULT_MAX_SIZE,
) -> st.SearchStrategy[tuple[int, ...]]:
    """Kernel shapes of one ``layout`` with fans in the given ranges (see ``kernels``).

    Example:
    >>> from hypothesis import given
    >>> @given(kernel_shapes(layout="dense", min_fan_in=4, max_fan_in=8))
    ... def test(shape):  # a dense kernel (in, out) or (a, b, out): fan_in = prod(shape[:-1])
    ...     assert 4 <= math.prod(shape[:-1]) <= 8
    >>> test()
    """
    if not isinstance(layout, str):
        raise InvalidArgument(
            f"Argument `layout` must be a layout name. Received: layout={layout!r}"
        )
    return kernels(
        layouts=(layout,),
        min_fan_in=min_fan_in,
        max_fan_in=max_fan_in,
        min_fan_out=min_fan_out,
        max_fan_out=max_fan_out,
        max_size=max_size,
    ).map(lambda kernel: kernel.shape)
