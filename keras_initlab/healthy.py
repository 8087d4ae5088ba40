"""The healthy reference of each kernel: the scheme that suits the activation it feeds.

One reference, read by `keras_initlab.audit` (its ``healthy_scheme`` and ``healthy_ratio``
columns) and by the diagnosis of the monitor's alerts (the weights named as a cause), so
that both give the same number for a kernel. For a kernel whose output meets the
activation ``a`` (its layer's own, else that of an activation layer it feeds directly or
through a BatchNormalization), the healthy schemes are `healthy_schemes(a)`; the kernel
fits when `audit` does not flag it under one of them on its true fans, and its reference
is the first that fits, else the first of them.

When a kernel fits none and its layer was configured with one of Keras' own
`VarianceScaling` initializers, the reason is named where Keras' shape rule reads other
fans than the true ones (a depthwise kernel ``(3, 3, 32, 1)``: fan_in 288 by shape, 9 true).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import keras

RELU_FAMILY = frozenset(
    {"relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "prelu"}
)
SQUASHING = frozenset({"tanh", "sigmoid", "hard_sigmoid", "softsign"})


def healthy_schemes(activation: str | None) -> tuple[str, ...]:
    """The schemes that keep the variance through ``activation``, the first preferred.

    He before a ReLU-family activation (half the signal is cut); before tanh/sigmoid Glorot,
    LeCun or He (tanh's own gain, 5/3, lies between; a sigmoid gate such as a squeeze-excite
    block's is commonly He-initialized); before no activation LeCun, Glorot or He (a linear
    layer's scale is set by what follows, a BatchNorm or a residual sum, within that factor).

    Example:
    >>> healthy_schemes("relu"), healthy_schemes("tanh")
    (('he_normal',), ('glorot_normal', 'lecun_normal', 'he_normal'))
    """
    if activation in RELU_FAMILY:
        return ("he_normal",)
    if activation in SQUASHING:
        return ("glorot_normal", "lecun_normal", "he_normal")
    return ("lecun_normal", "glorot_normal", "he_normal")


@dataclass(frozen=True)
class HealthyRow:
    """One kernel against its healthy reference.

    Attributes:
        layer: the layer's path; ``path``: the weight's path.
        activation: the activation its output meets (None: linear).
        scheme: the healthy reference (`healthy_schemes`: the first that fits, else the
            first).
        ratio: std over the std ``scheme`` prescribes on the true fans.
        flagged: whether the kernel fits none of the healthy schemes.
        why: why it departs, where known (Keras' shape-rule fans), else "".
    """

    layer: str
    path: str
    activation: str | None
    scheme: str
    ratio: float
    flagged: bool
    why: str = ""


def met_activations(model: Any) -> dict[int, str | None]:
    """Per layer (by id), the activation its output meets: its own fused one, else that of
    an activation layer it feeds directly or through a BatchNormalization."""
    from keras_initlab import _keras
    from keras_initlab.model.layers import ACTIVATION_LAYERS, BATCH_NORMALIZATION, activation_name

    if _keras.is_functional(model):
        consumers: dict[int, list[Any]] = {}
        produced: dict[int, Any] = {}
        for call in _keras.functional_calls(model):
            for t in call.inputs:
                consumers.setdefault(id(t), []).append(call)
            produced[id(call.operation)] = call
        following = {
            id(op): [
                c.operation for t in produced[id(op)].outputs for c in consumers.get(id(t), [])
            ]
            for op in (c.operation for c in produced.values())
        }
    else:
        layers = list(getattr(model, "layers", []))
        following = {id(a): [b] for a, b in itertools.pairwise(layers)}
    met: dict[int, str | None] = {}
    for layer in _keras.all_layers(model):
        own = activation_name(layer)
        if own not in (None, "linear"):
            met[id(layer)] = own
            continue
        nxt = following.get(id(layer), [])
        if len(nxt) == 1 and isinstance(nxt[0], BATCH_NORMALIZATION):
            nxt = following.get(id(nxt[0]), [])
        found = [activation_name(n) for n in nxt if isinstance(n, ACTIVATION_LAYERS)]
        met[id(layer)] = found[0] if len(found) == 1 and len(nxt) == 1 else None
    return met


def healthy_weights(model: Any) -> list[HealthyRow]:
    """One `HealthyRow` per kernel of ``model`` (layers that own one), in model order.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(
    ...     64, activation="relu", name="d",
    ...     kernel_initializer=keras.initializers.RandomNormal(stddev=0.5))])
    >>> [(r.layer, r.scheme, round(r.ratio), r.flagged) for r in healthy_weights(model)]
    [('d', 'he_normal', 3, True)]
    """
    from keras_initlab.measurement._selection import kernel_of
    from keras_initlab.model.tree import leaf_layers, walk
    from keras_initlab.prescribed import scheme_rows

    met = met_activations(model)
    leaves = {id(layer) for _, layer in leaf_layers(model)}
    rows = []
    for path, layer in walk(model):
        kernel = kernel_of(layer)
        if kernel is None or id(layer) not in leaves:
            continue
        candidates = healthy_schemes(met.get(id(layer)))
        reports = [[r for r in scheme_rows(layer, s) if r.path == kernel.path] for s in candidates]
        fits = [s for s, rep in zip(candidates, reports, strict=True) if rep and not rep[0].flagged]
        scheme = fits[0] if fits else candidates[0]
        chosen = reports[candidates.index(scheme)]
        if not chosen or chosen[0].ratio is None:
            continue
        row = chosen[0]
        why = "" if fits else _why(layer, kernel, row)
        rows.append(
            HealthyRow(
                path,
                row.path,
                met.get(id(layer)),
                scheme,
                float(row.ratio or math.nan),
                not fits,
                why,
            )
        )
    return rows


# The initializer attributes of each kernel attribute (`measurement._selection.kernel_of`),
# the first present is the one (Keras 3's DepthwiseConv2D keeps `kernel` and
# `depthwise_initializer`).
_INITIALIZER_OF = {
    "kernel": ("kernel_initializer", "depthwise_initializer"),
    "depthwise_kernel": ("depthwise_initializer",),
    "embeddings": ("embeddings_initializer",),
}


def _why(layer: Any, kernel: Any, row: Any) -> str:
    """Keras' shape-rule fans against the true ones, for a kernel Keras' VarianceScaling drew."""
    from keras_initlab.fans import compute_fans

    name = next((a for a in _INITIALIZER_OF if getattr(layer, a, None) is kernel), "kernel")
    initializer = next(
        (getattr(layer, a) for a in _INITIALIZER_OF[name] if hasattr(layer, a)), None
    )
    if not isinstance(initializer, keras.initializers.VarianceScaling):
        return ""
    shape_in, shape_out = compute_fans(tuple(kernel.shape), "auto")  # Keras' shape rule
    mode = initializer.mode
    true = {"fan_in": row.fan_in, "fan_out": row.fan_out}
    by_shape = {"fan_in": shape_in, "fan_out": shape_out}
    modes = ["fan_in", "fan_out"] if mode == "fan_avg" else [mode]
    differ = [m for m in modes if true[m] is not None and int(by_shape[m]) != int(true[m])]
    if not differ:
        return ""
    parts = ", ".join(
        f"{m} = {int(by_shape[m])} instead of the true {int(true[m])}" for m in differ
    )
    return (
        f"Keras' {type(initializer).__name__} reads the fans of {type(layer).__name__}'s "
        f"{name} {tuple(kernel.shape)} from its shape: {parts}"
    )


def probe_moments(x: Any, model: Any = None) -> dict[str, Any]:
    """`keras_initlab.propagate`'s probe arguments for the inputs ``x``: the mean and the
    variance of every floating-point input element together ((0, 1) where there is none:
    `propagate` reads integer token ids on its own), the batch size (training-mode batch
    statistics and a softmax's typical batch depend on it) and, given the ``model`` whose
    inputs the arrays of ``x`` are (one each, in the order of ``model.inputs``, each of the
    input's rank), their shapes without the batch axis (``input_shapes``: the sizes the
    model leaves unknown, a sequence length).

    Example:
    >>> import numpy as np
    >>> probe_moments(np.ones((16, 4)))
    {'input_mean': 1.0, 'input_var': 0.0, 'batch_size': 16}
    """
    import numpy as np

    arrays = [np.asarray(leaf) for leaf in keras.tree.flatten(x)]
    floats = [a.astype(np.float64).ravel() for a in arrays if np.issubdtype(a.dtype, np.floating)]
    mean, var = 0.0, 1.0
    if floats:
        values = np.concatenate(floats)
        mean, var = float(values.mean()), float(values.var())
    moments: dict[str, Any] = {
        "input_mean": mean,
        "input_var": var,
        "batch_size": int(arrays[0].shape[0]),
    }
    from keras_initlab.propagate._signal import shapes_fit

    shapes = [tuple(int(n) for n in a.shape[1:]) for a in arrays]
    if shapes_fit(list(getattr(model, "inputs", None) or []), shapes):
        moments["input_shapes"] = shapes
    return moments


def healthy_prediction(
    model: Any, x: Any, mode: str, weights: list[HealthyRow] | None = None
) -> Any:
    """`keras_initlab.propagate` of ``model`` with every flagged kernel re-drawn by its
    healthy scheme (`HealthyRow.scheme`; the others keep their values).

    The values `initialize` would draw (seed: the layer's index in the model walk) are read
    by `propagate` in place of the layer's own (`keras_initlab.propagate._kernels.
    substituted`): the model is neither copied nor changed, and no random state moves.

    Args:
        model: a built Sequential or Functional model.
        x: the probe's inputs (their mean and variance are the prediction's input).
        mode: ``"inference"`` or ``"training"``.
        weights: `healthy_weights(model)`, if already computed.

    Returns:
        The `keras_initlab.propagate.PropagateReport`.
    """
    from keras_initlab import _keras
    from keras_initlab.draw import drawn
    from keras_initlab.model.tree import walk
    from keras_initlab.propagate import propagate
    from keras_initlab.propagate._kernels import substituted

    weights = healthy_weights(model) if weights is None else weights
    schemes = {r.layer: r.scheme for r in weights if r.flagged}
    redrawn: dict[int, Any] = {}
    with _keras.untouched_random_state():
        for seed, (name, layer) in enumerate(walk(model)):
            if name in schemes:
                redrawn.update(
                    (id(v), value) for v, value in drawn(layer, schemes[name], seed=seed)
                )
    with substituted(redrawn):
        return propagate(model, mode=mode, **probe_moments(x, model))
