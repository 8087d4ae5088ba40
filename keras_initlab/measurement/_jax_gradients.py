"""The JAX gradient adapter: `jax.grad` over a stateless pass, perturbations as arguments.

JAX is imported when a pass is made (this module is imported on the JAX backend only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from keras_initlab.measurement._core import PerturbationRecorder, by_layer, in_tap_order
from keras_initlab.measurement._loss import stateless_loss
from keras_initlab.measurement._reduce import Pass, Reduced
from keras_initlab.measurement._routing import recording


def make_pass(
    model: Any,
    layers: Sequence[Any],
    kernels: Sequence[Any | None],
    training: bool,
    loss_fn: Any,
    reduce: Callable[[Pass], Reduced],
    eager_first: bool = False,  # (unused: the pass is always jitted)
) -> Callable[[tuple[Any, Any, Any], bool], Reduced]:
    """``f(data, distinct) -> reduce(Pass)``, one jitted function per probe shape (``distinct``
    a traced bool: the rows of ``distinct_units`` in a `keras.ops.cond`).

    An abstract pass (`jax.eval_shape`, once per probe shape) finds the shape of each tapped
    output; the loss is then differentiated with respect to zeros of those shapes added at
    the outputs (``dL/de = dL/dy``) and to the trainable variables (a kernel that is not
    trainable gets a zero gradient, as TensorFlow's tape gives it), and ``reduce`` (the
    statistics) runs in the same jitted function, so only they leave the device. The
    variables' current values are arguments: a trained model is measured without tracing
    again.
    """
    import jax
    import jax.numpy as jnp

    trainable_ids = [id(v) for v in model.trainable_variables]
    taps: list[list[int]] = []  # per layer, the taps of its calls in the last pass traced

    def run(perturbations: Any, trainable: Any, non_trainable: Any, data: Any) -> Any:
        recorder = PerturbationRecorder(
            len(layers), None if perturbations is None else lambda k, y: perturbations[k]
        )
        with recording(recorder):
            loss, _ = stateless_loss(model, trainable, non_trainable, data, training, loss_fn)
        taps[:] = recorder.order  # (static: the pass's structure, read as it is traced)
        return (jnp.zeros(()) if loss is None else loss), recorder.calls

    def values_of(trainable: list[Any]) -> list[Any]:
        at = dict(zip(trainable_ids, trainable, strict=True))
        return [None if k is None else at.get(id(k), k.value) for k in kernels]

    def reduced(tensors: Pass) -> tuple[Any, ...]:
        return reduce(tensors).parts()

    @jax.jit
    def forward(trainable: Any, non_trainable: Any, data: Any, distinct: Any) -> Any:
        calls = run(None, trainable, non_trainable, data)[1]
        return reduced(
            Pass(
                calls,
                None,
                values_of(trainable),
                [None] * len(layers),
                [*trainable, *non_trainable],
                distinct,
            )
        )

    @jax.jit
    def backward(zeros: Any, trainable: Any, non_trainable: Any, data: Any, distinct: Any) -> Any:
        grad = jax.grad(run, argnums=(0, 1), has_aux=True)
        (at_outputs, at_variables), calls = grad(zeros, trainable, non_trainable, data)
        grads = by_layer(at_outputs, taps)
        at = dict(zip(trainable_ids, at_variables, strict=True))
        kernel_grads = [
            None if kernel is None else at.get(id(kernel), jnp.zeros(kernel.shape, kernel.dtype))
            for kernel in kernels
        ]
        variables = [*trainable, *non_trainable]
        return reduced(Pass(calls, grads, values_of(trainable), kernel_grads, variables, distinct))

    zeros: dict[str, list[Any]] = {}  # per probe shape, the perturbations (made once)

    def pass_(data: tuple[Any, Any, Any], distinct: bool = True) -> Reduced:
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        flag = jnp.asarray(bool(distinct))
        if data[1] is None:
            return Reduced(*forward(trainable, non_trainable, data, flag))
        key = str(jax.tree_util.tree_map(lambda t: (tuple(t.shape), str(t.dtype)), data))
        if key not in zeros:
            found = jax.eval_shape(
                lambda t, n, d: run(None, t, n, d)[1], trainable, non_trainable, data
            )
            shapes = in_tap_order(found, taps)
            zeros[key] = [jnp.zeros(s.shape, s.dtype) for s in shapes]
        return Reduced(*backward(zeros[key], trainable, non_trainable, data, flag))

    return pass_
