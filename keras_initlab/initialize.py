"""``initialize``: re-initialize every kernel of a built model with the true fans.

The rule for each weight is `keras_initlab.draw` (kernels re-drawn on their true layout,
recurrent kernels orthogonal per gate, biases by the layer's own initializer, embeddings,
normalization and custom weights kept). Procedures that need data or the graph (LSUV,
AutoInit) are dispatched through one small protocol, `Procedure`: ``initialize`` imports
them, they never import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from keras_initlab._validation import unknown_name_message
from keras_initlab.autoinit import AutoInit
from keras_initlab.draw import (
    KEPT,
    NOT_HANDLED,
    REDRAWN,
    assign,
    initializer_name,
    plans_and_values,
)
from keras_initlab.lsuv import LSUV
from keras_initlab.model.weights import other_weights, weight_specs
from keras_initlab.recipes import RECIPES, recipe_parts
from keras_initlab.residual_init import (
    ResidualInitReport,
    apply_residual,
    check_rule,
    plan_residual,
)
from keras_initlab.schemes import SCHEMES
from keras_initlab.text_table import RowReport, format_table

# The scheme names `initialize` knows: the schemes of ``SCHEMES``, the recipes of
# ``RECIPES``, AutoInit's "auto", and "lsuv", which is refused with a pointer to
# ``keras_initlab.LSUV(x)`` (it needs data).
INITIALIZE_SCHEMES = (*SCHEMES, *RECIPES, "auto", "lsuv")


class Procedure(Protocol):
    """An initialization that needs data or the graph (``keras_initlab.LSUV(x)``,
    ``keras_initlab.autoinit.AutoInit``): it changes the model's weights in place, with
    ``seed`` for what it draws, and returns its report."""

    def __call__(self, model: Any, *, seed: int | None = None) -> Any: ...


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
            propagated moments so every layer's output variance stays at ``input_var``,
            or a recipe name (``keras_initlab.recipes.RECIPES``: ``"gpt2"``, ``"olmo"``,
            ``"deepnet"``, ``"t_fixup"``), which draws the embedding tables too (where the
            recipe sets them) and applies its own ``residual`` rule.
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
            to 0, De and Smith 2020), ``"scaled"`` (last layer times ``1/sqrt(L)``, GPT-2),
            ``"depth"`` (the last layers of block ``l`` times ``1/sqrt(2 (l + 1))``, OLMo),
            ``"deepnet"`` (post-LN: value, output and FFN kernels times ``(8N)^(-1/4)``, a
            fixed gate per branch at ``(2N)^(-1/4)``, Wang et al. 2022) or ``"t_fixup"``
            (no normalization: those kernels and the embeddings times ``(9N)^(-1/4)``,
            Huang et al. 2020).
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
    >>> import keras
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
    scheme, residual, embeddings = recipe_parts(scheme, residual)
    rule = check_rule(residual)  # planned first: a failure changes nothing
    residual_plan = None if rule is None else plan_residual(model, rule, weight_specs(model))
    procedure = _procedure(scheme, input_var)
    if procedure is not None:
        result = procedure(model, seed=seed)
        if residual_plan is not None:
            _assign_residual(residual_plan, model)
        return result if report else model
    if isinstance(scheme, str) and scheme == "lsuv":
        raise ValueError(
            "LSUV needs a batch of data: pass `keras_initlab.LSUV(x)` as the "
            "scheme. Received: scheme='lsuv'"
        )
    specs = weight_specs(model)
    plans, values = plans_and_values(specs, scheme, seed, embeddings)
    extra: list[tuple[Any, Any]] = []
    if residual_plan is not None:
        values, extra = apply_residual(residual_plan, specs, values)
    assign(specs, values, extra)
    if not report:
        return model
    rows = [
        InitializeRow(
            spec.layer_path,
            spec.path,
            tuple(spec.variable.shape),
            plan.action,
            initializer_name(plan.initializer),
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


def _procedure(scheme: Any, input_var: float | None) -> Procedure | None:
    """The `Procedure` a scheme names (``"auto"``, an ``LSUV``), or None for a draw."""
    if isinstance(scheme, str) and scheme == "auto":
        return AutoInit(1.0 if input_var is None else input_var)
    return scheme if isinstance(scheme, LSUV) else None


def _assign_residual(plan: ResidualInitReport, model: Any) -> None:
    """Apply a residual plan to the model's current weights (after LSUV)."""
    specs = weight_specs(model)
    assign(specs, *apply_residual(plan, specs, [None] * len(specs)))
