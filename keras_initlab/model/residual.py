"""Residual sums of a model's graph: which Adds sum a skip path and a weighted branch.

A residual block computes ``y = s + f(x)``: the **skip** ``s`` is the block's input ``x``
(or a projection of it) and the **branch** ``f`` holds the block's weights. In a Functional
graph an ``Add`` (the layer, or ``x + y`` recorded as a ``keras.ops`` call) is residual when
its two inputs part at a common upstream tensor (the **fork**) and

* one input *is* the fork (an identity skip: MobileNetV2, a Transformer, a plain
  ``x + Dense(Dense(x))``), or
* both carry weighted layers since the fork and one carries fewer (a projection shortcut:
  ResNet's 1x1 conv + BatchNorm next to a 3-conv branch); that one is the skip.

An Add that meets neither (more than two inputs, inputs that share no upstream tensor,
two equally weighted paths, no weighted layer on either side) is listed as **unresolved**
with the reason, not guessed. A subclassed model or custom layer that holds weighted
sub-layers is read through its ``call`` traced on KerasTensors (`keras_initlab.model.trace`),
its sums named below it (``block3/add``); one whose ``call`` cannot be traced is listed as
**opaque**, with the reason.

Residual initialization (Goyal et al. 2017, zero-initialized residual branches; Zhang et
al. 2019, Fixup; De and Smith 2020, SkipInit) and the signal propagation plot (Brock et al.
2021) read the blocks found here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras

from keras_initlab import _keras
from keras_initlab.model.layers import (
    NORMALIZATION_LAYERS,
    is_opaque,
    is_sum,
    score_inputs,
    score_sublayers,
)
from keras_initlab.model.path import normalizes
from keras_initlab.model.trace import model_inputs, output_spec, trace_structure
from keras_initlab.model.weights import check_built, weight_specs
from keras_initlab.text_table import RowReport, format_table

__all__ = ["ResidualBlock", "ResidualReport", "UnresolvedSum", "residual_blocks"]


@dataclass(frozen=True)
class ResidualBlock:
    """One residual sum ``add = skip + branch``.

    Attributes:
        add: the Add's name (its path below the model; for ``x + y``, the operation's name).
        skip: the name of what feeds the skip input (a layer's path, or a model input; the
            sum inside a block that returns it, ``block0/add`` rather than ``block0``).
        branch_output: the name of the layer (or operation) whose output enters the sum
            from the branch.
        branch: the weighted layers of the branch, in graph order (paths of the layers
            that own kernels).
        shortcut: the weighted layers of the skip path (a projection shortcut), or ().
        last_kernel: the branch's last weighted layer (path).
        last_norm: a normalization layer with a scale after ``last_kernel`` on the branch
            (ResNet's last BatchNorm), or None.
        last_kernel_layer: that layer object.
        last_norm_layer: that layer object, or None.
        tail_layers: the layers on the branch after ``last_kernel`` (its norm, activations,
            a gate such as ``keras_initlab.ResidualGate``), in graph order.
        scores: the kernels of ``branch`` whose outputs reach the sum only through attention
            scores (a softmax, or a fused attention's query and key): an attention branch's
            query and key projections; () on a branch without attention.
        post_norm: the normalization layer that alone reads the sum (a post-LN block's; the
            stream goes on from it), or None.
    """

    add: str
    skip: str
    branch_output: str
    branch: tuple[str, ...]
    shortcut: tuple[str, ...]
    last_kernel: str
    last_norm: str | None
    last_kernel_layer: Any = field(default=None, repr=False, compare=False)
    last_norm_layer: Any = field(default=None, repr=False, compare=False)
    tail_layers: tuple[Any, ...] = field(default=(), repr=False, compare=False)
    scores: tuple[str, ...] = ()
    post_norm: str | None = None


@dataclass(frozen=True)
class UnresolvedSum:
    """An Add (or a part of the model) where no skip and branch could be told apart.

    Attributes:
        name: the Add's name, or the opaque layer's path.
        reason: why, in words.
    """

    name: str
    reason: str


class ResidualReport(RowReport[ResidualBlock]):
    """The residual blocks of a model (``rows``), with the sums left ``unresolved``.

    Attributes:
        rows: one ``ResidualBlock`` per residual Add, in graph order.
        unresolved: ``UnresolvedSum`` per Add that is not a residual sum, and per opaque
            layer (a subclassed model or custom layer whose graph is not recorded).
    """

    def __init__(self, rows: list[ResidualBlock], unresolved: list[UnresolvedSum]) -> None:
        super().__init__(rows)
        self.unresolved = unresolved

    def require(self, argument: str, value: Any) -> None:
        """Raise ValueError naming ``argument`` if no residual block was found.

        The message lists what was looked at and why each sum was left out, so that a
        residual rule is never applied to a guess.
        """
        if self.rows:
            return
        found = "; ".join(f"{u.name}: {u.reason}" for u in self.unresolved)
        raise ValueError(
            f"Argument `{argument}` applies a residual rule, but the model has no residual "
            "block (an Add of a skip path and a branch with weights) in its recorded graph"
            f"{' (' + found + ')' if found else ''}. Received: {argument}={value!r}"
        )

    def __repr__(self) -> str:
        return f"ResidualReport({len(self.rows)} blocks, {len(self.unresolved)} unresolved)"

    def __str__(self) -> str:
        lines = format_table(
            ("add", "skip", "shortcut", "branch", "last kernel", "last norm"),
            [
                (b.add, b.skip, len(b.shortcut), len(b.branch), b.last_kernel, b.last_norm)
                for b in self.rows
            ],
        )
        lines += [f"not residual: {u.name}: {u.reason}" for u in self.unresolved]
        return "\n".join(lines)


def residual_blocks(model: Any) -> ResidualReport:
    """Find the residual sums of a built model.

    Functional graphs are read call by call (nested Functional and Sequential models
    included, with their path as prefix); a custom layer that holds weighted layers is read
    through its traced ``call``, its sums named below it, and so is a subclassed model
    given as ``model`` (traced at the shapes its first call built it with,
    `keras_initlab.model.trace.model_inputs`); a model or layer whose ``call`` cannot be
    traced is reported as opaque instead of guessed.

    Args:
        model: a built Keras model.

    Returns:
        A ``ResidualReport``.

    Example:
    >>> import keras
    >>> x = keras.Input((8,))
    >>> h = keras.layers.Dense(8, activation="relu", name="d1")(x)
    >>> h = keras.layers.Dense(8, name="d2")(h)
    >>> y = keras.layers.Add(name="sum")([x, h])
    >>> report = residual_blocks(keras.Model(x, y))
    >>> [(b.add, b.skip, b.branch, b.last_kernel) for b in report]
    [('sum', 'input', ('d1', 'd2'), 'd2')]
    """
    if not _keras.is_functional(model):  # a weightless Functional graph is still read
        check_built(model)
    kernels: dict[str, Any] = {}
    for spec in weight_specs(model) if model.weights else ():
        if not spec.is_bias and spec.layout != "embedding":
            kernels.setdefault(spec.layer_path, spec.layer)
    finder = _Finder(kernels)
    finder.model(model, "")
    return ResidualReport(finder.blocks, finder.unresolved)


class _Finder:
    """Walks the graphs and collects blocks; one instance per ``residual_blocks`` call."""

    def __init__(self, kernels: dict[str, Any]) -> None:
        self.kernels = kernels
        self.blocks: list[ResidualBlock] = []
        self.unresolved: list[UnresolvedSum] = []
        # a layer or nested model whose output is a sum inside it -> that sum's name: the
        # next block's skip reads the same tensor, so the stream goes on through it
        self.returns: dict[str, str] = {}
        self.scores: set[str] = set()  # kernels that feed attention scores only

    def model(self, model: Any, prefix: str, input_names: list[str] | None = None) -> None:
        if _keras.is_functional(model):
            names = input_names or [
                _input_name(len(model.inputs), i, prefix) for i in range(len(model.inputs))
            ]
            found = self._graph(model.inputs, _keras.functional_calls(model), names, prefix)
            self._returned(prefix.removesuffix("/"), found.get(id(model.outputs[0])))
        elif isinstance(model, keras.Sequential):
            spec, name = model.inputs[0], (input_names or [prefix + "input"])[0]
            for layer in model.layers:
                self._inner(layer, prefix, ((spec,), {}, (spec,)), [name])
                spec, name = output_spec(layer, spec), prefix + layer.name
        elif self.kernels:  # a subclassed model: its call traced at its built shapes
            try:
                specs, args = model_inputs(model)
                trace = trace_structure(model, (args, {}, specs))
            except Exception as error:  # no recorded shapes, or whatever its call raises
                why = f"it is a subclassed model whose call cannot be traced ({_cause(error)})"
                self._opaque(model.name, model, why)
                return
            names = input_names or [_input_name(len(specs), i, prefix) for i in range(len(specs))]
            self._graph(trace.inputs, trace.calls, names, prefix)

    def _inner(self, layer: Any, prefix: str, call: Any, input_names: list[str]) -> None:
        """Walk into ``layer`` (called with ``call`` = (args, kwargs, inputs)): a nested
        model in place; a custom layer or subclassed model that holds weighted layers
        through its traced ``call`` (`keras_initlab.model.trace`), or as opaque."""
        name = prefix + layer.name
        if isinstance(layer, keras.Sequential) or _keras.is_functional(layer):
            self.model(layer, f"{name}/")
        elif is_opaque(layer) and self._weights_of(name):
            try:
                trace = trace_structure(layer, call)
            except Exception as error:  # whatever its call raises on KerasTensors
                self._opaque(name, layer, f"its call cannot be traced ({_cause(error)})")
                return
            found = self._graph(trace.inputs, trace.calls, input_names, f"{name}/")
            self._returned(name, found.get(id(trace.outputs[0])))

    def _returned(self, name: str, output: str | None) -> None:
        """Note that ``name`` returns the tensor named ``output`` when a sum computes it."""
        output = self.returns.get(output or "", output)
        if output is not None and any(block.add == output for block in self.blocks):
            self.returns[name] = output

    def _opaque(self, name: str, layer: Any, why: str) -> None:
        reason = (
            f"{type(layer).__name__} holds weighted layers, but {why}: residual sums inside "
            "it cannot be found"
        )
        self.unresolved.append(UnresolvedSum(name, reason))

    def _weights_of(self, name: str) -> list[str]:
        return [k for k in self.kernels if k == name or k.startswith(name + "/")]

    def _graph(
        self, inputs: Any, calls: Any, input_names: list[str], prefix: str
    ) -> dict[int, str]:
        """Read the calls of a graph (a Functional model's, or a traced ``call``'s) whose
        inputs are named ``input_names``; returns the names of its tensors by id."""
        calls = list(calls)
        producer: dict[int, int] = {}
        ancestry: dict[int, frozenset[int]] = {id(t): frozenset() for t in inputs}
        names = {id(t): n for t, n in zip(inputs, input_names, strict=True)}
        for i, call in enumerate(calls):
            above = frozenset().union(*(ancestry.get(id(t), frozenset()) for t in call.inputs))
            for t in call.outputs:
                producer[id(t)] = i
                ancestry[id(t)] = above | {i}
                names[id(t)] = prefix + call.operation.name
        self._score_kernels(calls, prefix)
        for call in calls:
            if isinstance(call.operation, keras.layers.Layer):
                called = (call.args, call.kwargs, call.inputs)
                self._inner(call.operation, prefix, called, [names[id(t)] for t in call.inputs])
            if is_sum(call.operation):
                self._sum(call, calls, producer, ancestry, names, prefix)
        return names

    def _score_kernels(self, calls: list[Any], prefix: str) -> None:
        """Note the kernels of this graph whose outputs reach its outputs (the tensors no call
        reads) only through attention scores (`score_inputs`), and the query and key
        projections of the known attention layers it calls (`score_sublayers`)."""
        read = {id(t) for call in calls for t in call.inputs}
        direct = {id(t) for call in calls for t in call.outputs if id(t) not in read}
        reaches = set(direct)
        for call in reversed(calls):
            if any(id(t) in reaches for t in call.outputs):
                reaches.update(id(t) for t in call.inputs)
            if any(id(t) in direct for t in call.outputs):
                scored = {id(t) for t in score_inputs(call.operation, call.inputs)}
                direct.update(id(t) for t in call.inputs if id(t) not in scored)
        for call in calls:
            name = prefix + call.operation.name
            self.scores.update(f"{name}/{sub.name}" for sub in score_sublayers(call.operation))
            outputs = [id(t) for t in call.outputs]
            if any(t in reaches for t in outputs) and not any(t in direct for t in outputs):
                self.scores.update(self._weights_of(name))

    def _path_weights(self, calls: list[Any], members: frozenset[int], prefix: str) -> list[str]:
        names = (prefix + calls[i].operation.name for i in sorted(members))
        return [k for name in names for k in self._weights_of(name)]

    def _sum(self, call, calls, producer, ancestry, names, prefix: str) -> None:
        name = prefix + call.operation.name
        if len(call.inputs) != 2:
            reason = f"sums {len(call.inputs)} inputs; a residual sum has a skip and a branch"
            self.unresolved.append(UnresolvedSum(name, reason))
            return
        a, b = call.inputs
        anc_a, anc_b = ancestry[id(a)], ancestry[id(b)]
        common = anc_a & anc_b
        roots_a = _root_inputs(a, calls, ancestry)
        if not common and not (roots_a & _root_inputs(b, calls, ancestry)):
            reason = "its inputs share no upstream tensor: not a skip and a branch"
            self.unresolved.append(UnresolvedSum(name, reason))
            return
        path_a = self._path_weights(calls, anc_a - common, prefix)
        path_b = self._path_weights(calls, anc_b - common, prefix)
        if len(path_a) == len(path_b):
            reason = (
                f"both inputs carry {len(path_a)} weighted layers since they part: "
                "cannot tell the skip from the branch"
                if path_a
                else "neither input has a weighted layer since they part: no branch"
            )
            self.unresolved.append(UnresolvedSum(name, reason))
            return
        (skip, shortcut), (branch_in, branch) = sorted(
            ((a, path_a), (b, path_b)), key=lambda pair: len(pair[1])
        )
        members = ancestry[id(branch_in)] - common
        last = branch[-1]
        last_call = max(
            i for i in members if last in self._weights_of(prefix + calls[i].operation.name)
        )
        tail = tuple(
            calls[i].operation
            for i in sorted(members)
            if i > last_call and isinstance(calls[i].operation, keras.layers.Layer)
        )
        norm = next(
            (
                layer
                for layer in reversed(tail)
                if isinstance(layer, NORMALIZATION_LAYERS)
                and getattr(layer, "gamma", None) is not None
            ),
            None,
        )
        readers = [o.operation for o in calls if any(t is call.outputs[0] for t in o.inputs)]
        post_norm = (
            prefix + readers[0].name
            if readers
            and all(
                isinstance(r, keras.layers.Layer) and normalizes(r, "training") for r in readers
            )
            else None
        )
        skip_name = (
            self.returns.get(names[id(skip)], names[id(skip)])
            if not shortcut
            else _fork_name(common, calls, names, prefix)
        )
        self.blocks.append(
            ResidualBlock(
                add=name,
                skip=skip_name,
                branch_output=names[id(branch_in)],
                branch=tuple(branch),
                shortcut=tuple(shortcut),
                last_kernel=last,
                last_norm=None if norm is None else prefix + norm.name,
                last_kernel_layer=self.kernels[last],
                last_norm_layer=norm,
                tail_layers=tail,
                scores=tuple(k for k in branch if k in self.scores),
                post_norm=post_norm,
            )
        )


def _input_name(count: int, index: int, prefix: str) -> str:
    """A model input's name among ``count``: ``input`` (the only one) or
    ``input_<index>``, under ``prefix``."""
    return prefix + ("input" if count == 1 else f"input_{index}")


def _cause(error: Exception) -> str:
    """``"Type: first line"`` of what a trace raised (at most 120 characters of it)."""
    first = (str(error).strip().splitlines() or [""])[0][:120]
    return f"{type(error).__name__}: {first}"


def _root_inputs(tensor: Any, calls: list[Any], ancestry: dict[int, frozenset[int]]) -> set[int]:
    """The ids of the graph tensors with no producer that ``tensor`` reads (model inputs)."""
    members = ancestry[id(tensor)]
    if not members:
        return {id(tensor)}
    produced = {id(t) for i in members for t in calls[i].outputs}
    return {id(t) for i in members for t in calls[i].inputs if id(t) not in produced}


def _fork_name(common: frozenset[int], calls: list[Any], names: dict[int, str], prefix: str) -> str:
    """Where a projection shortcut and its branch part: the latest call both read."""
    if not common:
        return "input" if not prefix else prefix.rstrip("/")
    return names[id(calls[max(common)].outputs[0])]
