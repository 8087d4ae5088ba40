"""``initialize``: re-initialize every kernel of a built model with the true fans.

What happens to each weight is decided by one rule, ``plan_weight``, which ``audit`` uses too
(so that ``audit(model, s)`` right after ``initialize(model, s)`` flags nothing):

* kernels (Dense, ConvND, ConvNDTranspose, DepthwiseConvND, SeparableConvND, EinsumDense and
  so MultiHeadAttention, the input kernel of LSTM/GRU/SimpleRNN per gate): re-drawn from the
  scheme on their true layout (``keras_initlab.compute_fans``);
* recurrent kernels: re-drawn orthogonal per gate (Keras' default family, Saxe et al. 2014),
  unless the scheme is constant, identity or orthogonal, which apply as they are;
* biases: re-drawn from the layer's own ``bias_initializer`` (zeros by default), keeping an
  LSTM's ``unit_forget_bias`` (forget-gate bias 1);
* embeddings: kept. A lookup table has no fan-in (each output reads one row), so a
  variance-scaling scheme on fan_in = 1 would give He a std of 1.41 where Keras' default
  draws 0.05; the table keeps the layer's own ``embeddings_initializer`` draw;
* normalization layers' scales, offsets and statistics: kept;
* other weights (custom layers' own ``add_weight`` weights): not handled, left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
from keras import ops

from keras_initlab import initializers as ini
from keras_initlab._validation import unknown_name_message
from keras_initlab.layer_weights import WeightSpec, other_weights, weight_specs
from keras_initlab.lsuv import LSUV
from keras_initlab.residual_init import (
    ResidualInitReport,
    apply_residual,
    check_rule,
    plan_residual,
)
from keras_initlab.schemes import SCHEMES, as_scheme, base_seed, for_weight, weight_seed
from keras_initlab.text_table import RowReport, format_table

# Schemes applied as they are to recurrent kernels; every other scheme gets an orthogonal
# recurrent kernel per gate (the choice of Keras' defaults, and of Saxe et al. 2014).
_RECURRENT_AS_GIVEN = (ini.Constant, ini.ScaledIdentity, ini.Orthogonal)
# The scheme names `initialize` knows: the schemes of ``SCHEMES``, AutoInit's "auto", and
# "lsuv", which is refused with a pointer to ``keras_initlab.LSUV(x)`` (it needs data).
INITIALIZE_SCHEMES = (*SCHEMES, "auto", "lsuv")
REDRAWN = "re-drawn"
KEPT = "kept"
NOT_HANDLED = "not handled"
EMBEDDING_REASON = (
    "embedding table: no fan-in (one row per lookup); keeps the layer's embeddings_initializer"
)


@dataclass(frozen=True)
class WeightPlan:
    """What ``initialize`` does to one weight.

    Attributes:
        action: ``"re-drawn"`` or ``"kept"``.
        initializer: what the weight is drawn from (re-drawn), or what its values follow
            (kept: the layer's configured initializer); None if unknown.
        reason: why, in words.
    """

    action: str
    initializer: Any
    reason: str


class _UnitForgetBias(keras.initializers.Initializer):
    """An LSTM bias as Keras' ``unit_forget_bias`` builds it: the forget gate's slice is 1."""

    def __init__(self, base: Any, units: int):
        self.base = base
        self.units = units

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        u = self.units
        parts = [self.base((u,), dtype=dtype), ops.ones((u,), dtype=dtype)]
        return ops.concatenate([*parts, self.base((2 * u,), dtype=dtype)])


def _bias_plan(spec: WeightSpec) -> WeightPlan:
    base = spec.initializer or ini.Zeros()
    layer = spec.layer
    if isinstance(layer, keras.layers.LSTMCell) and getattr(layer, "unit_forget_bias", False):
        return WeightPlan(
            REDRAWN,
            _UnitForgetBias(base, int(layer.units)),
            "bias: the layer's bias_initializer, forget gate 1 (LSTM unit_forget_bias)",
        )
    return WeightPlan(REDRAWN, base, "bias: the layer's bias_initializer (zeros by default)")


def plan_weight(base: Any, spec: WeightSpec, seed: int | None) -> WeightPlan:
    """The rule of ``initialize`` (module docstring) for one weight, under scheme ``base``.

    ``base`` is a keras_initlab initializer or a user's own Keras initializer; ``seed`` is
    the weight's own seed (None: the scheme's default).
    """
    if spec.is_bias:
        return _bias_plan(spec)
    if spec.layout == "embedding":
        return WeightPlan(KEPT, spec.initializer, EMBEDDING_REASON)
    if not isinstance(base, ini.Scheme):
        return WeightPlan(REDRAWN, base, "the given initializer, called with the shape alone")
    if spec.role == "recurrent_kernel" and not isinstance(base, _RECURRENT_AS_GIVEN):
        return WeightPlan(
            REDRAWN,
            for_weight(ini.Orthogonal(), spec.layout, spec.layout_args, seed),
            "recurrent kernel: orthogonal per gate",
        )
    return WeightPlan(
        REDRAWN,
        for_weight(base, spec.layout, spec.layout_args, seed),
        f"the scheme on the {spec.layout} layout's true fans",
    )


@dataclass(frozen=True)
class InitializeRow:
    """One weight of an ``initialize`` call: what was done to it and why."""

    layer: str
    path: str
    shape: tuple[int, ...]
    action: str
    initializer: str | None
    reason: str


class InitializeReport(RowReport[InitializeRow]):
    """The rows of ``initialize(..., report=True)``; ``str(report)`` is a table.

    ``report.redrawn``, ``report.kept`` and ``report.not_handled`` are the rows per action;
    ``report.residual`` is the ``ResidualInitReport`` of a ``residual`` rule (or None).
    """

    _COLUMNS = ("layer", "path", "shape", "action", "initializer", "reason")

    def __init__(
        self, rows: list[InitializeRow], residual: ResidualInitReport | None = None
    ) -> None:
        super().__init__(rows)
        self.residual = residual

    def _with(self, action: str) -> list[InitializeRow]:
        return [r for r in self.rows if r.action == action]

    @property
    def redrawn(self) -> list[InitializeRow]:
        return self._with(REDRAWN)

    @property
    def kept(self) -> list[InitializeRow]:
        return self._with(KEPT)

    @property
    def not_handled(self) -> list[InitializeRow]:
        return self._with(NOT_HANDLED)

    def __repr__(self) -> str:
        return (
            f"InitializeReport({len(self.rows)} weights: {len(self.redrawn)} re-drawn, "
            f"{len(self.kept)} kept, {len(self.not_handled)} not handled)"
        )

    def __str__(self) -> str:
        rows = [[getattr(r, c) for c in self._COLUMNS] for r in self.rows]
        lines = format_table(self._COLUMNS, rows)
        return "\n".join(lines + ([str(self.residual)] if self.residual is not None else []))


def _name_of(initializer: Any) -> str | None:
    if initializer is None:
        return None
    if isinstance(initializer, _UnitForgetBias):
        return f"{type(initializer.base).__name__} + forget gate 1"
    return type(initializer).__name__


def initialize(
    model: Any,
    scheme: Any,
    *,
    seed: int | None = None,
    report: bool = False,
    residual: str | None = None,
    input_var: float | None = None,
) -> Any:
    """Re-initialize every kernel of a built model with ``scheme`` on each layer's true fans.

    Each kernel is drawn from ``scheme`` with the fans of its true layout
    (``keras_initlab.compute_fans``), ``Var(W) = scale * gain**2 / fan``; recurrent kernels
    are orthogonal per gate unless the scheme is constant, identity or orthogonal; biases are
    reset by the layer's own bias initializer (zeros, an LSTM's forget gate 1); embeddings,
    normalization weights and custom layers' weights are left as they are (the module
    docstring gives the rule). Every value is computed before any is assigned, so a failure
    leaves the model untouched.

    Args:
        model: a built Keras model or layer (Sequential, Functional, subclassed, nested).
        scheme: a scheme name (``keras_initlab.schemes.SCHEMES``: ``"he_normal"``, ...), a
            keras_initlab initializer, or a Keras initializer (Keras' built-ins are
            translated so they too get the true fans, keeping their seed; others are called
            with the shape), or ``keras_initlab.LSUV(x)``, which runs ``keras_initlab.lsuv``
            on the batch ``x`` (its report is kept as ``scheme.report``), or ``"auto"``:
            AutoInit (``keras_initlab.autoinit``), each kernel's scale set from the
            propagated moments so every layer's output variance stays at ``input_var``.
        seed: base seed; each weight gets its own seed derived from it, so two layers of the
            same shape differ. None uses the scheme's int seed if it has one, else a seed
            from Python's RNG (reproducible under ``keras.utils.set_random_seed``).
        report: return an ``InitializeReport`` (one row per weight: re-drawn, kept or not
            handled, and why) instead of the model; with ``LSUV`` its ``LSUVReport``, with
            ``"auto"`` an ``AutoInitReport`` (per layer the scale and predicted variance).
        residual: None, or a rule applied after the draw to every residual block that
            ``keras_initlab.residual_blocks`` finds (``keras_initlab.residual_init``):
            ``"zero"`` (last layer of each branch zeroed, Goyal et al. 2017), ``"fixup"``
            (that, and the branch's other kernels times ``L^(-1/(2m-2))``, Zhang et al.
            2019), ``"skipinit"`` (each branch's gate, a ``keras_initlab.ResidualGate``, set
            to 0, De and Smith 2020) or ``"scaled"`` (last layer times ``1/sqrt(L)``, GPT-2).
            The report's ``residual`` lists the weights it changed; ``audit(model, scheme)``
            flags them, as they no longer follow the scheme. With ``LSUV`` the rule changes
            the weights LSUV leaves, and with ``"auto"`` the weights it set.
        input_var: ``"auto"`` only: the variance of the model's input elements and the
            target of every layer (default 1.0).

    Returns:
        The model, re-initialized in place (or the report, with ``report=True``).

    Raises:
        TypeError: ``scheme`` is neither a name nor an initializer; ``model`` is not a model.
        ValueError: unknown scheme name, an unbuilt model, or a scheme that does not apply
            to a kernel (``DeltaOrthogonal`` on a Dense kernel); an unknown ``residual``, a
            model with no residual block, a ``"skipinit"`` branch without a gate.

    Example:
    >>> model = keras.Sequential(
    ...     [keras.Input((8,)), keras.layers.Dense(4, activation="relu", name="d")], name="net")
    >>> model = initialize(model, "he_normal", seed=0)
    >>> [(row.path, row.action) for row in initialize(model, "he_normal", report=True)]
    [('net/d/kernel', 're-drawn'), ('net/d/bias', 're-drawn')]
    >>> x = keras.Input((8,))
    >>> h = keras.layers.Dense(8, activation="relu", name="d1")(x)
    >>> y = keras.layers.Add(name="sum")([x, keras.layers.Dense(8, name="d2")(h)])
    >>> rows = initialize(keras.Model(x, y), "he_normal", residual="zero", report=True).residual
    >>> [(r.add, r.weight, r.factor) for r in rows]
    [('sum', 'd2/kernel', 0.0), ('sum', 'd2/bias', 0.0)]
    """
    if isinstance(scheme, str) and scheme not in INITIALIZE_SCHEMES:
        raise ValueError(
            unknown_name_message("scheme", scheme, INITIALIZE_SCHEMES)
            + " ('lsuv' is passed as `keras_initlab.LSUV(x)`, with a batch of data `x`.)"
        )
    if input_var is not None and not (isinstance(scheme, str) and scheme == "auto"):
        raise ValueError(
            "Argument `input_var` applies to scheme 'auto' only. "
            f"Received: input_var={input_var!r} with scheme={scheme!r}"
        )
    rule = check_rule(residual)  # planned first: a failure changes nothing
    residual_plan = None if rule is None else plan_residual(model, rule, weight_specs(model))
    if isinstance(scheme, str) and scheme == "auto":
        from keras_initlab.autoinit import autoinit  # it draws through this module

        result = autoinit(
            model, input_var=1.0 if input_var is None else input_var, seed=seed, report=report
        )
        if residual_plan is not None:
            _assign_residual(residual_plan, model)
        return result
    if isinstance(scheme, LSUV):
        lsuv_report = scheme(model, seed=seed)
        if residual_plan is not None:
            _assign_residual(residual_plan, model)
        return lsuv_report if report else model
    if isinstance(scheme, str) and scheme == "lsuv":
        raise ValueError(
            "LSUV needs a batch of data: pass `keras_initlab.LSUV(x)` as the "
            "scheme. Received: scheme='lsuv'"
        )
    specs = weight_specs(model)
    plans, values = _draw(specs, scheme, seed)
    extra: list[tuple[Any, Any]] = []
    if residual_plan is not None:
        values, extra = apply_residual(residual_plan, specs, values)
    _assign(specs, values, extra)
    if not report:
        return model
    rows = [
        InitializeRow(
            spec.layer_path,
            spec.path,
            tuple(spec.variable.shape),
            plan.action,
            _name_of(plan.initializer),
            plan.reason,
        )
        for spec, plan in zip(specs, plans, strict=True)
    ]
    rows += [
        InitializeRow(
            other.layer_path,
            other.path,
            tuple(other.variable.shape),
            KEPT if other.is_normalization else NOT_HANDLED,
            None,
            other.reason,
        )
        for other in other_weights(model)
    ]
    return InitializeReport(rows, residual_plan)


def _draw(
    specs: list[WeightSpec], scheme: Any, seed: int | None
) -> tuple[list[WeightPlan], list[Any]]:
    """Per weight, its plan and the value drawn for it (None where it is kept)."""
    base = as_scheme(scheme)
    if base is None:
        if not isinstance(scheme, keras.initializers.Initializer):
            raise TypeError(
                "Argument `scheme` must be a scheme name (keras_initlab.schemes.SCHEMES or "
                "'auto'), `keras_initlab.LSUV(x)` or a keras.initializers.Initializer. "
                f"Received: scheme={scheme!r}"
            )
        base = scheme
    if seed is None:  # the scheme's own int seed, if it has one
        own = getattr(base, "seed", None)
        seed = own if isinstance(own, int) and not isinstance(own, bool) else None
    seed = base_seed(seed)
    plans = [plan_weight(base, spec, weight_seed(seed, i)) for i, spec in enumerate(specs)]
    values = [
        plan.initializer(tuple(spec.variable.shape), dtype=spec.variable.dtype)
        if plan.action == REDRAWN
        else None
        for spec, plan in zip(specs, plans, strict=True)
    ]
    return plans, values


def drawn(model: Any, scheme: Any, *, seed: int | None = None) -> list[tuple[Any, Any]]:
    """The ``(variable, value)`` pairs ``initialize(model, scheme, seed=seed)`` assigns, drawn
    and not assigned (a scheme name or initializer; no LSUV, ``"auto"`` or residual rule).

    The same draw as `initialize` (the same seeds per weight), for a caller that needs the
    values without changing the model (the monitor's healthy reference).

    Example:
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> [(v.name, tuple(value.shape)) for v, value in drawn(model, "he_normal", seed=0)]
    [('kernel', (8, 4)), ('bias', (4,))]
    """
    specs = weight_specs(model)
    _, values = _draw(specs, scheme, seed)
    return [(spec.variable, v) for spec, v in zip(specs, values, strict=True) if v is not None]


def _assign(specs: list[WeightSpec], values: list[Any], extra: list[tuple[Any, Any]]) -> None:
    """Assign the computed values (None: keep the weight) and the residual rule's others."""
    for spec, value in zip(specs, values, strict=True):
        if value is not None:
            spec.variable.assign(value)
    for variable, value in extra:
        variable.assign(value)


def _assign_residual(plan: ResidualInitReport, model: Any) -> None:
    """Apply a residual plan to the model's current weights (after LSUV)."""
    specs = weight_specs(model)
    _assign(specs, *apply_residual(plan, specs, [None] * len(specs)))
