"""Which rule predicts a layer: the table from layer classes (and ``keras.ops`` operations
recorded in a Functional graph) to the rule modules, and the fallback for the rest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_initlab.propagate import (
    _activations,
    _attention,
    _kernels,
    _merge,
    _normalization,
    _pooling,
    _recurrent,
    _structural,
)
from keras_initlab.propagate._signal import Signal
from keras_initlab.propagate._step import Call, Step

L = keras.layers
Rule = Callable[[Call], Step]

RULES: tuple[tuple[tuple[type, ...], Rule], ...] = (
    (_kernels.TRANSPOSED, _kernels.transposed_conv),
    (_kernels.DEPTHWISE, _kernels.depthwise_conv),
    (_kernels.SEPARABLE, _kernels.separable_conv),
    (_kernels.CONVS, _kernels.conv),
    ((L.Dense,), _kernels.dense),
    ((L.EinsumDense,), _kernels.einsum_dense),
    ((L.Embedding,), _kernels.embedding),
    ((L.MultiHeadAttention,), _attention.multi_head_attention),
    ((L.Bidirectional,), _recurrent.bidirectional),
    ((L.SimpleRNN, L.LSTM, L.GRU), _recurrent.recurrent),
    ((L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.PReLU, L.Softmax), _activations.activation_layer),
    ((L.BatchNormalization,), _normalization.batch_normalization),
    ((L.LayerNormalization, L.RMSNormalization), _normalization.layer_normalization),
    ((L.GroupNormalization,), _normalization.group_normalization),
    ((L.Normalization,), _normalization.normalization),
    ((L.Rescaling,), _normalization.rescaling),
    ((L.Add,), _merge.add),
    ((L.Subtract,), _merge.subtract),
    ((L.Average,), _merge.average),
    ((L.Multiply,), _merge.multiply),
    ((L.Concatenate,), _merge.concatenate),
    (_pooling.AVERAGE, _pooling.average_pooling),
    (_pooling.MAXIMUM, _pooling.max_pooling),
    (_pooling.GLOBAL_AVERAGE, _pooling.global_average_pooling),
    (_pooling.GLOBAL_MAXIMUM, _pooling.global_max_pooling),
    (_structural.DROPOUT, _structural.dropout),
    ((L.GaussianDropout,), _structural.gaussian_dropout),
    ((L.GaussianNoise,), _structural.gaussian_noise),
    (_structural.PADDING, _structural.zero_padding),
    (_structural.UPSAMPLING, _structural.upsampling),
    (_structural.RELAYOUT, _structural.relayout),
    ((L.RepeatVector,), _structural.repeat_vector),
    (_structural.CROPPING, _structural.cropping),
    (_structural.UNCHANGED, _structural.unchanged),
)
# keras.ops calls a Functional graph records (``x + y``), by operation class name.
OPERATIONS: dict[str, Rule] = {
    "Add": _merge.add,
    "Subtract": _merge.subtract,
    "Multiply": _merge.multiply,
}
ASSUMPTION = "variance taken as unchanged"


def rule_for(operation: Any, n_inputs: int) -> Rule | None:
    """The rule for a layer or operation, or None (not covered)."""
    for classes, rule in RULES:
        if isinstance(operation, classes):
            return rule
    if not isinstance(operation, L.Layer) and n_inputs == 2:
        return OPERATIONS.get(type(operation).__name__)
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
            return rule(call)
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
