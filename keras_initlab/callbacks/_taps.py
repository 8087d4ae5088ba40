"""On-device statistics for `VarianceMonitor`: the only module that uses `tf.GradientTape`.

Two ways of seeing a layer's output ``y`` and the back-propagated signal ``dLoss/dy``:

* **Probe pass** (`make_probe_function`): one `tf.function` runs the model on the probe in
  inference mode under a `tf.GradientTape`, with every monitored layer's output routed through
  an identity "tap" so the tape can differentiate the compiled loss with respect to it. The
  probe is split across the replicas of the model's `tf.distribute` strategy; each replica
  returns *sums* (count, sum, sum of squares, the Gram matrix of the unit columns, whose
  diagonal holds each unit's sum of squares: zero for a dead unit), the sums are added across
  replicas in one batched all-reduce, and only then turned into statistics: per-replica
  variances are never averaged. Kernel gradients are added across replicas before their
  variance is taken. One small float64 matrix comes back to the host. The statistics of all
  layers are formed together, so the graph has few ops per layer and traces quickly.
* **In-step taps** (`InStepTaps`): for ``every_n_batches=1`` the same identity taps are placed
  inside the training step's own forward and backward pass; a `tf.custom_gradient` reduces the
  upstream gradient to sums, written once per step into a non-trainable ring buffer that is
  read only when a record is due.

Statistics are accumulated in float64 from float32 casts of the layer tensors, so mixed
precision models are measured in full precision; the loss-scale factor of a
`LossScaleOptimizer` is divided out of every gradient statistic.
"""

from __future__ import annotations

import logging
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
    "non_finite_weights",
)
# Columns of the in-step accumulators: count, sum, sum of squares, saturated count (forward)
# and gradient sum, gradient sum of squares (backward).
_FORWARD_SUMS = 4
_BACKWARD_SUMS = 2
# A tanh/sigmoid output within this distance of its bound counts as saturated.
SATURATION_MARGIN = 0.01

_RECORDERS: list[Any] = []  # the capture in progress while a probe or train step is traced


class _OwnTracingFilter(logging.Filter):
    """Drop TensorFlow's "frequent retracing" warning about this module's functions.

    Each monitor traces its own probe (and ring-buffer reader) once per model. TensorFlow's
    detector keys on the Python code object, so fitting a few monitored models in one process
    (a hyper-parameter loop, `keras-initlab compare`) reads to it like a `tf.function` created
    in a loop, and it would tell the user to fix code that is not theirs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "retracing" not in message or not (
            "make_probe_function" in message or "InStepTaps" in message
        )


tf.get_logger().addFilter(_OwnTracingFilter())


# Output ops whose input Keras' cross-entropies read as logits (`_get_logits` in Keras'
# TensorFlow backend), and how to rebuild each on a tapped input.
_LOGITS_OPS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "Softmax": lambda z: tf.raw_ops.Softmax(logits=z),
    "Sigmoid": lambda z: tf.raw_ops.Sigmoid(x=z),
}


def _logits_op_type(y: Any) -> str | None:
    """``"Softmax"``/``"Sigmoid"`` when graph tensor ``y`` is that op's output, else None."""
    op = getattr(y, "op", None)
    if op is None or isinstance(y, tf.__internal__.EagerTensor):
        return None
    return op.type if op.type in _LOGITS_OPS and len(op.inputs) == 1 else None


def route_output(
    y: tf.Tensor,
    see: Callable[[tf.Tensor], None],
    grad_tap: Callable[[tf.Tensor, str], tf.Tensor],
) -> tf.Tensor:
    """A layer output routed through the taps, keeping Keras' from-logits shortcut.

    Keras' cross-entropies read the logits of a softmax or sigmoid output instead of the
    probabilities (the ``_keras_logits`` attribute, or the input of a graph ``Softmax`` /
    ``Sigmoid`` op), so training never differentiates through clipped probabilities. A tap
    must keep that: ``grad_tap(t, "output")`` wraps the output and ``grad_tap(z, "logits")``
    the logits, which the tapped output carries on in the same way; a bare ``Softmax`` /
    ``Sigmoid`` op is rebuilt on the tapped logits (same kernel, same values). ``see`` gets
    the output whose forward statistics are taken.
    """
    logits = getattr(y, "_keras_logits", None)
    op_type = None if logits is not None else _logits_op_type(y)
    if op_type is not None:
        out = _LOGITS_OPS[op_type](grad_tap(y.op.inputs[0], "logits"))
    else:
        out = grad_tap(y, "output")
        if logits is not None:
            out._keras_logits = grad_tap(logits, "logits")
    see(out)
    return out


