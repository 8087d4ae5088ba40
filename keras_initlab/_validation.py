"""Argument checks that raise one error shape everywhere in the package.

Every message names the argument, the value received and what is allowed, in the form Keras
uses: ``Argument `scale` must be a positive finite number. Received: scale=-1``. Unknown
names get the closest allowed names as suggestions (difflib).
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real scalar: a Python or NumPy int or float, not a bool.

    NumPy scalars (``np.float32(2)``, ``np.int64(3)``) count, as Keras accepts them; bools
    (``True``, ``np.bool_(True)``), strings, arrays and tensors do not.

    Example:
    >>> [is_real(v) for v in (2, 0.5, np.float32(2), True, np.bool_(True), "2", np.ones(1))]
    [True, True, True, False, False, False, False]
    """
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_integer(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy integer, not a bool.

    Example:
    >>> [is_integer(v) for v in (3, np.int64(3), 3.0, True)]
    [True, True, False, False]
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int, or raise if it is not a positive integer.

    TypeError for a value that is not an integer (a float, a bool, a string), ValueError for
    an integer below 1.

    Example:
    >>> check_positive_int("groups", np.int64(4))
    4
    >>> check_positive_int("groups", 2.0)
    Traceback (most recent call last):
    TypeError: Argument `groups` must be a positive integer. Received: groups=2.0
    """
    message = f"Argument `{name}` must be a positive integer. Received: {name}={value!r}"
    if not is_integer(value):
        raise TypeError(message)
    if value < 1:
        raise ValueError(message)
    return int(value)


def check_rank(owner: str, shape: tuple[int, ...], minimum: int, kernel: str = "a kernel") -> None:
    """Raise ValueError unless ``shape`` has at least ``minimum`` dims; ``owner`` needs it.

    Example:
    >>> check_rank("Orthogonal", (3, 4), 2)
    >>> check_rank("Orthogonal", (4,), 2)
    Traceback (most recent call last):
    ValueError: Orthogonal needs a kernel of rank >= 2. Received: shape=(4,) of rank 1
    """
    if len(shape) < minimum:
        raise ValueError(
            f"{owner} needs {kernel} of rank >= {minimum}. Received: shape={shape} "
            f"of rank {len(shape)}"
        )


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not a positive finite number.

    Example:
    >>> check_positive("scale", 2)
    2.0
    >>> check_positive("scale", np.float32(2))
    2.0
    """
    if not is_real(value):
        raise TypeError(
            f"Argument `{name}` must be a positive finite number. Received: {name}={value!r}"
        )
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"Argument `{name}` must be a positive finite number. Received: {name}={value!r}"
        )
    return float(value)


def check_finite(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not a finite real number.

    Example:
    >>> check_finite("mean", np.float32(0.5))
    0.5
    """
    if not is_real(value):
        raise TypeError(f"Argument `{name}` must be a finite number. Received: {name}={value!r}")
    if not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be a finite number. Received: {name}={value!r}")
    return float(value)


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; else raise naming close matches.

    Example:
    >>> check_choice("mode", "fan_in", ["fan_in", "fan_out"])
    'fan_in'
    """
    allowed = sorted(allowed)
    if isinstance(value, str) and value in allowed:
        return value
    raise ValueError(unknown_name_message(name, value, allowed))


def check_names(name: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    """Raise ValueError unless ``values`` is non-empty and each is one of ``allowed``.

    Example:
    >>> check_names("schemes", (), ("a", "b"))
    Traceback (most recent call last):
    ...
    ValueError: Argument `schemes` must name at least one of a, b. Received: schemes=()
    """
    if not values:
        raise ValueError(
            f"Argument `{name}` must name at least one of {', '.join(allowed)}. Received: {name}=()"
        )
    for value in values:
        if value not in allowed:
            raise ValueError(unknown_name_message(name, value, allowed))


def unknown_name_message(name: str, value: Any, allowed: Iterable[str]) -> str:
    """The message for an unknown name: the value, close matches and every allowed name."""
    allowed = sorted(allowed)
    close = difflib.get_close_matches(str(value), allowed, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"Argument `{name}` must be one of {allowed}. Received: {name}={value!r}.{hint}"


def standardize_shape(shape: Any) -> tuple[int, ...]:
    """The shape as a tuple of non-negative ints."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise TypeError(
            f"Argument `shape` must be a sequence of ints. Received: shape={shape!r}"
        ) from None
    if any(d < 0 for d in dims):
        raise ValueError(f"Argument `shape` must have non-negative dims. Received: shape={shape}")
    return dims
