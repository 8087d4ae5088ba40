"""``autoinit``: the draw, then one walk of the graph that sets every kernel's scale."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from keras_initlab import initializers as ini
from keras_initlab._validation import check_positive
from keras_initlab.autoinit._plan import Follow, follows, shares
from keras_initlab.autoinit._report import DRAWN, KEPT, SCALED, AutoInitReport, AutoInitRow
from keras_initlab.autoinit._solve import (
    EXPANSIVE,
    GATE_VAR,
    Problem,
    gate_square,
    neutral_gate,
    scaled,
    slope,
    solve,
    solve_gate,
    solve_operand,
)
from keras_initlab.draw import KEPT as KEPT_PLAN
from keras_initlab.draw import WeightPlan, draw
from keras_initlab.model.layers import (
    ATTENTION,
    BIDIRECTIONAL,
    EMBEDDINGS,
    KERNEL_LAYERS,
    RNN,
    SEPARABLE_CONVS,
)
from keras_initlab.model.legacy import check_not_keras2
from keras_initlab.model.trace import model_inputs
from keras_initlab.model.weights import WeightSpec, check_built, contracted_kernel
from keras_initlab.propagate import _activations, _attention
from keras_initlab.propagate._graph import Walker
from keras_initlab.propagate._kernels import bias_means, einsum_dense, kernel
from keras_initlab.propagate._rules import predict
from keras_initlab.propagate._signal import Signal, input_signal, make
from keras_initlab.propagate._step import Call

MODE = "inference"
# The attention logits q.k / sqrt(key_dim) get unit variance: q and k unit variance.
LOGITS_VAR = 1.0
LOGITS_NOTE = "attention logits of unit variance"
GATES_VAR = 1.0  # a recurrent layer's gate pre-activations, the input's part
GATES_NOTE = (
    "the input's part of every gate pre-activation at unit second moment; the recurrent kernel kept"
)


@dataclass(frozen=True)
class _Choice:
    scale: float
    kernel_std: float
    target: float
    note: str
    slope: float | None = None


def _elementwise(activation: Any) -> Any:
    """An elementwise ``Activation`` or None (linear, softmax, not elementwise)."""
    return None if activation == _activations.SOFTMAX else activation


def _own_activation(layer: Any) -> tuple[bool, Any]:
    """Whether the layer applies an activation of its own, and it as an elementwise
    ``Activation`` (None: a softmax or another non-elementwise one)."""
    fn = getattr(layer, "activation", None)
    try:
        own = _activations.from_function(fn)
    except NotImplementedError:
        return True, None
    return own is not None, _elementwise(own)


def _layer_activation(layer: Any) -> Any:
    if layer is None:
        return None
    try:
        return _elementwise(_activations.from_layer(layer))
    except NotImplementedError:
        return None


def _gate_square(partners: tuple[Any, ...]) -> float | None:
    """`gate_square` of the first of a product's other factors that is a gate the walk
    starts neutral (a kernel layer's own sigmoid or hard sigmoid, or such an activation
    layer), or None."""
    for layer in partners:
        own, activation = _own_activation(layer)
        f = activation if own else _layer_activation(layer)
        if neutral_gate(f):
            return gate_square(f)
    return None


def _through(chain: tuple[Any, ...], x: Signal) -> Signal:
    for layer in chain:
        shape = (None, *x.shape)
        x = predict(Call(layer, [x], [shape], [shape], MODE)).outputs[0].plain()
    return x


def _std(variable: Any) -> float:
    return float(np.std(keras.ops.convert_to_numpy(variable).astype(np.float64)))


class _Hook:
    """Called by the walk before each layer's rule: sets the layer's kernel scale from the
    input moments the layer is about to receive."""

    def __init__(self, model: Any, input_var: float) -> None:
        self.input_var = input_var
        self.follows = follows(model)
        self.shares = shares(model)
        self.done: set[int] = set()
        self.choices: dict[str, _Choice] = {}
        self.scaled_at: dict[int, str] = {}  # id(variable) -> the row its choice is under

    def _target(self, *layers: Any) -> tuple[float, str]:
        for layer in layers:
            share = self.shares.get(id(layer))
            if share is not None:
                scales = (
                    f"; after learned scales of mean square {share.gain:.3g}, kept"
                    if share.gain != 1.0
                    else ""
                )
                return self.input_var * share.fraction, (
                    f"residual branch into {share.add}: {share.fraction:.3g} of the target "
                    f"(a stream of {share.stream} sum{'s' if share.stream > 1 else ''}{scales})"
                )
        return self.input_var, ""

    def _set(
        self,
        name: str,
        layer: Any,
        variable: Any,
        pre: Signal,
        follow: Follow,
        target: tuple[float, str],
        own: tuple[bool, Any] = (False, None),
    ) -> None:
        """Scale ``variable`` so the variance at the end of what follows is the target;
        ``own``: the layer's own activation (``_own_activation``), which ends the chain."""
        if own[0]:
            chain, activation = (), own[1]
        else:
            chain, activation = follow.chain, _layer_activation(follow.activation)
        offset = np.broadcast_to(bias_means(layer, pre.shape), pre.shape)
        problem = Problem(
            _through(chain, pre.plain()),
            _through(chain, make(offset, np.zeros(pre.shape))),
            activation,
        )
        gate = solve_gate(problem) if follow.gate else None
        square = _gate_square(follow.partners) if follow.gate and gate is None else None
        if gate is not None:  # a gate's pre-activation: GATE_VAR, whatever the target
            (c, how), target = gate, (GATE_VAR, "")
        elif square is not None:  # the other factor is a gate: balanced between the edges
            c, how = solve_operand(problem, target[0], square, hidden=own[0])
            target = (problem.after(c), target[1])
        else:
            c, how = solve(problem, target[0])
        scaled(variable, c)
        gain = slope(problem, c)
        expansive = f"expansive: slope {gain:.3g}" if gain is not None and gain > EXPANSIVE else ""
        note = "; ".join(n for n in (how, target[1], expansive) if n)
        self.choices[name] = _Choice(c, _std(variable), target[0], note, gain)
        self.scaled_at[id(variable)] = name

    def __call__(self, call: Call, name: str) -> None:
        layer = call.layer
        if id(layer) in self.done:  # a shared layer: scaled at its first call
            return
        self.done.add(id(layer))
        if isinstance(layer, ATTENTION):
            self._attention(call, name)
        elif isinstance(layer, (*RNN, *BIDIRECTIONAL)):
            self._recurrent(call, name)
        elif isinstance(layer, EMBEDDINGS):
            if _reversible(layer):  # the table may be the output projection too: its scale
                return  # is then the logits'
            self._output_to_target(call, name, layer.embeddings)
        elif (read := contracted_kernel(layer, call.args)) is not None:
            if id(read[0]) in self.done:  # one variable read by several contractions
                return
            self.done.add(id(read[0]))
            # a custom layer's own kernel (`x @ self.w`)
            self._output_to_target(call, name, read[0])
        elif isinstance(layer, KERNEL_LAYERS):
            step = predict(call)
            if step.pre is None:
                return  # the rule cannot read this call: left as drawn (assumed row)
            variable = (
                layer.pointwise_kernel if isinstance(layer, SEPARABLE_CONVS) else layer.kernel
            )
            follow = self.follows.get(id(layer), Follow())
            self._set(
                name,
                layer,
                variable,
                step.pre,
                follow,
                self._target(layer),
                _own_activation(layer),
            )

    def _output_to_target(self, call: Call, name: str, variable: Any) -> None:
        """``variable`` scaled so that the call's output (then what follows it) has the
        target, as a kernel's with no activation of its own (an embedding's lookup, a
        custom layer's contraction)."""
        output = predict(call).outputs[0]
        follow = self.follows.get(id(call.layer), Follow())
        self._set(name, call.layer, variable, output, follow, self._target(call.layer))

    def _recurrent(self, call: Call, name: str) -> None:
        """Each recurrent layer's input kernel ``W`` scaled so that the input's part of its
        gates' pre-activations, ``x_t W``, has unit second moment averaged over the steps
        and the gate units (``c^2 mean(E[x^2] @ W^2) = 1``, on the input the walk
        predicts); the recurrent kernel keeps its draw (the state's part adds to it)."""
        layer = call.layer
        parts = (
            [(f"{name}/{r.name}", r) for r in (layer.forward_layer, layer.backward_layer)]
            if isinstance(layer, BIDIRECTIONAL)
            else [(name, layer)]
        )
        x = call.inputs[0]
        for path, rnn in parts:
            variable = getattr(rnn.cell, "kernel", None)
            if variable is None:
                continue
            w = kernel(variable)
            second = float(np.mean(x.seconds @ (w * w)))
            if not second > 0.0:
                continue  # an input that is exactly 0: no scale reaches the target
            c = math.sqrt(GATES_VAR / second)
            scaled(variable, c)
            self.choices[path] = _Choice(c, _std(variable), GATES_VAR, GATES_NOTE)

    def _attention(self, call: Call, name: str) -> None:
        """q and k to unit variance (unit logits), v to the target, then the output
        projection from the attended values the rule predicts with them."""
        layer = call.layer
        qi = _attention._argument(call, 0, "query", 0)
        vi = _attention._argument(call, 1, "value", qi)
        ki = _attention._argument(call, 2, "key", vi)
        projections = (
            (layer.query_dense, qi, (LOGITS_VAR, LOGITS_NOTE)),
            (layer.key_dense, ki, (LOGITS_VAR, LOGITS_NOTE)),
            (layer.value_dense, vi, (self.input_var, "")),
        )
        for dense, index, target in projections:
            pre = einsum_dense(Call(dense, [call.inputs[index]], [], [], MODE)).pre
            assert pre is not None
            self._set(f"{name}/{dense.name}", dense, dense.kernel, pre, Follow(), target)
        out = _attention.multi_head_attention(call).outputs[0]
        dense = layer.output_dense
        follow = self.follows.get(id(layer), Follow())
        self._set(
            f"{name}/{dense.name}", dense, dense.kernel, out, follow, self._target(dense, layer)
        )