class _ProbeRecorder:
    """Collects, per call of each monitored layer, its output and the tensors to differentiate.

    ``calls[i]`` holds one dict per call of layer ``i``: ``"out"`` (the output), ``"output"``
    and ``"logits"`` (identities the tape differentiates; ``"logits"`` only where the output
    carries Keras' from-logits shortcut).
    """

    def __init__(self, n: int) -> None:
        self.calls: list[list[dict[str, Any]]] = [[] for _ in range(n)]

    def tap(self, index: int, y: tf.Tensor) -> tf.Tensor:
        call: dict[str, Any] = {"output": None, "logits": None}
        self.calls[index].append(call)

        def grad_tap(t: tf.Tensor, slot: str) -> tf.Tensor:
            call[slot] = tf.identity(t)
            return call[slot]

        return route_output(y, lambda out: call.__setitem__("out", out), grad_tap)


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


def _training_loss(
    model: Any, x: Any, y: Any, y_pred: Any, sample_weight: Any, training: bool
) -> tf.Tensor:
    """The loss `train_step` differentiates, on the probe: ``model.compute_loss(...)``.

    That is the compiled loss (Keras' from-logits shortcut and reductions included) plus
    ``model.losses`` (weight and activity regularization, `add_loss`), or the model's own
    `compute_loss` override, with ``training`` as the probe runs. The per-output loss
    trackers of the compiled loss are not updated: `CompileLoss` skips a tracker that is
    None, so during this (trace-time) call its tracker list is swapped for one None per loss.
    (A `compute_loss` override that updates metrics of its own is handled by the caller,
    which restores the metric variables.)
    """
    compile_loss = model._compile_loss
    if compile_loss is None and not overrides_compute_loss(model):
        raise ValueError(
            "VarianceMonitor needs a compiled model to compute gradients. "
            "Call `model.compile(loss=...)` first."
        )
    saved = None if compile_loss is None else compile_loss._metrics
    if saved is not None:
        object.__setattr__(compile_loss, "_metrics", [None] * len(saved))
    try:
        return model._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
    finally:
        if saved is not None:
            object.__setattr__(compile_loss, "_metrics", saved)


def overrides_compute_loss(model: Any) -> bool:
    """Whether the model's class defines its own `compute_loss`."""
    return type(model).compute_loss is not keras.Model.compute_loss


def _to64(t: Any) -> tf.Tensor:
    """``t`` in float64 (half-precision values pass through float32, which holds them exactly)."""
    t = tf.convert_to_tensor(t)
    return t if t.dtype == tf.float64 else tf.cast(tf.cast(t, tf.float32), tf.float64)


def _flat64(t: Any) -> tf.Tensor:
    return tf.reshape(_to64(t), (-1,))


def _as_rows(t: tf.Tensor) -> tf.Tensor:
    """A layer output as a float64 matrix (elements, units): units = last axis."""
    t = _to64(t)
    rank = t.shape.rank
    if rank == 2:
        return t
    if rank == 0:
        return tf.reshape(t, (1, 1))
    if rank == 1:
        return tf.reshape(t, (-1, 1))
    units = t.shape[-1]
    return tf.reshape(t, (-1, units if units is not None else tf.shape(t)[-1]))


def _saturated_count(a: tf.Tensor, activation: str | None) -> tf.Tensor:
    if activation == "tanh":
        hit = tf.abs(a) >= 1.0 - SATURATION_MARGIN
    elif activation in ("sigmoid", "hard_sigmoid"):
        hit = tf.logical_or(a <= SATURATION_MARGIN, a >= 1.0 - SATURATION_MARGIN)
    else:
        return tf.constant(0.0, tf.float64)
    return tf.reduce_sum(tf.cast(hit, tf.float64))


