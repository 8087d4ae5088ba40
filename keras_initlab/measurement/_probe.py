"""The probe pass: per-layer statistics of the model on a fixed batch (`make_probe_function`).

One `tf.function` runs the model on the probe under a `tf.GradientTape`, with every measured
layer's output routed through an identity tap (`_routing`) so the tape can differentiate
the loss with respect to it. The probe is split across the replicas of the model's
`tf.distribute` strategy; each replica returns *sums* (count; per unit its sum and its sum
of squares, zero for a dead unit; the sums of each output's gradient; what `distinct_units`
compares), the sums are added across replicas in one batched all-reduce, and only then
turned into statistics: per-replica variances are never averaged. Kernel gradients are
added across replicas before their variance is taken. One small float64 matrix comes back
to the host. The statistics of all layers are formed together, so the graph has few ops
per layer and traces quickly. The loss-scale factor of a `LossScaleOptimizer` is divided
out of every gradient statistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_initlab import _keras
from keras_initlab.measurement._calls import by_slot, owners, split_calls
from keras_initlab.measurement._distinct import (
    SCREEN_DIM,
    Twins,
    distinct_consts,
    project,
    screen_lhs,
    sketch_load,
    sketch_rows,
    uses_sketch,
)
from keras_initlab.measurement._loss import overrides_compute_loss, require_loss
from keras_initlab.measurement._routing import recording, route_output
from keras_initlab.measurement._statistics import COLUMNS
from keras_initlab.measurement._sums import (
    SATURATING,
    Consts,
    as_rows,
    row_totals,
    saturated_count,
    static_or_stacked,
    to64,
    unit_sums,
    variance_of,
)

# Grappler is left off while the probe function is instantiated: on its large graph
# (MobileNetV2: 5,100 ops) its passes cost more start-up than they save at a record. Measured
# on MobileNetV2 (CPU): instantiation 1.1-1.5 s without it, 2.7-3.1 s with only the remapper
# and the memory optimizer on, records alike (0.32-0.42 s against 0.35-0.44 s). The values
# are computed as written (no division by a constant is turned into a product by its
# reciprocal, which rounds differently; no fused kernel; nothing here relies on either).
NO_GRAPPLER = {"disable_meta_optimizer": True}


class _ProbeRecorder:
    """Collects, per call of each monitored layer, its output and the tensors to differentiate.

    ``calls[i]`` holds one dict per call of layer ``i``: ``"out"`` (the output), ``"output"``
    and ``"logits"`` (identities the tape differentiates; ``"logits"`` only where the output
    carries Keras' from-logits shortcut). A probe replays the blocks that hold measured
    sums (`_inner`).
    """

    replays = True

    def __init__(self, n: int) -> None:
        self.calls: list[list[dict[str, Any]]] = [[] for _ in range(n)]

    def tap(self, index: int, y: tf.Tensor) -> tf.Tensor:
        call: dict[str, Any] = {"output": None, "logits": None}
        self.calls[index].append(call)

        def grad_tap(t: tf.Tensor, slot: str) -> tf.Tensor:
            call[slot] = tf.identity(t)
            return call[slot]

        return route_output(y, lambda out: call.__setitem__("out", out), grad_tap)


def loss_scale(optimizer: Any) -> tf.Tensor | None:
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return tf.cast(optimizer.scale_loss(1.0), tf.float32)
    return None


def _training_loss(
    model: Any, x: Any, y: Any, y_pred: Any, sample_weight: Any, training: bool, loss_fn: Any
) -> tf.Tensor:
    """The loss whose gradients are recorded, on the probe.

    Without ``loss_fn``: what `train_step` differentiates, ``model.compute_loss(...)`` (the
    compiled loss with Keras' from-logits shortcut, reductions and loss weights, plus
    ``model.losses``: weight and activity regularization, `add_loss`; or the model's own
    `compute_loss` override), with ``training`` as the probe runs and the loss trackers left
    alone. With ``loss_fn`` (a `keras.losses.Loss`): ``loss(y, y_pred, sample_weight)`` plus
    ``model.losses``.
    """
    if loss_fn is not None:
        total = loss_fn(y, y_pred, sample_weight)
        return total + tf.add_n(model.losses) if model.losses else total
    require_loss(model, loss_fn)
    return _keras.compute_loss(model, x, y, y_pred, sample_weight, training)


def make_probe_function(
    model: Any,
    layers: Sequence[Any],
    kernels: Sequence[Any | None],
    activations: Sequence[str | None],
    *,
    rtol: float,
    max_units: int,
    training: bool = False,
    loss_fn: Any = None,
) -> ProbeFunction:
    """A `ProbeFunction` ``f(x, y, sample_weight) -> (slots, len(COLUMNS))`` float64: a row
    per call of each layer (`_calls`; `ProbeFunction.owner`: each row's layer).

    The model runs on the probe with ``training`` (False: inference mode; True: batch
    statistics and dropout, with every non-trainable variable, moving statistics and seed
    states included, restored afterwards), and the loss (`_training_loss`) is differentiated
    with respect to every measured output. ``y`` may be None (no gradient statistics: those
    columns are NaN). Layers whose output was not seen in the forward pass get NaN rows (see
    `ProbeFunction.seen`). Each replica reduces its share of the probe to sums (`_pass`,
    `_layer_sums`); one batched all-reduce adds them; the statistics are then formed for all
    layers at once (`_statistics`: a fixed number of ops, so the trace and each call stay
    cheap for deep models).
    """
    strategy = model.distribute_strategy
    # Found while replica_fn is traced (the same in every replica): per layer, its number of
    # units (an int, a tensor when not static, 0 when not seen) and whether its Gram matrix is
    # taken; whether there are gradients and whether they carry a loss scale.
    layout: dict[str, Any] = {}

    def replica_fn(x: Any, y: Any, sample_weight: Any) -> Any:
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync
        share = None
        if replicas > 1:
            rid = ctx.replica_id_in_sync_group
            n = tf.shape(tf.nest.flatten(x)[0])[0]
            start, stop = rid * n // replicas, (rid + 1) * n // replicas
            x, y, sample_weight = tf.nest.map_structure(
                lambda t: None if t is None else t[start:stop], (x, y, sample_weight)
            )
            # Keras divides a per-replica loss by the replica count; undo that and weight by
            # this replica's share of the probe instead.
            share = tf.cast(stop - start, tf.float32) / tf.cast(n, tf.float32)
            share = share * float(replicas) if loss_fn is None else share
        seen = tape_pass(model, layers, kernels, (x, y, sample_weight), training, loss_fn, share)
        owner = owners(seen["calls"])  # a row per call (`_calls`)
        seen["calls"] = split_calls(seen["calls"])
        seen["grads"] = None if seen["grads"] is None else split_calls(seen["grads"])
        if seen["kernel_grads"] is not None:  # (per kernel, in layer order)
            per_kernel = iter(seen["kernel_grads"])
            per_layer = [None if k is None else next(per_kernel) for k in kernels]
            seen["kernel_grads"] = [g for g in by_slot(per_layer, owner) if g is not None]
        payload, found, unscale = _layer_sums(
            seen, by_slot(kernels, owner), by_slot(activations, owner), max_units, replicas
        )
        layout.update(found, owner=owner)
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
        owner = layout["owner"]
        return _statistics(
            totals, unscale, layout, by_slot(layers, owner), by_slot(kernels, owner), rtol
        )

    return ProbeFunction(probe, layout)


def tape_pass(
    model: Any,
    layers: Sequence[Any],
    kernels: Sequence[Any | None],
    data: tuple[Any, Any, Any],
    training: bool,
    loss_fn: Any,
    share: tf.Tensor | None = None,
) -> dict[str, Any]:
    """The forward and backward pass of one replica, with the taps active.

    Returns ``calls`` (per layer, its outputs, one per call), ``grads`` (per layer, the
    gradients at those outputs), ``gradient_of`` (per call, in the order of
    `_calls.owners`: ``"output"``, ``"logits"``, or None for a layer that did not run),
    ``kernel_grads`` (per kernel), ``scale`` (the loss scale or None).
    """
    x, y, sample_weight = data
    recorder = _ProbeRecorder(len(layers))
    scale = None
    # State a probe must not change: in training mode, the moving statistics and seed states
    # (`non_trainable_variables`); the metrics of a `compute_loss` override.
    kept = list(model.non_trainable_variables) if training else []
    if y is not None and loss_fn is None and overrides_compute_loss(model):
        kept += list(model.metrics_variables)
    saved = [tf.identity(v.value) for v in kept]
    with recording(recorder), tf.GradientTape() as tape:
        # The tape records an op only when it reads a watched tensor: without the inputs
        # watched, a weightless layer before the first weighted one (an input Rescaling)
        # would be off the tape and get a zero gradient.
        tape.watch([t for t in tf.nest.flatten(x) if t is not None and t.dtype.is_floating])
        y_pred = model(x, training=training)
        loss = None
        if y is not None:
            loss = _training_loss(model, x, y, y_pred, sample_weight, training, loss_fn)
            loss = tf.cast(loss, tf.float32)
            if share is not None:
                loss = loss * share
            scale = loss_scale(getattr(model, "optimizer", None))
            if scale is not None:
                loss = loss * scale
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
        gs = []
        for c in cs:
            g_out, g_logits = pairs[k], pairs[k + 1]
            k += 2
            logits = g_out is None and g_logits is not None
            if logits:
                gs.append(g_logits)
            else:
                gs.append(tf.zeros_like(c["out"]) if g_out is None else g_out)
            gradient_of.append(None if loss is None else "logits" if logits else "output")
        tap_grads.append(gs)
        if not cs:
            gradient_of.append(None)
    return {
        "calls": [[c["out"] for c in cs] for cs in calls],
        "grads": tap_grads if loss is not None else None,
        "gradient_of": gradient_of,
        "kernel_grads": kernel_grads if loss is not None else None,
        "scale": scale,
    }


def _layer_sums(
    seen: dict[str, Any],
    kernels: Sequence[Any | None],
    activations: Sequence[str | None],
    max_units: int,
    replicas: int,
) -> tuple[Any, dict[str, Any], tf.Tensor | None]:
    """One replica's sums: what is added across replicas, the layout found on the way and
    ``1 / loss scale`` (None without one), which is not added.

    Per layer: count and saturated count; per unit, its sum and its sum of squares (the
    layer totals are their sums; the squares also tell dead units) and, with one replica, the
    `_distinct` screen's projection, all from two matrix products (`unit_sums`); with
    gradients, the sum and the sum of squares of the output's gradient; for
    `distinct_units` (at most ``max_units`` units; see `_distinct`) the rows themselves (one
    replica) or their sketch (several: it adds across replicas). The kernel gradients in
    float64 (added across replicas before their variance is taken). Per layer a handful of
    ops: each op costs trace and instantiation time and about 10 microseconds at every call.
    """
    calls, tap_grads = seen["calls"], seen["grads"]
    with_grads = tap_grads is not None
    n_layers = len(calls)
    consts = Consts()
    sketch_consts: dict[Any, Any] = {}
    count: list[Any] = [0.0] * n_layers
    saturated: dict[int, tf.Tensor] = {}
    units: list[Any] = [0] * n_layers
    gram = [False] * n_layers  # distinct units are counted
    sketched = [False] * n_layers  # on a sketch of the rows (`_distinct`)
    loads = [1.0] * n_layers  # rows per bucket of one replica's sketch
    seen_layers: list[int] = []
    lins, squares, g_sums, g_squares, compared = [], [], [], [], []
    for i, outs in enumerate(calls):
        if not outs:
            continue
        rows = as_rows(outs[0], consts)  # (one call: a slot, `_calls`)
        a = to64(rows)
        u = a.shape[-1]
        gram[i] = u is not None and u <= max_units
        lin, sq = unit_sums(a, *screen_lhs(a, sketch_consts, screened=replicas == 1))
        seen_layers.append(i)
        lins.append(lin)
        squares.append(sq)
        if with_grads:
            g_sum, g_sq = row_totals(tap_grads[i][0], consts)
            g_sums.append(g_sum)
            g_squares.append(g_sq)
        if activations[i] in SATURATING:
            saturated[i] = saturated_count(a, activations[i])
        n_a = a.shape.num_elements()
        count[i] = float(n_a) if n_a is not None else tf.cast(tf.size(a), tf.float64)
        units[i] = u if u is not None else tf.shape(a)[1]
        if gram[i]:
            sketched[i] = uses_sketch(a.shape[0], replicas)
            if replicas > 1:  # the sketch adds across replicas (the rows do not)
                compared.append(sketch_rows(a, sketch_consts))
            else:
                loads[i] = sketch_load(a.shape[0]) if sketched[i] else 1.0
                compared.append(rows)  # (the output itself: cast only where flagged)
    scale = seen["scale"]
    found = {
        "units": units,
        "gram": gram,
        "sketched": sketched,
        "loads": loads,
        "replicas": replicas,
        "seen": seen_layers,
        "grads": with_grads,
        "scaled": scale is not None,
        "gradient_of": seen["gradient_of"],
    }
    counts = static_or_stacked(count, tf.float64)
    if saturated:
        hits = tf.stack(list(saturated.values()))
        saturated_t = tf.math.unsorted_segment_sum(hits, list(saturated), n_layers)
    else:
        saturated_t = tf.zeros((n_layers,), tf.float64)
    payload: dict[str, Any] = {"count": tf.stack([counts, saturated_t]), "compared": compared}
    if seen_layers:
        payload["lin"] = tf.concat(lins, 1)
        payload["squares"] = tf.reshape(tf.concat(squares, 1), (-1,))
    unscale = None if scale is None else 1.0 / tf.cast(scale, tf.float64)
    if with_grads:
        g = tf.stack([tf.concat(g_sums, 0), tf.reshape(tf.concat(g_squares, 0), (-1,))])
        if unscale is not None:
            g *= tf.reshape(tf.stack([unscale, unscale * unscale]), (2, 1))
        payload["grads"] = g
        # Sum the kernel gradients first: their variance is the variance of the total.
        payload["kernel_grads"] = [to64(g) for g in seen["kernel_grads"]]
    return payload, found, unscale


def _scatter(
    pairs: Sequence[tuple[tf.Tensor, tf.Tensor]], index: Sequence[int], n: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """The `row_totals` ``pairs`` of layers ``index`` as two vectors over ``n`` layers (NaN
    for the others: the variance is then NaN)."""
    sums = tf.concat([p[0] for p in pairs], 0)
    squares = tf.reshape(tf.concat([p[1] for p in pairs], 0), (-1,))
    filler = tf.fill((n,), tf.constant(float("nan"), tf.float64))
    at = tf.constant(np.asarray(index, np.int32)[:, None])
    return (
        tf.tensor_scatter_nd_update(filler, at, sums),
        tf.tensor_scatter_nd_update(filler, at, squares),
    )


def _statistics(
    totals: dict[str, Any],
    unscale: tf.Tensor | None,
    layout: dict[str, Any],
    layers: Sequence[Any],
    kernels: Sequence[Any | None],
    rtol: float,
) -> tf.Tensor:
    """The ``(layers, COLUMNS)`` statistics from the sums added across replicas."""
    n_layers = len(layers)
    units, gram, with_grads = layout["units"], layout["gram"], layout["grads"]
    seen = layout["seen"]
    consts = distinct_consts(rtol)
    zero, nan = consts["zero"], tf.constant(float("nan"), tf.float64)
    nans = tf.fill((n_layers,), nan)
    count, saturated = tf.unstack(totals["count"])
    seen_units = [units[i] for i in seen]
    if all(isinstance(u, int) for u in units):
        segments: Any = np.repeat(np.asarray(seen, np.int32), seen_units)
        unit_counts = tf.constant(np.asarray(units, np.float64))
    else:
        sizes = static_or_stacked(seen_units, tf.int32)
        segments = tf.repeat(tf.constant(seen, tf.int32), sizes)
        unit_counts = tf.cast(static_or_stacked(units, tf.int32), tf.float64)
    if seen:
        lin, unit_squares = totals["lin"], totals["squares"]
        unit_totals = lin[0]
        total = tf.math.unsorted_segment_sum(unit_totals, segments, n_layers)
        squares = tf.math.unsorted_segment_sum(unit_squares, segments, n_layers)
        # A unit is dead when its sum of squares is zero (all its outputs are zero).
        dead = tf.cast(tf.equal(unit_squares, zero), tf.float64)
        dead_units = tf.math.unsorted_segment_sum(dead, segments, n_layers)
        channel_mean_sq, channel_var = _channel_statistics(
            unit_totals, unit_squares, count, unit_counts, segments
        )
    else:  # no layer seen
        total = squares = dead_units = tf.zeros((n_layers,), tf.float64)
        channel_mean_sq = channel_var = nans
    if with_grads and seen:
        g_sum, g_sq = tf.unstack(
            tf.math.unsorted_segment_sum(tf.transpose(totals["grads"]), seen, n_layers), axis=1
        )
    else:
        g_sum = g_sq = nans

    kernel_index = [i for i, k in enumerate(kernels) if k is not None]
    present = [k for k in kernels if k is not None]
    k_count = np.full(n_layers, np.nan)
    k_count[kernel_index] = [float(np.prod(k.shape)) for k in present]
    w_sum = w_sq = kg_sum = kg_sq = nans
    row_consts = Consts()
    read = {id(k): tf.convert_to_tensor(k.value) for k in present}  # (read once)
    if kernel_index:
        w_totals = [row_totals(read[id(k)], row_consts) for k in present]
        w_sum, w_sq = _scatter(w_totals, kernel_index, n_layers)
        if with_grads:
            kg = [row_totals(g, row_consts) for g in totals["kernel_grads"]]
            kg_sum, kg_sq = _scatter(kg, kernel_index, n_layers)
            if unscale is not None:
                kg_sum, kg_sq = kg_sum * unscale, kg_sq * (unscale * unscale)
    # The variances of activations, their gradients, kernels and kernel gradients at once.
    # (The kernel counts go through a stack: Grappler turns a division by a constant into a
    # multiplication by its reciprocal, which rounds differently.)
    k_count_t = tf.constant(k_count)
    variances = variance_of(
        tf.stack([count, count, k_count_t, k_count_t]),
        tf.stack([total, g_sum, w_sum, kg_sum]),
        tf.stack([squares, g_sq, w_sq, kg_sq]),
    )
    act_var, grad_var, weight_var, weight_grad_var = tf.unstack(variances)

    if any(gram):
        twins = Twins(consts)
        offset, compared, parts = 0, iter(totals["compared"]), []
        for i in seen:
            if gram[i]:
                m = next(compared)
                if layout["replicas"] == 1:
                    sketch_of = m.shape[0] if layout["sketched"][i] else None
                    twins.add(offset, units[i], m, layout["loads"][i], sketch_of)
                else:  # the summed sketch: its projection here
                    twins.add(offset, units[i], m, None, None)
                    parts.append(project(m, consts))
            elif layout["replicas"] > 1:
                parts.append(tf.zeros(tf.stack([SCREEN_DIM, units[i]]), tf.float64))
            offset = offset + units[i]
        p_all = totals["lin"][1:] if layout["replicas"] == 1 else tf.concat(parts, 1)
        gram_units = [u for u, is_gram in zip(units, gram, strict=True) if is_gram]
        twin_count = tf.math.unsorted_segment_sum(
            tf.cast(twins.run(p_all, totals["squares"]), tf.float64),
            np.repeat(np.flatnonzero(gram), gram_units),
            n_layers,
        )
        gram_counts = np.array([u if g else np.nan for u, g in zip(units, gram, strict=True)])
        # NaN where the activation statistics are: the comparison is finite when the
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
        _non_finite_counts(layers, read, row_consts),
        channel_mean_sq,
        channel_var,
    ]
    return tf.stack(columns, axis=1)


def _channel_statistics(
    unit_totals: tf.Tensor,
    unit_squares: tf.Tensor,
    count: tf.Tensor,
    unit_counts: tf.Tensor,
    segments: Any,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per layer, ``channel_mean_sq`` and ``channel_var`` from the sums of its units.

    A unit (channel: the last axis) ``c`` of a layer with ``n`` rows (batch and positions)
    has mean ``m_c = S_c / n`` and variance ``v_c = Q_c / n - m_c^2`` (``S_c``, ``Q_c``: the
    sum and the sum of squares of its column); ``channel_mean_sq = mean_c m_c^2`` and
    ``channel_var = mean_c v_c`` (Brock et al. 2021's signal propagation plot). Their sum
    minus ``activation_mean^2`` is ``activation_var`` (the law of total variance).
    """
    n_layers = count.shape[0]
    rows = tf.gather(count / unit_counts, segments)
    means = unit_totals / rows
    per_unit = tf.stack([means * means, variance_of(rows, unit_totals, unit_squares)])
    totals = tf.math.unsorted_segment_sum(tf.transpose(per_unit), segments, n_layers)
    mean_sq, var = tf.unstack(tf.transpose(totals) / unit_counts)
    return mean_sq, var


def _non_finite_counts(
    layers: Sequence[Any], read: dict[int, tf.Tensor], consts: Consts
) -> tf.Tensor:
    """Per layer, the number of NaN/Inf values among its own floating-point weights.

    Read from the variables themselves: a layer's output does not show every non-finite
    weight (a fused MatMul + ReLU kernel maps NaN to 0 on some CPUs). All weights are
    flattened into one vector; its sum times 0 is NaN exactly when one is not finite, and
    only then are they counted per layer (a running sum read at each layer's end): a few ops
    in all instead of four per weight, and one pass in the usual case. ``read``: the values
    of variables already read in this trace, by ``id``.
    """
    flat, ends, end = [], [], 0
    for layer in layers:
        for w in getattr(layer, "weights", ()):  # (none on a keras.ops operation)
            value = read.get(id(w), w.value)
            if value.dtype == tf.float64:  # 0 where finite, NaN where not (float32 range)
                value = value * 0.0
            if value.dtype.is_floating:
                value = tf.cast(value, tf.float32)
                if value.shape.rank != 1:  # (biases and normalization weights are flat)
                    value = tf.reshape(value, consts.get("flat", (-1,)))
                flat.append(value)
                end += int(np.prod(value.shape))
        ends.append(end)
    if not flat or ends[-1] == 0:
        return tf.zeros((len(layers),), tf.float64)
    values = tf.concat(flat, 0)

    def counts() -> tf.Tensor:
        bad = tf.cast(tf.logical_not(tf.math.is_finite(values)), tf.int64)
        running = tf.concat([tf.zeros((1,), tf.int64), tf.cumsum(bad)], 0)
        return tf.cast(tf.gather(running, ends) - tf.gather(running, [0, *ends[:-1]]), tf.float64)

    finite = tf.math.is_finite(tf.reduce_sum(values * 0.0))
    return tf.cond(finite, lambda: tf.zeros((len(layers),), tf.float64), counts)


class ProbeFunction:
    """The traced probe of `make_probe_function` and what its trace found.

    Calling it returns the ``(slots, len(COLUMNS))`` float64 statistics as a NumPy array, a
    row per call of each layer (`_calls`). After the first call, `owner` gives each row's
    layer, `seen` tells per row whether it ran on the probe and `gradient_of` whether its
    gradient is taken at its ``"output"`` or, where the loss reads
    its logits (Keras' from-logits shortcut), at its ``"logits"`` (None: no targets or not seen).
    """

    def __init__(self, fn: Any, layout: dict[str, Any]) -> None:
        self._fn = fn
        self._layout = layout
        self._call_options = _keras.grappler_call_options(NO_GRAPPLER)

    def __repr__(self) -> str:
        return f"ProbeFunction(traced={bool(self._layout)})"

    def __call__(self, x: Any, y: Any, sample_weight: Any, distinct: bool = True) -> np.ndarray:
        # Every call carries the same call options: TensorFlow instantiates a function once
        # per input signature and per call options, and the probe's instantiation must not
        # be repeated with Grappler on at the next call (MLP: 0.43 s, instantiation again).
        with _keras.calling_with(self._call_options):
            matrix = np.array(self._fn(x, y, sample_weight))
        if not distinct:  # (counted in-graph all the same: sums across replicas)
            matrix[:, COLUMNS.index("distinct_units")] = np.nan
        return matrix

    @property
    def seen(self) -> list[bool]:
        return [not (isinstance(u, int) and u == 0) for u in self._layout["units"]]

    @property
    def gradient_of(self) -> list[str | None]:
        return list(self._layout["gradient_of"])

    @property
    def owner(self) -> list[int]:
        return list(self._layout["owner"])
