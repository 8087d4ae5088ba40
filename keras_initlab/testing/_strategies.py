"""Hypothesis strategies: fan modes, families, dtypes, seeds and initializers with targets.

``initializers()`` draws any keras_initlab initializer with valid random arguments (each
argument sometimes left out, so that the documented defaults are exercised), a kernel to apply
it to, and the statistics the draw must have. The targets are computed here, from the
documented formulas and ``DOCUMENTED_DEFAULTS``, not by asking the initializer, so that a
wrong formula or default in the initializer shows up as a mismatch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from keras_initlab import initializers as ini
from keras_initlab.initializers._base import available_float_dtypes
from keras_initlab.schemes import SCHEMES
from keras_initlab.testing._families import FAMILIES
from keras_initlab.testing._kernels import KERNEL_LAYOUTS, Kernel
from keras_initlab.testing._kernels import kernels as kernel_strategy

FAN_MODES = ("fan_avg", "fan_geo_avg", "fan_in", "fan_out")
FLOAT_DTYPES = {16: ("bfloat16", "float16"), 32: ("float32",), 64: ("float64",)}
# Seeds stay in int32 range and below 2^31 - 2, whose multiples Keras on TensorFlow takes
# as one seed (``floormod(seed, int32.max - 1)``: seeds 0 and 2^31 - 2 draw alike there).
MAX_SEED = 2**31 - 3
# PyTorch's calculate_gain values (keras_initlab/gains.py): the names `gain` accepts.
GAINS = {"linear": 1.0, "relu": math.sqrt(2.0), "selu": 0.75, "sigmoid": 1.0, "tanh": 5.0 / 3.0}
# The defaults the docstrings promise, per class (aliases share their class's entry).
DOCUMENTED_DEFAULTS: dict[str, dict[str, Any]] = {
    "Constant": {"value": 0.0},
    "DeltaOrthogonal": {"gain": 1.0},
    "Orthogonal": {"gain": 1.0, "layout": "auto"},
    "RandomNormal": {"mean": 0.0, "stddev": 0.05},
    "RandomUniform": {"minval": -0.05, "maxval": 0.05},
    "ScaledIdentity": {"scale": 1.0},
    "VarianceScaling": {
        "scale": 1.0,
        "mode": "fan_in",
        "distribution": "truncated_normal",
        "gain": None,
        "layout": "auto",
    },
    "Zeros": {},
}
# (scale, mode, distribution) of the named variance-scaling schemes.
NAMED_SCHEMES = {
    "GlorotNormal": (1.0, "fan_avg", "truncated_normal"),
    "GlorotUniform": (1.0, "fan_avg", "uniform"),
    "HeNormal": (2.0, "fan_in", "truncated_normal"),
    "HeUniform": (2.0, "fan_in", "uniform"),
    "LecunNormal": (1.0, "fan_in", "truncated_normal"),
    "LecunUniform": (1.0, "fan_in", "uniform"),
    "SmallInit": (0.4, "fan_in", "normal"),
}
SCHEME_NAMES = tuple(sorted([*DOCUMENTED_DEFAULTS, *NAMED_SCHEMES]))
RANDOM_FAMILIES = FAMILIES  # i.i.d. entries: checked by variance, mean, support, KS
MAX_ORTHOGONAL_DIM = 128  # QR cost grows as rows * cols^2
MAX_ORTHOGONAL_SIZE = 2**14
_OMIT = object()  # marks an argument left out, so the default applies


@dataclass(frozen=True)
class InitializerCase:
    """An initializer, a kernel to apply it to, and what its draw must look like.

    ``family`` is one of ``"normal"``, ``"truncated_normal"``, ``"uniform"`` (i.i.d. entries
    with ``mean`` and ``variance``), ``"orthogonal"`` (``blocks`` side-by-side orthogonal
    ``(rows, cols)`` blocks times ``gain``), ``"delta_orthogonal"`` (an orthogonal centre tap)
    or ``"exact"`` (deterministic: ``expected`` holds the values).
    """

    initializer: ini.Scheme
    kernel: Kernel
    family: str
    mean: float
    variance: float
    gain: float = 1.0
    blocks: int = 1
    expected: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The kernel shape to call the initializer with."""
        return self.kernel.shape

    def __repr__(self) -> str:
        return (
            f"InitializerCase({self.initializer!r}, shape={self.shape}, "
            f"layout={self.kernel.layout!r}, layout_args={self.kernel.layout_args}, "
            f"family={self.family!r}, mean={self.mean:.6g}, variance={self.variance:.6g})"
        )


