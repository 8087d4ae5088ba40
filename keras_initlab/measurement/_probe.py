"""The probe pass: per-layer statistics of the model on a fixed batch (`make_probe_function`).

One `tf.function` runs the model on the probe under a `tf.GradientTape`, with every measured
layer's output routed through an identity tap (`_routing`) so the tape can differentiate
the loss with respect to it. The probe is split across the replicas of the model's
`tf.distribute` strategy; each replica returns *sums* (count, sum, sum of squares, the Gram
matrix of the unit columns, whose diagonal holds each unit's sum of squares: zero for a dead
unit), the sums are added across replicas in one batched all-reduce, and only then turned
into statistics: per-replica variances are never averaged. Kernel gradients are added
across replicas before their variance is taken. One small float64 matrix comes back to the
host. The statistics of all layers are formed together, so the graph has few ops per layer
and traces quickly. The loss-scale factor of a `LossScaleOptimizer` is divided out of every
gradient statistic. Each unit's sum is taken too, for the channel statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_initlab import _keras
from keras_initlab.measurement._distinct import (
    FAST_MIN_UNITS,
    distinct_consts,
    has_twin,
    sketch_rows,
    twins,
    uses_sketch,
)
from keras_initlab.measurement._routing import RECORDERS, route_output
from keras_initlab.measurement._sums import (
    SATURATING,
    Sums,
    as_rows,
    flat64,
    saturated_count,
    to64,
    variance_of,
)

# The Grappler passes left off while the probe function is instantiated: on its large graph
# (MobileNetV2: 7,000 ops) they cost more start-up than they save at a record; the remapper
# (fused convolutions) and the memory optimizer stay on. Without them the values are the
# same (a division by a constant is not turned into a product by its reciprocal, which
# rounds differently; nothing here relies on either).
LIGHT_GRAPPLER = {
    "layout_optimizer": False,
    "constant_folding": False,
    "shape_optimization": False,
    "arithmetic_optimization": False,
    "dependency_optimization": False,
    "loop_optimization": False,
    "function_optimization": False,
    "debug_stripper": False,
    "scoped_allocator_optimization": False,
    "pin_to_host_optimization": False,
    "implementation_selector": False,
    "auto_mixed_precision": False,
}

# Column layout of the matrix returned by the probe function (one row per measured layer).
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
    "channel_mean_sq",
    "channel_var",
)


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
    if _keras.compiled_loss(model) is None and not overrides_compute_loss(model):
        raise ValueError(
            "Argument `model` must be compiled with a loss to measure gradients (or pass "
            "`loss`). Received: a model without a compiled loss"
        )
    return _keras.compute_loss(model, x, y, y_pred, sample_weight, training)


def overrides_compute_loss(model: Any) -> bool:
    """Whether the model's class defines its own `compute_loss`."""
    return type(model).compute_loss is not keras.Model.compute_loss


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
    """A `ProbeFunction` ``f(x, y, sample_weight) -> (len(layers), len(COLUMNS))`` float64.

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
        seen = _pass(model, layers, kernels, (x, y, sample_weight), training, loss_fn, share)
        payload, found, unscale = _layer_sums(seen, kernels, activations, max_units, replicas)
        layout.update(found)
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
        return _statistics(totals, unscale, layout, layers, kernels, rtol)

    return ProbeFunction(probe, layout)


def _pass(
    model: Any,
    layers: Sequence[Any],
    kernels: Sequence[Any | None],
    data: tuple[Any, Any, Any],
    training: bool,
    loss_fn: Any,
    share: tf.Tensor | None,
) -> dict[str, Any]:
    """The forward and backward pass of one replica, with the taps active.

    Returns ``calls`` (per layer, its outputs, one per call), ``grads`` (per layer, the
    gradients at those outputs), ``gradient_of`` (per layer ``"output"``, ``"logits"`` or
    None), ``kernel_grads`` (per kernel), ``scale`` (the loss scale or None).
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
    RECORDERS.append(recorder)
    try:
        with tf.GradientTape() as tape:
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
    finally:
        RECORDERS.pop()
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

    Per layer: count and saturated count; the sum and the sum of squares of the outputs
    (with gradients: of the outputs and of their gradients, as a pair); the Gram matrix of
    its units (at most ``max_units``; of a sketch of its rows and their sums of squares for a
    layer with many probe rows, see `_distinct`; with one replica and at least
    `FAST_MIN_UNITS` units, the rows themselves and their sums of squares for a layer with
    few: `twins` compares them) or their sums of squares; the sum of each unit (for the
    channel statistics). Per kernel: its gradient.
    """
    calls, tap_grads = seen["calls"], seen["grads"]
    with_grads = tap_grads is not None
    n_layers = len(calls)
    sums = Sums()
    zero = tf.constant(0.0, tf.float64)
    none_seen = zero if not with_grads else tf.zeros((2,), tf.float64)
    count, saturated = [zero] * n_layers, [zero] * n_layers
    first: list[Any] = [none_seen] * n_layers
    second: list[Any] = [none_seen] * n_layers
    units: list[Any] = [0] * n_layers
    gram = [False] * n_layers
    sketched = [False] * n_layers  # the Gram matrix is that of a row sketch (`_distinct`)
    by_rows = [False] * n_layers  # the rows themselves are passed on (one replica)
    sketch_consts: dict[Any, Any] = {}
    # Per seen layer, in order: the Gram matrix of its units or their sums of squares; and
    # the sums of its units (the channel statistics).
    unit_sums: list[tf.Tensor] = []
    unit_totals: list[tf.Tensor] = []
    for i, outs in enumerate(calls):
        if not outs:
            continue
        a = as_rows(outs[0])
        if len(outs) > 1:
            a = tf.concat([a] + [as_rows(o) for o in outs[1:]], 0)
        # Per unit, the sum and the sum of squares (the squares also tell dead units); the
        # layer's totals are their sums.
        per_unit_sum = tf.reduce_sum(a, sums.axes(0, 1))
        per_unit = tf.reduce_sum(a * a, sums.axes(0, 1))
        totals = tf.reduce_sum(tf.stack([per_unit_sum, per_unit]), sums.axes(1, 2))
        if not with_grads:
            first[i], second[i] = tf.unstack(totals)
        else:
            gs = tap_grads[i]
            g = flat64(gs[0]) if len(gs) == 1 else tf.concat([flat64(t) for t in gs], 0)
            g_totals = tf.stack(sums.sum_and_squares(g))
            first[i], second[i] = tf.unstack(tf.stack([totals, g_totals], axis=1))
        if activations[i] in SATURATING:
            saturated[i] = saturated_count(a, activations[i])
        n_a = a.shape.num_elements()
        count[i] = float(n_a) if n_a is not None else tf.cast(tf.size(a), tf.float64)
        u = a.shape[-1]
        unit_totals.append(per_unit_sum)
        if u is not None and u <= max_units:
            gram[i] = True
            if uses_sketch(a.shape[0]):  # the sketch (added across replicas), the squares
                sketched[i] = True
                unit_sums += [sketch_rows(a, sketch_consts), per_unit]
            elif replicas == 1 and u >= FAST_MIN_UNITS:  # (rows are not added across replicas)
                by_rows[i] = True
                unit_sums += [a, per_unit]
            else:
                unit_sums.append(tf.matmul(a, a, transpose_a=True))
        else:
            unit_sums.append(per_unit)
        units[i] = u if u is not None else tf.size(per_unit)
    scale = seen["scale"]
    found = {
        "units": units,
        "gram": gram,
        "sketched": sketched,
        "rows": by_rows,
        "grads": with_grads,
        "scaled": scale is not None,
        "gradient_of": seen["gradient_of"],
    }
    counts = [tf.constant(c, tf.float64) if isinstance(c, float) else c for c in count]
    rows = [tf.reshape(tf.stack(counts + saturated), (2, n_layers))]
    if not with_grads:
        rows.append(tf.stack([tf.stack(first), tf.stack(second)]))
    else:
        rows += [tf.stack(first, axis=1), tf.stack(second, axis=1)]
    # Rows: count, saturated, sum, [gradient sum], squares, [gradient squares].
    layer_sums = tf.concat(rows, 0)
    if scale is not None:
        unscale = 1.0 / tf.cast(scale, tf.float64)
        one = tf.constant(1.0, tf.float64)
        factors = tf.stack([one, one, one, unscale, one, unscale * unscale])
        layer_sums *= tf.reshape(factors, (6, 1))
    kernel_grads = seen["kernel_grads"]
    payload = {
        "layers": layer_sums,
        "units": unit_sums,
        "unit_totals": unit_totals,
        # Sum the kernel gradients first: their variance is the variance of the total.
        "kernel_grads": [] if not with_grads else [tf.cast(g, tf.float64) for g in kernel_grads],
    }
    return payload, found, (unscale if scale is not None else None)


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
    consts = distinct_consts(rtol)
    zero, nan = consts["zero"], tf.constant(float("nan"), tf.float64)
    nans = tf.fill((n_layers,), nan)
    if with_grads:
        count, saturated, total, g_sum, squares, g_sq = tf.unstack(totals["layers"])
    else:
        count, saturated, total, squares = tf.unstack(totals["layers"])
        g_sum = g_sq = nans

    # A unit is dead when its sum of squares is zero (all its outputs are zero).
    squares_per_unit, twins_found = [], []
    it = iter(totals["units"])
    for i in range(n_layers):
        if gram[i] and (
            layout["rows"][i] or (layout["sketched"][i] and units[i] >= FAST_MIN_UNITS)
        ):
            m, exact = next(it), next(it)
            twins_found.append(twins(m, exact, consts, layout["sketched"][i]))
            squares_per_unit.append(exact)
        elif gram[i] and layout["sketched"][i]:
            b, exact = next(it), next(it)
            g = tf.matmul(b, b, transpose_a=True)
            norms = tf.raw_ops.MatrixDiagPartV3(input=g, k=consts["k0"], padding_value=zero)
            twins_found.append(has_twin(g, norms, consts, exact))
            squares_per_unit.append(exact)
        elif gram[i]:
            g = next(it)
            norms = tf.raw_ops.MatrixDiagPartV3(input=g, k=consts["k0"], padding_value=zero)
            twins_found.append(has_twin(g, norms, consts))
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
        unit_squares = tf.concat(squares_per_unit, 0)
        dead = tf.cast(tf.equal(unit_squares, zero), tf.float64)
        dead_units = tf.math.unsorted_segment_sum(dead, segments, n_layers)
        channel_mean_sq, channel_var = _channel_statistics(
            tf.concat(totals["unit_totals"], 0), unit_squares, count, unit_counts, segments
        )
    else:  # no layer seen
        dead_units = tf.zeros((n_layers,), tf.float64)
        channel_mean_sq = channel_var = nans

    sums = Sums()
    kernel_index = [i for i, k in enumerate(kernels) if k is not None]
    k_count = np.full(n_layers, np.nan)
    kernel_grads = totals["kernel_grads"]
    none = tf.zeros((2,), tf.float64) if kernel_grads else zero
    k_first, k_second = [none] * n_layers, [none] * n_layers
    for j, i in enumerate(kernel_index):
        w = to64(kernels[i])
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
    # (The kernel counts go through a stack: Grappler turns a division by a constant into a
    # multiplication by its reciprocal, which rounds differently.)
    k_count_t = tf.constant(k_count)
    variances = variance_of(
        tf.stack([count, count, k_count_t, k_count_t]),
        tf.stack([total, g_sum, w_sum, kg_sum]),
        tf.stack([squares, g_sq, w_sq, kg_sq]),
    )
    act_var, grad_var, weight_var, weight_grad_var = tf.unstack(variances)

    if twins_found:
        gram_units = [u for u, is_gram in zip(units, gram, strict=True) if is_gram]
        twin_count = tf.math.unsorted_segment_sum(
            tf.cast(tf.concat(twins_found, 0), tf.float64),
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
        # Grappler's options are read when the function is instantiated (its first call). A
        # function another thread instantiates meanwhile is optimized less, not computed
        # differently.
        with _keras.grappler_options(LIGHT_GRAPPLER):
            return np.asarray(self._fn(x, y, sample_weight))

    @property
    def seen(self) -> list[bool]:
        return [not (isinstance(u, int) and u == 0) for u in self._layout["units"]]

    @property
    def gradient_of(self) -> list[str | None]:
        return list(self._layout["gradient_of"])
