"""The measurement core on every backend: one pass, a gradient adapter, the statistics.

The model runs on the probe with every measured layer's output tapped
(`_routing.install_taps`, `_routing.recording`); the backend's adapter differentiates the
loss with respect to the tapped outputs and the kernels
(`keras_initlab.measurement._tf_gradients`: TensorFlow's tape;
`keras_initlab.measurement._jax_gradients`: `jax.grad` over a stateless pass, with zero
perturbations added at the outputs as arguments; `keras_initlab.measurement._torch_gradients`:
``torch.autograd.grad`` with respect to such perturbations). The statistics are
`_reduce.reduce_pass` (in ``dtype``, float32 by default, with the error
`_statistics.variance_bound` states; inside the traced or jitted pass), then
`_reduce.host_matrix`. Nothing the model holds changes: JAX and PyTorch run statelessly,
TensorFlow restores training-mode state after its pass. A TensorFlow model on several
replicas is measured by `keras_initlab.measurement._probe` instead (sums added across
replicas).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from keras_initlab.measurement._loss import require_loss
from keras_initlab.measurement._reduce import Pass, Reduced, host_matrix, reduce_pass

ADAPTERS = {"tensorflow": "_tf_gradients", "jax": "_jax_gradients", "torch": "_torch_gradients"}


def check_not_distributed(backend: str) -> None:
    """Raise where the model is trained across devices: the core measures one replica's
    view only (JAX: a `keras.distribution` is set; PyTorch: a process group is up)."""
    if backend == "jax":
        from keras import distribution

        active = distribution.distribution() is not None
        what = "a keras.distribution (data or model parallel)"
    else:
        import torch.distributed

        active = torch.distributed.is_available() and torch.distributed.is_initialized()
        what = "torch.distributed (a process group is initialized)"
    if active:
        raise NotImplementedError(
            f"keras_initlab measures a model trained with {what} on TensorFlow only "
            "(tf.distribute strategies); on JAX and PyTorch it measures single-device "
            f"training. Received: backend={backend!r} with {what}"
        )


class PerturbationRecorder:
    """While a pass runs, adds ``perturb(k, y)`` to the ``k``-th tapped output ``y`` (in the
    order the pass runs them) and keeps the result per measured layer (``calls[i]``: one per
    call; ``order[i]``: their ``k``). The pass runs layers in its own order, not the order
    of the measured layers (a block's output comes after its sub-layers'), so a gradient
    with respect to perturbation ``k`` belongs to the call whose ``order`` holds ``k``
    (`by_layer`). A probe replays the blocks that hold measured sums (`_inner`)."""

    replays = True

    def __init__(self, n: int, perturb: Callable[[int, Any], Any] | None) -> None:
        self.calls: list[list[Any]] = [[] for _ in range(n)]
        self.order: list[list[int]] = [[] for _ in range(n)]
        self.perturb = perturb
        self.taken = 0

    def tap(self, index: int, y: Any) -> Any:
        if self.perturb is not None:
            y = y + self.perturb(self.taken, y)
        self.order[index].append(self.taken)
        self.taken += 1
        self.calls[index].append(y)
        return y


def by_layer(per_tap: Sequence[Any], order: Sequence[Sequence[int]]) -> list[list[Any]]:
    """Values indexed by tap (perturbation ``k``) regrouped per measured layer and call."""
    return [[per_tap[k] for k in taps] for taps in order]


def in_tap_order(calls: Sequence[Sequence[Any]], order: Sequence[Sequence[int]]) -> list[Any]:
    """The inverse of `by_layer`: per-layer, per-call values listed by tap."""
    flat: list[Any] = [None] * sum(len(taps) for taps in order)
    for values, taps in zip(calls, order, strict=True):
        for value, k in zip(values, taps, strict=True):
            flat[k] = value
    return flat


class NeutralProbe:
    """``f(x, y, sample_weight, distinct=True) -> (slots, COLUMNS)`` float64 matrix, on any
    backend: a row per call of each layer (`_calls`); ``distinct_units`` NaN unless
    ``distinct`` (the pass then skips its rows: one trace serves both).

    The interface of `keras_initlab.measurement._probe.ProbeFunction`: `owner` (per row,
    its layer), `seen` and `gradient_of` (per row) after each call (``"logits"`` only on
    TensorFlow, whose tape sees Keras' from-logits shortcut; elsewhere every gradient is at
    the ``"output"``).

    Args:
        model, layers, kernels, activations: the model, its measured layers, their kernels
            and last activations.
        rtol, max_units: ``distinct_units``' tolerance and the most units compared.
        training: run the model in training mode.
        loss_fn: the loss to differentiate (None: the compiled one).
        dtype: ``"float32"`` or ``"float64"``, the statistics' dtype.
        eager_first: run the first pass without tracing it, where the backend traces
            (TensorFlow: a one-shot `measure`).
    """

    def __init__(
        self,
        model: Any,
        layers: Sequence[Any],
        kernels: Sequence[Any | None],
        activations: Sequence[str | None],
        *,
        rtol: float,
        max_units: int,
        training: bool,
        loss_fn: Any,
        dtype: str,
        eager_first: bool = False,
    ) -> None:
        backend = keras.backend.backend()
        if backend not in ADAPTERS:
            raise ValueError(f"No measurement adapter for the {backend!r} backend")
        if backend != "tensorflow":  # (several TensorFlow replicas: `_probe`, see _measure)
            check_not_distributed(backend)
        adapter = importlib.import_module(f"keras_initlab.measurement.{ADAPTERS[backend]}")
        self.model, self.layers, self.kernels = model, list(layers), list(kernels)
        self._pass = adapter.make_pass(
            model, self.layers, self.kernels, training, loss_fn, self._reduce, eager_first
        )
        self.activations = list(activations)
        self.rtol, self.max_units = rtol, max_units
        self.loss_fn, self.dtype = loss_fn, dtype
        self.owner: list[int] = list(range(len(self.layers)))
        self.seen: list[bool] = [False] * len(self.layers)
        self.gradient_of: list[str | None] = [None] * len(self.layers)

    def _reduce(self, tensors: Pass) -> Reduced:
        """The device statistics of one pass (inside JAX's jit and TensorFlow's trace)."""
        return reduce_pass(tensors, self.activations, self.dtype, self.max_units)

    def _gradient_of(self, slot: int) -> str:
        """Where a call's gradient is taken: ``"output"``, or ``"logits"`` where the
        adapter found Keras' from-logits shortcut (TensorFlow's tape)."""
        found = getattr(self._pass, "gradient_of", None)
        return found[slot] if found and found[slot] else "output"

    def __repr__(self) -> str:
        return f"NeutralProbe(backend={keras.backend.backend()!r}, layers={len(self.layers)})"

    def __call__(self, x: Any, y: Any, sample_weight: Any, distinct: bool = True) -> np.ndarray:
        if y is not None:
            require_loss(self.model, self.loss_fn)
        reduced = self._pass((x, y, sample_weight), distinct)
        weights = [getattr(layer, "weights", ()) for layer in self.layers]
        matrix, seen, self.owner = host_matrix(reduced, weights, self.rtol, self.dtype, distinct)
        self.seen = [bool(s) for s in seen]
        self.gradient_of = [
            self._gradient_of(k) if s and y is not None else None for k, s in enumerate(self.seen)
        ]
        return matrix