def fan_modes() -> st.SearchStrategy[str]:
    """The fan modes of ``VarianceScaling``: fan_in, fan_out, fan_avg, fan_geo_avg."""
    return st.sampled_from(FAN_MODES)


def distributions() -> st.SearchStrategy[str]:
    """The families of ``VarianceScaling``: normal, truncated_normal, uniform."""
    return st.sampled_from(FAMILIES)


def float_dtypes(*, sizes: Any = (16, 32, 64)) -> st.SearchStrategy[str]:
    """Float dtype names of the given bit sizes (16 gives float16 and bfloat16) that the Keras
    backend makes: float64 is left out on JAX outside its 64-bit mode (``JAX_ENABLE_X64``).

    Raises:
        InvalidArgument: a size other than 16, 32 or 64, or none; or only sizes the backend
            makes no dtype of.

    Example:
    >>> from hypothesis import given
    >>> @given(float_dtypes(sizes=(32, 64)))
    ... def test(dtype):
    ...     assert dtype in ("float32", "float64")
    >>> test()
    """
    if isinstance(sizes, int):
        sizes = (sizes,)
    try:
        sizes = tuple(sizes)
    except TypeError:
        sizes = None
    if not sizes or any(s not in FLOAT_DTYPES for s in sizes):
        raise InvalidArgument(
            "Argument `sizes` must be a non-empty sequence of 16, 32 and 64. "
            f"Received: sizes={sizes!r}"
        )
    available = available_float_dtypes()
    names = [n for s in sorted(set(sizes)) for n in FLOAT_DTYPES[s] if n in available]
    if not names:
        raise InvalidArgument(
            f"Argument `sizes` must include a size the {keras.backend.backend()} backend makes "
            f"a float dtype of (it makes {list(available)}). Received: sizes={sizes!r}"
        )
    return st.sampled_from(names)


def seeds() -> st.SearchStrategy[int]:
    """Int seeds in ``[0, 2**31 - 3]`` (`MAX_SEED`): pass one explicitly, never rely on
    global state."""
    return st.integers(0, MAX_SEED)


def _maybe(draw: Any, strategy: st.SearchStrategy[Any]) -> Any:
    return draw(st.just(_OMIT) | strategy)


def _kwargs(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not _OMIT}


def _gain_value(gain: Any, default: float | None) -> float:
    if gain is _OMIT or gain is None:
        return 1.0 if default is None else default
    return GAINS[gain] if isinstance(gain, str) else float(gain)


def _gains() -> st.SearchStrategy[Any]:
    return st.sampled_from(sorted(GAINS)) | st.floats(0.25, 4.0)


def _fan(mode: str, kernel: Kernel) -> float:
    return {
        "fan_in": kernel.fan_in,
        "fan_out": kernel.fan_out,
        "fan_avg": (kernel.fan_in + kernel.fan_out) / 2.0,
        "fan_geo_avg": math.sqrt(kernel.fan_in * kernel.fan_out),
    }[mode]


def _layout_kwargs(kernel: Kernel) -> dict[str, Any]:
    """The layout arguments, left out for ``auto`` (the documented default)."""
    if kernel.layout == "auto":
        return {}
    return {"layout": kernel.layout, "layout_args": dict(kernel.layout_args)}


