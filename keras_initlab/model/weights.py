"""Which weights a model has, and the true kernel layout of each (for fans).

``weight_specs(model)`` walks a built model (Sequential, Functional, subclassed, nested,
wrappers such as Bidirectional) and returns one ``WeightSpec`` per weight of the layer types
whose layout it knows. ``other_weights(model)`` lists every remaining weight (normalization
layers' scales, offsets and statistics, custom layers' own ``add_weight`` weights) with the
reason it has no layout, so reports can name them instead of leaving them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import keras

from keras_initlab import _keras
from keras_initlab.model.layers import (
    CONVS,
    DENSE,
    DEPTHWISE_CONVS,
    EINSUM_DENSE,
    EMBEDDINGS,
    NORMALIZATION_LAYERS,
    RECURRENT_GATES,
    SEPARABLE_CONVS,
    TRANSPOSED_CONVS,
)
from keras_initlab.model.legacy import check_not_keras2
from keras_initlab.model.tree import walk

NORMALIZATION_REASON = "normalization layer: its scale, offset and statistics are not a kernel"
CUSTOM_REASON = "weight of a layer type with no known kernel layout (a custom add_weight)"
# weight attribute -> the layer attribute holding its configured initializer
_INITIALIZER_ATTRIBUTE = {
    "kernel": "kernel_initializer",
    "recurrent_kernel": "recurrent_initializer",
    "depthwise_kernel": "depthwise_initializer",
    "pointwise_kernel": "pointwise_initializer",
    "embeddings": "embeddings_initializer",
    "bias": "bias_initializer",
}


@dataclass(frozen=True)
class WeightSpec:
    """One weight of a model with the layout its fans are read in.

    Attributes:
        layer: the layer that owns the weight.
        variable: the ``keras.Variable``.
        role: the attribute name (``kernel``, ``recurrent_kernel``, ``depthwise_kernel``,
            ``pointwise_kernel``, ``embeddings``, ``bias``).
        layout: a ``keras_initlab.compute_fans`` layout, or ``"bias"``.
        layout_args: the layout's arguments.
        initializer: the initializer the layer was configured with for this weight.
        layer_path: the layer's name in reports, its path below the model
            (`keras_initlab.model.tree`).
    """

    layer: Any
    variable: Any
    role: str
    layout: str
    layout_args: dict[str, Any] = field(default_factory=dict)
    initializer: Any = None
    layer_path: str = ""

    @property
    def path(self) -> str:
        return str(self.variable.path)

    @property
    def is_bias(self) -> bool:
        return self.layout == "bias"


def einsum_axes(equation: str) -> dict[str, tuple[int, ...]]:
    """The contracted (input) and output axes of an EinsumDense kernel.

    Example:
    >>> einsum_axes("abc,cde->abde")
    {'in_axes': (0,), 'out_axes': (1, 2)}
    """
    inputs, output = equation.replace(" ", "").split("->")
    x_spec, kernel_spec = (s.replace("...", "") for s in inputs.split(","))
    output = output.replace("...", "")
    in_axes = tuple(i for i, c in enumerate(kernel_spec) if c in x_spec and c not in output)
    out_axes = tuple(i for i, c in enumerate(kernel_spec) if c in output)
    return {"in_axes": in_axes, "out_axes": out_axes}


def _spec(
    layer: Any,
    role: str,
    layout: str,
    layout_args: dict[str, Any] | None = None,
    initializer_attribute: str | None = None,
) -> WeightSpec | None:
    variable = getattr(layer, role, None)
    if variable is None:
        return None
    attribute = initializer_attribute or _INITIALIZER_ATTRIBUTE[role]
    initializer = getattr(layer, attribute, None)
    return WeightSpec(layer, variable, role, layout, layout_args or {}, initializer)


def _layer_specs(layer: Any) -> list[WeightSpec | None] | None:
    """The specs of a layer of a known type, or None to look inside it."""
    bias = _spec(layer, "bias", "bias")
    for cell_type, gates in RECURRENT_GATES.items():
        if isinstance(layer, cell_type):
            return [
                _spec(layer, "kernel", "recurrent", {"gates": gates}),
                _spec(layer, "recurrent_kernel", "recurrent", {"gates": gates}),
                bias,
            ]
    if isinstance(layer, DENSE):
        return [_spec(layer, "kernel", "dense"), bias]
    if isinstance(layer, EINSUM_DENSE):
        return [_spec(layer, "kernel", "einsum", einsum_axes(layer.equation)), bias]
    if isinstance(layer, CONVS):
        return [_spec(layer, "kernel", "conv", {"groups": int(layer.groups)}), bias]
    if isinstance(layer, TRANSPOSED_CONVS):
        strides = [int(s) for s in layer.strides]
        return [_spec(layer, "kernel", "conv_transpose", {"strides": strides}), bias]
    if isinstance(layer, DEPTHWISE_CONVS):
        # Keras stores a depthwise layer's kernel as `kernel`, configured by
        # `depthwise_initializer`.
        return [_spec(layer, "kernel", "depthwise", None, "depthwise_initializer"), bias]
    if isinstance(layer, SEPARABLE_CONVS):
        return [
            _spec(layer, "depthwise_kernel", "depthwise"),
            _spec(layer, "pointwise_kernel", "conv"),
            bias,
        ]
    if isinstance(layer, EMBEDDINGS):
        return [_spec(layer, "embeddings", "embedding")]
    return None


def _walk(model: Any) -> Iterator[WeightSpec]:
    """The specs of ``model`` and of every layer below it that has a known type.

    Keras' tracking of sub-layers (`keras_initlab.model.tree`) covers Sequential,
    Functional, subclassed models, wrappers (Bidirectional, TimeDistributed) and RNN layers
    holding a cell; a layer of a known type is not looked into.
    """
    top = _layer_specs(model)
    if top is not None:
        yield from (replace(s, layer_path=model.name) for s in top if s is not None)
        return
    for path, layer in walk(model, descend=lambda layer: _layer_specs(layer) is None):
        specs = _layer_specs(layer)
        if specs is not None:
            yield from (replace(s, layer_path=path) for s in specs if s is not None)


@dataclass(frozen=True)
class OtherWeight:
    """A weight ``weight_specs`` does not cover: its owner, the variable and why.

    Attributes:
        layer: the layer that created the weight (the innermost one).
        variable: the ``keras.Variable``.
        reason: ``NORMALIZATION_REASON`` or ``CUSTOM_REASON``.
        layer_path: the layer's path below the model (`keras_initlab.model.tree`).
    """

    layer: Any
    variable: Any
    reason: str
    layer_path: str = ""

    @property
    def path(self) -> str:
        return str(self.variable.path)

    @property
    def is_normalization(self) -> bool:
        return self.reason == NORMALIZATION_REASON


def other_weights(model: Any) -> list[OtherWeight]:
    """The weights of a built model that ``weight_specs`` leaves out, in ``model.weights`` order.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    >>> [w.path.split("/")[-1] for w in other_weights(model)]
    ['gamma', 'beta', 'moving_mean', 'moving_variance']
    """
    check_built(model)
    covered = {id(s.variable) for s in weight_specs(model)}
    owner: dict[int, tuple[str, Any]] = {}
    for path, layer in [(model.name, model), *walk(model)]:
        for variable in _keras.own_variables(layer):
            owner[id(variable)] = path, layer  # children come after parents: innermost wins
    rows = []
    for variable in model.weights:
        if id(variable) in covered:
            continue
        path, layer = owner.get(id(variable), (model.name, model))
        reason = NORMALIZATION_REASON if isinstance(layer, NORMALIZATION_LAYERS) else CUSTOM_REASON
        rows.append(OtherWeight(layer, variable, reason, path))
    return rows


def check_built(model: Any, argument: str = "model") -> None:
    """Raise a ValueError unless ``model`` is a built Keras layer or model."""
    check_not_keras2(argument, model)
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"Argument `{argument}` must be a Keras model or layer. "
            f"Received: {argument}={type(model).__name__}"
        )
    if not model.built or not model.weights:
        raise ValueError(
            f"Argument `{argument}` must be built (call it on data or give it an Input) "
            f"before its weights can be read. Received: {argument}={model.name!r} (unbuilt)"
        )


def weight_specs(model: Any) -> list[WeightSpec]:
    """One ``WeightSpec`` per kernel, recurrent kernel, embedding and bias of a built model.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> [(s.role, s.layout) for s in weight_specs(model)]
    [('kernel', 'dense'), ('bias', 'bias')]
    """
    check_built(model)
    return list(_walk(model))
