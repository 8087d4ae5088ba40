"""How each scheme of ``keras-initlab compare`` sets the weights of the deep MLP.

Every scheme goes through ``keras_initlab.initialize(model, initializer, seed=seed)``, which
draws every kernel on its true fans and sets every bias to 0. The fixed choices:

* ``zeros``: ``Zeros`` for every kernel, the output layer included.
* ``constant``: ``Constant(1 / width)`` for every kernel, the output layer included. Any
  constant keeps the symmetry; ``1 / width`` is the one that also keeps the signal's scale
  (a hidden unit then outputs the mean of the layer below), so that symmetry is the only
  failure left to see.
* ``too_small``: ``RandomNormal(stddev=TOO_SMALL_STD)``; per ReLU layer the activation
  variance is multiplied by ``width * TOO_SMALL_STD**2 / 2`` (0.0032 at width 64).
* ``too_large``: ``RandomNormal(stddev=TOO_LARGE_STD)``; the factor is
  ``width * TOO_LARGE_STD**2 / 2`` (32 at width 64): the signal explodes with depth.
* ``identity_1.5`` / ``identity_0.5``: ``ScaledIdentity(1.5)`` / ``(0.5)`` for every kernel.
  The hidden kernels are square (constant width), so each hidden layer computes
  ``act(k * h)``; the input kernel ``(features, width)`` and the output kernel
  ``(width, classes)`` get the rectangular identity ``k * eye(in, out)`` (input feature i
  feeds unit i; output class j reads unit j), the tutorial's "every layer is k I". With
  ReLU, ``relu(k * relu(z)) = k * relu(z)``, so the activation variance grows exactly by
  ``k**2`` per layer: ``1.5**(2 (L-1))`` or ``0.5**(2 (L-1))`` from first to last layer.
* ``xavier_normal``, ``xavier_uniform``, ``he_normal``, ``he_uniform``, ``lecun_normal``:
  the keras_initlab initializers of those names.
* ``orthogonal``: ``Orthogonal(gain=keras_initlab.gain(activation))`` (sqrt(2) for ReLU,
  5/3 for tanh), Saxe et al.'s recommendation.
* ``lsuv``: ``initialize(model, keras_initlab.LSUV(x), seed=seed)`` (which runs
  ``keras_initlab.lsuv``) on a batch ``x`` of ``LSUV_BATCH`` training examples: orthonormal
  kernels, then each layer's kernel rescaled in forward order
  until its pre-activation output has unit variance (Mishkin & Matas 2016).
* ``auto``: ``initialize(model, "auto", seed=seed)`` (``keras_initlab.autoinit``): LeCun
  normal kernels, each then scaled from the propagated moments so that every layer's output
  variance is 1 (the standardized inputs' variance), after its activation; no data needed.
"""

from __future__ import annotations

from typing import Any

from keras_initlab import initializers as ini
from keras_initlab.compare.config import COMPARE_SCHEMES, check_scheme_names
from keras_initlab.gains import gain
from keras_initlab.initialize import initialize
from keras_initlab.lsuv import LSUV

TOO_SMALL_STD = 0.01  # the deeplearning.ai page's "too small" scale
TOO_LARGE_STD = 1.0  # variance gain width/2 per ReLU layer: explodes for any width > 2
IDENTITY_SCALES = {"identity_1.5": 1.5, "identity_0.5": 0.5}
LSUV_BATCH = 256  # training examples LSUV normalizes on (its docstring: 256 or more)


def scheme_initializer(name: str, *, width: int, activation: str) -> ini.Scheme:
    """The initializer applied to every kernel under the compare scheme ``name``.

    For ``lsuv`` it is the orthonormal start (``Orthogonal()``) that LSUV then rescales, for
    ``auto`` the LeCun normal draw that AutoInit then scales.

    Example:
    >>> scheme_initializer("identity_1.5", width=64, activation="relu")
    ScaledIdentity(scale=1.5)
    """
    check_scheme_names([name])
    if name == "zeros":
        return ini.Zeros()
    if name == "constant":
        return ini.Constant(1.0 / width)
    if name == "too_small":
        return ini.RandomNormal(stddev=TOO_SMALL_STD)
    if name == "too_large":
        return ini.RandomNormal(stddev=TOO_LARGE_STD)
    if name in IDENTITY_SCALES:
        return ini.ScaledIdentity(IDENTITY_SCALES[name])
    if name == "orthogonal":
        return ini.Orthogonal(gain(activation))
    if name == "lsuv":
        return ini.Orthogonal()
    if name == "auto":
        return ini.LecunNormal()
    fixed: dict[str, type[ini.Scheme]] = {
        "xavier_normal": ini.GlorotNormal,
        "xavier_uniform": ini.GlorotUniform,
        "he_normal": ini.HeNormal,
        "he_uniform": ini.HeUniform,
        "lecun_normal": ini.LecunNormal,
    }
    return fixed[name]()


def apply_scheme(
    model: Any, name: str, *, seed: int, width: int, activation: str, x: Any = None
) -> Any:
    """Re-initialize ``model`` in place under the compare scheme ``name``; return it.

    ``x`` (training inputs) is needed by ``lsuv`` only; it uses the first ``LSUV_BATCH``.

    Example:
    >>> from keras_initlab.compare.models import build_mlp
    >>> model = apply_scheme(build_mlp(4, 2, depth=2, width=4), "zeros", seed=0, width=4,
    ...                      activation="relu")
    >>> float(abs(model.layers[0].kernel.numpy()).sum())
    0.0
    """
    if name == "lsuv":
        if x is None:
            raise ValueError("Scheme `lsuv` needs training inputs. Received: x=None")
        return initialize(model, LSUV(x[:LSUV_BATCH]), seed=seed)
    if name == "auto":
        return initialize(model, "auto", seed=seed)
    return initialize(
        model, scheme_initializer(name, width=width, activation=activation), seed=seed
    )


def describe_schemes(width: int, activation: str) -> dict[str, str]:
    """``{name: repr of its initializer}`` for reports."""
    described = {
        name: repr(scheme_initializer(name, width=width, activation=activation))
        for name in COMPARE_SCHEMES
    }
    described["lsuv"] = f"lsuv(model, x[:{LSUV_BATCH}]) (orthonormal start, unit variance)"
    described["auto"] = "autoinit(model) (LeCun normal start, unit variance after each layer)"
    return described
