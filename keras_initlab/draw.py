"""Drawing a model's weights from a scheme on their true fans: the rule for each weight.

What happens to each weight is decided by one rule, ``plan_weight``, which ``initialize``
and ``audit`` use (so that ``audit(model, s)`` right after ``initialize(model, s)`` flags
nothing), and AutoInit draws its starting point with (`draw`):

* kernels (Dense, ConvND, ConvNDTranspose, DepthwiseConvND, SeparableConvND, EinsumDense and
  so MultiHeadAttention, the input kernel of LSTM/GRU/SimpleRNN per gate): re-drawn from the
  scheme on their true layout (``keras_initlab.compute_fans``);
* recurrent kernels: re-drawn orthogonal per gate (Keras' default family, Saxe et al. 2014),
  unless the scheme is constant, identity or orthogonal, which apply as they are;
* biases: re-drawn from the layer's own ``bias_initializer`` (zeros by default), keeping an
  LSTM's ``unit_forget_bias`` (forget-gate bias 1);
* embeddings: kept. A lookup table has no fan-in (each output reads one row), so a
  variance-scaling scheme on fan_in = 1 would give He a std of 1.41 where Keras' default
  draws 0.05; the table keeps the layer's own ``embeddings_initializer`` draw, unless that
  draw repeats another weight's (`keras_initlab.repeated_draws`: two tables drawn by one
  unseeded initializer instance): then it is re-drawn from that initializer under the
  weight's own seed;
* normalization layers' scales, offsets and statistics: kept;
* other weights (custom layers' own ``add_weight`` weights): not handled, left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
from keras import ops

from keras_initlab import initializers as ini
from keras_initlab.model.layers import LSTM_CELLS
from keras_initlab.model.weights import WeightSpec, weight_specs
from keras_initlab.repeated_draws import repeated_draws
from keras_initlab.schemes import as_scheme, base_seed, for_weight, weight_seed

# Schemes applied as they are to recurrent kernels; every other scheme gets an orthogonal
# recurrent kernel per gate (the choice of Keras' defaults, and of Saxe et al. 2014).
_RECURRENT_AS_GIVEN = (ini.Constant, ini.ScaledIdentity, ini.Orthogonal)
REDRAWN = "re-drawn"
KEPT = "kept"
NOT_HANDLED = "not handled"
EMBEDDING_REASON = (
    "embedding table: no fan-in (one row per lookup); keeps the layer's embeddings_initializer"
)
REPEATED_EMBEDDING_REASON = (
    "embedding table whose draws repeated another weight's: its own initializer, re-seeded"
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
    if isinstance(layer, LSTM_CELLS) and getattr(layer, "unit_forget_bias", False):
        return WeightPlan(
            REDRAWN,
            _UnitForgetBias(base, int(layer.units)),
            "bias: the layer's bias_initializer, forget gate 1 (LSTM unit_forget_bias)",
        )
    return WeightPlan(REDRAWN, base, "bias: the layer's bias_initializer (zeros by default)")


def _reseeded(initializer: Any, seed: int | None) -> Any:
    """``initializer`` drawn under ``seed`` (a Keras initializer with a ``seed`` in its
    config), or None where it has none."""
    config = initializer.get_config() if initializer is not None else {}
    if "seed" not in config:
        return None
    return type(initializer).from_config({**config, "seed": seed})


def plan_weight(
    base: Any,
    spec: WeightSpec,
    seed: int | None,
    embeddings: ini.Scheme | None = None,
    repeats: bool = False,
) -> WeightPlan:
    """The rule of ``initialize`` (module docstring) for one weight, under scheme ``base``.

    ``base`` is a keras_initlab initializer or a user's own Keras initializer; ``seed`` is
    the weight's own seed (None: the scheme's default). ``embeddings``: None (tables kept),
    or the scheme a recipe draws embedding tables from (`keras_initlab.recipes`), on their
    ``(vocabulary, width)`` layout. ``repeats``: the weight's values repeat another
    weight's draws (a kept table is then re-drawn under its own seed).
    """
    if spec.is_bias:
        return _bias_plan(spec)
    if spec.layout == "embedding" and embeddings is not None:
        return WeightPlan(
            REDRAWN,
            for_weight(embeddings, spec.layout, spec.layout_args, seed),
            "embedding table: the recipe's draw",
        )
    if spec.layout == "embedding":
        reseeded = _reseeded(spec.initializer, seed) if repeats else None
        if reseeded is not None:
            return WeightPlan(REDRAWN, reseeded, REPEATED_EMBEDDING_REASON)
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


def plans_and_values(
    specs: list[WeightSpec], scheme: Any, seed: int | None, embeddings: ini.Scheme | None = None
) -> tuple[list[WeightPlan], list[Any]]:
    """Per weight, its plan and the value drawn for it (None where it is kept);
    ``embeddings`` as in `plan_weight`."""
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
    repeated = {r.path for r in repeated_draws([spec.variable for spec in specs])}
    plans = [
        plan_weight(base, spec, weight_seed(seed, i), embeddings, spec.variable.path in repeated)
        for i, spec in enumerate(specs)
    ]
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
    _, values = plans_and_values(specs, scheme, seed)
    return [(spec.variable, v) for spec, v in zip(specs, values, strict=True) if v is not None]


def assign(specs: list[WeightSpec], values: list[Any], extra: list[tuple[Any, Any]]) -> None:
    """Assign the computed values (None: keep the weight) and the residual rule's others."""
    for spec, value in zip(specs, values, strict=True):
        if value is not None:
            spec.variable.assign(value)
    for variable, value in extra:
        variable.assign(value)


def initializer_name(initializer: Any) -> str | None:
    if initializer is None:
        return None
    if isinstance(initializer, _UnitForgetBias):
        return f"{type(initializer.base).__name__} + forget gate 1"
    return type(initializer).__name__


def draw(
    model: Any, scheme: Any, *, seed: int | None = None
) -> list[tuple[WeightSpec, WeightPlan]]:
    """Draw every weight of ``model`` from ``scheme`` by the rule, and assign it.

    Returns:
        Each weight's spec and what was done to it (`WeightPlan`), in `weight_specs` order.

    Example:
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> [(spec.role, plan.action) for spec, plan in draw(model, "lecun_normal", seed=0)]
    [('kernel', 're-drawn'), ('bias', 're-drawn')]
    """
    specs = weight_specs(model)
    plans, values = plans_and_values(specs, scheme, seed)
    assign(specs, values, [])
    return list(zip(specs, plans, strict=True))
