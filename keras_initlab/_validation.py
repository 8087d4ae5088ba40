"""Argument checks that raise one error shape everywhere in the package.

Every message names the argument, the value received and what is allowed, in the form Keras
uses: ``Argument `scale` must be a positive finite number. Received: scale=-1``. Unknown
names get the closest allowed names as suggestions (difflib).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not a positive finite number.

    Example:
    >>> check_positive("scale", 2)
    2.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"Argument `{name}` must be a positive finite number. Received: {name}={value!r}"
        )
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"Argument `{name}` must be a positive finite number. Received: {name}={value!r}"
        )
    return float(value)


def check_finite(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not a finite real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
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
