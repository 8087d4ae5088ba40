"""Recommended gains: the factor by which an activation's weights are scaled.

A scheme's target variance is ``gain**2 / fan``. For the activations PyTorch defines
(``torch.nn.init.calculate_gain``) the values are the same, so numbers carry over between
frameworks. For the others the gain is *derived*: it is the factor that keeps the second
moment of the signal through one layer,

    gain(f) = 1 / sqrt(E[f(z)**2]),   z ~ N(0, 1),

the rule that gives ``sqrt(2)`` for ReLU (``E[relu(z)**2] = 1/2``) and
``sqrt(2 / (1 + a**2))`` for leaky ReLU. The expectation is computed once per call by
numerical integration (Simpson's rule on [-12, 12], split at 0 where ELU has a kink).
PyTorch's tanh (5/3) and SELU (3/4) values are empirical and kept as they are; for tanh the
second-moment rule would give 1.593.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from keras_initlab._validation import check_finite, unknown_name_message
from keras_initlab.gaussian import erf, normal_nodes

__all__ = ["gain"]

_FIXED = {
    "linear": 1.0,
    "identity": 1.0,
    "conv1d": 1.0,
    "conv2d": 1.0,
    "conv3d": 1.0,
    "conv_transpose1d": 1.0,
    "conv_transpose2d": 1.0,
    "conv_transpose3d": 1.0,
    "sigmoid": 1.0,
    "tanh": 5.0 / 3.0,
    "relu": math.sqrt(2.0),
    "selu": 0.75,
}
_LEAKY_DEFAULT_SLOPE = 0.01  # PyTorch's default negative slope for calculate_gain
_ELU_DEFAULT_ALPHA = 1.0  # Keras' and PyTorch's default alpha


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _gelu(z: np.ndarray) -> np.ndarray:
    return 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))


def _silu(z: np.ndarray) -> np.ndarray:
    return z / (1.0 + np.exp(-z))


def _mish(z: np.ndarray) -> np.ndarray:
    return z * np.tanh(_softplus(z))


def _elu(alpha: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda z: np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0)))


_DERIVED: dict[str, Callable[[float | None], Callable[[np.ndarray], np.ndarray]]] = {
    "gelu": lambda _: _gelu,
    "silu": lambda _: _silu,
    "swish": lambda _: _silu,
    "mish": lambda _: _mish,
    "softplus": lambda _: _softplus,
    "elu": lambda a: _elu(_ELU_DEFAULT_ALPHA if a is None else a),
}
_NAMES = sorted([*_FIXED, *_DERIVED, "leaky_relu"])


def _second_moment(f: Callable[[np.ndarray], np.ndarray]) -> float:
    """E[f(z)^2] for z ~ N(0, 1): Simpson's rule on each half of [-12, 12]."""
    z, w = normal_nodes(0.0, 1.0, breaks=(0.0,), points=24_001, width=12.0)
    return float(np.sum(w * f(z) ** 2))


def gain(activation: str | Callable[..., object], param: float | None = None) -> float:
    """Return the recommended gain for an activation.

    ``gain(f)**2`` multiplies the target variance of a scheme: ``Var(W) = gain**2 / fan``.
    PyTorch-compatible values: linear and conv 1, sigmoid 1, tanh 5/3, relu sqrt(2),
    leaky_relu sqrt(2 / (1 + a**2)) (``param`` = negative slope a, default 0.01), selu 3/4.
    Derived values ``1 / sqrt(E[f(z)**2])`` with z ~ N(0, 1) for gelu, silu/swish, elu
    (``param`` = alpha, default 1), softplus and mish.

    Args:
        activation: an activation name, or a Keras activation function (its ``__name__``).
        param: the negative slope of leaky_relu or the alpha of elu; ignored otherwise.

    Returns:
        The gain as a Python float.

    Raises:
        ValueError: unknown activation (close matches are suggested) or a non-finite param.

    Example:
    >>> round(gain("relu"), 6)
    1.414214
    >>> round(gain("leaky_relu", 0.2), 6)
    1.38675
    """
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(
            "Argument `activation` must be an activation name or function. "
            f"Received: activation={activation!r}"
        )
    key = name.lower()
    if param is not None:
        param = check_finite("param", param)
    if key in _FIXED:
        return _FIXED[key]
    if key == "leaky_relu":
        slope = _LEAKY_DEFAULT_SLOPE if param is None else param
        return math.sqrt(2.0 / (1.0 + slope * slope))
    if key in _DERIVED:
        return 1.0 / math.sqrt(_second_moment(_DERIVED[key](param)))
    raise ValueError(unknown_name_message("activation", name, _NAMES))
