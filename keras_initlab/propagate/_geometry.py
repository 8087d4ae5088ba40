"""Which inputs a sliding window reads: valid taps per output and per input position.

A conv or pooling window with ``padding="same"`` on a small map reads zeros (or, for
pooling, nothing) outside the map: on an 8x8 map a 3x3 kernel reads 8.1 of its 9 taps on
average, on a 1x1 map only 1. The analytic fan is therefore the number of *valid* taps, not
the kernel size. For one spatial axis of input length ``n``, output length ``n_out``,
kernel ``k``, stride ``s``, dilation ``d`` and Keras' padding (``same``: ``total =
max((n_out - 1) s + (k - 1) d + 1 - n, 0)``, the left half ``total // 2``; ``causal``: all
``(k - 1) d`` on the left), output position ``o`` reads inputs ``o s - left + j d``; the taps
inside ``[0, n)`` are the valid ones. Axes are independent, so counts multiply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _left_pad(n: int, n_out: int, k: int, s: int, d: int, padding: str) -> int:
    if padding == "causal":
        return (k - 1) * d
    if padding == "same":
        return max((n_out - 1) * s + (k - 1) * d + 1 - n, 0) // 2
    return 0


def axis_counts(
    n: int, n_out: int, k: int, s: int, d: int, padding: str, pad: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """``counts[o, j]``: whether tap ``j`` of output ``o`` falls inside the input (1/0).

    ``pad``: zeros a ZeroPadding layer put before and after the ``n`` real inputs (they
    count as outside).

    Example:
    >>> axis_counts(1, 1, 3, 1, 1, "same").sum()  # a 1-long axis: only the centre tap
    np.int64(1)
    """
    left = _left_pad(n + pad[0] + pad[1], n_out, k, s, d, padding) + pad[0]
    i = np.arange(n_out)[:, None] * s - left + np.arange(k)[None, :] * d
    return ((i >= 0) & (i < n)).astype(np.int64)


@dataclass(frozen=True)
class Window:
    """A sliding window on a map.

    Attributes:
        forward: per tap (kernel-shaped), the fraction of output positions whose tap is
            inside the input.
        backward: per tap, the number of outputs reading an input through it, averaged over
            input positions (``1/prod(strides)`` inside a large map).
        counts: the number of valid taps of every output position.
        mask: ``(output positions, taps)``, 1 where the tap is inside the input: a conv's
            per-position mean ``mask @ a`` varies over positions on small padded maps.
        reverse_mask: ``(input positions, taps)``, how many outputs read each input through
            each tap (the mask of the transposed conv).
    """

    forward: np.ndarray
    backward: np.ndarray
    counts: np.ndarray
    mask: np.ndarray
    reverse_mask: np.ndarray


def _outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P, T) x (Q, U) -> (P*Q, T*U)."""
    return np.einsum("pt,qu->pqtu", a, b).reshape(a.shape[0] * b.shape[0], -1)


def taps(
    in_size: Sequence[int | None],
    out_size: Sequence[int | None],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    padding: str,
    pads: Sequence[tuple[int, int]] | None = None,
) -> Window:
    """The window of a conv or pooling layer (an unknown size: every tap valid).

    Example:
    >>> w = taps((8, 8), (8, 8), (3, 3), (1, 1), (1, 1), "same")
    >>> round(float(w.forward.sum()), 4), round(float(w.backward.sum()), 4)  # (22/24)^2 * 9
    (7.5625, 7.5625)
    """
    forward = backward = np.ones(())
    counts = np.ones((1,), dtype=np.int64)
    mask = reverse = np.ones((1, 1))
    pads = pads or [(0, 0)] * len(kernel)
    for n, n_out, k, s, d, pad in zip(
        in_size, out_size, kernel, strides, dilation, pads, strict=True
    ):
        if n is None or n_out is None:
            c = np.ones((1, k), dtype=np.int64)
            f, b, r = c.mean(axis=0), c.mean(axis=0) / s, c / s
        else:
            c = axis_counts(n, n_out, k, s, d, padding, pad)
            f, b = c.mean(axis=0), c.sum(axis=0) / n
            left = _left_pad(n + pad[0] + pad[1], n_out, k, s, d, padding) + pad[0]
            r = np.zeros((n, k))
            o, j = np.nonzero(c)
            np.add.at(r, (o * s - left + j * d, j), 1.0)
        forward, backward = np.multiply.outer(forward, f), np.multiply.outer(backward, b)
        counts = np.multiply.outer(counts, c.sum(axis=1)).ravel()
        mask, reverse = _outer(mask, c.astype(np.float64)), _outer(reverse, r)
    return Window(forward, backward, counts, mask, reverse)