def _reversible(layer: Any) -> bool:
    """Whether an embedding's table can also be called reversed as the output projection
    (its ``call`` takes ``reverse``: keras_hub's ``ReversibleEmbedding``)."""
    try:
        return "reverse" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False


def _check(model: Any) -> None:
    check_not_keras2("model", model)
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Argument `model` must be a Keras model. Received: model={type(model).__name__}"
        )
    check_built(model)
    model_inputs(model)  # a subclassed model: built by a call on data (its traced call)


def autoinit(
    model: Any, *, input_var: float = 1.0, seed: int | None = None, report: bool = False
) -> Any:
    """AutoInit: draw every kernel on its true fans, then scale each so that the predicted
    variance at every layer output stays at ``input_var`` (see the package docstring).

    Args:
        model: a built Keras model: Sequential, Functional (nested models are walked) or
            subclassed (built by a call on data: its ``call`` is traced at those shapes).
        input_var: variance of every input element, and the target of every layer.
        seed: base seed of the draw (as ``keras_initlab.initialize``).
        report: return an ``AutoInitReport`` instead of the model.

    Returns:
        The model, initialized in place (or the report).

    Raises:
        TypeError: not a Keras model.
        ValueError: ``input_var`` not positive and finite, or an unbuilt model.

    Example:
    >>> import keras
    >>> x = keras.Input((64,))
    >>> h = keras.layers.Dense(64, name="d1")(keras.layers.ReLU(name="r")(x))
    >>> y = keras.layers.Add(name="sum")([x, keras.layers.Dense(64, name="d2")(h)])
    >>> model = keras.Model(x, y)
    >>> rows = autoinit(model, seed=0, report=True).by_layer()
    >>> round(rows["d2"].target, 3), round(rows["sum"].activation_var, 1)  # one sum: 0.618
    (0.618, 1.6)
    """
    input_var = check_positive("input_var", input_var)
    _check(model)
    saved = [(v, keras.ops.convert_to_numpy(v)) for v in model.weights]
    try:
        plans = draw(model, ini.LecunNormal(), seed=seed)
        hook = _Hook(model, input_var)
        walker = Walker(MODE, before=hook)
        inputs, _ = model_inputs(model)
        signals = [input_signal(t, tuple(t.shape)[1:], 0.0, input_var, None) for t in inputs]
        walker.model(model, "", signals)
    except Exception:
        for variable, value in saved:
            variable.assign(value)
        raise
    if not report:
        return model
    return AutoInitReport(_rows(walker.rows, hook.choices, plans, hook.scaled_at), input_var)