@st.composite
def _variance_scaling(draw: Any, name: str, kernels: Any) -> InitializerCase:
    kernel = draw(kernels)
    seed = draw(seeds())
    if name in NAMED_SCHEMES:
        scale, mode, family = NAMED_SCHEMES[name]
        init = getattr(ini, name)(seed=seed, **_layout_kwargs(kernel))
        variance = scale / _fan(mode, kernel)
    else:
        defaults = DOCUMENTED_DEFAULTS[name]
        scale = _maybe(draw, st.floats(0.1, 10.0))
        mode = _maybe(draw, fan_modes())
        family = _maybe(draw, distributions())
        gain = _maybe(draw, st.none() | _gains())
        init = ini.VarianceScaling(
            **_kwargs(scale=scale, mode=mode, distribution=family, gain=gain),
            seed=seed,
            **_layout_kwargs(kernel),
        )
        scale = defaults["scale"] if scale is _OMIT else scale
        mode = defaults["mode"] if mode is _OMIT else mode
        family = defaults["distribution"] if family is _OMIT else family
        variance = scale * _gain_value(gain, defaults["gain"]) ** 2 / _fan(mode, kernel)
    return InitializerCase(init, kernel, family, 0.0, variance)


@st.composite
def _fixed_scale(draw: Any, name: str, kernels: Any) -> InitializerCase:
    kernel = draw(kernels)
    defaults = DOCUMENTED_DEFAULTS[name]
    seed = draw(seeds())
    if name == "RandomNormal":
        mean = _maybe(draw, st.floats(-1.0, 1.0))
        stddev = _maybe(draw, st.floats(0.01, 2.0))
        init = ini.RandomNormal(**_kwargs(mean=mean, stddev=stddev), seed=seed)
        mean = defaults["mean"] if mean is _OMIT else mean
        stddev = defaults["stddev"] if stddev is _OMIT else stddev
        return InitializerCase(init, kernel, "normal", mean, stddev**2)
    if draw(st.booleans()):
        init, low, high = ini.RandomUniform(seed=seed), defaults["minval"], defaults["maxval"]
    else:
        low = draw(st.floats(-2.0, 1.0))
        high = low + draw(st.floats(0.01, 2.0))
        init = ini.RandomUniform(low, high, seed=seed)
    return InitializerCase(init, kernel, "uniform", (low + high) / 2.0, (high - low) ** 2 / 12.0)


@st.composite
def _orthogonal(draw: Any, name: str) -> InitializerCase:
    seed = draw(seeds())
    gain = _maybe(draw, _gains())
    gain_value = _gain_value(gain, DOCUMENTED_DEFAULTS[name]["gain"])
    if name == "DeltaOrthogonal":
        kernel = draw(
            kernel_strategy(
                layouts=("conv",), max_fan_in=4 * MAX_ORTHOGONAL_DIM, max_size=MAX_ORTHOGONAL_SIZE
            )
        )
        rows, cols = kernel.shape[-2:]
        taps = math.prod(kernel.shape[:-2])
        if max(rows, cols) > MAX_ORTHOGONAL_DIM:
            kernel = Kernel(
                (*kernel.shape[:-2], min(rows, MAX_ORTHOGONAL_DIM), min(cols, MAX_ORTHOGONAL_DIM)),
                "conv",
            )
            rows, cols = kernel.shape[-2:]
        init = ini.DeltaOrthogonal(**_kwargs(gain=gain), seed=seed)
        return InitializerCase(
            init,
            kernel,
            "delta_orthogonal",
            0.0,
            gain_value**2 / (max(rows, cols) * taps),
            gain=gain_value,
        )
    kernel = draw(
        kernel_strategy(
            layouts=("auto", "recurrent"),
            max_fan_in=MAX_ORTHOGONAL_DIM,
            max_fan_out=MAX_ORTHOGONAL_DIM,
            max_size=MAX_ORTHOGONAL_SIZE,
        ).filter(lambda k: len(k.shape) >= 2)
    )
    if kernel.layout == "recurrent":
        blocks = kernel.layout_args.get("gates", 1)  # compute_fans' default: one gate
        rows, cols = kernel.shape[0], kernel.shape[1] // blocks
        init = ini.Orthogonal(
            **_kwargs(gain=gain),
            seed=seed,
            layout="recurrent",
            layout_args=dict(kernel.layout_args),
        )
    else:
        blocks, rows, cols = 1, math.prod(kernel.shape[:-1]), kernel.shape[-1]
        init = ini.Orthogonal(**_kwargs(gain=gain), seed=seed)
    return InitializerCase(
        init,
        kernel,
        "orthogonal",
        0.0,
        gain_value**2 / max(rows, cols),
        gain=gain_value,
        blocks=blocks,
    )


