"""Keras activations (functions and layers) as ``Activation`` objects, and their rule.

Every elementwise Keras activation is evaluated through Keras itself on a float64 grid, so
any activation (``gelu``, ``silu``, ``mish``, ``hard_silu``, ``relu6``, a custom function)
is covered by quadrature; linear, ReLU and leaky ReLU use their closed forms. Softmax is not
elementwise: it has its own large-width rule (``softmax_moments``). A softmax so saturated
that the gradient it passes back is below what its dtype resolves, or so near saturation
that what it passes back moves by more than `SPREAD_LIMIT` from one batch to the next
(``saturation``), says so: a measurement of that gradient sees rounding or the luck of its
batch, and the rows below it are not predicted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_initlab._roundoff import UNIT_ROUNDOFF
from keras_initlab.model.layers import activation_kind
from keras_initlab.propagate import _paths, _positions
from keras_initlab.propagate._moments import (
    LINEAR,
    Activation,
    activation_moments,
    softmax_moments,
)
from keras_initlab.propagate._signal import Signal
from keras_initlab.propagate._step import Call, Step

SOFTMAX = "softmax"
# The largest batch-to-batch spread (90th over 10th percentile) of the gradient a softmax
# passes back that a prediction of one batch's value stands behind: the 2x a predicted row
# is held to at the 90th percentile (#26's agreement bounds). Beyond it one batch's value
# is luck, and so is every row below, which inherits the few samples that carry it:
# ResNet50 under He in inference mode, its logits thousands apart, spreads 1.3e3x over
# batches of 16; InceptionResNetV2 at 75x75 in inference mode 3.7x, where the head's own
# gradient is predicted to 1.05x (5 probes) but the rows below drift to 1.2-1.7x, each
# carrying those samples' own gains. The 40 keras.applications constructors under He at
# their smallest inputs: 1.0-1.38x in training mode; in inference mode 1.0-1.13x, or far
# beyond (ResNet50V2 119x, EfficientNetV2B2 1e4x, NASNetMobile 5e12x), or IRV2's 3.7x.
SPREAD_LIMIT = 2.0
_NOT_ELEMENTWISE = {"softmax", "log_softmax", "glu", "sparsemax"}
# Keras activations with continuous derivatives (Gauss-Hermite converges fast on them).
_SMOOTH = {
    "tanh",
    "sigmoid",
    "gelu",
    "silu",
    "swish",
    "mish",
    "softplus",
    "softsign",
    "elu",
    "selu",
    "celu",
    "exponential",
    "log_sigmoid",
    "sparse_plus",
    "squareplus",
    "tanh_shrink",
}


def _numpy(fn: Callable[..., Any], **kwargs: Any) -> Callable[[np.ndarray], np.ndarray]:
    return lambda z: np.asarray(fn(z, **kwargs), dtype=np.float64)


def from_function(fn: Any, **options: Any) -> Activation | str | None:
    """An ``Activation``, ``"softmax"``, or None (linear or no activation); ``options``: the
    keyword arguments ``fn`` is called with (a leaky ReLU's ``negative_slope``)."""
    if fn is None:
        return None
    name = str(getattr(fn, "__name__", type(fn).__name__))
    if name == "linear":
        return None
    if name == "softmax":
        return SOFTMAX
    if name in _NOT_ELEMENTWISE:
        raise NotImplementedError(f"activation {name!r} is not elementwise")
    if name == "relu" and not options:
        return Activation("relu", _numpy(fn), "relu")
    if name == "relu6" and not options:
        return Activation("relu6", _numpy(fn), "clipped", top=6.0)
    if name == "leaky_relu":
        slope = float(options.get("negative_slope", 0.2))  # Keras' default
        return Activation(name, _numpy(fn, negative_slope=slope), "relu", slope)
    return Activation(
        name,
        _numpy(fn, **options),
        smooth=name in _SMOOTH and name not in ("elu", "selu", "celu"),
    )


def from_layer(layer: Any) -> Activation | str | None:
    """The activation an activation layer applies (ReLU's options included)."""
    kind = activation_kind(layer)
    if kind == "activation":
        return from_function(layer.activation)
    if kind == "softmax":
        return SOFTMAX
    if kind == "relu":
        slope = float(layer.negative_slope)
        if layer.max_value is None and float(layer.threshold) == 0.0:
            return Activation(
                "relu",
                _numpy(keras.activations.leaky_relu, negative_slope=slope)
                if slope
                else _numpy(keras.activations.relu),
                "relu",
                slope,
            )
        options = {
            "negative_slope": slope,
            "max_value": layer.max_value,
            "threshold": float(layer.threshold),
        }
        fn = _numpy(keras.activations.relu, **options)
        if slope == 0.0 and float(layer.threshold) == 0.0:  # ReLU6 and the like
            return Activation("relu", fn, "clipped", top=float(layer.max_value))
        return Activation("relu", fn)
    if kind == "leaky_relu":
        slope = float(layer.negative_slope)
        fn = _numpy(keras.activations.leaky_relu, negative_slope=slope)
        return Activation("leaky_relu", fn, "relu", slope)
    if kind == "elu":
        return Activation("elu", _numpy(keras.activations.elu, alpha=float(layer.alpha)))
    if kind == "prelu":  # per-unit slopes: their mean
        slope = float(np.mean(np.asarray(layer.alpha.numpy(), dtype=np.float64)))
        fn = _numpy(keras.activations.leaky_relu, negative_slope=slope)
        return Activation("prelu", fn, "relu", slope)
    raise NotImplementedError(type(layer).__name__)


def apply(
    activation: Activation | str | None, pre: Signal, batch: int | None = None
) -> tuple[Signal, np.ndarray, float]:
    """``(output moments, backward factor per element, spread)`` of an activation (None:
    linear); ``batch``: the samples a measurement averages over (a softmax's typical value,
    and its batch-to-batch spread, `softmax_moments`; 1 for the others)."""
    if activation == SOFTMAX:
        return softmax_moments(pre, batch)
    if activation is None:
        return (*activation_moments(LINEAR, pre), 1.0)
    assert isinstance(activation, Activation)
    return (*activation_moments(activation, pre), 1.0)


def saturation(
    activation: Activation | str | None,
    d2: np.ndarray,
    layer: Any,
    spread: float = 1.0,
    visible: np.ndarray | None = None,
) -> str:
    """Why the gradient a softmax passes back is not predicted, or "".

    ``dz = p (dy - <p, dy>)`` is computed in the layer's dtype, whose rounding leaves each
    element an error of about ``u |dy|`` (``u``: the unit roundoff, 2^-24 in float32). A
    softmax whose typical backward factor ``E[dz^2] / E[dy^2]`` (``d2``) lies below ``(u /
    n)^2`` everywhere (``n`` logits; uniform: about ``1/n^2``) passes back less than that
    rounding: the exact gradient is far smaller than anything a measurement of it can see
    (NASNetMobile under He in inference mode: logits 165 apart, a factor of 1e-145 against
    a float32 measurement's 1e-17). Its own output is predicted; the gradient it passes
    back is not. Nor where it is near saturation: a batch passes back a gradient only
    through its samples whose two largest logits lie close, and where the value a batch of
    the measured size passes back spreads by more than `SPREAD_LIMIT` from batch to batch
    (``spread``, `softmax_moments`), one measurement is that batch's luck.

    A softmax over one logit passes back exactly 0, whatever the dtype: such rows are left
    out, the rows of one logit and, where ``visible`` (the logits a mask leaves in,
    broadcastable to ``d2``) is given, the rows whose mask shows one.
    """
    if visible is not None and d2.ndim:
        d2 = d2[np.broadcast_to(visible, d2.shape).sum(axis=-1) > 1]
    if activation != SOFTMAX or d2.size == 0 or d2.shape[-1] == 1:
        return ""
    dtype = str(getattr(layer, "compute_dtype", "float32"))
    u = UNIT_ROUNDOFF.get(dtype, UNIT_ROUNDOFF["float32"])
    floor = (u / d2.shape[-1]) ** 2
    largest = float(np.max(d2))
    if largest < floor:
        return (
            f"a softmax saturated beyond {dtype}: its backward factor {largest:.2g} is below "
            f"{dtype}'s rounding {floor:.2g}, so the gradient it passes back is not predicted"
        )
    if spread > SPREAD_LIMIT:
        return (
            f"a softmax near saturation: the gradient it passes back moves by {spread:.3g}x "
            f"from one batch to the next (10th to 90th percentile), beyond {SPREAD_LIMIT:g}x, "
            "so it is not predicted"
        )
    return ""


def backward_factor(out: Signal, d2: np.ndarray) -> np.ndarray:
    """``E[f'(z)^2]``, corrected where a max pool reading the output routes its gradient
    to the window maxima only (where a ReLU's derivative is 1 far more often than 1/2)."""
    if out.source is not None and out.source.selection:
        return d2 * out.source.selection[0]
    return d2


def activation_layer(call: Call) -> Step:
    """An activation layer; a ``Softmax`` called with a mask (a constant, or a tensor whose
    value the walk knows: keras_hub's attention scores; its first sample where it has a
    batch axis) over the logits the mask leaves in."""
    activation = from_layer(call.layer)
    raw: Any = call.kwargs.get("mask", call.args[1] if len(call.args) > 1 else None)
    if raw is not None:
        mask = call.known(raw, len(call.x.shape))
        if activation != SOFTMAX or mask is None:
            raise NotImplementedError("a mask whose value the walk does not know")
        out, d2, spread = softmax_moments(call.x, call.batch, mask)
        return Step(
            [out],
            lambda g: (
                [g[0] * d2 * _positions.received(out)]
                + [np.zeros(x.shape) for x in call.inputs[1:]]
            ),
            note="softmax over the logits its mask leaves in",
            gradient_assumed=saturation(activation, d2, call.layer, spread, visible=mask != 0),
        )
    out, d2, spread = apply(activation, call.x, call.batch)
    blend = call.x.blend
    if blend is not None and out.source is not None and isinstance(activation, Activation):
        out = _paths.along(blend, out)  # a rectified stream: its paths
    return Step(
        [out],
        lambda g: [g[0] * _paths.factor(out, backward_factor(out, d2)) * _positions.received(out)],
        gradient_assumed=saturation(activation, d2, call.layer, spread),
        paths=True,
    )
