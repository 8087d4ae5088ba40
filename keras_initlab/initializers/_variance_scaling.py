"""The variance-scaling core and the named schemes of the tutorial (Glorot, He, LeCun).

All of them draw zero-mean weights with

    Var(W) = scale * gain**2 / fan,

where ``fan`` is fan_in, fan_out, (fan_in + fan_out) / 2 or sqrt(fan_in * fan_out) of the
kernel's true layout (``keras_initlab.compute_fans``).

A slip to avoid: the tutorial this project grew from writes ``Var(W) = sqrt(2/(n_in+n_out))``
(Xavier) and ``Var(W) = sqrt(2/n_in)`` (He). Those square roots are the *standard
deviations*; the variances are ``2/(n_in+n_out)`` and ``2/n_in``. The test suite fails on an
implementation that follows the slip.
"""

from __future__ import annotations

import math
from typing import Any

import keras

from keras_initlab._validation import check_choice, check_positive, is_integer
from keras_initlab.fans import LAYOUTS, compute_fans
from keras_initlab.initializers._base import RandomScheme, resolve_gain

MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")
# Std of N(0, 1) truncated to (-2, 2) (keras.random.truncated_normal re-draws values beyond 2
# standard deviations): the truncated draw is divided by it to keep the variance.
TRUNCATED_STD = 0.87962566103423978
UNIFORM_VARIANCE_FACTOR = 3.0  # U(-a, a) has variance a**2 / 3, so a = sqrt(3 * var)


def check_layout(layout: Any, layout_args: Any) -> dict[str, Any]:
    """Validate a layout name and its arguments; return the arguments as a dict."""
    check_choice("layout", layout, LAYOUTS)
    layout_args = {} if layout_args is None else layout_args
    if not isinstance(layout_args, dict):
        raise TypeError(
            f"Argument `layout_args` must be a dict or None. Received: layout_args={layout_args!r}"
        )
    unknown = set(layout_args) - set(LAYOUTS[layout])
    if unknown:
        raise ValueError(
            f"Argument `layout_args` for layout {layout!r} accepts the keys "
            f"{list(LAYOUTS[layout])}. Received: layout_args={layout_args!r}"
        )
    return dict(layout_args)


def check_axes(input_axes: Any, output_axes: Any, layout: str) -> tuple[Any, Any]:
    """Validate Keras' ``input_axes``/``output_axes``; return them as lists of ints or None.

    Both or neither must be given, each a sequence of integer axes. They are Keras' way of
    naming an einsum layout and apply with ``layout="auto"``; a layout given by name wins
    (so an ``EinsumDense`` that passes its axes does not override it).
    """
    given = [a is not None for a in (input_axes, output_axes)]
    if not any(given):
        return None, None
    if not all(given):
        raise ValueError(
            "Arguments `input_axes` and `output_axes` must be given together. "
            f"Received: input_axes={input_axes!r}, output_axes={output_axes!r}"
        )
    axes = []
    for name, value in (("input_axes", input_axes), ("output_axes", output_axes)):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            ok = False
        else:
            value = list(value)
            ok = all(is_integer(a) for a in value)
        if not ok:
            raise ValueError(
                f"Argument `{name}` must be a list of integer axes or None. "
                f"Received: {name}={value!r}"
            )
        axes.append([int(a) for a in value])
    return axes[0], axes[1]


