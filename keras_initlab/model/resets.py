"""Which custom layers reset the scale of their input: read from what they compute.

A normalization (LayerNorm, RMS norm, any per-sample standardization) resets the scale of
what it reads: ``f(c x) = f(x)`` for every ``c > 0``, up to its epsilon. Keras' own
normalization layers are classified by class (`keras_initlab.model.layers`) and a user's
by `keras_initlab.register_layer`; a layer from any other library (keras_hub's
``LlamaLayerNorm``, ``GemmaRMSNormalization``, ``MistralLayerNorm``...) is neither, so
`resets_scale` checks the property itself: the layer is called once on ``x``, a draw of
iid N(0, 1) values of the shape it was built with (unknown sizes at 2), and once on
``SCALE * x``, and resets the scale when

    max |f(SCALE x) - f(x)| <= RTOL * max |f(x)|

while ``f`` of a second, independent draw differs by more than that (a layer that reads
only its input's shape, a constant or keras_hub's ``PositionEmbedding``, is not a
normalization). With epsilon ``eps`` added to a variance of 1, the two calls differ by
about ``eps / 2`` relatively (``1e-6`` to ``1e-5`` in keras_hub's norms); a linear or
piecewise linear layer, or one whose output grows with its input's scale, differs by
``SCALE - 1``; `RTOL` sits between, above bfloat16's rounding (``2^-8``). A layer of
several inputs, one not built, or one whose call fails on a concrete tensor is not taken
for a normalization. The calls leave the layer's state (its non-trainable variables) and
the global random state as they were; the answer is kept on the layer.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_initlab import _keras

__all__ = ["resets_scale"]

SCALE = 8.0
RTOL = 1e-2
_CACHE = "_keras_initlab_resets_scale"


def resets_scale(layer: Any) -> bool:
    """Whether ``layer``, a built leaf layer, returns the same output for its input scaled
    by `SCALE` (module doc).

    Args:
        layer: a Keras layer.

    Returns:
        True when the layer is scale-invariant in its one input.

    Example:
    >>> import keras
    >>> class RMSNorm(keras.layers.Layer):
    ...     def call(self, x):
    ...         return x * keras.ops.rsqrt(keras.ops.mean(x * x, axis=-1, keepdims=True) + 1e-6)
    >>> norm = RMSNorm()
    >>> _ = norm(keras.ops.ones((1, 4)))
    >>> resets_scale(norm), resets_scale(keras.layers.Dense(4))
    (True, False)
    """
    if not isinstance(layer, keras.layers.Layer) or not layer.built:
        return False
    cache = _keras.instance_cache(layer, _CACHE)
    if "answer" not in cache:
        cache["answer"] = _check(layer)
    return bool(cache["answer"])


def _check(layer: Any) -> bool:
    shapes = list(_keras.build_shapes(layer).values())
    if len(shapes) != 1 or not _is_shape(shapes[0]) or _keras.child_layers(layer):
        return False
    shape = tuple(2 if d is None else int(d) for d in shapes[0])
    dtype = keras.backend.standardize_dtype(getattr(layer, "compute_dtype", "float32"))
    if not keras.backend.is_float_dtype(dtype):
        return False
    draw, other = np.random.default_rng(0).standard_normal((2, *shape))
    try:
        with _keras.kept_state(layer):  # what a call might update is put back
            low, high, elsewhere = (
                np.asarray(keras.ops.convert_to_numpy(layer(keras.ops.convert_to_tensor(x, dtype))))
                for x in (draw, SCALE * draw, other)
            )
    except Exception:  # several inputs, a call that needs other arguments...
        return False
    low, high, elsewhere = (np.asarray(v, np.float64) for v in (low, high, elsewhere))
    if not (low.shape == high.shape == elsewhere.shape) or not np.all(
        np.isfinite(np.stack([low, high, elsewhere]))
    ):
        return False
    peak = float(np.max(np.abs(low))) if low.size else 0.0
    if peak == 0.0 or float(np.max(np.abs(elsewhere - low))) <= RTOL * peak:
        return False  # its output does not follow its input's values (a constant, a shape)
    return float(np.max(np.abs(high - low))) <= RTOL * peak


def _is_shape(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(d is None or isinstance(d, int) for d in value)
