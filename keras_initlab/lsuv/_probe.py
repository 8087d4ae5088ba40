"""The pre-activation probe: one compiled forward pass that measures every LSUV layer's output."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_initlab import _keras
from keras_initlab.lsuv._targets import _Target


def _kept_axes(layer: Any, rank: int, bias_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The axes of a layer's output that its bias does not broadcast over (its channels)."""
    if bias_shape is None:
        return ()
    if getattr(layer, "data_format", None) == "channels_first":
        return (1,)
    first = rank - len(bias_shape)
    return tuple(first + i for i, d in enumerate(bias_shape) if d != 1)


def _layer_stats(outputs: list[Any], kept: tuple[int, ...]) -> tuple[Any, Any]:
    """Variance over all elements and per-channel means of a layer's outputs, float32."""
    flats = []
    for y in outputs:
        y = ops.cast(y, "float32")
        rank = len(y.shape)
        rest = [a for a in range(rank) if a not in kept]
        if kept and list(kept) != list(range(rank - len(kept), rank)):
            y = ops.transpose(y, rest + list(kept))
        channels = math.prod(int(y.shape[a]) for a in range(rank - len(kept), rank))
        flats.append(ops.reshape(y, (-1, channels)))
    flat = flats[0] if len(flats) == 1 else ops.concatenate(flats, axis=0)
    means = ops.mean(flat, axis=0)
    variance = ops.mean(ops.square(flat - ops.mean(means)))  # equal counts per channel
    return variance, means


# --- the one framework-specific step -------------------------------------------------------
def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled once as a graph (TensorFlow), run without autograd (PyTorch: no
    tensor of the pass requires a gradient), or run eagerly (JAX)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if backend == "torch":
        import torch

        return torch.no_grad()(fn)
    return fn


def _numpy(value: Any) -> np.ndarray:
    """A tensor or a Keras variable's value as a NumPy copy, through ``.numpy()`` where the
    backend's ``__array__`` warns under NumPy 2 (TensorFlow tensors, torch tensors, Keras
    variables); a torch tensor detached first (it may require grad), bfloat16 as float32."""
    if isinstance(value, keras.Variable):
        value = value.value
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return np.array(value.numpy())
    if backend == "torch":
        value = value.detach().cpu()
        return (value.float() if str(value.dtype) == "torch.bfloat16" else value).numpy().copy()
    return np.array(ops.convert_to_numpy(value))


# --------------------------------------------------------------------------------------------

OWNER = "lsuv"  # the patch owner (see `keras_initlab._keras.patch_call`)


class _Probe:
    """Wraps each target's ``call`` to record its pre-activation output; one compiled pass.

    While installed, a target layer's fused activation is taken out of its own ``call``
    and applied by the wrapper to the recorded output, so the model computes the same
    function and the pre-activation is observed.
    """

    def __init__(self, model: Any, targets: list[_Target], center: bool):
        self.model = model
        self.targets = targets
        self.center = center
        self.outputs: dict[int, list[Any]] = {}
        self.order: list[int] = []  # target indices in the order of their first call
        self._patched: contextlib.AbstractContextManager[None] | None = None
        self._forward = _compiled(self._run)

    def __enter__(self) -> _Probe:
        self._patched = self._patch_calls()
        self._patched.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        patched, self._patched = self._patched, None
        if patched is not None:
            patched.__exit__(*exc)

    @contextlib.contextmanager
    def _patch_calls(self) -> Iterator[None]:
        """Set each target's ``call`` to its recording wrapper; restore the old ones after."""
        patched: list[Any] = []
        try:
            for target in self.targets:
                _keras.patch_call(target.layer, self._recording(target), OWNER)
                patched.append(target.layer)
            yield
        finally:
            for layer in reversed(patched):
                _keras.restore_call(layer, OWNER)

    def _recording(self, target: _Target) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        layer = target.layer

        def make(call: Callable[..., Any]) -> Callable[..., Any]:
            def recording_call(*args: Any, **kwargs: Any) -> Any:
                activation = getattr(layer, "activation", None)
                with _keras.swapped_attribute(layer, "activation", None):
                    y = call(*args, **kwargs)
                if target.index not in self.outputs:
                    self.order.append(target.index)
                self.outputs.setdefault(target.index, []).append(y)
                return y if activation is None else activation(y)

            return recording_call

        return make

    def _run(self, x: Any) -> list[tuple[Any, Any]]:
        self.outputs.clear()
        self.order.clear()
        self.model(x, training=False)
        stats = []
        for i in self.order:
            target, ys = self.targets[i], self.outputs[i]
            bias_shape = tuple(target.bias.variable.shape) if target.bias is not None else None
            kept = _kept_axes(target.layer, len(ys[0].shape), bias_shape if self.center else None)
            stats.append(_layer_stats(ys, kept))
        self.outputs.clear()  # no tensor outlives the pass
        return stats

    def forward(self, x: Any) -> list[tuple[Any, Any]]:
        """One forward pass: (variance, channel means) tensors in the order of ``self.order``."""
        return self._forward(x)

    def host(self, stats: list[tuple[Any, Any]]) -> dict[int, tuple[float, np.ndarray]]:
        """``forward``'s result on the host: target index -> (variance, channel means)."""
        return {
            i: (float(_numpy(v)), np.asarray(_numpy(m), np.float64))
            for i, (v, m) in zip(self.order, stats, strict=True)
        }

    def __call__(self, x: Any) -> dict[int, tuple[float, np.ndarray]]:
        """One forward pass, its statistics on the host."""
        return self.host(self.forward(x))
