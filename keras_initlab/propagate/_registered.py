"""The rule of a layer registered with `keras_initlab.register_layer`.

The formulas of each kind are in `keras_initlab.model.registry`; the moments are per
element, as every rule's (a scale broadcast on the last axis, a user rule's arrays of the
output's per-sample shape).
"""

from __future__ import annotations

import numpy as np

from keras_initlab.model.registry import LayerKind
from keras_initlab.propagate._signal import make
from keras_initlab.propagate._step import Call, Step, passthrough
from keras_initlab.propagate._structural import dropped


def _attribute(call: Call, name: str) -> np.ndarray:
    value = getattr(call.layer, name, None)
    if value is None:
        raise NotImplementedError(f"registered with attribute {name!r}, which it lacks")
    return np.asarray(value, dtype=np.float64)


def registered_rule(kind: LayerKind, call: Call) -> Step:
    """The step of ``call.layer`` registered as ``kind``."""
    x = call.x
    if kind.kind == "identity":
        return passthrough(x)
    if kind.kind == "scale":
        w = _attribute(call, str(kind.weight))
        w2 = np.broadcast_to(w * w, x.shape)
        out = make(x.means * w, x.variances * w * w)
        return Step([out], lambda g: [g[0] * w2])
    if kind.kind == "dropout":
        return dropped(x, float(_attribute(call, str(kind.rate))), call.training)
    if kind.kind == "normalization":
        second = x.second
        if not second > 0:
            raise NotImplementedError("its input has no variance to normalize")
        return Step([make(np.zeros(x.shape), np.ones(x.shape))], lambda g: [g[0] / second])
    assert kind.rule is not None
    mean, var, gain = kind.rule(call.layer, x.means, x.variances, call.training)
    shape = tuple(int(d or 1) for d in call.out_shapes[0][1:]) if call.out_shapes else x.shape
    out = make(np.broadcast_to(mean, shape), np.broadcast_to(var, shape))
    in_shape = x.shape
    return Step([out], lambda g: [np.broadcast_to(np.mean(g[0]) * gain, in_shape).copy()])
