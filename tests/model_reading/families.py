"""Every model family of ``keras.applications``, found by introspection, built small.

``application_families()`` reads ``keras.applications`` itself: each public constructor (a
function of the package or of one of its submodules that takes ``weights`` and
``input_shape``: ``ResNet50``, ``MobileNetV3Small``, ...; not ``preprocess_input`` or
``decode_predictions``) is grouped by the module that defines it (``resnet``,
``mobilenet_v3``, ...), so a family a later Keras adds is swept without a change here, and
an alias module (``resnet50``) or a constructor exported only at the top level
(``MobileNetV3Small``) is counted once in its own family. ``smallest_input`` finds the
smallest square input a constructor accepts with ``weights=None`` (the minimum Keras states
when given a 1x1 input, then tried upwards; ``build_smallest`` returns the model built
there too); ``build`` builds one with ``weights=None`` and 10 classes; ``representative``
picks a family's smallest constructor. Loaded by path (``benchmarks/bench_model_reading.py``),
so it is not collected as a test module.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

CLASSES = 10  # a small classifier head
DEFAULT_MINIMUM = 32  # Keras' minimum input size without pretrained weights, most families
MAX_TRIES = 64  # sizes tried above the stated minimum before giving up
# The size words of the constructors' names, smallest first (the representative of a family
# is its smallest constructor: `representative`).
SIZE_WORDS = ("Tiny", "Small", "Mobile", "Base", "Large", "XLarge")

Constructor = Callable[..., Any]


def _is_constructor(name: str, obj: Any) -> bool:
    if name.startswith("_") or not inspect.isfunction(obj):
        return False
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False
    return "weights" in parameters and "input_shape" in parameters


def application_families() -> dict[str, list[Constructor]]:
    """``{family: [constructor, ...]}`` of every model ``keras.applications`` exports.

    The family is the last part of the defining module's name (``keras.src.applications.
    mobilenet_v3`` -> ``mobilenet_v3``); families sorted by name, their constructors smallest
    first (`size_key`), each listed once however many modules export it.
    """
    import keras

    applications = keras.applications
    found: dict[int, Constructor] = {}
    spaces = [applications] + [
        getattr(applications, name)
        for name in dir(applications)
        if inspect.ismodule(getattr(applications, name)) and not name.startswith("_")
    ]
    for space in spaces:
        for name in dir(space):
            obj = getattr(space, name)
            if _is_constructor(name, obj):
                found[id(obj)] = obj
    families: dict[str, list[Constructor]] = {}
    for fn in found.values():
        families.setdefault(fn.__module__.rsplit(".", 1)[-1], []).append(fn)
    return {f: sorted(families[f], key=size_key) for f in sorted(families)}


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def size_key(constructor: Constructor) -> tuple[int, list[Any]]:
    """Sorts a family's constructors smallest first: by the size word the name ends with
    (``Tiny`` before ``Base`` before ``XLarge``; none counts as ``Base``), then naturally
    (``B0`` before ``B3``, ``ResNet50`` before ``ResNet101``)."""
    name = constructor.__name__
    words = [w for w in SIZE_WORDS if name.endswith(w)]  # the longest: XLarge, not Large
    word = max(words, key=len) if words else "Base"
    return SIZE_WORDS.index(word), _natural(name)


def representative(constructors: list[Constructor]) -> Constructor:
    """The smallest constructor of a family (`size_key`): ``ConvNeXtTiny``, ``ResNet50``,
    ``EfficientNetV2B0``, ``NASNetMobile``, ``MobileNetV3Small``."""
    return min(constructors, key=size_key)


def _kwargs(size: int) -> dict[str, Any]:
    return {"weights": None, "input_shape": (size, size, 3), "classes": CLASSES}


def stated_minimum(constructor: Constructor) -> int:
    """The minimum input size Keras states for ``constructor`` without weights, read from
    the error it raises for a 1x1 input (``DEFAULT_MINIMUM`` when it states none)."""
    try:
        constructor(**_kwargs(1))
    except ValueError as error:
        found = re.search(r"at least (\d+)x(\d+)", str(error))
        if found:
            return max(int(found.group(1)), int(found.group(2)))
        return DEFAULT_MINIMUM
    return 1


def build_smallest(constructor: Constructor) -> tuple[Any, int]:
    """``(model, size)``: ``constructor`` built at the smallest square input size it builds
    at with ``weights=None`` (`build`).

    Starts at the size Keras states (`stated_minimum`: 32 for most families, 71 for
    Xception, 75 for InceptionV3 and InceptionResNetV2) and tries upwards while the build
    fails on its shapes (``MAX_TRIES`` sizes at most).

    Raises:
        ValueError: no size within ``MAX_TRIES`` of the stated minimum builds.
    """
    start = stated_minimum(constructor)
    last: Exception | None = None
    for size in range(start, start + MAX_TRIES):
        try:
            return build(constructor, size), size
        except ValueError as error:
            last = error
    raise ValueError(
        f"{constructor.__name__} builds at no size from {start} to {start + MAX_TRIES - 1}: {last}"
    )


def smallest_input(constructor: Constructor) -> int:
    """The smallest square input size ``constructor`` accepts with ``weights=None`` (see
    `build_smallest`)."""
    return build_smallest(constructor)[1]


def build(constructor: Constructor, size: int) -> Any:
    """``constructor(weights=None, input_shape=(size, size, 3), classes=10)``."""
    return constructor(**_kwargs(size))