@keras.saving.register_keras_serializable(package="keras_initlab")
class VarianceScaling(RandomScheme, keras.initializers.VarianceScaling):
    """Zero-mean weights with ``Var(W) = scale * gain**2 / fan`` on the kernel's true fans.

    ``mode`` picks the fan: ``fan_in`` (keeps the forward variance), ``fan_out`` (keeps the
    backward variance), ``fan_avg`` = (fan_in + fan_out) / 2 (Glorot's compromise) or
    ``fan_geo_avg`` = sqrt(fan_in * fan_out). ``distribution`` picks the family:

    * ``normal``: ``N(0, var)``;
    * ``truncated_normal``: N(0, s**2) truncated to +-2 s with ``s = sqrt(var) / 0.8796...``,
      so the variance after truncation is still ``var`` (Keras' default family);
    * ``uniform``: ``U(-sqrt(3 var), +sqrt(3 var))``.

    Unlike ``keras.initializers.VarianceScaling``, ``"normal"`` is a true normal here.

    It is also a ``keras.initializers.VarianceScaling`` (a subclass), so Keras layers that
    refine the fans of their own variance-scaling initializers do it for this one too:
    ``EinsumDense`` (and through it ``MultiHeadAttention``) passes its contracted axes as
    ``input_axes`` and its output axes as ``output_axes``, and the kernel gets its true fans.

    Args:
        scale: positive multiplier of the variance.
        mode: ``fan_in``, ``fan_out``, ``fan_avg`` or ``fan_geo_avg``.
        distribution: ``normal``, ``truncated_normal`` or ``uniform``.
        seed: int, ``keras.random.SeedGenerator`` or None (see ``keras_initlab.initializers``).
        gain: None, a positive number or an activation name (``keras_initlab.gain``); the
            variance is multiplied by ``gain**2``.
        layout: how to read fans from the shape (``keras_initlab.compute_fans``);
            ``"auto"`` is Keras' shape rule.
        layout_args: the layout's arguments, e.g. ``{"groups": 4}`` for a grouped conv.
        input_axes: None, or the kernel axes whose sizes multiply to fan_in (Keras 3.16's
            argument); given together with ``output_axes``, it is ``layout="einsum"`` with
            ``in_axes=input_axes, out_axes=output_axes``. A ``layout`` other than ``"auto"``
            wins over the axes (an EinsumDense passes its axes to every VarianceScaling).
        output_axes: None, or the kernel axes whose sizes multiply to fan_out.

    Example:
    >>> init = VarianceScaling(2.0, "fan_in", "normal", seed=1)
    >>> layer = keras.layers.Dense(64, kernel_initializer=init)
    >>> init.variance((256, 64))
    0.0078125
    >>> VarianceScaling(input_axes=[0], output_axes=[1, 2]).fans((64, 4, 16))
    (64, 64)

    Reference: He et al. 2015, "Delving Deep into Rectifiers"; Glorot & Bengio 2010.
    """

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: Any = None,
        input_axes: Any = None,
        output_axes: Any = None,
        *,
        gain: float | str | None = None,
        layout: str = "auto",
        layout_args: dict[str, Any] | None = None,
    ):
        self.scale = check_positive("scale", scale)
        self.mode = check_choice("mode", mode, MODES)
        self.distribution = check_choice("distribution", distribution, DISTRIBUTIONS)
        self._gain_value = 1.0 if gain is None else resolve_gain(gain)
        self.gain = gain if gain is None or isinstance(gain, str) else self._gain_value
        self.layout_args = check_layout(layout, layout_args)
        self.layout = layout
        self.input_axes, self.output_axes = check_axes(input_axes, output_axes, layout)
        super().__init__(seed)

    def fans(self, shape: Any) -> tuple[float, float]:
        """``(fan_in, fan_out)`` of ``shape`` under this initializer's layout."""
        if self.input_axes is not None and self.layout == "auto":
            return compute_fans(shape, "einsum", in_axes=self.input_axes, out_axes=self.output_axes)
        return compute_fans(shape, self.layout, **self.layout_args)

    def variance(self, shape: Any) -> float:
        fan_in, fan_out = self.fans(shape)
        fan = {
            "fan_in": fan_in,
            "fan_out": fan_out,
            "fan_avg": (fan_in + fan_out) / 2.0,
            "fan_geo_avg": math.sqrt(fan_in * fan_out),
        }[self.mode]
        return self.scale * self._gain_value**2 / fan

    def _generate(self, shape: tuple[int, ...]) -> Any:
        std = math.sqrt(self.variance(shape))
        if self.distribution == "normal":
            return self._normal(shape, std)
        if self.distribution == "truncated_normal":
            return self._truncated_normal(shape, std / TRUNCATED_STD)
        limit = math.sqrt(UNIFORM_VARIANCE_FACTOR) * std
        return self._uniform(shape, -limit, limit)