def identity_kernel(shape: tuple[int, ...], scale: float) -> np.ndarray:
    """``scale * I`` of ``shape``: the diagonal of a 2-D kernel, tap ``(k - 1) // 2`` of a conv.

    Example:
    >>> identity_kernel((2, 3), 2.0).tolist()
    [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    """
    values = np.zeros(shape)
    centre = tuple((k - 1) // 2 for k in shape[:-2])  # the tap "same" padding aligns
    values[centre] = scale * np.eye(shape[-2], shape[-1])
    return values


@st.composite
def _deterministic(draw: Any, name: str, kernels: Any) -> InitializerCase:
    kernel = draw(kernels)
    if name == "Zeros":
        return InitializerCase(
            ini.Zeros(), kernel, "exact", 0.0, 0.0, expected=np.zeros(kernel.shape)
        )
    if name == "Constant":
        value = _maybe(draw, st.floats(-4.0, 4.0))
        init = ini.Constant(**_kwargs(value=value))
        value = DOCUMENTED_DEFAULTS[name]["value"] if value is _OMIT else value
        return InitializerCase(
            init, kernel, "exact", value, 0.0, expected=np.full(kernel.shape, value)
        )
    scale = _maybe(draw, st.floats(0.1, 4.0))
    init = ini.ScaledIdentity(**_kwargs(scale=scale))
    scale = DOCUMENTED_DEFAULTS[name]["scale"] if scale is _OMIT else scale
    expected = identity_kernel(kernel.shape, scale)
    return InitializerCase(
        init, kernel, "exact", float(expected.mean()), float(expected.var()), expected=expected
    )


def _check_schemes(schemes: Any) -> tuple[str, ...]:
    if schemes is None:
        return SCHEME_NAMES
    if isinstance(schemes, str):
        schemes = (schemes,)
    try:
        names = tuple(s if isinstance(s, str) else getattr(s, "__name__", s) for s in schemes)
    except TypeError:
        names = ()
    # registry names ("he_normal") stand for their classes
    names = tuple(
        type(SCHEMES[n]()).__name__ if isinstance(n, str) and n in SCHEMES else n for n in names
    )
    if not names or any(n not in SCHEME_NAMES for n in names):
        raise InvalidArgument(
            f"Argument `schemes` must be a non-empty sequence of {list(SCHEME_NAMES)} "
            f"(names or classes). Received: schemes={schemes!r}"
        )
    return names


def initializers(
    *, schemes: Any = None, kernels: st.SearchStrategy[Kernel] | None = None
) -> st.SearchStrategy[InitializerCase]:
    """Any keras_initlab initializer with valid random arguments, a kernel and its targets.

    Args:
        schemes: class names, classes or ``keras_initlab.SCHEMES`` names (``"he_normal"``)
            to draw from; default all of ``SCHEME_NAMES`` (aliases such as ``XavierNormal``
            are the same classes).
        kernels: the kernels for schemes that read fans or take any shape; default
            ``kernels()`` over every layout. Orthogonal schemes draw their own (bounded) ones.

    Returns:
        A strategy of ``InitializerCase``.

    Raises:
        InvalidArgument: an unknown scheme or a ``kernels`` that is not a strategy.

    Example:
    >>> from hypothesis import given
    >>> @given(initializers(schemes=["HeNormal"]))
    ... def test(case):
    ...     assert case.family == "truncated_normal"
    >>> test()
    """
    names = _check_schemes(schemes)
    if kernels is None:
        kernels = kernel_strategy(layouts=KERNEL_LAYOUTS)
    if not isinstance(kernels, st.SearchStrategy):
        raise InvalidArgument(
            f"Argument `kernels` must be a strategy. Received: kernels={kernels!r}"
        )
    rank2 = kernels.filter(lambda k: len(k.shape) >= 2)
    options = []
    for name in names:
        if name in NAMED_SCHEMES or name == "VarianceScaling":
            options.append(_variance_scaling(name, kernels))
        elif name in ("RandomNormal", "RandomUniform"):
            options.append(_fixed_scale(name, kernels))
        elif name in ("Orthogonal", "DeltaOrthogonal"):
            options.append(_orthogonal(name))
        else:
            options.append(_deterministic(name, rank2))
    return st.one_of(options)
