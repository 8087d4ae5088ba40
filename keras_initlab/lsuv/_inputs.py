"""The batch ``x`` LSUV normalizes on: its checks, and building an unbuilt model from it."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_initlab.model.weights import check_built


def _check_x(model: Any, x: Any) -> Any:
    """``x`` as tensors, after checking it is non-empty, finite and fits the model's inputs."""
    if x is None:
        raise ValueError("Argument `x` must be a batch of model inputs. Received: x=None")
    leaves = keras.tree.flatten(x)
    arrays = [np.asarray(leaf) if not hasattr(leaf, "shape") else leaf for leaf in leaves]
    if not arrays:
        raise ValueError(f"Argument `x` must not be empty. Received: x={x!r}")
    shapes = [tuple(a.shape) for a in arrays]
    if any(len(s) == 0 for s in shapes):
        raise ValueError(f"Argument `x` must have a batch axis. Received: x with shapes {shapes}")
    if any(s[0] == 0 for s in shapes):
        raise ValueError(
            f"Argument `x` must hold at least one sample. Received: x with shapes {shapes}"
        )
    if len({s[0] for s in shapes}) > 1:
        raise ValueError(
            f"Argument `x` must have the same batch size in every input. "
            f"Received: x with shapes {shapes}"
        )
    inputs = _model_inputs(model)
    if inputs is not None and len(inputs) == len(shapes):
        for expected, got in zip(inputs, shapes, strict=True):
            want = tuple(expected.shape)
            if len(want) != len(got) or any(
                w is not None and w != g for w, g in zip(want[1:], got[1:], strict=True)
            ):
                raise ValueError(
                    f"Argument `x` must have shape {('batch', *want[1:])} to fit model "
                    f"{model.name!r}. Received: x with shape {got}"
                )
    tensors = []
    for a in arrays:
        t = ops.convert_to_tensor(a)
        if "float" in str(t.dtype) and not bool(ops.all(ops.isfinite(t))):
            raise ValueError(
                "Argument `x` must contain only finite values. Received: x with NaN or Inf"
            )
        tensors.append(t)
    return keras.tree.pack_sequence_as(x, tensors)


def _build_from(model: Any, x: Any) -> None:
    """Build an unbuilt ``model`` by calling it on ``x``; then check that it is built."""
    if isinstance(model, keras.layers.Layer) and not (model.built and model.weights):
        checked = _check_x(model, x)
        try:
            model(checked, training=False)
        except Exception as error:
            raise ValueError(
                f"Argument `x` must fit model {model.name!r}: calling it on x to build it "
                f"failed with {type(error).__name__}: {str(error).strip()}"
            ) from error
    check_built(model)


def _model_inputs(model: Any) -> list[Any] | None:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    return list(keras.tree.flatten(inputs)) if inputs else None
