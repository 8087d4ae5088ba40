"""The orthonormal start of LSUV: an orthonormal kernel for each layout LSUV normalizes."""

from __future__ import annotations

import math
from typing import Any

from keras import ops

from keras_initlab.initializers import Orthogonal
from keras_initlab.model.weights import WeightSpec


def _orthonormal(spec: WeightSpec, seed: int) -> Any:
    """An orthonormal kernel for ``spec``: columns (or rows) of unit norm, orthogonal.

    Dense, ConvND, ConvNDTranspose: the kernel flattened to ``(prod(shape[:-1]), shape[-1])``
    (for a convolution, ``(prod(k) * in, out)``, the usual LSUV choice). Depthwise: one
    orthonormal ``(prod(k), mult)`` filter bank per input channel. EinsumDense: orthonormal
    as a ``(contracted axes, other axes)`` matrix.
    """
    shape = tuple(int(d) for d in spec.variable.shape)
    if spec.layout == "depthwise":
        taps, channels = math.prod(shape[:-2]), shape[-2] * shape[-1]
        init = Orthogonal(seed=seed, layout="recurrent", layout_args={"gates": shape[-2]})
        return ops.reshape(init((taps, channels), dtype="float32"), shape)
    if spec.layout == "einsum":
        in_axes = list(spec.layout_args["in_axes"])
        rest = [a for a in range(len(shape)) if a not in in_axes]
        order = in_axes + rest
        matrix = (math.prod(shape[a] for a in in_axes), math.prod(shape[a] for a in rest))
        q = Orthogonal(seed=seed)(matrix, dtype="float32")
        q = ops.reshape(q, [shape[a] for a in order])
        return ops.transpose(q, [order.index(a) for a in range(len(shape))])
    return Orthogonal(seed=seed)(shape, dtype="float32")