def _has_twin(gram: tf.Tensor, norms: tf.Tensor, consts: dict[Any, tf.Tensor]) -> tf.Tensor:
    """Per unit, whether an earlier unit is indistinguishable from it: `distinct_units`.

    Units i and j of a layer are indistinguishable when
    ``||a_i - a_j|| <= rtol * max(||a_i||, ||a_j||)`` for their output columns on the probe,
    with ``||a_i - a_j||^2 = G_ii + G_jj - 2 G_ij`` from the Gram matrix ``G = A^T A``. The
    distinct units are those with no earlier twin, so identical columns count once and
    all-zero columns count once. ``norms`` is the diagonal of ``gram`` (static size U).
    ``consts`` holds shared constants (`_distinct_consts`) and, per U, the (U, U) mask
    ``j < i``: built by ops that Grappler folds (a boolean NumPy constant is slow to convert).
    """
    units = gram.shape[-1]
    if units not in consts:
        upper = tf.linalg.band_part(tf.fill((units, units), True), 0, -1)  # j >= i
        consts[units] = tf.logical_not(upper)
    rows = tf.reshape(norms, consts["column"])
    close = rows + norms - consts["two"] * gram <= consts["rtol2"] * tf.maximum(rows, norms)
    return tf.reduce_any(tf.logical_and(close, consts[units]), axis=consts["axis1"])


def _distinct_consts(rtol: float) -> dict[Any, tf.Tensor]:
    return {
        "two": tf.constant(2.0, tf.float64),
        "rtol2": tf.constant(rtol**2, tf.float64),
        "column": tf.constant([-1, 1]),
        "axis1": tf.constant(1),
        "k0": tf.constant(0),
        "zero": tf.constant(0.0, tf.float64),
    }


def _variance_of(count: Any, total: tf.Tensor, squares: tf.Tensor) -> tf.Tensor:
    mean = total / count
    return tf.maximum(squares / count - mean * mean, 0.0) + 0.0 * mean  # keep NaN


def _moments(t: tf.Tensor) -> tf.Tensor:
    """``[count, sum, sum of squares]`` of a tensor, in float64."""
    t = _flat64(t)
    return tf.stack([tf.cast(tf.size(t), tf.float64), tf.reduce_sum(t), tf.reduce_sum(t * t)])


