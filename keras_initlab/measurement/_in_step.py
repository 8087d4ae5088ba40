"""In-step taps: the statistics of the training step's own forward and backward pass."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from keras_initlab import _keras
from keras_initlab.measurement._calls import by_slot, call_counts
from keras_initlab.measurement._probe import loss_scale
from keras_initlab.measurement._routing import recording, route_output
from keras_initlab.measurement._statistics import flat_moments
from keras_initlab.measurement._sums import (
    SATURATING,
    saturated_count,
    static_or_stacked,
    variance_of,
)

# The columns `InStepTaps.read` returns, in order (the monitor reads them by these names).
IN_STEP_COLUMNS = ("activation_mean", "activation_var", "gradient_var", "saturation_fraction")
# Sums per layer and step, over its calls and (when read) its replicas: count, sum,
# ``q = m2 + sum^2 / count`` (`_statistics.flat_moments`), saturated count (forward);
# the gradient's sum and q (backward).
_FORWARD_SUMS = 4
_BACKWARD_SUMS = 2


def _slot_sums(calls: Sequence[list[tuple[Any, ...]] | None], dtype: str) -> tf.Tensor:
    """(slots, 4) float64: per slot (layer call row), the sums over the calls taken into it
    of ``count``, ``total``, ``q = m2 + total^2 / count`` and the saturated count (zeros for
    a slot with none). ``calls[slot]`` lists ``(count, total, m2, saturated or None)`` per
    call (`_statistics.flat_moments` in ``dtype``): the float64 part is a few ops per step
    for all layers together, not per layer."""
    entries = [(slot, call) for slot, taken in enumerate(calls) for call in taken or ()]
    if not entries:
        return tf.zeros((len(calls), 4), tf.float64)
    count = static_or_stacked([call[0] for _, call in entries], tf.float64)
    total, m2 = (tf.cast(tf.stack([call[k] for _, call in entries]), tf.float64) for k in (1, 2))
    zero = tf.zeros((), tf.float64)
    saturated = tf.stack([zero if call[3] is None else call[3] for _, call in entries])
    per_call = tf.stack([count, total, m2 + total * total / count, saturated], axis=1)
    slots = tf.constant([slot for slot, _ in entries], tf.int32)
    return tf.math.unsorted_segment_sum(per_call, slots, len(calls))


class InStepTaps:
    """Statistics of the training step's own forward and backward pass (the fast path).

    `wrap` returns a training step that, while it is traced, gives each monitored layer's
    output a tap: the forward part takes the output's count, sum and sum of squares about
    its mean (`_statistics.flat_moments`: two-pass and blocked in ``dtype``, float32 by
    default, within `_statistics.variance_bound`) and its saturated count; a
    `tf.custom_gradient` identity takes the same of the upstream gradient (the loss scale is
    divided out of the sums). After the step, all of them are combined in float64 at once
    (`_slot_sums`: ``q = m2 + sum^2 / count``, which adds over a layer's calls and over
    replicas). Each tap takes a handful of ops: an op in the training step costs about 10
    microseconds at every step.
    When the step has run its forward and backward pass, all of them are written in one
    in-place scatter into row ``step % capacity`` of one non-trainable ring buffer
    (``step`` = the wrapped steps run before this one, `steps`: not the optimizer's count,
    which a `LossScaleOptimizer` does not advance on a step it skips for an overflow), so a
    step costs a few reductions per layer and one write. Under a distribution strategy the
    buffer is per replica (``ON_READ``) and the replicas are added when it is read. Nothing
    leaves the device until `read`, which returns a float64 array ``(capacity, rows, 4)``
    (a row per call of each layer, `owner`) with the columns ``activation_mean,
    activation_var, gradient_var, saturation_fraction`` (`IN_STEP_COLUMNS`); the caller
    reads at most every ``capacity`` steps.
    """

    def __init__(
        self,
        model: Any,
        activations: Sequence[str | None],
        capacity: int,
        owner: Sequence[int] | None = None,
        dtype: str = "float32",
    ) -> None:
        self._model = model
        self.dtype = dtype
        # A row per call of each layer (`_calls`), as the probe found them (``owner``: per
        # row, its layer; None: one call each); a call beyond those adds to the layer's last.
        self.owner = list(range(len(activations))) if owner is None else list(owner)
        self._activations = by_slot(activations, self.owner)
        self._first = {i: self.owner.index(i) for i in set(self.owner)}
        self._calls = call_counts(self.owner, len(activations))
        self.capacity = capacity
        with model.distribute_strategy.scope():
            self.buffer = tf.Variable(
                tf.zeros((capacity, len(self.owner), _FORWARD_SUMS + _BACKWARD_SUMS), tf.float64),
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM,
                name="variance_monitor_in_step",
            )
            self.steps = tf.Variable(
                tf.zeros((), tf.int64),
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                name="variance_monitor_in_step_count",
            )
        # The sums of the step being traced, per thread: MirroredStrategy traces each replica's
        # step in its own thread and may switch threads mid-step (at a merge call).
        self._traced = threading.local()
        self._read = tf.function(self._read_impl, autograph=False)
        # Found when the wrapped step is traced (see `ProbeFunction`).
        self.seen: list[bool] = []
        self.gradient_of: list[str | None] = []

    def __repr__(self) -> str:
        return f"InStepTaps(rows={len(self._activations)}, capacity={self.capacity})"

    def wrap(self, train_step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``train_step`` with the taps active and one buffer write after it."""

        def step(data: Any) -> Any:
            done = tf.convert_to_tensor(self.steps)
            slot = tf.reshape(tf.cast(done % self.capacity, tf.int32), (1, 1))
            n = len(self._activations)
            traced = self._traced
            traced.forward = [None] * n
            traced.watched = [False] * n
            traced.taken = [0] * len(self._calls)
            # Read before the step's update (as the backward taps see the loss scaled).
            scale = loss_scale(self._model.optimizer)
            traced.backward = {"output": [None] * n, "logits": [None] * n}  # (lists of calls)
            with recording(self):
                logs = train_step(data)
            # Per layer, the gradient at its output or, where the loss reads its logits
            # instead (from-logits shortcut), at its logits; None where the step's tape does
            # not reach the output (it depends on no trainable variable: an input Rescaling
            # or Normalization), so the step has no gradient there. Zero sums: a layer not
            # called in this step gets NaN statistics, an output the loss does not depend on
            # a zero gradient.
            self.seen = [f is not None for f in traced.forward]
            self.gradient_of = [
                None if f is None or not w else "output" if o is not None or g is None else "logits"
                for f, w, o, g in zip(
                    traced.forward,
                    traced.watched,
                    traced.backward["output"],
                    traced.backward["logits"],
                    strict=True,
                )
            ]
            backward = [
                o if o is not None else g
                for o, g in zip(traced.backward["output"], traced.backward["logits"], strict=True)
            ]
            rows = tf.concat(
                [
                    _slot_sums(traced.forward, self.dtype),
                    _slot_sums(backward, self.dtype)[:, 1:3],  # (its sum and q)
                ],
                axis=1,
            )
            if scale is not None:
                unscale = 1.0 / tf.cast(scale, tf.float64)
                one = tf.constant(1.0, tf.float64)
                rows *= tf.stack([one, one, one, one, unscale, unscale * unscale])
            # (A SyncOnRead variable has no in-place scatter; the buffer is small.)
            self.buffer.assign(tf.tensor_scatter_nd_update(self.buffer.value(), slot, rows[None]))
            self.steps.assign(done + 1)
            return logs

        return step

    def tap(self, layer: int, y: tf.Tensor) -> tf.Tensor:
        traced = self._traced
        call = min(traced.taken[layer], self._calls[layer] - 1)
        traced.taken[layer] += 1
        index = self._first[layer] + call

        def see(out: tf.Tensor) -> None:
            traced.watched[index] = traced.watched[index] or _keras.is_watched(out)
            activation = self._activations[index]
            saturated = None
            if activation in SATURATING:
                saturated = saturated_count(tf.cast(out, tf.float32), activation)
            call = (*flat_moments(out, self.dtype), saturated)
            traced.forward[index] = [*(traced.forward[index] or ()), call]

        def grad_tap(t: tf.Tensor, slot: str) -> tf.Tensor:
            @tf.custom_gradient
            def identity(u: tf.Tensor) -> Any:
                def grad(dy: tf.Tensor) -> tf.Tensor:
                    sink = traced.backward[slot]
                    sink[index] = [*(sink[index] or ()), (*flat_moments(dy, self.dtype), None)]
                    return dy

                return tf.identity(u), grad

            return identity(t)

        return route_output(y, see, grad_tap)

    def _read_impl(self) -> tf.Tensor:
        sums = tf.convert_to_tensor(self.buffer)
        count, total, q, saturated, g_sum, g_q = tf.unstack(sums, axis=2)
        return tf.stack(
            [
                total / count,
                variance_of(count, total, q),
                variance_of(count, g_sum, g_q),
                saturated / count,
            ],
            axis=2,
        )

    def read(self) -> tf.Tensor:
        return self._read()
