"""Which inputs a sliding window reads: the gather index of a conv or pooling layer.

For one spatial axis of input length ``n``, output length ``n_out``, kernel ``k``, stride
``s``, dilation ``d`` and Keras' padding (``same``: ``total = max((n_out - 1) s + (k - 1) d
+ 1 - n, 0)``, the left half ``total // 2``; ``causal``: all ``(k - 1) d`` on the left),
output position ``o`` reads input ``o s - left + j d`` through tap ``j``; taps outside
``[0, n)`` read the padding (zeros for a conv, nothing for a pooling window). On an 8x8 map
a 3x3 kernel reads 8.1 of its 9 taps on average, on a 1x1 map only the centre one: the
effective fan is the number of *valid* taps, position by position.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _left_pad(n: int, n_out: int, k: int, s: int, d: int, padding: str) -> int:
    if padding == "causal":
        return (k - 1) * d
    if padding == "same":
        return max((n_out - 1) * s + (k - 1) * d + 1 - n, 0) // 2
    return 0


def window_index(
    in_size: Sequence[int],
    out_size: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    padding: str,
) -> np.ndarray:
    """``index[o, t]``: the flat input position output ``o`` reads through tap ``t``, or -1.

    Positions and taps are flattened in row-major order of their axes.

    Example:
    >>> window_index((1,), (1,), (3,), (1,), (1,), "same").tolist()  # only the centre tap
    [[-1, 0, -1]]
    """
    index = np.zeros((1, 1), dtype=np.int64)
    valid = np.ones((1, 1), dtype=bool)
    for n, n_out, k, s, d in zip(in_size, out_size, kernel, strides, dilation, strict=True):
        left = _left_pad(n, n_out, k, s, d, padding)
        i = np.arange(n_out)[:, None] * s - left + np.arange(k)[None, :] * d  # (n_out, k)
        ok = (i >= 0) & (i < n)
        index = (index[:, None, :, None] * n + i[None, :, None, :]).reshape(
            index.shape[0] * n_out, -1
        )
        valid = (valid[:, None, :, None] & ok[None, :, None, :]).reshape(index.shape)
    return np.where(valid, index, -1)


def gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values`` (positions, C) read through ``index`` (out, taps): (out, taps, C), zeros
    where the index is -1."""
    padded = np.concatenate([values, np.zeros((1, values.shape[-1]))], axis=0)
    return padded[np.where(index >= 0, index, values.shape[0])]


def scatter(values: np.ndarray, index: np.ndarray, positions: int) -> np.ndarray:
    """The adjoint of ``gather``: (out, taps, C) summed into (positions, C)."""
    out = np.zeros((positions + 1, values.shape[-1]))
    np.add.at(
        out,
        np.where(index >= 0, index, positions).reshape(-1),
        values.reshape(-1, values.shape[-1]),
    )
    return out[:positions]
