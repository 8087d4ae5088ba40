"""The probe: the fixed batch measurements run on, in every form a user may give it."""

from __future__ import annotations

import contextlib
from typing import Any

import keras
import numpy as np

from keras_initlab import _keras


def is_dataset(probe: Any) -> bool:
    """Whether ``probe`` is a `tf.data.Dataset` (read whole by `probe_tensors`), told by its
    class's module, so that no TensorFlow is imported on the other backends."""
    return any(
        c.__module__.startswith("tensorflow.") and c.__name__ == "DatasetV2"
        for c in type(probe).__mro__
    )


def check_probe(probe: Any) -> None:
    """Reject a probe that cannot give statistics: no rows, or NaN/Inf values.

    Raises:
        ValueError: naming the part of the probe (``x``, ``y``, ``sample_weight``) at fault.
    """
    parts = probe if isinstance(probe, tuple) else (probe,)
    for name, part in zip(("x", "y", "sample_weight"), parts, strict=False):
        for leaf in keras.tree.flatten(part):
            if leaf is None:
                continue
            array = np.asarray(leaf)
            if array.ndim == 0 or array.shape[0] == 0:
                raise ValueError(
                    f"Argument `probe` must hold at least one sample. Received: {name} of shape "
                    f"{array.shape}"
                )
            if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
                bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
                raise ValueError(
                    f"Argument `probe` must hold finite values. Received: {name} with {bad} "
                    f"NaN or Inf value(s) of {array.size}"
                )


def probe_tensors(probe: Any) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` as tensors from any accepted probe form.

    Args:
        probe: ``x``, or a tuple ``(x, y)`` / ``(x, y, sample_weight)``, or a small
            `tf.data.Dataset` (read whole). A list or dict is ``x`` (multi-input).
    """
    if is_dataset(probe):
        batches = list(probe.as_numpy_iterator())
        if not batches:
            raise ValueError("Argument `probe` must not be an empty dataset. Received: probe=...")
        probe = keras.tree.map_structure(lambda *b: np.concatenate(b, axis=0), *batches)
    check_probe(probe)
    if isinstance(probe, tuple):
        if not 1 <= len(probe) <= 3:
            raise ValueError(
                "Argument `probe` must be x, (x, y) or (x, y, sample_weight). "
                f"Received: a tuple of length {len(probe)}"
            )
        x, y, sw = (*probe, None, None)[:3]
    else:
        x, y, sw = probe, None, None

    def convert(t: Any) -> Any:
        return None if t is None else keras.tree.map_structure(keras.ops.convert_to_tensor, t)

    return convert(x), convert(y), convert(sw)


def fit_probe() -> Any:
    """A batch of the training data of the `fit` call that is starting (the default probe).

    Keras does not hand data to callbacks; a fresh batch is drawn from the running `fit`'s
    data adapter (`keras_initlab._keras.fit_batch`: arrays and `tf.data` pipelines are
    re-iterable, so training data is not consumed).
    """
    batch = _keras.fit_batch()
    if batch is None:
        raise ValueError(
            "VarianceMonitor could not take a probe batch from this `fit` call (only arrays "
            "and tf.data datasets are read without consuming data). Pass one: "
            "VarianceMonitor(probe=(x, y))."
        )
    return batch


def build(model: Any, probe: tuple[Any, Any, Any]) -> None:
    """Build the model (and its compiled loss and optimizer) if it is not built yet.

    TensorFlow's `fit` builds a Sequential without Input or a subclassed model only while
    tracing its first step (other backends build symbolically first); a measurement before
    that step runs the symbolic build Keras uses elsewhere, under the model's strategy. With
    no targets or no compiled loss, the layers are built by a call on one sample.
    """
    if _keras.is_built(model):
        return
    x, y, sample_weight = probe
    strategy = getattr(model, "distribute_strategy", None)  # (TensorFlow only)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        if y is None or _keras.compiled_loss(model) is None:
            model(keras.tree.map_structure(lambda t: t[:1], x), training=False)
        else:
            batch = (x, y) if sample_weight is None else (x, y, sample_weight)
            _keras.symbolic_build(model, batch)