class _NamedScheme(VarianceScaling):
    """A VarianceScaling with ``scale``, ``mode`` and ``distribution`` pinned."""

    _PINNED: tuple[float, str, str]

    def __init__(
        self,
        seed: Any = None,
        input_axes: Any = None,
        output_axes: Any = None,
        *,
        layout: str = "auto",
        layout_args: dict[str, Any] | None = None,
    ):
        super().__init__(
            *self._PINNED,
            seed,
            input_axes,
            output_axes,
            layout=layout,
            layout_args=layout_args,
        )


@keras.saving.register_keras_serializable(package="keras_initlab")
class GlorotNormal(_NamedScheme):
    """Glorot (Xavier) normal: ``Var(W) = 2 / (fan_in + fan_out)``, truncated normal family.

    For tanh and sigmoid networks: keeps forward and backward variance in balance.
    The draw is N(0, s**2) truncated at +-2 s with ``s = sqrt(2/(fan_in+fan_out)) / 0.8796``,
    as in Keras, so the variance after truncation is exactly the target.
    Reference: Glorot & Bengio 2010.

    Args:
        seed: int, ``keras.random.SeedGenerator`` or None (see ``keras_initlab.initializers``).
        layout: how to read fans from the shape (``keras_initlab.compute_fans``).
        layout_args: the layout's arguments, e.g. ``{"groups": 4}``.
        input_axes, output_axes: Keras' einsum axes (see ``VarianceScaling``).

    Example:
    >>> layer = keras.layers.Dense(64, kernel_initializer=GlorotNormal(seed=0))
    >>> GlorotNormal().variance((256, 128))
    0.005208333333333333
    """

    _PINNED = (1.0, "fan_avg", "truncated_normal")


@keras.saving.register_keras_serializable(package="keras_initlab")
class GlorotUniform(_NamedScheme):
    """Glorot (Xavier) uniform: ``U(-sqrt(6/(fan_in+fan_out)), +sqrt(6/(fan_in+fan_out)))``.

    Variance ``2 / (fan_in + fan_out)``. Reference: Glorot & Bengio 2010.

    Args:
        seed: int, ``keras.random.SeedGenerator`` or None (see ``keras_initlab.initializers``).
        layout: how to read fans from the shape (``keras_initlab.compute_fans``).
        layout_args: the layout's arguments, e.g. ``{"groups": 4}``.
        input_axes, output_axes: Keras' einsum axes (see ``VarianceScaling``).

    Example:
    >>> layer = keras.layers.Dense(64, kernel_initializer=GlorotUniform(seed=0))
    >>> GlorotUniform().variance((256, 128))
    0.005208333333333333
    """

    _PINNED = (1.0, "fan_avg", "uniform")


@keras.saving.register_keras_serializable(package="keras_initlab")
class HeNormal(_NamedScheme):
    """He (Kaiming) normal: ``Var(W) = 2 / fan_in``, truncated normal family.

    For ReLU networks: each ReLU halves the second moment and the factor 2 restores it.
    Reference: He et al. 2015, "Delving Deep into Rectifiers".

    Args:
        seed: int, ``keras.random.SeedGenerator`` or None (see ``keras_initlab.initializers``).
        layout: how to read fans from the shape (``keras_initlab.compute_fans``).
        layout_args: the layout's arguments, e.g. ``{"groups": 4}``.
        input_axes, output_axes: Keras' einsum axes (see ``VarianceScaling``).

    Example:
    >>> layer = keras.layers.Dense(64, kernel_initializer=HeNormal(seed=0))
    >>> HeNormal().variance((256, 128))
    0.0078125
    """

    _PINNED = (2.0, "fan_in", "truncated_normal")


