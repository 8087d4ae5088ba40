"""What a healthy initialization of this architecture predicts: the reference for alerts.

A real network is not a plain chain: global pooling divides the gradient by H*W, BatchNorm
resets the scale, a residual Add sums variances. So a variance that changes across depth is
no fault by itself; a variance that departs from what the architecture predicts for a
healthy initialization is. The reference is `keras_initlab.propagate` on the model as if
every layer whose weights fit none of the schemes that suit the activation its output meets
(`healthy_schemes`: He before a ReLU-family activation, Glorot, LeCun or He otherwise;
judged by `keras_initlab.audit` on true fans) were re-drawn by the first of them (the
values `initialize` would assign, read by `propagate` in place of the layer's own: the
model is neither copied nor changed); layers that fit keep their weights. The input mean
and variance are the probe's. The advice comes from this
model: the weights that fit no healthy scheme (e.g. depthwise kernels on Keras' own fans),
and whether the model's variance falls or grows against the reference.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keras_initlab.callbacks._alerts import RELU_FAMILY, SQUASHING

_FIX_SCHEME = {
    "he_normal": "He (Kaiming), Var(W) = 2/fan_in, for ReLU-family layers",
    "glorot_normal": "Glorot (Xavier), Var(W) = 2/(fan_in + fan_out), for tanh/sigmoid layers",
    "lecun_normal": "LeCun, Var(W) = 1/fan_in, for linear layers",
}


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


def _met_activations(model: Any) -> dict[int, str | None]:
    """Per layer (by id), the activation its output meets: its own fused one, else that of
    an activation layer it feeds directly or through a BatchNormalization."""
    import keras

    from keras_initlab import _keras
    from keras_initlab.measurement._selection import ACTIVATION_LAYERS, activation_name

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
        if len(nxt) == 1 and isinstance(nxt[0], keras.layers.BatchNormalization):
            nxt = following.get(id(nxt[0]), [])
        found = [activation_name(n) for n in nxt if isinstance(n, ACTIVATION_LAYERS)]
        met[id(layer)] = found[0] if len(found) == 1 and len(nxt) == 1 else None
    return met


@dataclass
class Reference:
    """Predicted variances for a healthy initialization, and what is wrong in this model.

    Attributes:
        schemes: per layer path with a kernel, the healthy scheme the prediction assumes.
        activation_var, gradient_var: per layer path, the predicted variance (gradients
            relative to the output's).
        flagged: ``(layer, ratio)`` of the weights `audit` flags against those schemes (std
            over the std the scheme prescribes on true fans).
    """

    schemes: dict[str, str]
    activation_var: dict[str, float]
    gradient_var: dict[str, float]
    flagged: list[tuple[str, float]] = field(default_factory=list)

    def values(self, key: str) -> dict[str, float]:
        return self.activation_var if key == "activation_var" else self.gradient_var

    @property
    def scheme(self) -> str:
        """The most common of `schemes` (named in messages)."""
        names = list(self.schemes.values()) or ["lecun_normal"]
        return max(sorted(set(names)), key=names.count)

    def fix(self, layer: str, grows: bool) -> str:
        """The advice for a departure at ``layer``, from this model's own faults."""
        fixes = []
        if self.flagged:
            named = ", ".join(f"{name} ({ratio:.3g}x)" for name, ratio in self.flagged[:3])
            more = f" and {len(self.flagged) - 3} more" if len(self.flagged) > 3 else ""
            fixes.append(
                f"weights whose std differs from what a healthy scheme prescribes on their "
                f"true fans: {named}{more}"
            )
        too = "large" if grows else "small"
        used = sorted(set(self.schemes.values()))
        fixes.append(
            f"from {layer!r} on the weights are too {too} for this architecture: use "
            + "; ".join(_FIX_SCHEME[u] for u in used)
            + f" (keras_initlab.initialize(model, {self.scheme!r})"
            + (" and the others per layer)" if len(used) > 1 else ")")
        )
        return "; ".join(fixes)


def healthy_reference(model: Any, x: Any, mode: str) -> Reference | None:
    """The `Reference` of ``model``, or None when it cannot be built (a subclassed model:
    `propagate` has no graph to walk; then the plain-chain rule stays).

    The re-drawn kernels are handed to `propagate` in place of the model's own
    (`substituted`): the model is not copied and not changed.
    """
    import keras

    from keras_initlab import _keras
    from keras_initlab.audit import audit
    from keras_initlab.initialize import drawn
    from keras_initlab.layer_tree import leaf_layers, walk
    from keras_initlab.measurement._selection import kernel_of
    from keras_initlab.propagate import propagate
    from keras_initlab.propagate._kernels import substituted

    if not (_keras.is_functional(model) or isinstance(model, keras.Sequential)):
        return None
    met = _met_activations(model)
    leaves = {id(layer) for _, layer in leaf_layers(model)}
    schemes: dict[str, str] = {}
    flagged: list[tuple[str, float]] = []
    redrawn: dict[int, Any] = {}
    for seed, (path, layer) in enumerate(walk(model)):
        if kernel_of(layer) is None or id(layer) not in leaves:
            continue
        candidates = healthy_schemes(met.get(id(layer)))
        audits = [audit(layer, scheme) for scheme in candidates]
        fits = [c for c, a in zip(candidates, audits, strict=True) if not a.flagged]
        if fits:  # already healthy: the reference keeps its weights
            schemes[path] = fits[0]
            continue
        schemes[path] = candidates[0]
        redrawn.update((id(v), value) for v, value in drawn(layer, candidates[0], seed=seed))
        flagged += [(path, float(r.ratio or math.nan)) for r in audits[0].flagged]
    leaf = keras.tree.flatten(x)[0]
    first = np.asarray(leaf.numpy() if hasattr(leaf, "numpy") else leaf, np.float64)
    with substituted(redrawn):
        report = propagate(
            model, input_mean=float(first.mean()), input_var=float(first.var()), mode=mode
        )
    act = {r.layer: r.activation_var for r in report if r.predicted}
    grad = {r.layer: r.gradient_var for r in report if r.predicted}
    return Reference(schemes, act, grad, flagged)
