"""Which rule predicts a layer: the table from layer classes to the rule modules (and, for
the ``keras.ops`` operations a graph records, ``model.operations`` with ``_ops``), and the
fallback for the rest."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_initlab.model import layers as T
from keras_initlab.model.registry import registered
from keras_initlab.propagate import (
    _activations,
    _attention,
    _kernels,
    _merge,
    _normalization,
    _ops,
    _pooling,
    _positions,
    _recurrent,
    _structural,
)
from keras_initlab.propagate._registered import registered_rule
from keras_initlab.propagate._signal import Signal
from keras_initlab.propagate._step import Call, Step

Rule = Callable[[Call], Step]

RULES: tuple[tuple[tuple[Any, ...], Rule], ...] = (
    (T.TRANSPOSED_CONVS, _kernels.transposed_conv),
    (T.DEPTHWISE_CONVS, _kernels.depthwise_conv),
    (T.SEPARABLE_CONVS, _kernels.separable_conv),
    (T.CONVS, _kernels.conv),
    (T.DENSE, _kernels.dense),
    (T.EINSUM_DENSE, _kernels.einsum_dense),
    (T.EMBEDDINGS, _kernels.embedding),
    (T.ATTENTION, _attention.multi_head_attention),
    (T.BIDIRECTIONAL, _recurrent.bidirectional),
    (T.RECURRENT, _recurrent.recurrent),
    (T.ACTIVATION_LAYERS, _activations.activation_layer),
    (T.BATCH_NORMALIZATION, _normalization.batch_normalization),
    (T.LAYER_NORMALIZATION + T.RMS_NORMALIZATION, _normalization.layer_normalization),
    (T.GROUP_NORMALIZATION, _normalization.group_normalization),
    (T.INPUT_NORMALIZATION, _normalization.normalization),
    (T.RESCALING, _normalization.rescaling),
    (T.SUMS, _merge.add),
    (T.SUBTRACT, _merge.subtract),
    (T.AVERAGE, _merge.average),
    (T.MULTIPLY, _merge.multiply),
    (T.CONCATENATE, _merge.concatenate),
    (T.POOLING_AVERAGE, _pooling.average_pooling),
    (T.POOLING_MAXIMUM, _pooling.max_pooling),
    (T.POOLING_GLOBAL_AVERAGE, _pooling.global_average_pooling),
    (T.POOLING_GLOBAL_MAXIMUM, _pooling.global_max_pooling),
    (T.DROPOUT, _structural.dropout),
    (T.GAUSSIAN_DROPOUT, _structural.gaussian_dropout),
    (T.ALPHA_DROPOUT, _structural.alpha_dropout),
    (T.GAUSSIAN_NOISE, _structural.gaussian_noise),
    (T.PADDING, _structural.zero_padding),
    (T.UPSAMPLING, _structural.upsampling),
    (T.RELAYOUT, _structural.relayout),
    (T.REPEAT_VECTOR, _structural.repeat_vector),
    (T.CROPPING, _structural.cropping),
    (T.UNCHANGED, _structural.unchanged),
)
ASSUMPTION = "variance taken as unchanged"


def rule_for(operation: Any, n_inputs: int) -> Rule | None:
    """The rule for a layer or operation, or None (not covered). A registered layer
    (`keras_initlab.register_layer`) gets its registration's rule first."""
    kind = registered(operation)
    if kind is not None:
        return functools.partial(registered_rule, kind)
    for classes, rule in RULES:
        if isinstance(operation, classes):
            return rule
    if not isinstance(operation, keras.layers.Layer):  # a keras.ops call (``x + 3.0``): its table
        return _ops.rule_for(operation)
    return None


def predict(call: Call) -> Step:
    """The rule's step; a layer with no rule (or one a rule cannot read) passes its first
    input through, marked assumed with the reason."""
    rule = rule_for(call.layer, len(call.inputs))
    name = type(call.layer).__name__
    if rule is None:
        reason = f"no rule for {name}: {ASSUMPTION}"
    else:
        try:
            return _positions.carried(call, rule(call))
        except NotImplementedError as error:
            reason = f"{name} ({error}) not covered: {ASSUMPTION}"
    x = call.x.plain() if call.inputs else Signal.uniform(0.0, 0.0, (1,))
    shape = tuple(call.out_shapes[0][1:]) if call.out_shapes else x.shape
    out = x if shape == x.shape else Signal.uniform(x.mean, x.var, shape)
    shapes = [s.shape for s in call.inputs]

    def backward(g: list[np.ndarray]) -> list[np.ndarray]:
        level = float(np.mean(g[0])) if g else 0.0
        return [np.full(s, level) for s in shapes]

    return Step([out] * max(len(call.out_shapes), 1), backward, assumed=reason)