@keras.saving.register_keras_serializable(package="keras_initlab")
class HeUniform(_NamedScheme):
    """He (Kaiming) uniform: ``U(-sqrt(6/fan_in), +sqrt(6/fan_in))``, variance ``2 / fan_in``.

    Reference: He et al. 2015, "Delving Deep into Rectifiers".

    Args:
        seed: int, ``keras.random.SeedGenerator`` or None (see ``keras_initlab.initializers``).
        layout: how to read fans from the shape (``keras_initlab.compute_fans``).
        layout_args: the layout's arguments, e.g. ``{"groups": 4}``.
        input_axes, output_axes: Keras' einsum axes (see ``VarianceScaling``).

    Example:
    >>> layer = keras.layers.Dense(64, kernel_initializer=HeUniform(seed=0))
    >>> HeUniform().variance((256, 128))
    0.0078125
    """

    _PINNED = (2.0, "fan_in", "uniform")


@keras.saving.register_keras_serializable(package="keras_initlab")
class LecunNormal(_NamedScheme):
    """LeCun normal: ``Var(W) = 1 / fan_in``, truncated normal family (for SELU networks).

    Reference: LeCun et al. 1998, "Efficient BackProp"; Klambauer et al. 2017.

    Args:
        seed: int, ``keras.random.SeedGenerator`` or None (see ``keras_initlab.initializers``).
        layout: how to read fans from the shape (``keras_initlab.compute_fans``).
        layout_args: the layout's arguments, e.g. ``{"groups": 4}``.
        input_axes, output_axes: Keras' einsum axes (see ``VarianceScaling``).

    Example:
    >>> layer = keras.layers.Dense(64, kernel_initializer=LecunNormal(seed=0))
    >>> LecunNormal().variance((256, 128))
    0.00390625
    """

    _PINNED = (1.0, "fan_in", "truncated_normal")


@keras.saving.register_keras_serializable(package="keras_initlab")
class SmallInit(_NamedScheme):
    """SmallInit: ``Var(W) = 2 / (5 fan_in)``, untruncated normal (std ``sqrt(2 / (5 d))``).

    Nguyen and Salazar 2019 ("Transformers without Tears") draw every weight of a
    transformer of width ``d`` with the Xavier-normal std of its ``d x 4d`` feed-forward
    kernel, ``sqrt(2 / (d + 4d))``; GPT-NeoX ships it as ``small_init`` (``std = sqrt(2 /
    (5 * hidden_size))`` for every kernel but the branches' output projections). Smaller
    than LeCun's ``1 / d`` by 0.4 in variance, it keeps a pre-LN stream's branches small
    at the start. Here ``d`` is each kernel's true fan-in: the width for every kernel that
    reads the stream (query, key, value, the FFN's input), four times it for the FFN's
    output projection (GPT-NeoX draws that one by its own output rule).

    Args:
        seed: int, ``keras.random.SeedGenerator`` or None (see ``keras_initlab.initializers``).
        layout: how to read fans from the shape (``keras_initlab.compute_fans``).
        layout_args: the layout's arguments, e.g. ``{"groups": 4}``.
        input_axes, output_axes: Keras' einsum axes (see ``VarianceScaling``).

    Example:
    >>> layer = keras.layers.Dense(256, kernel_initializer=SmallInit(seed=0))
    >>> SmallInit().variance((64, 256)) == 2 / (5 * 64)
    True
    """

    _PINNED = (0.4, "fan_in", "normal")


@keras.saving.register_keras_serializable(package="keras_initlab")
class LecunUniform(_NamedScheme):
    """LeCun uniform: ``U(-sqrt(3/fan_in), +sqrt(3/fan_in))``, variance ``1 / fan_in``.

    Reference: LeCun et al. 1998, "Efficient BackProp".

    Args:
        seed: int, ``keras.random.SeedGenerator`` or None (see ``keras_initlab.initializers``).
        layout: how to read fans from the shape (``keras_initlab.compute_fans``).
        layout_args: the layout's arguments, e.g. ``{"groups": 4}``.
        input_axes, output_axes: Keras' einsum axes (see ``VarianceScaling``).

    Example:
    >>> layer = keras.layers.Dense(64, kernel_initializer=LecunUniform(seed=0))
    >>> LecunUniform().variance((256, 128))
    0.00390625
    """

    _PINNED = (1.0, "fan_in", "uniform")


XavierNormal = GlorotNormal
XavierUniform = GlorotUniform
KaimingNormal = HeNormal
KaimingUniform = HeUniform
