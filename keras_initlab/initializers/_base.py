"""What every keras_initlab initializer shares: dtype checks, seeds, config and sampling.

Seed contract (the same as Keras', for every class):

* ``seed=int``: the same values on every call (and in every process);
* ``seed=keras.random.SeedGenerator(...)``: new values on each call, reproducible from the
  generator's own seed;
* ``seed=None``: a seed is drawn once at construction from Python's ``random`` module, so the
  instance returns the same values on every call and the draw is reproducible under
  ``keras.utils.set_random_seed``.

Different int seeds give different values within ``[0, 2**31 - 3]``: Keras on TensorFlow
takes a seed modulo ``2**31 - 2`` (seeds 0 and ``2**31 - 2`` draw the same values there).

Random values are sampled in float32 and then cast, so float16 and bfloat16 kernels keep the
target variance of the float32 draw (sampling directly in half precision loses resolution in
the tails of the truncated normal). On the JAX backend a float64 request raises TypeError
unless JAX's 64-bit mode is on (``JAX_ENABLE_X64=1``): JAX would silently return float32.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
import random
from collections.abc import Iterator
from typing import Any

import keras

from keras_initlab._validation import check_positive, is_integer, standardize_shape
from keras_initlab.gains import gain as activation_gain
from keras_initlab.initializers._truncated_normal import truncated_normal

FLOAT_DTYPES = ("bfloat16", "float16", "float32", "float64")
_MAX_DEFAULT_SEED = 10**9  # the range Keras draws its default seeds from
# Where default seeds come from: None is Python's global RNG (see `private_default_seeds`).
_SEED_SOURCE: contextvars.ContextVar[random.Random | None] = contextvars.ContextVar(
    "keras_initlab_seed_source", default=None
)


def standardize_dtype(dtype: Any) -> str:
    """The dtype name to generate, ``keras.config.floatx()`` for None; floats only, and
    float64 on JAX only in its 64-bit mode (JAX would return float32)."""
    try:
        name = keras.backend.standardize_dtype(keras.config.floatx() if dtype is None else dtype)
    except (ValueError, TypeError, AttributeError):
        name = str(dtype)
    if name not in FLOAT_DTYPES:
        raise TypeError(
            f"Argument `dtype` must be a floating dtype, one of {list(FLOAT_DTYPES)}. "
            f"Received: dtype={dtype!r}"
        )
    if name not in available_float_dtypes():
        raise TypeError(
            "Argument `dtype` float64 needs JAX's 64-bit mode on the jax backend, which is "
            "off (JAX returns float32): set JAX_ENABLE_X64=1 or call "
            "jax.config.update('jax_enable_x64', True) before any array is made, or ask for "
            f"float32, float16 or bfloat16. Received: dtype={dtype!r}"
        )
    return name


def available_float_dtypes() -> tuple[str, ...]:
    """The float dtypes the Keras backend makes: all of ``FLOAT_DTYPES``, but float64 on JAX
    only in its 64-bit mode (``jax_enable_x64``).

    Example:
    >>> "float32" in available_float_dtypes()
    True
    """
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.read("jax_enable_x64"):
            return tuple(d for d in FLOAT_DTYPES if d != "float64")
    return FLOAT_DTYPES


def resolve_gain(value: Any) -> float:
    """A gain given as a positive number or an activation name, as a float."""
    if isinstance(value, str):
        return activation_gain(value)
    return check_positive("gain", value)


def default_seed() -> int:
    """A seed drawn as Keras draws its defaults: from Python's RNG, which
    ``keras.utils.set_random_seed`` seeds, so the draw is reproducible."""
    source = _SEED_SOURCE.get()
    return (random if source is None else source).randint(1, _MAX_DEFAULT_SEED)


@contextlib.contextmanager
def private_default_seeds() -> Iterator[None]:
    """Inside the block, default seeds come from a private RNG, not Python's global one.

    For code that builds schemes only to read their ``variance`` (``audit``): their seeds are
    never used to draw, and the user's global random state, which
    ``keras.utils.set_random_seed`` set, is left as it was. Per thread and task (a
    ``contextvars`` variable).

    Example:
    >>> state = random.getstate()
    >>> with private_default_seeds():
    ...     _ = default_seed()
    >>> random.getstate() == state
    True
    """
    token = _SEED_SOURCE.set(random.Random(0))
    try:
        yield
    finally:
        _SEED_SOURCE.reset(token)


class Scheme(keras.initializers.Initializer):
    """Base of every keras_initlab initializer.

    Subclasses implement ``_generate(shape) -> float32 tensor`` and ``variance(shape)``.
    ``get_config`` returns the ``__init__`` arguments, read from attributes of the same
    names, so ``cls.from_config(obj.get_config())`` rebuilds the object.
    """

    def __call__(self, shape: Any, dtype: Any = None, **kwargs: Any) -> Any:
        dtype = standardize_dtype(dtype)
        shape = standardize_shape(shape)
        if math.prod(shape) == 0:
            return keras.ops.zeros(shape, dtype=dtype)
        values = self._generate(shape)
        return values if dtype == "float32" else keras.ops.cast(values, dtype)

    def _generate(self, shape: tuple[int, ...]) -> Any:
        raise NotImplementedError

    def variance(self, shape: Any) -> float:
        """The expected population variance of the entries of a tensor of ``shape``."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        params = inspect.signature(type(self).__init__).parameters
        return {name: self._config_value(name) for name in params if name != "self"}

    def _config_value(self, name: str) -> Any:
        return getattr(self, name)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class RandomScheme(Scheme):
    """A scheme that draws random values; holds the seed (see the module docstring)."""

    def __init__(self, seed: int | keras.random.SeedGenerator | dict | None = None):
        self._init_seed = seed
        if seed is None:
            seed = default_seed()
        elif isinstance(seed, dict):
            seed = keras.saving.deserialize_keras_object(seed)
        elif is_integer(seed):
            seed = int(seed)  # NumPy integers too; the config keeps a Python int
            self._init_seed = seed
        if isinstance(seed, bool) or not isinstance(seed, (int, keras.random.SeedGenerator)):
            raise TypeError(
                "Argument `seed` must be an int, a keras.random.SeedGenerator or None. "
                f"Received: seed={self._init_seed!r}"
            )
        self.seed = seed

    def _config_value(self, name: str) -> Any:
        if name == "seed":
            return keras.saving.serialize_keras_object(self._init_seed)
        return super()._config_value(name)

    def _normal(self, shape: tuple[int, ...], stddev: float, mean: float = 0.0) -> Any:
        return keras.random.normal(shape, mean=mean, stddev=stddev, dtype="float32", seed=self.seed)

    def _truncated_normal(self, shape: tuple[int, ...], stddev: float) -> Any:
        return truncated_normal(shape, stddev, self.seed)

    def _uniform(self, shape: tuple[int, ...], minval: float, maxval: float) -> Any:
        return keras.random.uniform(
            shape, minval=minval, maxval=maxval, dtype="float32", seed=self.seed
        )
