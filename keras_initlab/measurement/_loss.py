"""The loss a measurement differentiates: what `train_step` differentiates, on the probe."""

from __future__ import annotations

from typing import Any

import keras

from keras_initlab import _keras


def overrides_compute_loss(model: Any) -> bool:
    """Whether the model's class defines its own `compute_loss`."""
    return type(model).compute_loss is not keras.Model.compute_loss


def require_loss(model: Any, loss_fn: Any) -> None:
    """Raise unless there is a loss to differentiate: ``loss_fn``, a compiled loss or the
    model's own `compute_loss`."""
    if (
        loss_fn is None
        and _keras.compiled_loss(model) is None
        and not overrides_compute_loss(model)
    ):
        raise ValueError(
            "Argument `model` must be compiled with a loss to measure gradients (or pass "
            "`loss`). Received: a model without a compiled loss"
        )


def stateless_loss(
    model: Any,
    trainable: list[Any],
    non_trainable: list[Any],
    data: tuple[Any, Any, Any],
    training: bool,
    loss_fn: Any,
) -> tuple[Any, Any]:
    """``(loss, y_pred)`` of ``model`` on ``data`` with the given variable values.

    Nothing the model holds changes (`keras.Model.stateless_call`: the moving statistics,
    seed states and loss trackers a training-mode pass updates are left as they were). The
    loss is ``model.compute_loss`` (the compiled loss, its reductions and weights, and
    ``model.losses``; or the model's own override) or, with ``loss_fn``, ``loss_fn(y,
    y_pred, sample_weight)`` plus ``model.losses``. For `jax.grad` and torch's autograd.
    """
    x, y, sample_weight = data
    kwargs = {"training": training} if _keras.call_has_training_arg(model) else {}
    y_pred, non_trainable, losses = model.stateless_call(
        trainable, non_trainable, x, return_losses=True, **kwargs
    )
    if y is None:
        return None, y_pred
    if loss_fn is not None:
        loss = loss_fn(y, y_pred, sample_weight)
        return (loss + sum(losses) if losses else loss), y_pred
    metrics = [v.value for v in model.metrics_variables]
    with _keras.losses_override(model, losses):
        loss, _ = model.stateless_compute_loss(
            trainable,
            non_trainable,
            metrics,
            x=x,
            y=y,
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=training,
        )
    return loss, y_pred
