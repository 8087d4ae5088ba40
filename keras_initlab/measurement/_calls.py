"""A layer called more than once: a record per call, each named.

A layer object can be called several times in one pass: a tied token embedding as the
lookup (B, T, width) and, reversed, as the output projection (B, T, vocabulary); a Siamese
model's shared tower on each input; one activation layer reused in a block. Each call has
its own input, output and gradient, so each gets its own row (a *slot*): the first call
keeps the layer's path, the next ones are ``path@2``, ``path@3``, ... (the names
`keras_initlab.propagate` gives their predicted rows). The taps collect a pass's outputs
per layer and call (``calls[i]``: one per call, none when the layer did not run);
`owners` lays them out as slots, a layer that did not run keeping one empty slot (its
record is skipped as "did not run"), and `by_slot` repeats per-layer values (kernels,
activations) along. A layer's kernel is shared by its calls: each call's row reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def owners(calls: Sequence[Sequence[Any]]) -> list[int]:
    """Per slot, the index of its layer: one slot per call, in layer order, calls adjacent.

    Example:
    >>> owners([["a"], [], ["b1", "b2"]])
    [0, 1, 2, 2]
    """
    return [i for i, made in enumerate(calls) for _ in range(max(len(made), 1))]


def by_slot(values: Sequence[T], owner: Sequence[int]) -> list[T]:
    """Per-layer ``values`` repeated along the slots of ``owner``."""
    return [values[i] for i in owner]


def split_calls(calls: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Per slot (`owners`), its call's tensors as a one-element list (empty: the layer did
    not run)."""
    out: list[list[Any]] = []
    for made in calls:
        out.extend([[c] for c in made] or [[]])
    return out


def slot_names(paths: Sequence[str], owner: Sequence[int]) -> list[str]:
    """The name of each slot: its layer's path for the first call, ``path@k`` for call k.

    Example:
    >>> slot_names(["embed", "dense"], [0, 1, 0])
    ['embed', 'dense', 'embed@2']
    """
    seen: dict[int, int] = {}
    names = []
    for i in owner:
        seen[i] = seen.get(i, 0) + 1
        names.append(paths[i] if seen[i] == 1 else f"{paths[i]}@{seen[i]}")
    return names


def call_counts(owner: Sequence[int], layers: int) -> list[int]:
    """Per layer, its slots (its calls; 1 for a layer that did not run)."""
    counts = [0] * layers
    for i in owner:
        counts[i] += 1
    return counts
