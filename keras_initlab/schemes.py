"""Scheme names and the translation of any initializer to one that knows true fans.

``get_scheme("he_normal")`` returns ``HeNormal()``; ``as_scheme`` also takes Keras' own
built-ins (``keras.initializers.HeNormal()`` becomes the keras_initlab equivalent, so that
``audit`` and ``initialize`` can apply it with the true fans of each layer); ``for_weight``
copies a scheme onto one weight's layout with a seed of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from keras_initlab import initializers as ini
from keras_initlab._validation import is_integer, unknown_name_message
from keras_initlab.initializers._base import default_seed
from keras_initlab.initializers._variance_scaling import TRUNCATED_STD

SCHEMES: dict[str, Callable[[], ini.Scheme]] = {
    "constant": lambda: ini.Constant(0.5),
    "delta_orthogonal": ini.DeltaOrthogonal,
    "glorot_normal": ini.GlorotNormal,
    "glorot_uniform": ini.GlorotUniform,
    "he_normal": ini.HeNormal,
    "he_uniform": ini.HeUniform,
    "identity": ini.ScaledIdentity,
    "kaiming_normal": ini.HeNormal,
    "kaiming_uniform": ini.HeUniform,
    "lecun_normal": ini.LecunNormal,
    "lecun_uniform": ini.LecunUniform,
    "orthogonal": ini.Orthogonal,
    "small_init": ini.SmallInit,
    "xavier_normal": ini.GlorotNormal,
    "xavier_uniform": ini.GlorotUniform,
    "zeros": ini.Zeros,
}
# A prime below 2^31 - 2 (the largest): Keras on TensorFlow takes an int seed modulo
# 2^31 - 2 (``floormod(seed, int32.max - 1)``), so seeds 0 and 2^31 - 2 draw the same
# values there; per-weight seeds below it are distinct streams on every backend.
_SEED_MODULUS = 2_147_483_629


def get_scheme(name: str) -> ini.Scheme:
    """A new initializer for a scheme name (see ``SCHEMES``).

    Example:
    >>> get_scheme("kaiming_uniform")
    HeUniform(seed=None, input_axes=None, output_axes=None, layout='auto', layout_args={})
    """
    if name not in SCHEMES:
        raise ValueError(unknown_name_message("scheme", name, SCHEMES))
    return SCHEMES[name]()


def as_scheme(initializer: Any) -> ini.Scheme | None:
    """The keras_initlab equivalent of an initializer, or None if there is none.

    Accepts a scheme name, a keras_initlab initializer (returned as is) or one of Keras'
    built-ins (VarianceScaling and its subclasses, RandomNormal, RandomUniform,
    TruncatedNormal, Orthogonal, Zeros, Ones, Constant, Identity), keeping their seed.
    """
    if isinstance(initializer, str):
        return get_scheme(initializer)
    if isinstance(initializer, ini.Scheme):
        return initializer
    k = keras.initializers
    seed = getattr(initializer, "seed", None)  # Keras' int (drawn if None) or SeedGenerator
    if isinstance(initializer, k.VarianceScaling):
        dist = {"untruncated_normal": "normal"}.get(
            initializer.distribution, initializer.distribution
        )
        axes = (getattr(initializer, "input_axes", None), getattr(initializer, "output_axes", None))
        if None in axes:
            axes = (None, None)
        return ini.VarianceScaling(initializer.scale, initializer.mode, dist, seed, *axes)
    if isinstance(initializer, k.TruncatedNormal):
        return ini.RandomNormal(initializer.mean, initializer.stddev * TRUNCATED_STD, seed)
    if isinstance(initializer, k.RandomNormal):
        return ini.RandomNormal(initializer.mean, initializer.stddev, seed)
    if isinstance(initializer, k.RandomUniform):
        return ini.RandomUniform(initializer.minval, initializer.maxval, seed)
    if isinstance(initializer, k.Orthogonal):
        return ini.Orthogonal(initializer.gain, seed)
    if isinstance(initializer, k.Zeros):
        return ini.Zeros()
    if isinstance(initializer, k.Ones):
        return ini.Constant(1.0)
    if isinstance(initializer, k.Constant):
        return ini.Constant(float(keras.ops.convert_to_numpy(initializer.value)))
    if isinstance(initializer, k.Identity):
        return ini.ScaledIdentity(initializer.gain)
    return None


def for_weight(
    scheme: ini.Scheme, layout: str, layout_args: dict[str, Any], seed: int | None
) -> ini.Scheme:
    """A copy of ``scheme`` reading fans as ``layout`` and drawing with ``seed``.

    Schemes without a layout (constants, identity, fixed-scale random) keep their own; a
    scheme without a seed ignores ``seed``.
    """
    config = scheme.get_config()
    if "layout" in config:
        allowed = {"auto", "recurrent"} if isinstance(scheme, ini.Orthogonal) else None
        if allowed is None or layout in allowed:
            config["layout"], config["layout_args"] = layout, dict(layout_args)
            if "input_axes" in config:  # Keras' einsum axes: the layout replaces them
                config["input_axes"] = config["output_axes"] = None
    if "seed" in config:
        config["seed"] = seed
    return type(scheme).from_config(config)


def base_seed(seed: Any) -> int:
    """The int base seed of a whole-model operation: ``seed``, or a default when None.

    The default comes from ``keras_initlab.initializers._base.default_seed`` (reproducible
    under ``keras.utils.set_random_seed``).

    Raises:
        TypeError: ``seed`` is neither an int nor None.

    Example:
    >>> base_seed(7)
    7
    """
    if seed is None:
        return default_seed()
    if not is_integer(seed):
        raise TypeError(f"Argument `seed` must be an int or None. Received: seed={seed!r}")
    return int(seed)


def weight_seed(base: int, index: int) -> int:
    """The seed of the ``index``-th weight of a model initialized with seed ``base``."""
    return (base * 1_000_003 + index + 1) % _SEED_MODULUS
