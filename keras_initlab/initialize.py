"""``initialize``: re-initialize every kernel of a built model with the true fans."""

from __future__ import annotations

from typing import Any

import keras

from keras_initlab import initializers as ini
from keras_initlab.layer_weights import WeightSpec, weight_specs
from keras_initlab.lsuv import LSUV
from keras_initlab.schemes import as_scheme, base_seed, for_weight, weight_seed

# Schemes applied as they are to recurrent kernels; every other scheme gets an orthogonal
# recurrent kernel per gate (the choice of Keras' defaults, and of Saxe et al. 2014).
_RECURRENT_AS_GIVEN = (ini.Constant, ini.ScaledIdentity, ini.Orthogonal)


def _scheme_for(base: Any, spec: WeightSpec, seed: int) -> Any:
    if spec.is_bias:
        return ini.Zeros()
    if not isinstance(base, ini.Scheme):
        return base  # a user's own initializer: called with the shape alone
    if spec.role == "recurrent_kernel" and not isinstance(base, _RECURRENT_AS_GIVEN):
        base = ini.Orthogonal()
    return for_weight(base, spec.layout, spec.layout_args, seed)


def initialize(model: Any, scheme: Any, *, seed: int | None = None) -> Any:
    """Re-initialize every kernel of a built model with ``scheme`` on each layer's true fans.

    Kernels of Dense, ConvND, ConvNDTranspose, DepthwiseConvND, SeparableConvND,
    LSTM/GRU/SimpleRNN (input kernel per gate), EinsumDense (and so MultiHeadAttention) and
    Embedding layers are drawn from ``scheme`` with the fans of their true layout
    (``keras_initlab.compute_fans``); recurrent kernels get an orthogonal block per gate
    unless the scheme is constant, identity or orthogonal; biases are set to 0. Other weights
    (normalization layers, custom layers' weights) are left as they are. Every value is
    computed before any is assigned, so a failure leaves the model untouched.

    Args:
        model: a built Keras model or layer (Sequential, Functional, subclassed, nested).
        scheme: a scheme name (``keras_initlab.schemes.SCHEMES``: ``"he_normal"``, ...), a
            keras_initlab initializer, or a Keras initializer (Keras' built-ins are
            translated so they too get the true fans; others are called with the shape),
            or ``keras_initlab.LSUV(x)``, which runs ``keras_initlab.lsuv`` on the batch ``x``
            (its report is kept as ``scheme.report``).
        seed: base seed; each weight gets its own seed derived from it, so two layers of the
            same shape differ. None uses the scheme's int seed if it has one, else a seed
            from Python's RNG (reproducible under ``keras.utils.set_random_seed``).

    Returns:
        The model, re-initialized in place.

    Raises:
        TypeError: ``scheme`` is neither a name nor an initializer; ``model`` is not a model.
        ValueError: unknown scheme name, or an unbuilt model.

    Example:
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu")])
    >>> model = initialize(model, "he_normal", seed=0)
    """
    if isinstance(scheme, LSUV):
        scheme(model, seed=seed)
        return model
    if isinstance(scheme, str) and scheme == "lsuv":
        raise ValueError(
            "LSUV needs a batch of data: pass `keras_initlab.LSUV(x)` as the "
            "scheme. Received: scheme='lsuv'"
        )
    specs = weight_specs(model)
    base = as_scheme(scheme)
    if base is None:
        if not isinstance(scheme, keras.initializers.Initializer):
            raise TypeError(
                "Argument `scheme` must be a scheme name or a keras.initializers.Initializer. "
                f"Received: scheme={scheme!r}"
            )
        base = scheme
    if seed is None:  # the scheme's own int seed, if it has one
        own = getattr(base, "seed", None)
        seed = own if isinstance(own, int) and not isinstance(own, bool) else None
    seed = base_seed(seed)
    values = [
        _scheme_for(base, spec, weight_seed(seed, i))(
            tuple(spec.variable.shape), dtype=spec.variable.dtype
        )
        for i, spec in enumerate(specs)
    ]
    for spec, value in zip(specs, values, strict=True):
        spec.variable.assign(value)
    return model
