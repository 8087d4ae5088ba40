"""Which weights a model has, and the true kernel layout of each (for fans).

``weight_specs(model)`` walks a built model (Sequential, Functional, subclassed, nested,
wrappers such as Bidirectional) and returns one ``WeightSpec`` per weight of the layer types
whose layout it knows, and per weight a custom layer creates itself (``add_weight``) where
its ``call``, traced at the shapes it was built with, shows the layout
(`contracted_specs`): a kernel a ``keras.ops`` contraction reads with a tensor (``x @ w``:
fans ``(w.shape[0], w.shape[1])``; ``einsum``: the axes its equation contracts and keeps),
and a bias, a vector added to such a contraction's output. ``other_weights(model)`` lists
every remaining weight (normalization layers' scales, offsets and statistics, the custom
weights no traced contraction reads) with the reason it has no layout, so reports can name
them instead of leaving them out.
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


def contracted_kernel(operation: Any, args: Any) -> tuple[Any, str, dict[str, Any]] | None:
    """``(variable, layout, layout_args)`` where the ``keras.ops`` contraction
    ``operation`` (``matmul``, ``einsum``), called with ``args``, reads one variable of
    rank 2 or more with one tensor: ``x @ w`` is ``dense`` (fans ``(w.shape[0],
    w.shape[1])``), ``w @ x`` its transpose, an ``einsum`` the axes its equation contracts
    and keeps (as EinsumDense's); else None.

    Example:
    >>> w = keras.Variable(keras.ops.ones((4, 3)))
    >>> einsum = keras.src.ops.numpy.Einsum("bi,ij->bj")
    >>> contracted_kernel(einsum, (keras.KerasTensor((None, 4)), w))[1:]
    ('einsum', {'in_axes': (0,), 'out_axes': (1,)})
    """
    from keras_initlab.model.operations import OPERATIONS, Contraction

    kind = OPERATIONS.get(type(operation).__name__)
    if not isinstance(kind, Contraction) or len(args) != 2:
        return None
    position = [i for i, a in enumerate(args) if isinstance(a, keras.Variable)]
    if len(position) != 1 or len(args[position[0]].shape) < 2:
        return None
    weight, mine = args[position[0]], position[0]
    if kind.function == "matmul":
        if len(weight.shape) != 2:
            return None
        if mine == 1:
            return weight, "dense", {}
        return weight, "einsum", {"in_axes": (1,), "out_axes": (0,)}
    inputs, output = str(operation.subscripts).replace(" ", "").replace("...", "").split("->")
    specs = inputs.split(",")
    if len(specs) != 2:
        return None
    own, other = specs[mine], specs[1 - mine]
    in_axes = tuple(i for i, c in enumerate(own) if c in other and c not in output)
    out_axes = tuple(i for i, c in enumerate(own) if c in output)
    if not in_axes or not out_axes:
        return None
    return weight, "einsum", {"in_axes": in_axes, "out_axes": out_axes}


def contracted_specs(layer: Any) -> list[WeightSpec]:
    """The specs of the weights a custom layer creates itself (``add_weight``) that its
    ``call``, traced at the shapes it was built with, reads as a kernel or a bias.

    A kernel: a variable of rank 2 or more that a ``keras.ops`` contraction (``matmul``,
    ``einsum``) reads with a tensor, laid out as the contraction reads it (``x @ w``:
    ``dense``, fans ``(w.shape[0], w.shape[1])``; ``w @ x``: the transpose; ``einsum``:
    its equation's contracted and kept axes, as EinsumDense's). A bias: a vector added to
    a kernel's contraction output. None where the call cannot be traced (no recorded
    shapes, backend ops), and a variable read both ways, or read by no contraction, has
    none (`other_weights` names it).

    Example:
    >>> class OwnDense(keras.layers.Layer):
    ...     def build(self, shape):
    ...         self.w = self.add_weight(shape=(shape[-1], 3), name="w")
    ...         self.b = self.add_weight(shape=(3,), initializer="zeros", name="b")
    ...     def call(self, x):
    ...         return keras.ops.matmul(x, self.w) + self.b
    >>> layer = OwnDense()
    >>> _ = layer(keras.ops.zeros((1, 4)))
    >>> [(s.role, s.layout) for s in contracted_specs(layer)]
    [('w', 'dense'), ('b', 'bias')]
    """
    from keras_initlab.model.trace import model_inputs, trace_layer

    own = {id(v): v for v in _keras.own_variables(layer)}
    if not own or isinstance(layer, NORMALIZATION_LAYERS):
        return []
    try:
        specs, args = model_inputs(layer)
        trace = trace_layer(layer, args, {}, specs)
    except Exception:  # whatever its call raises on KerasTensors: no layout is read
        return []
    kernels: dict[int, tuple[str, dict[str, Any]]] = {}
    outputs: set[int] = set()  # the tensors a kernel's contraction computes
    for call in trace.calls:
        read = contracted_kernel(call.operation, call.args)
        if read is not None and id(read[0]) in own:
            how = read[1:]
            if kernels.setdefault(id(read[0]), how) != how:
                kernels[id(read[0])] = ("", {})  # read two ways: no one layout
            outputs.update(id(t) for t in call.outputs)
    biases = {
        id(a)
        for call in trace.calls
        if type(call.operation).__name__ == "Add" and any(id(t) in outputs for t in call.inputs)
        for a in call.args
        if id(a) in own and len(a.shape) == 1
    }
    names = {id(v): name for name, v in vars(layer).items() if id(v) in own}
    found = []
    for key, variable in own.items():
        role = names.get(key, str(variable.name))
        no_kernel: tuple[str, dict[str, Any]] = ("bias", {}) if key in biases else ("", {})
        layout, layout_args = kernels.get(key, no_kernel)
        if layout:
            found.append(WeightSpec(layer, variable, role, layout, layout_args, None))
    return found


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
    for path, layer in [(model.name, model), *walk(model, descend=_unknown)]:
        known = _layer_specs(layer) if layer is not model else None
        # a custom layer (or model): its own weights, where a trace lays them out
        specs = contracted_specs(layer) if known is None else known
        yield from (replace(s, layer_path=path) for s in specs if s is not None)


def _unknown(layer: Any) -> bool:
    return _layer_specs(layer) is None


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
