"""The TensorFlow gradient adapter: the probe's tape (`_probe.tape_pass`) in one `tf.function`.

Keeps what only TensorFlow's tape has: Keras' from-logits shortcut (a softmax/sigmoid whose
logits the loss reads gets ``gradient_of="logits"``), a `LossScaleOptimizer`'s scale divided
out of every gradient, training-mode state restored after the pass, and the probe's
function instantiated without Grappler (`_keras.grappler_call_options`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from keras_initlab import _keras
from keras_initlab.measurement._reduce import Pass, Reduced


class TensorFlowPass:
    """``f(data) -> Reduced`` through one traced function, traced once per probe shape (the
    statistics need static shapes), the first call run eagerly instead where
    ``eager_first`` (a one-shot `keras_initlab.measure`); `gradient_of` per layer after the
    first call. ``distinct`` (default True) says whether
    the pass computes the rows ``distinct_units`` compares (`_reduce.Pass`).

    A trace costs several eager passes (DenseNet121 at 32x32, batch 16, on one CPU core,
    two runs on shared machines: 8-16 s traced against 1.6-3.8 s eager, then 0.5 s a traced
    pass; `benchmarks/bench_record_floor.py` prints both), so a one-shot
    `keras_initlab.measure` never traces. A `Measurement` (a `VarianceMonitor`'s records)
    traces at its first pass: an eager first pass before the trace cost more in all (a
    3-epoch fit of MobileNetV2 at 64x64, batch 16, 20 steps an epoch, with the default
    monitor: 16.4-16.8 s CPU tracing first against 17.8-18.6 s, the plain fit 10.1-10.7 s;
    2026-12-07, one thread, beside other work). Both run the same ops with
    Grappler off (`_probe.NO_GRAPPLER`): the values are computed as written either way,
    equal to the last bit on MobileNetV2, EfficientNetB0 and ConvNeXtTiny, within float32
    rounding where the tape adds a tensor's gradients in another order (NASNetMobile: 6 of
    681 gradient variances, 1 ulp apart).

    Args:
        model, layers, kernels: the model, its measured layers and their kernels.
        training: run the model in training mode (state restored after the pass).
        loss_fn: the loss to differentiate (None: the compiled one).
        reduce: the statistics of a `Pass` (`_reduce.reduce_pass`), traced in the same
            function.
        eager_first: run the first call eagerly (a one-shot measurement).
    """

    def __init__(
        self,
        model: Any,
        layers: Sequence[Any],
        kernels: Sequence[Any | None],
        training: bool,
        loss_fn: Any,
        reduce: Callable[[Pass], Reduced],
        eager_first: bool = False,
    ) -> None:
        from keras_initlab.measurement._probe import NO_GRAPPLER, tape_pass

        # One trace per model and probe shape, by design (see _keras.quiet_retracing_warnings).
        _keras.quiet_retracing_warnings("TensorFlowPass")
        self.gradient_of: list[str | None] = []

        def probe(x: Any, y: Any, sample_weight: Any, distinct: Any) -> Any:
            seen = tape_pass(model, layers, kernels, (x, y, sample_weight), training, loss_fn)
            grads, kernel_grads, scale = seen["grads"], seen["kernel_grads"], seen["scale"]
            if scale is not None:  # (the loss was multiplied by it; float16 gradients too)
                grads = [[tf.cast(g, scale.dtype) / scale for g in gs] for gs in grads]
                kernel_grads = [tf.cast(g, scale.dtype) / scale for g in kernel_grads]
            per_layer = iter(kernel_grads or [])
            self.gradient_of[:] = seen["gradient_of"]
            values = {id(v): v.value for v in model.variables}  # (each variable read once)
            return reduce(
                Pass(
                    seen["calls"],
                    grads,
                    [None if k is None else values.get(id(k), k.value) for k in kernels],
                    [None if k is None or grads is None else next(per_layer) for k in kernels],
                    list(values.values()),
                    distinct,
                )
            ).parts()

        self._eager: Callable[..., Any] | None = probe if eager_first else None
        self._fn = tf.function(probe, autograph=False)
        self._options = _keras.grappler_call_options(NO_GRAPPLER)

    def __call__(self, data: tuple[Any, Any, Any], distinct: bool = True) -> Reduced:
        if self._eager is not None:
            eager, self._eager = self._eager, None
            with _keras.keras_retracing_quiet():
                return Reduced(*eager(*data, bool(distinct)))
        with _keras.calling_with(self._options):  # (a bool tensor: one trace for both)
            return Reduced(*self._fn(*data, tf.constant(bool(distinct))))


make_pass = TensorFlowPass