class _Sums:
    """Sums of float64 tensors, sharing the reduction-axis constants (fewer ops to trace)."""

    def __init__(self) -> None:
        self._axes: dict[tuple[int, int], tf.Tensor] = {}

    def axes(self, start: int, stop: int) -> tf.Tensor:
        if (start, stop) not in self._axes:
            self._axes[start, stop] = tf.constant(np.arange(start, stop, dtype=np.int32))
        return self._axes[start, stop]

    def sum_and_squares(self, t: tf.Tensor, batch: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """``sum(t)``, ``sum(t * t)`` over all elements, or per row when ``batch``."""
        axes = self.axes(int(batch), t.shape.rank)
        return tf.reduce_sum(t, axes), tf.reduce_sum(t * t, axes)


def make_probe_function(
    model: Any,
    layers: Sequence[Any],
    kernels: Sequence[Any | None],
    activations: Sequence[str | None],
    *,
    rtol: float,
    max_units: int,
    training: bool = False,
) -> ProbeFunction:
    """A `ProbeFunction` ``f(x, y, sample_weight) -> (len(layers), len(COLUMNS))`` float64.

    The model runs on the probe with ``training`` (False: inference mode; True: batch
    statistics and dropout, with every non-trainable variable, moving statistics and seed
    states included, restored afterwards), and the loss `train_step` differentiates
    (`_training_loss`) is differentiated with respect to every monitored output.
    ``y`` may be None (no gradient statistics: those columns are NaN). Layers whose output was
    not seen in the forward pass get NaN rows (see `ProbeFunction.seen`). Each replica reduces
    its share of the probe to sums; one batched all-reduce adds them; the statistics are then
    formed for all layers at once (a fixed number of ops, so the trace and each call stay
    cheap for deep models).
    """
    strategy = model.distribute_strategy
    n_layers = len(layers)
    kernel_index = [i for i, k in enumerate(kernels) if k is not None]
    # Found while replica_fn is traced (the same in every replica): per layer, its number of
    # units (an int, a tensor when not static, 0 when not seen) and whether its Gram matrix is
    # taken; whether there are gradients and whether they carry a loss scale.
    layout: dict[str, Any] = {}

    def replica_fn(x: Any, y: Any, sample_weight: Any) -> Any:
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync
        if replicas > 1:
            rid = ctx.replica_id_in_sync_group
            n = tf.shape(tf.nest.flatten(x)[0])[0]
            start, stop = rid * n // replicas, (rid + 1) * n // replicas
            x, y, sample_weight = tf.nest.map_structure(
                lambda t: None if t is None else t[start:stop], (x, y, sample_weight)
            )
        recorder = _ProbeRecorder(n_layers)
        scale = None
        # State a probe must not change: in training mode, the moving statistics and seed
        # states (`non_trainable_variables`); the metrics of a `compute_loss` override.
        kept = list(model.non_trainable_variables) if training else []
        if y is not None and overrides_compute_loss(model):
            kept += list(model.metrics_variables)
        saved = [tf.identity(v.value) for v in kept]
        _RECORDERS.append(recorder)
        try:
            with tf.GradientTape() as tape:
                y_pred = model(x, training=training)
                loss = None
                if y is not None:
                    loss = _training_loss(model, x, y, y_pred, sample_weight, training)
                    loss = tf.cast(loss, tf.float32)
                    if replicas > 1:
                        # Keras divides a per-replica loss by the replica count; undo that and
                        # weight by this replica's share of the probe instead.
                        share = tf.cast(stop - start, tf.float32) / tf.cast(n, tf.float32)
                        loss = loss * float(replicas) * share
                    scale = _loss_scale(model.optimizer)
                    if scale is not None:
                        loss = loss * scale
        finally:
            _RECORDERS.pop()
        calls = recorder.calls
        sources = [c[slot] for cs in calls for c in cs for slot in ("output", "logits")]
        kvars = [kernel for kernel in kernels if kernel is not None]
        if loss is not None:
            grads = tape.gradient(
                loss,
                [t for t in sources if t is not None] + kvars,
                unconnected_gradients=tf.UnconnectedGradients.NONE,
            )
        else:
            grads = [None] * (sum(t is not None for t in sources) + len(kvars))
        with tf.control_dependencies([g for g in grads if g is not None]):
            for v, value in zip(kept, saved, strict=True):
                v.assign(value)
        grad_of = iter(grads)
        pairs = [None if t is None else next(grad_of) for t in sources]
        kernel_grads = [
            tf.zeros_like(v.value) if g is None else g for v, g in zip(kvars, grad_of, strict=False)
        ]
        # Per call, dL/d(output); where the loss reads the logits instead (the from-logits
        # shortcut: the output itself is then unconnected), dL/d(logits).
        tap_grads: list[list[tf.Tensor]] = []
        gradient_of: list[str | None] = []
        k = 0
        for cs in calls:
            gs, of = [], None
            for c in cs:
                g_out, g_logits = pairs[k], pairs[k + 1]
                k += 2
                if g_out is None and g_logits is not None:
                    gs.append(g_logits)
                    of = of or "logits"
                else:
                    gs.append(tf.zeros_like(c["out"]) if g_out is None else g_out)
                    of = of or "output"
            tap_grads.append(gs)
            gradient_of.append(of if loss is not None else None)

        sums = _Sums()
        # Per layer: count and saturated count; the sum and the sum of squares of the outputs
        # (with gradients: of the outputs and of their gradients, as a pair).
        zero = tf.constant(0.0, tf.float64)
        none_seen = zero if loss is None else tf.zeros((2,), tf.float64)
        count, saturated = [zero] * n_layers, [zero] * n_layers
        first: list[Any] = [none_seen] * n_layers
        second: list[Any] = [none_seen] * n_layers
        units: list[Any] = [0] * n_layers
        gram = [False] * n_layers
        # Per seen layer, in order: the Gram matrix of its units or their sums of squares.
        unit_sums: list[tf.Tensor] = []
        for i, cs in enumerate(calls):
            if not cs:
                continue
            outs, gs = [c["out"] for c in cs], tap_grads[i]
            a = _as_rows(outs[0])
            if len(outs) > 1:
                a = tf.concat([a] + [_as_rows(o) for o in outs[1:]], 0)
            if loss is None:
                first[i], second[i] = sums.sum_and_squares(a)
            else:
                if len(outs) == 1:  # outputs and gradients, cast together
                    pair = _to64(tf.stack([outs[0], gs[0]]))
                else:
                    flat = tf.reshape(a, (-1,))
                    pair = tf.stack([flat, tf.concat([_flat64(t) for t in gs], 0)])
                first[i], second[i] = sums.sum_and_squares(pair, batch=True)
            if activations[i] in ("tanh", "sigmoid", "hard_sigmoid"):
                saturated[i] = _saturated_count(a, activations[i])
            n_a = a.shape.num_elements()
            count[i] = float(n_a) if n_a is not None else tf.cast(tf.size(a), tf.float64)
            u = a.shape[-1]
            if u is not None and u <= max_units:
                gram[i] = True
                unit_sums.append(tf.matmul(a, a, transpose_a=True))
            else:
                unit_sums.append(tf.reduce_sum(a * a, sums.axes(0, 1)))
            units[i] = u if u is not None else tf.size(unit_sums[-1])
        layout.update(
            units=units,
            gram=gram,
            grads=loss is not None,
            scaled=scale is not None,
            gradient_of=gradient_of,
        )
        counts = [tf.constant(c, tf.float64) if isinstance(c, float) else c for c in count]
        rows = [tf.reshape(tf.stack(counts + saturated), (2, n_layers))]
        if loss is None:
            rows.append(tf.stack([tf.stack(first), tf.stack(second)]))
        else:
            rows += [tf.stack(first, axis=1), tf.stack(second, axis=1)]
        # Rows: count, saturated, sum, [gradient sum], squares, [gradient squares].
        layer_sums = tf.concat(rows, 0)
        unscale = None
        if scale is not None:
            unscale = 1.0 / tf.cast(scale, tf.float64)
            one = tf.constant(1.0, tf.float64)
            factors = tf.stack([one, one, one, unscale, one, unscale * unscale])
            layer_sums *= tf.reshape(factors, (6, 1))
        payload = {
            "layers": layer_sums,
            "units": unit_sums,
            # Sum the kernel gradients first: their variance is the variance of the total.
            "kernel_grads": [] if loss is None else [tf.cast(g, tf.float64) for g in kernel_grads],
        }
        if replicas > 1:  # (one replica: nothing to add)
            payload = ctx.all_reduce(tf.distribute.ReduceOp.SUM, payload)
        return payload if unscale is None else (payload, unscale)

    @tf.function(reduce_retracing=True, autograph=False)
    def probe(x: Any, y: Any, sample_weight: Any) -> tf.Tensor:
        per_replica = strategy.run(replica_fn, args=(x, y, sample_weight))
        # Every replica holds the same totals after the all-reduce: take the first.
        totals = tf.nest.map_structure(
            lambda v: strategy.experimental_local_results(v)[0], per_replica
        )
        totals, unscale = totals if layout["scaled"] else (totals, None)
        units, gram, with_grads = layout["units"], layout["gram"], layout["grads"]
        consts = _distinct_consts(rtol)
        zero, nan = consts["zero"], tf.constant(float("nan"), tf.float64)
        nans = tf.fill((n_layers,), nan)
        if with_grads:
            count, saturated, total, g_sum, squares, g_sq = tf.unstack(totals["layers"])
        else:
            count, saturated, total, squares = tf.unstack(totals["layers"])
            g_sum = g_sq = nans

        # A unit is dead when its sum of squares is zero (all its outputs are zero).
        squares_per_unit, twins = [], []
        it = iter(totals["units"])
        for i in range(n_layers):
            if gram[i]:
                g = next(it)
                norms = tf.raw_ops.MatrixDiagPartV3(input=g, k=consts["k0"], padding_value=zero)
                twins.append(_has_twin(g, norms, consts))
                squares_per_unit.append(norms)
            elif not isinstance(units[i], int) or units[i] > 0:
                squares_per_unit.append(next(it))
        if all(isinstance(u, int) for u in units):
            segments = np.repeat(np.arange(n_layers), units)
            unit_counts = tf.constant(np.asarray(units, np.float64))
        else:
            sizes = tf.stack([tf.constant(u) if isinstance(u, int) else u for u in units])
            segments = tf.repeat(tf.range(n_layers), sizes)
            unit_counts = tf.cast(sizes, tf.float64)
        if squares_per_unit:
            dead = tf.cast(tf.equal(tf.concat(squares_per_unit, 0), zero), tf.float64)
            dead_units = tf.math.unsorted_segment_sum(dead, segments, n_layers)
        else:  # no layer seen
            dead_units = tf.zeros((n_layers,), tf.float64)

        sums = _Sums()
        k_count = np.full(n_layers, np.nan)
        kernel_grads = totals["kernel_grads"]
        none = tf.zeros((2,), tf.float64) if kernel_grads else zero
        k_first, k_second = [none] * n_layers, [none] * n_layers
        for j, i in enumerate(kernel_index):
            w = _to64(kernels[i])
            k_count[i] = float(np.prod(w.shape))
            if kernel_grads:
                pair = tf.stack([w, kernel_grads[j]])
                k_first[i], k_second[i] = sums.sum_and_squares(pair, batch=True)
            else:
                k_first[i], k_second[i] = sums.sum_and_squares(w)
        if kernel_grads:
            w_sum, kg_sum = tf.unstack(tf.stack(k_first, axis=1))
            w_sq, kg_sq = tf.unstack(tf.stack(k_second, axis=1))
            if unscale is not None:
                kg_sum, kg_sq = kg_sum * unscale, kg_sq * (unscale * unscale)
        else:
            w_sum, w_sq, kg_sum, kg_sq = tf.stack(k_first), tf.stack(k_second), nans, nans
        # The variances of activations, their gradients, kernels and kernel gradients at once.
        # (The kernel counts go through a stack: Grappler turns a division by a constant into
        # a multiplication by its reciprocal, which rounds differently.)
        k_count_t = tf.constant(k_count)
        variances = _variance_of(
            tf.stack([count, count, k_count_t, k_count_t]),
            tf.stack([total, g_sum, w_sum, kg_sum]),
            tf.stack([squares, g_sq, w_sq, kg_sq]),
        )
        act_var, grad_var, weight_var, weight_grad_var = tf.unstack(variances)

        if twins:
            gram_units = [u for u, is_gram in zip(units, gram, strict=True) if is_gram]
            twin_count = tf.math.unsorted_segment_sum(
                tf.cast(tf.concat(twins, 0), tf.float64),
                np.repeat(np.flatnonzero(gram), gram_units),
                n_layers,
            )
            gram_counts = np.array([u if g else np.nan for u, g in zip(units, gram, strict=True)])
            # NaN where the activation statistics are: a Gram matrix is finite when the
            # activations are.
            distinct = tf.where(tf.math.is_finite(act_var), gram_counts - twin_count, nan)
        else:
            distinct = nans
        columns = [
            total / count,
            act_var,
            grad_var,
            weight_var,
            weight_grad_var,
            dead_units / unit_counts,
            distinct,
            saturated / count,
            _non_finite_counts(layers),
        ]
        return tf.stack(columns, axis=1)

    return ProbeFunction(probe, layout)


def _non_finite_counts(layers: Sequence[Any]) -> tf.Tensor:
    """Per layer, the number of NaN/Inf values among its own floating-point weights.

    Read from the variables themselves: a layer's output does not show every non-finite
    weight (a fused MatMul + ReLU kernel maps NaN to 0 on some CPUs).
    """
    counts = []
    for layer in layers:
        bad = [
            tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(w.value)), tf.float64))
            for w in layer.weights
            if w.value.dtype.is_floating
        ]
        counts.append(tf.add_n(bad) if bad else tf.constant(0.0, tf.float64))
    return tf.stack(counts)


