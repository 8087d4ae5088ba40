"""Layer-aware fan computation: the true fan-in and fan-out of every Keras kernel layout.

Keras (and PyTorch) compute fans from the shape alone: ``shape[-2] * receptive field`` in,
``shape[-1] * receptive field`` out. That is right for Dense and plain convolutions and wrong
for several layouts; ``compute_fans`` takes the layout explicitly. See
``keras_initlab/initializers/README.md`` for the derivations and the numbers measured on
built layers.

Layouts (channels-last kernels, ``k...`` = spatial kernel size, ``s`` = strides):

=================  =====================  =====================  ==================
layout             kernel shape           fan_in                 fan_out
=================  =====================  =====================  ==================
``auto``           any                    Keras' shape rule      Keras' shape rule
``dense``          (in, out)              in                     out
``conv``           (k..., in/groups, out) prod(k) * in/groups    prod(k) * out/groups
``conv_transpose`` (k..., out, in)        prod(k) * in/prod(s)   prod(k) * out
``depthwise``      (k..., in, mult)       prod(k)                prod(k) * mult
``recurrent``      (in, gates * units)    in                     units
``einsum``         any                    prod(in_axes)          prod(out_axes)
``embedding``      (vocab, dim)           1                      dim
``explicit``       any                    fan_in argument        fan_out argument
=================  =====================  =====================  ==================

Transposed convolutions: each output position of a stride-``s`` transposed convolution sums
``prod(k) / prod(s)`` taps per input channel on average, so the forward fan-in is
``prod(k) * in / prod(s)``; the backward pass is a plain stride-``s`` convolution, so the
fan-out is ``prod(k) * out``. With ``strides=1`` (the default) this is the full kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from keras_initlab._validation import (
    check_choice,
    check_positive_int,
    check_rank,
    is_integer,
    standardize_shape,
)

__all__ = ["LAYOUTS", "compute_fans"]

# layout -> the keyword arguments it accepts
LAYOUTS: dict[str, tuple[str, ...]] = {
    "auto": (),
    "dense": (),
    "conv": ("groups",),
    "conv_transpose": ("strides",),
    "depthwise": (),
    "recurrent": ("gates",),
    "einsum": ("in_axes", "out_axes"),
    "embedding": (),
    "explicit": ("fan_in", "fan_out"),
}
_MIN_RANK = {
    "dense": 2,
    "conv": 3,
    "conv_transpose": 3,
    "depthwise": 3,
    "recurrent": 2,
    "embedding": 2,
}


def _axes(name: str, value: Any, rank: int) -> tuple[int, ...]:
    if is_integer(value):
        value = (value,)
    if not isinstance(value, Sequence) or not all(
        is_integer(a) and -rank <= a < rank for a in value
    ):
        raise ValueError(
            f"Argument `{name}` must be a sequence of axes in [-{rank}, {rank}). "
            f"Received: {name}={value!r}"
        )
    return tuple(int(a) for a in value)


def _shape_rule(shape: tuple[int, ...]) -> tuple[int, int]:
    """Keras' and PyTorch's rule: (shape[-2], shape[-1]) times the receptive field."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def compute_fans(
    shape: Sequence[int], layout: str = "auto", **layout_args: Any
) -> tuple[float, float]:
    """Return ``(fan_in, fan_out)`` of a kernel of ``shape`` laid out as ``layout``.

    Args:
        shape: the kernel shape, channels-last as Keras stores it.
        layout: one of ``LAYOUTS`` (see the module table). ``"auto"`` is Keras' shape rule.
        **layout_args: ``groups`` (conv), ``strides`` (conv_transpose, an int or one per
            spatial axis), ``gates`` (recurrent: 4 for LSTM, 3 for GRU, 1 for SimpleRNN),
            ``in_axes``/``out_axes`` (einsum), ``fan_in``/``fan_out`` (explicit).

    Returns:
        A tuple of two ints; the transposed fan-in is a float when ``prod(k) * in`` is not
        a multiple of ``prod(strides)`` (it is an average number of taps).

    Raises:
        ValueError: unknown layout or argument, a rank too small for the layout, or
            a channel count that the groups/gates do not divide.

    Example:
    >>> compute_fans((3, 3, 64, 1), "depthwise")
    (9, 9)
    >>> compute_fans((3, 3, 64, 1))  # Keras' rule: 64 times too large a fan-in
    (576, 9)
    >>> compute_fans((32, 4 * 16), "recurrent", gates=4)
    (32, 16)
    """
    layout = check_choice("layout", layout, LAYOUTS)
    unknown = set(layout_args) - set(LAYOUTS[layout])
    if unknown:
        raise ValueError(
            f"Layout {layout!r} accepts the arguments {list(LAYOUTS[layout])}. "
            f"Received: {sorted(unknown)}"
        )
    shape = standardize_shape(shape)
    rank = len(shape)
    check_rank(f"Layout {layout!r}", shape, _MIN_RANK.get(layout, 0))
    if layout == "auto":
        return _shape_rule(shape)
    if layout == "explicit":
        return (
            check_positive_int("fan_in", layout_args.get("fan_in")),
            check_positive_int("fan_out", layout_args.get("fan_out")),
        )
    if layout == "einsum":
        in_axes = _axes("in_axes", layout_args.get("in_axes"), rank)
        out_axes = _axes("out_axes", layout_args.get("out_axes"), rank)
        return math.prod(shape[a] for a in in_axes), math.prod(shape[a] for a in out_axes)
    if layout in ("dense", "embedding"):
        fan_in = math.prod(shape[:-1]) if layout == "dense" else 1
        return fan_in, shape[-1]
    if layout == "recurrent":
        gates = check_positive_int("gates", layout_args.get("gates", 1))
        if shape[-1] % gates:
            raise ValueError(
                f"Argument `gates` must divide the last dim of the kernel. "
                f"Received: gates={gates}, shape={shape}"
            )
        return math.prod(shape[:-1]), shape[-1] // gates
    receptive = math.prod(shape[:-2])
    if layout == "conv":
        groups = check_positive_int("groups", layout_args.get("groups", 1))
        if shape[-1] % groups:
            raise ValueError(
                f"Argument `groups` must divide the output channels. "
                f"Received: groups={groups}, shape={shape}"
            )
        return receptive * shape[-2], receptive * shape[-1] // groups
    if layout == "depthwise":
        return receptive, receptive * shape[-1]
    # conv_transpose: (k..., out, in)
    strides = layout_args.get("strides", 1)
    spatial = rank - 2
    if is_integer(strides):
        strides = (strides,) * spatial
    if not isinstance(strides, Sequence) or len(strides) != spatial:
        raise ValueError(
            f"Argument `strides` must be an int or {spatial} ints. Received: strides={strides!r}"
        )
    step = math.prod(check_positive_int("strides", s) for s in strides)
    taps = receptive * shape[-1] / step  # average taps per output position
    return (int(taps) if taps.is_integer() else taps), receptive * shape[-2]
