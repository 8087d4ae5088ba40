"""What a layer rule receives (``Call``) and returns (``Step``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keras_initlab.propagate._signal import Signal

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class Call:
    """One call of a layer: its input moments and the static shapes around it.

    ``args``/``kwargs`` are the call's arguments with each graph tensor replaced by its index
    in ``inputs`` (an ``int`` wrapped in ``Arg``), so a rule can tell a query from a value.
    """

    layer: Any
    inputs: list[Signal]
    in_shapes: list[Shape]
    out_shapes: list[Shape]
    mode: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    batch: int | None = None  # samples per batch (training-mode batch statistics); None: many
    # For each input, the first input holding the same value (`_identity.copies`): ``(0,
    # 0)`` for ``add([pool(p), pool(p)])``; empty where not known (each its own).
    same: tuple[int, ...] = ()

    @property
    def x(self) -> Signal:
        return self.inputs[0]

    @property
    def training(self) -> bool:
        return self.mode == "training"

    def known(self, argument: Any, rank: int) -> np.ndarray | None:
        """The value of one sample of ``argument`` (a mask, a condition), ``rank`` axes:
        an input whose value the walk computed (`Signal.value`, batch axis first: its first
        sample), or a constant (its first sample where it has a batch axis, more than
        ``rank`` axes); None for an input whose value the walk does not know."""
        value = self.inputs[argument.index].value if isinstance(argument, Arg) else argument
        if value is None:
            return None
        value = np.asarray(value)
        return value[0] if isinstance(argument, Arg) or value.ndim > rank else value


@dataclass(frozen=True)
class Arg:
    """A call argument that is the graph tensor ``inputs[index]``."""

    index: int


@dataclass(frozen=True)
class Part:
    """A sublayer with its own row (MultiHeadAttention's query, ..., a wrapped RNN)."""

    name: str
    layer: Any
    signal: Signal
    gradient: Callable[[list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Step:
    """A rule's answer: output moments and the backward map of gradient variances.

    ``backward(output gradient variances) -> input gradient variances``, per element.
    ``assumed`` is empty for a prediction, else the reason the output was assumed (the
    layer is not covered); ``note`` states an approximation the prediction makes;
    ``gradient_assumed``, where not empty, why the gradient the rule passes back to its
    inputs is not predicted although its output is (a softmax saturated beyond its dtype).
    """

    outputs: list[Signal]
    backward: Callable[[list[np.ndarray]], list[np.ndarray]]
    assumed: str = ""
    note: str = ""
    gradient_assumed: str = ""
    parts: list[Part] = field(default_factory=list)
    # A kernel layer's output before its own activation (None: not a kernel layer).
    pre: Signal | None = None
    # A sum's signed weight per input (``Add``: 1s; ``Subtract``: 1, -1): its inputs receive
    # the same gradient, so where two hold the same value the walk adds what their paths
    # pass back as amplitudes, not as variances (empty: not a sum).
    weights: tuple[float, ...] = ()
    # Set by the walk before the backward pass: "coherent" is True when the gradient that
    # reaches the output is the same at every position (a global average pool downstream,
    # through per-position layers only).
    context: dict[str, Any] = field(default_factory=dict)
    # Whether ``backward`` takes gradients per path of a rectified stream (`_paths`: arrays
    # with a leading axis of paths); the walk gives every other rule their mean, weighted
    # by its output's derivatives where that output has paths (`_paths.for_rule`).
    paths: bool = False


def passthrough(x: Signal, factor: float = 1.0) -> Step:
    """The output is ``x``; the gradient is multiplied by ``factor``."""
    return Step([x], lambda g: [g[0] * factor])
