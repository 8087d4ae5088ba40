"""Routing layer outputs through identity "taps" while a probe or a training step is traced.

`install_taps` wraps the ``call`` of each measured layer; while a recorder is active (the
probe being traced, or the in-step taps inside a training step) the layer's output goes
through ``recorder.tap(index, y)``, which returns the same values through identities the
recorder can see and differentiate. With no recorder active the wrapper adds nothing.
`route_output` keeps Keras' from-logits shortcut through a tap (TensorFlow: the other
backends have no such shortcut). Nothing here imports TensorFlow until a TensorFlow tap runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import keras

from keras_initlab import _keras


class Recorder(Protocol):
    """What a tap hands a layer's output to."""

    def tap(self, index: int, y: Any) -> Any: ...


OWNER = "measurement"  # the patch owner (see `keras_initlab._keras.patch_call`)
RECORDERS: list[Recorder] = []  # the capture in progress while a probe or train step is traced


# Output ops whose input Keras' cross-entropies read as logits (`_get_logits` in Keras'
# TensorFlow backend), rebuilt on a tapped input by `_rebuild`.
_LOGITS_OPS = ("Softmax", "Sigmoid")


def _rebuild(op_type: str, z: Any) -> Any:
    import tensorflow as tf

    if op_type == "Softmax":
        return tf.raw_ops.Softmax(logits=z)
    return tf.raw_ops.Sigmoid(x=z)


def _logits_op_type(y: Any) -> str | None:
    """``"Softmax"``/``"Sigmoid"`` when graph tensor ``y`` is that op's output, else None."""
    if not _keras.is_graph_tensor(y):
        return None
    op = y.op
    return op.type if op.type in _LOGITS_OPS and len(op.inputs) == 1 else None


@contextlib.contextmanager
def recording(recorder: Recorder) -> Iterator[None]:
    """The taps hand their outputs to ``recorder`` within the ``with`` block."""
    RECORDERS.append(recorder)
    try:
        yield
    finally:
        RECORDERS.remove(recorder)


def route_output(
    y: Any,
    see: Callable[[Any], None],
    grad_tap: Callable[[Any, str], Any],
) -> Any:
    """A layer output routed through the taps, keeping Keras' from-logits shortcut.

    Keras' cross-entropies read the logits of a softmax or sigmoid output instead of the
    probabilities (the ``_keras_logits`` attribute, or the input of a graph ``Softmax`` /
    ``Sigmoid`` op), so training never differentiates through clipped probabilities. A tap
    must keep that: ``grad_tap(t, "output")`` wraps the output and ``grad_tap(z, "logits")``
    the logits, which the tapped output carries on in the same way; a bare ``Softmax`` /
    ``Sigmoid`` op is rebuilt on the tapped logits (same kernel, same values). ``see`` gets
    the output whose forward statistics are taken.
    """
    logits = _keras.logits_of(y)
    op_type = None if logits is not None else _logits_op_type(y)
    if op_type is not None:
        out = _rebuild(op_type, grad_tap(y.op.inputs[0], "logits"))
    else:
        out = grad_tap(y, "output")
        if logits is not None:
            _keras.set_logits(out, grad_tap(logits, "logits"))
    see(out)
    return out


def _map_first_tensor(outputs: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to ``outputs`` or, for a tuple/list output, to its first element."""
    if keras.ops.is_tensor(outputs):
        return fn(outputs)
    if isinstance(outputs, (list, tuple)) and outputs and keras.ops.is_tensor(outputs[0]):
        return type(outputs)([fn(outputs[0]), *outputs[1:]])
    return outputs


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No recorder sees the taps within the ``with`` block (a block traced on
    KerasTensors while a probe records: its sub-layers' calls are not the pass's)."""
    saved = RECORDERS[:]
    RECORDERS.clear()
    try:
        yield
    finally:
        RECORDERS[:] = saved


def _targets(layers: Sequence[Any]) -> list[tuple[Any, int | None, dict[str, int]]]:
    """``(layer, index, sums)`` of each layer whose ``call`` is wrapped: the measured layers
    (``index``: their place in ``layers``) and the blocks holding an `_inner.InnerSum`
    (``sums``: its operation names -> places)."""
    from keras_initlab.measurement._inner import InnerSum

    sums: dict[int, dict[str, int]] = {}
    owners: dict[int, Any] = {}
    for index, layer in enumerate(layers):
        if isinstance(layer, InnerSum):
            sums.setdefault(id(layer.owner), {})[layer.name] = index
            owners[id(layer.owner)] = layer.owner
    own = [(layer, i) for i, layer in enumerate(layers) if not isinstance(layer, InnerSum)]
    measured = {id(layer) for layer, _ in own}
    targets: list[tuple[Any, int | None, dict[str, int]]]
    targets = [(layer, i, sums.get(id(layer), {})) for layer, i in own]
    targets += [(owner, None, sums[k]) for k, owner in owners.items() if k not in measured]
    return targets


def install_taps(layers: Sequence[Any]) -> None:
    """Route the output of each layer's ``call`` through the active recorder, if any.

    ``layers`` may hold ``keras.ops`` operations of a Functional graph (tapped as layers)
    and `_inner.InnerSum` entries: while a recorder that ``replays`` (a probe's) is active,
    the block holding them runs its replayed trace (`_inner.replayed`), which hands each sum
    to the recorder. The wrapper is a pass-through (no op added) whenever no recorder is
    active, so tracing a training, test or predict function with taps installed changes
    nothing. `remove_taps` puts back the ``call`` each layer had.
    """
    from keras_initlab.measurement._inner import replayed

    for layer, index, sums in _targets(layers):

        def make(
            original: Callable[..., Any],
            _i: int | None = index,
            _sums: dict[str, int] = sums,
            _layer: Any = layer,
        ) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                if not RECORDERS:
                    return original(*args, **kwargs)
                recorder = RECORDERS[-1]
                if _sums and getattr(recorder, "replays", False):
                    outputs = replayed(_layer, original, args, kwargs, _sums, recorder.tap, paused)
                else:
                    outputs = original(*args, **kwargs)
                if _i is not None:
                    outputs = _map_first_tensor(outputs, lambda y: recorder.tap(_i, y))
                return outputs

            return call

        _keras.patch_call(layer, make, OWNER)


def taps_installed(layers: Sequence[Any]) -> bool:
    """Whether `install_taps` is in effect on every one of ``layers``."""
    return all(_keras.is_patched(layer, OWNER) for layer, _, _ in _targets(layers))


def remove_taps(layers: Sequence[Any]) -> None:
    """Undo `install_taps`."""
    for layer, _, _ in _targets(layers):
        _keras.restore_call(layer, OWNER)