def _kernels(
    plans: list[tuple[WeightSpec, WeightPlan]],
) -> dict[str, tuple[WeightSpec, WeightPlan]]:
    """``{layer path: (spec, plan)}`` of each layer's first weight that is not a bias (its
    kernel; a separable conv's depthwise kernel, drawn alike, stands for both)."""
    kernels: dict[str, tuple[WeightSpec, WeightPlan]] = {}
    for spec, plan in plans:
        if not spec.is_bias:
            kernels.setdefault(spec.layer_path, (spec, plan))
    return kernels


def _action(choice: _Choice | None, plan: WeightPlan | None) -> str:
    """`AutoInitRow.kernel` of a layer: scaled, drawn (not scaled), kept, or "" (none)."""
    if choice is not None:
        return SCALED
    if plan is None:
        return ""
    return KEPT if plan.action == KEPT_PLAN else DRAWN


def _rows(
    walked: list[Any],
    choices: dict[str, _Choice],
    plans: list[tuple[WeightSpec, WeightPlan]],
    scaled_at: dict[int, str],
) -> list[AutoInitRow]:
    """A row per layer the walk visited and, after the row of the layer holding them, a row
    per kernel the walk did not reach (a layer it reads as a whole, e.g. one whose call it
    cannot trace): drawn by the rule on its true fans, not scaled, no moments. A kernel
    scaled at another row (a custom layer's own kernel, at the row of the traced ``matmul``
    that reads it: ``scaled_at``) is reported there only."""
    kernels = {
        path: kernel
        for path, kernel in _kernels(plans).items()
        if scaled_at.get(id(kernel[0].variable), path) == path
    }
    names = {row.name for row in walked}
    inside: dict[str, list[str]] = {}
    for path in kernels:
        if path not in names:
            holder = max((n for n in names if path.startswith(f"{n}/")), key=len, default="")
            inside.setdefault(holder, []).append(path)

    def unreached(path: str, where: str) -> AutoInitRow:
        """A kernel with no row of the walk: not scaled, or scaled by a part of the walk
        that could not finish (its layer then read as a whole)."""
        spec, plan = kernels[path]
        choice = choices.get(path)
        how = f"drawn LeCun normal ({plan.reason}), not scaled" if choice is None else choice.note
        return AutoInitRow(
            path,
            type(spec.layer).__name__,
            None if choice is None else choice.scale,
            _std(spec.variable) if choice is None else choice.kernel_std,
            None if choice is None else choice.target,
            math.nan,
            math.nan,
            f"{where}: {how}",
            _action(choice, plan),
        )

    rows = []
    for row in walked:
        choice = choices.get(row.name)
        plan = kernels[row.name][1] if row.name in kernels else None
        rows.append(
            AutoInitRow(
                row.name,
                type(row.layer).__name__,
                None if choice is None else choice.scale,
                None if choice is None else choice.kernel_std,
                None if choice is None else choice.target,
                row.signal.mean,
                row.signal.var,
                row.note if choice is None else choice.note,
                _action(choice, plan),
                None if choice is None else choice.slope,
            )
        )
        held = inside.get(row.name, ())
        rows += [unreached(p, f"inside {row.name} (read as a whole)") for p in held]
    return rows + [unreached(p, "not reached by the walk") for p in inside.get("", ())]


@dataclass(frozen=True)
class AutoInit:
    """AutoInit as a procedure of `keras_initlab.initialize` (``initialize(model, "auto")``).

    ``AutoInit(input_var)(model, seed=s)`` is ``autoinit(model, input_var=input_var, seed=s,
    report=True)``.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16, name="d")])
    >>> AutoInit(2.0)(model, seed=0).input_var
    2.0
    """

    input_var: float = 1.0

    def __call__(self, model: Any, *, seed: int | None = None) -> AutoInitReport:
        return autoinit(model, input_var=self.input_var, seed=seed, report=True)
