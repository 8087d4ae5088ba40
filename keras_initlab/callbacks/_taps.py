"""On-device statistics for `VarianceMonitor`: the only module that uses `tf.GradientTape`.

Two ways of seeing a layer's output ``y`` and the back-propagated signal ``dLoss/dy``:

* **Probe pass** (`make_probe_function`): one `tf.function` runs the model on the probe in
  inference mode under a `tf.GradientTape`, with every monitored layer's output routed through
  an identity "tap" so the tape can differentiate the compiled loss with respect to it. The
  probe is split across the replicas of the model's `tf.distribute` strategy; each replica
  returns *sums* (count, sum, sum of squares, per-unit non-zero counts, the Gram matrix of the
  unit columns), the sums are added across replicas, and only then turned into statistics:
  per-replica variances are never averaged. Kernel gradients are all-reduced before their
  variance is taken. One small float64 matrix comes back to the host.
* **In-step taps** (`InStepTaps`): for ``every_n_batches=1`` the same identity taps are placed
  inside the training step's own forward and backward pass; a `tf.custom_gradient` reduces the
  upstream gradient to sums kept in non-trainable variables, read only when a record is due.

Statistics are accumulated in float64 from float32 casts of the layer tensors, so mixed
precision models are measured in full precision; the loss-scale factor of a
`LossScaleOptimizer` is divided out of every gradient statistic.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

# Column layout of the matrix returned by the probe function (one row per monitored layer).
COLUMNS = (
    "activation_mean",
    "activation_var",
    "gradient_var",
    "weight_var",
    "weight_grad_var",
    "dead_fraction",
    "distinct_units",
    "saturation_fraction",
)
# Columns of the in-step accumulators: count, sum, sum of squares, saturated count (forward)
# and gradient sum, gradient sum of squares (backward).
_FORWARD_SUMS = 4
_BACKWARD_SUMS = 2
# A tanh/sigmoid output within this distance of its bound counts as saturated.
SATURATION_MARGIN = 0.01

_RECORDERS: list[Any] = []  # the capture in progress while a probe or train step is traced


class _ProbeRecorder:
    """Collects the tapped output tensors of each monitored layer during one trace."""

    def __init__(self, n: int) -> None:
        self.outputs: list[list[tf.Tensor]] = [[] for _ in range(n)]

    def tap(self, index: int, y: tf.Tensor) -> tf.Tensor:
        y = tf.identity(y)
        self.outputs[index].append(y)
        return y


def _map_first_tensor(outputs: Any, fn: Callable[[tf.Tensor], tf.Tensor]) -> Any:
    """Apply ``fn`` to ``outputs`` or, for a tuple/list output, to its first element."""
    if isinstance(outputs, tf.Tensor):
        return fn(outputs)
    if isinstance(outputs, (list, tuple)) and outputs and isinstance(outputs[0], tf.Tensor):
        return type(outputs)([fn(outputs[0]), *outputs[1:]])
    return outputs


def install_taps(layers: Sequence[Any]) -> None:
    """Route the output of each layer's ``call`` through the active recorder, if any.

    The wrapper is a pass-through (no op added) whenever no recorder is active, so tracing a
    training, test or predict function with taps installed changes nothing.
    """
    for index, layer in enumerate(layers):
        current = vars(layer).get("call")
        if current is not None and not getattr(current, "_variance_monitor_tap", False):
            raise ValueError(
                f"Layer {layer.name!r} has an instance-level `call` that VarianceMonitor "
                "would replace. Monitor the layers around it instead (argument `layers`)."
            )
        if current is not None:  # left by a `fit` that raised before `on_train_end`
            object.__delattr__(layer, "call")
        original = layer.call

        def call(*args: Any, _i: int = index, _call: Any = original, **kwargs: Any) -> Any:
            outputs = _call(*args, **kwargs)
            if _RECORDERS:
                recorder = _RECORDERS[-1]
                outputs = _map_first_tensor(outputs, lambda y: recorder.tap(_i, y))
            return outputs

        call._variance_monitor_tap = True  # type: ignore[attr-defined]
        object.__setattr__(layer, "call", call)


def remove_taps(layers: Sequence[Any]) -> None:
    """Undo `install_taps`."""
    for layer in layers:
        if "call" in vars(layer):
            object.__delattr__(layer, "call")


def _loss_scale(optimizer: Any) -> tf.Tensor | None:
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return tf.cast(optimizer.scale_loss(1.0), tf.float32)
    return None


def _compiled_loss(model: Any, y: Any, y_pred: Any, sample_weight: Any) -> tf.Tensor:
    """The compiled loss without updating the per-output loss trackers.

    `CompileLoss` skips a tracker that is None, so during this (trace-time) call its tracker
    list is swapped for one None per loss. A tapped output is a plain tensor: a sigmoid or
    softmax output loses its `_keras_logits` shortcut, so dL/dy is the gradient through it.
    """
    compile_loss = model._compile_loss
    if compile_loss is None:
        raise ValueError(
            "VarianceMonitor needs a compiled model to compute gradients. "
            "Call `model.compile(loss=...)` first."
        )
    saved = compile_loss._metrics
    object.__setattr__(compile_loss, "_metrics", [None] * len(saved))
    try:
        return compile_loss(y, y_pred, sample_weight)
    finally:
        object.__setattr__(compile_loss, "_metrics", saved)


def _to64(t: Any) -> tf.Tensor:
    """``t`` in float64 (half-precision values pass through float32, which holds them exactly)."""
    t = tf.convert_to_tensor(t)
    return t if t.dtype == tf.float64 else tf.cast(tf.cast(t, tf.float32), tf.float64)


def _flat64(t: Any) -> tf.Tensor:
    return tf.reshape(_to64(t), (-1,))


def _as_rows(t: tf.Tensor) -> tf.Tensor:
    """A layer output as a float64 matrix (elements, units): units = last axis."""
    t = _to64(t)
    if t.shape.rank == 0:
        return tf.reshape(t, (1, 1))
    if t.shape.rank == 1:
        return tf.reshape(t, (-1, 1))
    return tf.reshape(t, (-1, tf.shape(t)[-1]))


def _saturated_count(a: tf.Tensor, activation: str | None) -> tf.Tensor:
    if activation == "tanh":
        hit = tf.abs(a) >= 1.0 - SATURATION_MARGIN
    elif activation in ("sigmoid", "hard_sigmoid"):
        hit = tf.logical_or(a <= SATURATION_MARGIN, a >= 1.0 - SATURATION_MARGIN)
    else:
        return tf.constant(0.0, tf.float64)
    return tf.reduce_sum(tf.cast(hit, tf.float64))


def distinct_from_gram(gram: tf.Tensor, rtol: float) -> tf.Tensor:
    """Number of distinguishable unit columns given their Gram matrix ``G = A^T A``.

    ``gram`` has shape ``(U, U)`` with a static ``U``; the result is a scalar. Units i and j
    are indistinguishable when ``||a_i - a_j|| <= rtol * max(||a_i||, ||a_j||)``, with
    ``||a_i - a_j||^2 = G_ii + G_jj - 2 G_ij``. Unit i counts when no earlier unit is
    indistinguishable from it, so identical columns count once and all-zero columns count once.
    NaN when the Gram matrix is not finite.
    """
    norms = tf.linalg.diag_part(gram)
    rows, cols = norms[:, None], norms[None, :]
    close = rows + cols - 2.0 * gram <= rtol**2 * tf.maximum(rows, cols)
    units = gram.shape[-1]
    earlier = np.tril(np.ones((units, units), bool), -1)  # j < i
    has_twin = tf.reduce_any(tf.logical_and(close, earlier), axis=1)
    count = tf.reduce_sum(tf.cast(tf.logical_not(has_twin), tf.float64))
    finite = tf.reduce_all(tf.math.is_finite(gram))
    return tf.where(finite, count, float("nan"))


def _variance_of(count: tf.Tensor, total: tf.Tensor, squares: tf.Tensor) -> tf.Tensor:
    mean = total / count
    return tf.maximum(squares / count - mean * mean, 0.0) + 0.0 * mean  # keep NaN


def _moments(t: tf.Tensor) -> tf.Tensor:
    """``[count, sum, sum of squares]`` of a tensor, in float64."""
    t = _flat64(t)
    return tf.stack([tf.cast(tf.size(t), tf.float64), tf.reduce_sum(t), tf.reduce_sum(t * t)])


def _moment_rows(tensors: Sequence[Any]) -> tf.Tensor:
    """``(len(tensors), 3)`` float64: the `_moments` of each tensor."""
    if not tensors:
        return tf.zeros((0, 3), tf.float64)
    return tf.stack([_moments(t) for t in tensors])


def _scatter(n: int, index: Sequence[int], values: tf.Tensor) -> tf.Tensor:
    """A length-``n`` float64 vector: ``values`` at ``index``, NaN elsewhere."""
    nan = tf.fill((n,), tf.constant(float("nan"), tf.float64))
    if not index:
        return nan
    return tf.tensor_scatter_nd_update(nan, np.asarray(index)[:, None], values)


def make_probe_function(
    model: Any,
    layers: Sequence[Any],
    kernels: Sequence[Any | None],
    activations: Sequence[str | None],
    *,
    rtol: float,
    max_units: int,
) -> Callable[..., tf.Tensor]:
    """A `tf.function` ``f(x, y, sample_weight) -> (len(layers), len(COLUMNS))`` float64.

    ``y`` may be None (no gradient statistics: those columns are NaN). Layers whose output was
    not seen in the forward pass get NaN rows. Each replica reduces its share of the probe to
    sums; one batched all-reduce adds them; the statistics are then formed for all layers at
    once (a fixed number of ops, so the trace and each call stay cheap for deep models).
    """
    strategy = model.distribute_strategy
    n_layers = len(layers)
    kernel_index = [i for i, k in enumerate(kernels) if k is not None]
    nan = tf.constant(float("nan"), tf.float64)
    gram_layers: list[int] = []  # the layers whose Gram matrix is taken

    def replica_fn(x: Any, y: Any, sample_weight: Any) -> Any:
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync
        rid = ctx.replica_id_in_sync_group
        n = tf.shape(tf.nest.flatten(x)[0])[0]
        start, stop = rid * n // replicas, (rid + 1) * n // replicas
        x, y, sample_weight = tf.nest.map_structure(
            lambda t: None if t is None else t[start:stop], (x, y, sample_weight)
        )
        recorder = _ProbeRecorder(n_layers)
        scale = None
        _RECORDERS.append(recorder)
        try:
            with tf.GradientTape() as tape:
                y_pred = model(x, training=False)
                loss = None
                if y is not None:
                    loss = tf.cast(_compiled_loss(model, y, y_pred, sample_weight), tf.float32)
                    # Keras divides a per-replica loss by the replica count; undo that and
                    # weight by this replica's share of the probe instead.
                    share = tf.cast(stop - start, tf.float32) / tf.cast(n, tf.float32)
                    loss = loss * float(replicas) * share
                    scale = _loss_scale(model.optimizer)
                    if scale is not None:
                        loss = loss * scale
        finally:
            _RECORDERS.pop()
        taps = [t for outs in recorder.outputs for t in outs]
        kvars = [kernels[i] for i in kernel_index]
        if loss is not None:
            grads = tape.gradient(
                loss, taps + kvars, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            unscale = 1.0 if scale is None else 1.0 / tf.cast(scale, tf.float64)
        else:
            grads = [None] * (len(taps) + len(kvars))
            unscale = 1.0
        tap_grads, kernel_grads = grads[: len(taps)], grads[len(taps) :]

        sums, nonzero = [], []
        grams: dict[int, tf.Tensor] = {}
        k = 0
        for i, outs in enumerate(recorder.outputs):
            if not outs:
                sums.append(tf.zeros((6,), tf.float64))
                nonzero.append(tf.zeros((0,), tf.float64))
                continue
            a = tf.concat([_as_rows(o) for o in outs], axis=0)
            gs = tap_grads[k : k + len(outs)]
            k += len(outs)
            if gs[0] is None:
                g_sum = g_sq = nan
            else:
                g = tf.concat([_flat64(t) for t in gs], 0) * unscale
                g_sum, g_sq = tf.reduce_sum(g), tf.reduce_sum(g * g)
            backward = tf.stack([g_sum, g_sq, _saturated_count(a, activations[i])])
            sums.append(tf.concat([_moments(a), backward], 0))
            nonzero.append(tf.reduce_sum(tf.cast(tf.not_equal(a, 0.0), tf.float64), axis=0))
            units = a.shape[-1]
            if units is not None and units <= max_units:
                grams[i] = tf.matmul(a, a, transpose_a=True)
        gram_layers[:] = grams  # the same in every replica
        if loss is None:
            kernel_moments = tf.fill((len(kvars), 3), nan)
        else:
            # Sum the kernel gradients first: their variance is the variance of the total.
            kernel_grads = ctx.all_reduce(
                tf.distribute.ReduceOp.SUM,
                [tf.cast(gk, tf.float64) * unscale for gk in kernel_grads],
            )
            kernel_moments = _moment_rows(kernel_grads)
        totals = ctx.all_reduce(
            tf.distribute.ReduceOp.SUM,
            {
                "sums": tf.stack(sums),
                "nonzero": nonzero,
                "grams": list(grams.values()),
            },
        )
        return totals, kernel_moments

    @tf.function(reduce_retracing=True, autograph=False)
    def probe(x: Any, y: Any, sample_weight: Any) -> tf.Tensor:
        per_replica = strategy.run(replica_fn, args=(x, y, sample_weight))
        # Every replica holds the same totals after the all-reduce: take the first.
        totals, kernel_grad_moments = tf.nest.map_structure(
            lambda v: strategy.experimental_local_results(v)[0], per_replica
        )
        count, total, squares, g_sum, g_sq, saturated = tf.unstack(totals["sums"], axis=1)
        act_var = _variance_of(count, total, squares)

        nonzero = totals["nonzero"]
        sizes = [nz.shape[0] if nz.shape[0] is not None else tf.size(nz) for nz in nonzero]
        segments = tf.repeat(tf.range(n_layers), tf.stack(sizes))
        dead_units = tf.math.unsorted_segment_sum(
            tf.cast(tf.equal(tf.concat(nonzero, 0), 0.0), tf.float64), segments, n_layers
        )
        units = tf.math.unsorted_segment_sum(tf.ones_like(segments, tf.float64), segments, n_layers)

        counts = [distinct_from_gram(g, rtol) for g in totals["grams"]]
        distinct = _scatter(n_layers, gram_layers, tf.stack(counts) if counts else nan)
        distinct = tf.where(tf.math.is_finite(act_var), distinct, nan)

        kernel_moments = _moment_rows([kernels[i] for i in kernel_index])
        weight_var, weight_grad_var = (
            _scatter(n_layers, kernel_index, _variance_of(*tf.unstack(m, axis=1)))
            for m in (kernel_moments, kernel_grad_moments)
        )
        columns = [
            total / count,
            act_var,
            _variance_of(count, g_sum, g_sq),
            weight_var,
            weight_grad_var,
            dead_units / units,
            distinct,
            saturated / count,
        ]
        return tf.stack(columns, axis=1)

    return probe


def _add(total: tf.Tensor | None, value: tf.Tensor) -> tf.Tensor:
    return value if total is None else total + value


class InStepTaps:
    """Statistics of the training step's own forward and backward pass (the fast path).

    `wrap` returns a training step that, while it is traced, gives each monitored layer's
    output a tap: the forward part takes count, sum, sum of squares and the saturated count of
    the output; a `tf.custom_gradient` identity takes the sum and sum of squares of the
    upstream gradient (divided by the loss scale). When the step has run its forward and
    backward pass, all of them are written in one in-place scatter into row
    ``step % capacity`` of one non-trainable ring buffer (``step`` = optimizer steps done
    before this one), so a step costs a few reductions per layer and one write. Under a
    distribution strategy the buffer is per replica (``ON_READ``) and the replicas are added
    when it is read. Nothing leaves the device until `read`, which returns a float64 array
    ``(capacity, layers, 4)`` with the columns ``activation_mean, activation_var,
    gradient_var, saturation_fraction``; the caller reads at most every ``capacity`` steps.
    """

    def __init__(self, model: Any, activations: Sequence[str | None], capacity: int) -> None:
        self._model = model
        self._activations = list(activations)
        self.capacity = capacity
        with model.distribute_strategy.scope():
            self.buffer = tf.Variable(
                tf.zeros((capacity, len(activations), _FORWARD_SUMS + _BACKWARD_SUMS), tf.float64),
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM,
                name="variance_monitor_in_step",
            )
        # The sums of the step being traced, per thread: MirroredStrategy traces each replica's
        # step in its own thread and may switch threads mid-step (at a merge call).
        self._traced = threading.local()
        self._read = tf.function(self._read_impl, autograph=False)

    def __repr__(self) -> str:
        return f"InStepTaps(layers={len(self._activations)}, capacity={self.capacity})"

    def wrap(self, train_step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``train_step`` with the taps active and one buffer write after it."""

        def step(data: Any) -> Any:
            iterations = tf.convert_to_tensor(self._model.optimizer.iterations)
            slot = tf.reshape(tf.cast(iterations % self.capacity, tf.int32), (1, 1))
            n = len(self._activations)
            self._traced.forward = [None] * n
            self._traced.backward = [None] * n
            _RECORDERS.append(self)
            try:
                logs = train_step(data)
            finally:
                _RECORDERS.remove(self)
            # Zero sums: a layer not called in this step gets NaN statistics, an output that
            # the loss does not depend on a zero gradient.
            forward = [
                tf.zeros((_FORWARD_SUMS,), tf.float64) if f is None else f
                for f in self._traced.forward
            ]
            backward = [
                tf.zeros((_BACKWARD_SUMS,), tf.float64) if b is None else b
                for b in self._traced.backward
            ]
            rows = tf.concat([tf.stack(forward), tf.stack(backward)], 1)
            # (A SyncOnRead variable has no in-place scatter; the buffer is small.)
            self.buffer.assign(tf.tensor_scatter_nd_update(self.buffer.value(), slot, rows[None]))
            return logs

        return step

    def tap(self, index: int, y: tf.Tensor) -> tf.Tensor:
        traced = self._traced
        a = _flat64(y)
        sums = tf.concat([_moments(a), _saturated_count(a, self._activations[index])[None]], 0)
        traced.forward[index] = _add(traced.forward[index], sums)  # a shared layer: all calls
        scale = _loss_scale(self._model.optimizer)

        @tf.custom_gradient
        def identity(t: tf.Tensor) -> Any:
            def grad(dy: tf.Tensor) -> tf.Tensor:
                g = _flat64(dy)
                if scale is not None:
                    g = g / tf.cast(scale, tf.float64)
                g_sums = tf.stack([tf.reduce_sum(g), tf.reduce_sum(g * g)])
                traced.backward[index] = _add(traced.backward[index], g_sums)
                return dy

            return tf.identity(t), grad

        return identity(y)

    def _read_impl(self) -> tf.Tensor:
        sums = tf.convert_to_tensor(self.buffer)
        count, total, squares, saturated, g_sum, g_sq = tf.unstack(sums, axis=2)
        return tf.stack(
            [
                total / count,
                _variance_of(count, total, squares),
                _variance_of(count, g_sum, g_sq),
                saturated / count,
            ],
            axis=2,
        )

    def read(self) -> tf.Tensor:
        return self._read()
