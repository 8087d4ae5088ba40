"""What a custom layer is: the registry through which a user tells the library.

The library reads a layer it has no rule for through its ``call`` traced on KerasTensors
(`keras_initlab.propagate`); a layer whose ``call`` cannot be traced (Python control flow
on values, backend ops) is opaque and its rows are assumed. `register_layer` says what a
layer class is, once, and every feature that asks what a layer is reads it: `propagate`
(and through it `initialize(model, "auto")`, the diagnosis and the alerts), the depth
rule's reading of the main path (`keras_initlab.model.path`: a normalization resets the
scale, dropout is a one-off change).

Kinds, for an input whose elements have mean ``m`` and variance ``v``, and the gradient
variance ``g`` that reaches the output:

* ``"identity"``: a variance-preserving map: ``m' = m``, ``v' = v``, ``g_in = g``.
* ``"scale"``: a learned per-channel scale ``w`` held in the weight ``weight`` (the
  attribute's name): ``m' = w m``, ``v' = w^2 v``, ``g_in = w^2 g`` (``w`` broadcast on
  the last axis, as ``x * w`` does).
* ``"normalization"``: standardizes its input per sample (a LayerNorm-like map, affine
  parameters at their initial values): ``m' = 0``, ``v' = 1``, ``g_in = g / E[v + m^2]``.
* ``"dropout"``: drops elements or samples with the rate held in the attribute ``rate``,
  the kept ones divided by ``1 - rate``: in training mode ``E[y^2] = E[x^2] / (1 - rate)``,
  ``g_in = g / (1 - rate)``; the identity in inference.
* ``rule=``: the user's own rule, ``rule(layer, mean, var, training) -> (mean', var',
  gain)``: the output's mean and variance per element (floats, or arrays of the output's
  shape without the batch axis) from the input's, and the factor ``gain`` with
  ``g_in = gain * g``.

Built-in entries cover the custom layers Keras' own model code defines (ConvNeXt's
``LayerScale`` and ``StochasticDepth``); a user's registration of a class replaces any
built-in one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keras_initlab import _keras

__all__ = ["KINDS", "LayerKind", "register_layer", "registered", "unregister_layer"]

KINDS = ("identity", "scale", "normalization", "dropout")
Rule = Callable[[Any, Any, Any, bool], tuple[Any, Any, Any]]


@dataclass(frozen=True)
class LayerKind:
    """What a registered layer class is (see the module docstring).

    Attributes:
        kind: one of `KINDS`, or ``"rule"`` for a user's rule.
        weight: for ``"scale"``, the attribute that holds the scale.
        rate: for ``"dropout"``, the attribute that holds the rate.
        rule: for ``"rule"``, the function.
    """

    kind: str
    weight: str | None = None
    rate: str | None = None
    rule: Rule | None = None


_REGISTRY: dict[type, LayerKind] = {}
_BUILT_IN: dict[type, LayerKind] | None = None


def _built_in() -> dict[type, LayerKind]:
    global _BUILT_IN
    if _BUILT_IN is None:
        found = _keras.application_layers()
        kinds = {
            "LayerScale": LayerKind("scale", weight="gamma"),
            "StochasticDepth": LayerKind("dropout", rate="drop_path_rate"),
        }
        _BUILT_IN = {found[name]: kind for name, kind in kinds.items() if name in found}
    return _BUILT_IN


def register_layer(
    layer_class: type,
    kind: str | None = None,
    *,
    weight: str | None = None,
    rate: str | None = None,
    rule: Rule | None = None,
) -> type:
    """Tell the library what the custom layer class ``layer_class`` is.

    Give a ``kind`` (with its ``weight`` or ``rate`` attribute) or a ``rule``; subclasses
    are covered too. See the module docstring for the formulas.

    Args:
        layer_class: a ``keras.layers.Layer`` subclass.
        kind: ``"identity"``, ``"scale"``, ``"normalization"`` or ``"dropout"``.
        weight: for ``"scale"``: the name of the attribute holding the per-channel scale.
        rate: for ``"dropout"``: the name of the attribute holding the drop rate.
        rule: instead of a kind, ``rule(layer, mean, var, training) -> (mean, var, gain)``.

    Returns:
        ``layer_class``, so that it can be used as a decorator through
        ``functools.partial`` or a lambda.

    Raises:
        TypeError: ``layer_class`` is not a Layer subclass, or ``rule`` is not callable.
        ValueError: an unknown kind, both or neither of ``kind`` and ``rule``, or a
            missing or superfluous ``weight``/``rate``.

    Example:
    >>> import keras, keras_initlab
    >>> class Scale(keras.layers.Layer):
    ...     def build(self, shape):
    ...         self.alpha = self.add_weight(shape=(shape[-1],), initializer="ones")
    ...     def call(self, x):
    ...         return x * keras.ops.convert_to_numpy(self.alpha)  # not traceable
    >>> _ = keras_initlab.register_layer(Scale, "scale", weight="alpha")
    >>> keras_initlab.model.registry.registered(Scale()).kind
    'scale'
    >>> keras_initlab.unregister_layer(Scale)
    """
    import keras

    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            "Argument `layer_class` must be a keras.layers.Layer subclass. "
            f"Received: layer_class={layer_class!r}"
        )
    if (kind is None) == (rule is None):
        raise ValueError(
            f"Give exactly one of `kind` (one of {KINDS}) and `rule`. "
            f"Received: kind={kind!r}, rule={rule!r}"
        )
    if rule is not None:
        if not callable(rule):
            raise TypeError(f"Argument `rule` must be callable. Received: rule={rule!r}")
        if weight is not None or rate is not None:
            raise ValueError(
                "Arguments `weight` and `rate` go with a kind, not with `rule`. "
                f"Received: weight={weight!r}, rate={rate!r}"
            )
        _REGISTRY[layer_class] = LayerKind("rule", rule=rule)
        return layer_class
    if kind not in KINDS:
        raise ValueError(f"Argument `kind` must be one of {KINDS}. Received: kind={kind!r}")
    needs = {"scale": "weight", "dropout": "rate"}.get(kind)
    given = {"weight": weight, "rate": rate}
    for name, value in given.items():
        if name == needs and not (isinstance(value, str) and value):
            raise ValueError(
                f"Kind {kind!r} needs `{name}`: the name of the attribute that holds it. "
                f"Received: {name}={value!r}"
            )
        if name != needs and value is not None:
            raise ValueError(f"Kind {kind!r} takes no `{name}`. Received: {name}={value!r}")
    _REGISTRY[layer_class] = LayerKind(kind, weight=weight, rate=rate)
    return layer_class


def unregister_layer(layer_class: type) -> None:
    """Forget a registration of `register_layer` (built-in entries stay).

    Raises:
        ValueError: ``layer_class`` is not registered.
    """
    if layer_class not in _REGISTRY:
        raise ValueError(
            f"Argument `layer_class` is not registered. Received: layer_class={layer_class!r}"
        )
    del _REGISTRY[layer_class]


def registered(layer: Any) -> LayerKind | None:
    """What ``layer`` is registered as (its class or the nearest registered base), or None."""
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
        if cls in _built_in():
            return _built_in()[cls]
    return None