class ProbeFunction:
    """The traced probe of `make_probe_function` and what its trace found.

    Calling it returns the ``(layers, len(COLUMNS))`` float64 statistics as a NumPy array.
    After the first call, `seen` tells per layer whether it ran on the probe and
    `gradient_of` whether its gradient is taken at its ``"output"`` or, where the loss reads
    its logits (Keras' from-logits shortcut), at its ``"logits"`` (None: no targets or not seen).
    """

    def __init__(self, fn: Any, layout: dict[str, Any]) -> None:
        self._fn = fn
        self._layout = layout

    def __repr__(self) -> str:
        return f"ProbeFunction(traced={bool(self._layout)})"

    def __call__(self, x: Any, y: Any, sample_weight: Any) -> np.ndarray:
        return np.asarray(self._fn(x, y, sample_weight))

    @property
    def seen(self) -> list[bool]:
        return [not (isinstance(u, int) and u == 0) for u in self._layout["units"]]

    @property
    def gradient_of(self) -> list[str | None]:
        return list(self._layout["gradient_of"])


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
        # Found when the wrapped step is traced (see `ProbeFunction`).
        self.seen: list[bool] = []
        self.gradient_of: list[str | None] = []

    def __repr__(self) -> str:
        return f"InStepTaps(layers={len(self._activations)}, capacity={self.capacity})"

    def wrap(self, train_step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``train_step`` with the taps active and one buffer write after it."""

        def step(data: Any) -> Any:
            iterations = tf.convert_to_tensor(self._model.optimizer.iterations)
            slot = tf.reshape(tf.cast(iterations % self.capacity, tf.int32), (1, 1))
            n = len(self._activations)
            traced = self._traced
            traced.forward = [None] * n
            traced.backward = {"output": [None] * n, "logits": [None] * n}
            _RECORDERS.append(self)
            try:
                logs = train_step(data)
            finally:
                _RECORDERS.remove(self)
            # Per layer, the gradient at its output or, where the loss reads its logits
            # instead (from-logits shortcut), at its logits. Zero sums: a layer not called in
            # this step gets NaN statistics, an output the loss does not depend on a zero
            # gradient.
            self.seen = [f is not None for f in traced.forward]
            self.gradient_of = [
                None if f is None else "output" if o is not None or g is None else "logits"
                for f, o, g in zip(
                    traced.forward,
                    traced.backward["output"],
                    traced.backward["logits"],
                    strict=True,
                )
            ]
            forward = [
                tf.zeros((_FORWARD_SUMS,), tf.float64) if f is None else f for f in traced.forward
            ]
            backward = [
                o if o is not None else g if g is not None else tf.zeros((2,), tf.float64)
                for o, g in zip(traced.backward["output"], traced.backward["logits"], strict=True)
            ]
            rows = tf.concat([tf.stack(forward), tf.stack(backward)], 1)
            # (A SyncOnRead variable has no in-place scatter; the buffer is small.)
            self.buffer.assign(tf.tensor_scatter_nd_update(self.buffer.value(), slot, rows[None]))
            return logs

        return step

    def tap(self, index: int, y: tf.Tensor) -> tf.Tensor:
        traced = self._traced
        scale = _loss_scale(self._model.optimizer)

        def see(out: tf.Tensor) -> None:
            a = _flat64(out)
            sums = tf.concat([_moments(a), _saturated_count(a, self._activations[index])[None]], 0)
            traced.forward[index] = _add(traced.forward[index], sums)  # shared layer: all calls

        def grad_tap(t: tf.Tensor, slot: str) -> tf.Tensor:
            @tf.custom_gradient
            def identity(u: tf.Tensor) -> Any:
                def grad(dy: tf.Tensor) -> tf.Tensor:
                    g = _flat64(dy)
                    if scale is not None:
                        g = g / tf.cast(scale, tf.float64)
                    g_sums = tf.stack([tf.reduce_sum(g), tf.reduce_sum(g * g)])
                    sink = traced.backward[slot]
                    sink[index] = _add(sink[index], g_sums)
                    return dy

                return tf.identity(u), grad

            return identity(t)

        return route_output(y, see, grad_tap)

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
