"""Weights that repeat another weight's random draws.

Keras 3 gives an unseeded initializer instance one integer seed when it is built, and
draws from it statelessly: every call of that one instance returns the same numbers, scaled
to its shape. A layer that passes one instance to several sub-layers (keras_hub's Llama,
Mistral, Qwen2, Phi-3 and Gemma attentions pass theirs to the query, key, value and output
projections; Llama's and Phi-3's untied output embedding repeats the token embedding) gets
kernels whose values are the same numbers, times a constant: a query head's kernel equals
its key head's, so every query scores its own key far above the others at the start (Gemma
at width 64: about 6.5 above, in a softmax whose logits vary by about 1.2 around it). This
is no initialization scheme's intent; ``initialize(model, scheme)`` removes it: it draws
every kernel from its own seed, and re-draws an embedding table that repeats another
weight's from the table's own initializer under its own seed.

Test: the first ``n`` values of two weights (``n`` the smaller size, at most `PREFIX`)
have a correlation ``r``; for independent draws ``r`` is about ``N(0, 1/n)``, so ``|r| > z /
sqrt(n)`` (and above `MIN_CORRELATION`) marks the pair. Every pair is screened at once on
its first `MIN_SIZE` values (a repeat's correlation there is 1 as well), then each
candidate on its whole common prefix. Weights of fewer than `MIN_SIZE` values or constant
there (biases at 0, normalization scales at 1) are not compared.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

PREFIX = 4096  # values of each weight compared
MIN_SIZE = 64  # smaller weights are not compared
# A pair is marked only above this correlation too: a repeat's is 1 up to rounding (the same
# numbers times a factor), and a bound of a few standard errors alone would let a model of
# hundreds of small weights (tens of thousands of pairs) raise false ones.
MIN_CORRELATION = 0.9
Z = 4.0  # standard errors of the correlation that make a repeat (audit's z by default)


@dataclass(frozen=True)
class Repeat:
    """``path`` repeats the draws of ``of`` (an earlier weight): the correlation ``r`` over
    their first ``n`` values."""

    path: str
    of: str
    r: float
    n: int


def repeated_draws(weights: Iterable[Any], z: float = Z) -> list[Repeat]:
    """The weights (Keras variables: ``model.weights``) whose first values are, up to a
    factor, an earlier one's.

    ``|r| > max(z / sqrt(n), MIN_CORRELATION)`` for the correlation ``r`` over the first
    ``n = min(size_a, size_b, PREFIX)`` values (module docstring); each weight is reported
    once, against the first earlier weight it repeats.

    Args:
        weights: Keras variables, in order.
        z: how many standard errors of ``r`` (``1/sqrt(n)`` for independent draws) make a
            repeat.

    Returns:
        One ``Repeat`` per weight that repeats an earlier one, in the order given.

    Example:
    >>> import keras
    >>> shared = keras.initializers.GlorotUniform()  # one unseeded instance
    >>> model = keras.Sequential([keras.Input((16,)),
    ...     keras.layers.Dense(16, kernel_initializer=shared, name="a"),
    ...     keras.layers.Dense(16, kernel_initializer=shared, name="b")], name="net")
    >>> [(r.path, r.of, round(r.r, 3)) for r in repeated_draws(model.weights)]
    [('net/b/kernel', 'net/a/kernel', 1.0)]
    """
    paths, prefixes = [], []
    for weight in weights:
        if math.prod(weight.shape) < MIN_SIZE:
            continue
        head = keras.ops.reshape(weight.value, (-1,))[:PREFIX]  # no host copy of the rest
        flat = np.asarray(keras.ops.convert_to_numpy(head), dtype=np.float64)
        if np.ptp(flat[:MIN_SIZE]) == 0.0:
            continue
        if not np.all(np.isfinite(flat)):
            continue
        paths.append(weight.path)
        prefixes.append(flat)
    if len(paths) < 2:
        return []
    # Screened on the first MIN_SIZE values of every pair at once (one product), then
    # each candidate on its whole common prefix.
    heads = np.stack([p[:MIN_SIZE] for p in prefixes])
    heads = heads - heads.mean(axis=1, keepdims=True)
    heads /= np.linalg.norm(heads, axis=1, keepdims=True)
    screen = np.abs(heads @ heads.T) > MIN_CORRELATION / 2
    found: list[Repeat] = []
    for i in range(1, len(paths)):
        for j in np.flatnonzero(screen[i, :i]):
            n = min(prefixes[i].size, prefixes[j].size)
            r = float(np.corrcoef(prefixes[i][:n], prefixes[j][:n])[0, 1])
            if abs(r) > max(z / math.sqrt(n), MIN_CORRELATION):
                found.append(Repeat(paths[i], paths[int(j)], r, n))
                break
    return found
