"""The JAX gradient adapter: `jax.grad` over a stateless pass, perturbations as arguments.

JAX is imported when a pass is made (this module is imported on the JAX backend only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from keras_initlab.measurement._core import Pass, PerturbationRecorder, tapped
from keras_initlab.measurement._loss import stateless_loss


def make_pass(
    model: Any,
    layers: Sequence[Any],
    kernels: Sequence[Any | None],
    training: bool,
    loss_fn: Any,
) -> Callable[[tuple[Any, Any, Any]], Pass]:
    """``f(data) -> Pass``: the measured layers' outputs and the loss's gradients at them
    and at the kernels, one jitted function per probe shape.

    An abstract pass (`jax.eval_shape`, once per probe shape) finds the shape of each tapped
    output; the loss is then differentiated with respect to zeros of those shapes added at
    the outputs (``dL/de = dL/dy``) and to the trainable variables (a kernel that is not
    trainable gets a zero gradient, as TensorFlow's tape gives it). The variables' current
    values are arguments, so a trained model is measured without tracing again.
    """
    import jax
    import jax.numpy as jnp

    def run(perturbations: Any, trainable: Any, non_trainable: Any, data: Any) -> Any:
        recorder = PerturbationRecorder(
            len(layers), None if perturbations is None else lambda k, y: perturbations[k]
        )
        loss, _ = tapped(
            recorder,
            lambda: stateless_loss(model, trainable, non_trainable, data, training, loss_fn),
        )
        return (jnp.zeros(()) if loss is None else loss), recorder.calls

    forward = jax.jit(lambda t, n, d: run(None, t, n, d)[1])
    backward = jax.jit(jax.grad(run, argnums=(0, 1), has_aux=True))
    shapes: dict[Any, list[Any]] = {}

    def pass_(data: tuple[Any, Any, Any]) -> Pass:
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        index = {id(v): i for i, v in enumerate(model.trainable_variables)}
        if data[1] is None:
            return Pass(forward(trainable, non_trainable, data), None, [None] * len(layers))
        key = jax.tree_util.tree_map(lambda t: (tuple(t.shape), str(t.dtype)), data)
        key = str(key)
        if key not in shapes:
            found = jax.eval_shape(
                lambda t, n, d: run(None, t, n, d)[1], trainable, non_trainable, data
            )
            shapes[key] = [s for call in found for s in call]
        zeros = [jnp.zeros(s.shape, s.dtype) for s in shapes[key]]
        (at_outputs, at_variables), calls = backward(zeros, trainable, non_trainable, data)
        grads, k = [], 0
        for call in calls:
            grads.append(list(at_outputs[k : k + len(call)]))
            k += len(call)
        kernel_grads = [
            None
            if kernel is None
            else (
                at_variables[index[id(kernel)]]
                if id(kernel) in index
                else jnp.zeros(kernel.shape, kernel.dtype)
            )
            for kernel in kernels
        ]
        return Pass(calls, grads, kernel_grads)

    return pass_
