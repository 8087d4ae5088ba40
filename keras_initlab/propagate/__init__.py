"""``propagate``: predict every layer's activation moments and gradient variance.

An analytic, mean-field prediction from the model's *current* weights (the actual values:
their means and variances enter, not a scheme's), for Sequential, Functional and nested
models. Each tensor is described per sample by the mean and variance of every element
(position and channel, ``Signal``); each layer maps them forward and maps gradient
variances backward. The rules
and their formulas are in the modules of this package: ``_kernels`` (Dense, Conv,
Depthwise, Separable, Transpose, EinsumDense, Embedding), ``_moments``/``_activations``
(every Keras activation), ``_normalization``, ``_merge``, ``_pooling``, ``_structural``,
``_attention``, ``_positions``, ``_recurrent``, ``_ops`` (the ``keras.ops`` calls a graph
records, constant operands included: ``x + 3.0``, ``relu6``, ``mean``, reshapes;
`keras_initlab.model.operations` says what each is), ``_registered`` (layers registered with
`keras_initlab.register_layer`); ``_graph`` walks the model, and reads a custom layer or
subclassed block through its ``call`` traced on KerasTensors (`keras_initlab.model.trace`)
at the sizes the walk knows (``input_shapes``: a sequence length). Which rule a layer gets
is decided by `keras_initlab.model.layers`' tables. Integer and boolean tensors (masks,
positions) carry no activation and get no row: the walk computes their values where it
knows every input's (an integer model input, a padding mask, is taken as ones: every
position visible), so an attention layer or a ``Softmax`` given a mask averages over the
keys it shows. A layer whose traced call computes its output from its input's shape alone
(a learned position embedding) is the same in every sample and passes no gradient back.
keras_hub's GPT-2 and BERT backbones are read this way, block by block.

Assumptions (mean field): the elements of a layer's input independent of each other
(across channels and positions) and of the weights; pre-activations Gaussian; the gradient
independent of the forward signal (Poole et al. 2016; Schoenholz et al. 2017), except where
a rule tracks the dependence (max pooling's argmax, two activations chained through an
elementwise map). Positions an attention layer averaged are correlated (each output
position a weighted average of values other positions share): the walk carries their
correlation forward to the next attention's average and to a global average pool
(`_positions`; without it, keras_hub's Llama's second attention output was predicted 2.7x
low and every gradient below its final norm 2x high); gradients are read as independent
across positions. For one layer on independent inputs the rules are exact for the actual
weights; through depth, the channels of a layer's output are correlated by their shared
inputs at ``O(1/sqrt(fan_in))``, so a deep stack departs from the prediction by about
``sqrt(2 / fan_in)`` relative per layer, compounding, and narrow layers (a 3-channel stem,
a 16-channel bottleneck) matter most. Known to fail: correlated inputs (a bottleneck whose
width exceeds its fan-in keeps its outputs correlated, e.g. EfficientNet's stem on tiny
rescaled inputs); attention reached by a gradient common to all tokens; recurrent layers
are followed step by step in the mean field, each gate independent of the state it
multiplies, and a recurrent layer or a pool over steps that reads a sequence whose steps
are correlated (another recurrent layer's, a repeated vector) is assumed, not predicted; a
gradient and its activation
correlated through 1x1 maps beyond what is tracked; the gradient below a softmax over few
classes (its O(1/n) projection is dropped); neighbours correlated by overlapping pool
windows, which a max pool later reads as independent (InceptionResNetV2's stem); the
gradient along InceptionResNetV2's stream of 40 ReLUs of residual sums with small branches
(``relu(x + 0.17 branch)``): 1.22x over in training mode (median, one probe; 2.2x before
its max pools read the stream's paths), and in inference mode not predicted below its
softmax, whose gradient moves 3.7x between batches of 16 (the rows below drifted to
1.2-1.7x of the few samples that carry it; `_activations.SPREAD_LIMIT`). Such a stream (and a
training-mode ResNet's, whose branches are unit-variance BatchNormalization outputs
beside a stream that grows) is mostly, at each sum, the stream one block back; the rules
integrate the sum as a function of one Gaussian one block back, which drifts from the
true law along the stream (ResNet101's ``conv4_block22_out`` in training mode: variance
7.51 against 8.22 measured). The walk follows samples of each element's path through the
blocks (`_paths`): the forward moments take their averages from them (8.18 there), and
the gradient follows them, so that a unit that stayed active is likelier to stay so
(after 10 blocks, the chained pairwise survival is 0.21 and the joint one 0.37, sampled).

References: He et al. 2015 (Delving deep into rectifiers); Glorot and Bengio 2010;
Poole et al. 2016 (Exponential expressivity in deep neural networks through transient chaos);
Schoenholz et al. 2017 (Deep information propagation); Brock et al. 2021 (Characterizing
signal propagation to close the performance gap in unnormalized ResNets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_initlab._validation import check_finite, check_positive_int
from keras_initlab.model.legacy import check_not_keras2
from keras_initlab.model.trace import model_inputs
from keras_initlab.propagate._graph import Walker
from keras_initlab.propagate._report import PropagateReport, PropagateRow
from keras_initlab.propagate._signal import input_signal, shapes_fit

__all__ = ["PropagateReport", "PropagateRow", "propagate"]
MODES = ("inference", "training")


def propagate(
    model: Any,
    *,
    input_mean: float = 0.0,
    input_var: float = 1.0,
    mode: str = "inference",
    batch_size: int | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
) -> PropagateReport:
    """Predict each layer's output mean and variance and its gradient variance.

    The model's inputs are taken as iid with mean ``input_mean`` and variance ``input_var``
    (integer inputs of an Embedding: uniform token ids). Each layer maps the moments
    ``(mean, channel-mean variance, fluctuating variance)`` of its inputs to those of its
    output; for a Dense or conv layer with ``k`` valid inputs and kernel mean ``mu``, variance
    ``s2``, mean square ``q``: ``mean' = mu k m + mean(b)``, ``Var' = s2 k E[x^2] + Var(b) +
    (q - s2) k Var(e)`` (He et al. 2015); an activation ``f`` gives ``E[f(z)]``, ``E[f(z)^2]``
    for Gaussian ``z`` and the backward factor ``E[f'(z)^2]``. Gradients are variances
    relative to the model output's (1 at every output).

    Args:
        model: a built Sequential or Functional model (nested models are walked).
        input_mean: mean of every input element.
        input_var: variance of every input element (non-negative).
        mode: ``"inference"`` (BatchNormalization uses its moving statistics, dropout is
            off) or ``"training"`` (batch statistics, dropout on).
        batch_size: the samples per batch in training mode: BatchNormalization's
            backward on ``n = batch_size * positions`` values per channel gains
            ``(n - 2) / (n - 3)`` (1.08 on a 1x1 map at batch 16). None: the large-batch
            limit. Ignored in inference mode.
        input_shapes: the shape of each of ``model.inputs`` without the batch axis (a
            probe's arrays' shapes), which sets the sizes the model leaves unknown: a
            sequence model's length decides how many positions its attention averages
            over. None: an unknown size is taken as 1.

    Returns:
        A ``PropagateReport``: one ``PropagateRow`` per layer in execution order. A layer no
        rule covers is ``"assumed"`` (variance taken as unchanged); a row whose activation
        rests on an assumed layer is ``"downstream"``, one whose gradient passes back
        through one (or through a softmax saturated beyond its dtype's rounding, whose
        gradient a measurement cannot see) ``"upstream"``, each naming the layers;
        ``report.predicted`` counts the rows that rest on no assumption, ``report.assumed``
        lists the others.

    Example:
    >>> import keras, keras_initlab
    >>> model = keras.Sequential([keras.Input((256,)),
    ...     keras.layers.Dense(256, activation="relu", name="d0",
    ...                        kernel_initializer=keras.initializers.HeNormal(seed=0))])
    >>> row = keras_initlab.propagate(model)[0]  # He: mean sqrt(1/pi), variance 1 - 1/pi
    >>> round(row.activation_mean, 1), round(row.activation_var, 1), row.status
    (0.6, 0.7, 'predicted')
    """
    check_not_keras2("model", model)
    if mode not in MODES:
        raise ValueError(f"Argument `mode` must be one of {MODES}. Received: mode={mode!r}")
    input_mean = check_finite("input_mean", input_mean)
    input_var = check_finite("input_var", input_var)
    if input_var < 0:
        raise ValueError(
            f"Argument `input_var` must be non-negative. Received: input_var={input_var}"
        )
    inputs, _ = model_inputs(model)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    shapes = _input_shapes(inputs, input_shapes)
    walker = Walker(mode, batch=batch_size)
    signals = [
        input_signal(t, shape, input_mean, input_var, batch_size)
        for t, shape in zip(inputs, shapes, strict=True)
    ]
    outputs, _, backward = walker.model(model, "", signals)
    backward(([np.ones(x.shape) for x in outputs], [() for _ in outputs]))
    return PropagateReport([row.freeze() for row in walker.rows])


def _input_shapes(inputs: list[Any], given: Sequence[Sequence[int]] | None) -> list[tuple]:
    """Each input's shape without the batch axis: ``given`` (checked against the inputs'
    known sizes, `shapes_fit`) or the inputs' own, an unknown size left None
    (`Signal.uniform`: 1)."""
    own = [tuple(t.shape)[1:] for t in inputs]
    if given is None:
        return own
    if not shapes_fit(inputs, given):
        raise ValueError(
            "Argument `input_shapes` must give one shape per model input, without the batch "
            f"axis, of positive sizes that agree with the inputs' known ones: {own}. "
            f"Received: input_shapes={given!r}"
        )
    return [tuple(int(d) for d in shape) for shape in given]
