"""The PyTorch gradient adapter: ``torch.autograd.grad`` over a stateless pass.

PyTorch is imported when a pass runs (this module is imported on the torch backend only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from keras_initlab import _keras
from keras_initlab.measurement._core import PerturbationRecorder, by_layer
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
    eager_first: bool = False,  # (unused: torch runs eagerly)
) -> Callable[[tuple[Any, Any, Any], bool], Reduced]:
    """``f(data, distinct) -> reduce(run_pass(...))`` on these layers (eager: torch has no
    trace)."""

    def pass_(data: tuple[Any, Any, Any], distinct: bool = True) -> Reduced:
        tensors = run_pass(model, layers, kernels, data, training, loss_fn)
        tensors.distinct = bool(distinct)
        return reduce(tensors)

    return pass_


def run_pass(
    model: Any,
    layers: Sequence[Any],
    kernels: Sequence[Any | None],
    data: tuple[Any, Any, Any],
    training: bool,
    loss_fn: Any,
) -> Pass:
    """The measured layers' outputs, the loss's gradients at them and at the kernels.

    Each tapped output gets a zero perturbation that requires grad (``dL/de = dL/dy``); the
    kernels' values require grad too (a kernel that is not trainable gets a zero gradient,
    as TensorFlow's tape gives it). Without targets the pass runs under ``no_grad``.
    """
    import torch

    wanted = {id(k) for k in kernels if k is not None and k.trainable}
    values = [v.value.detach().requires_grad_(id(v) in wanted) for v in model.trainable_variables]
    by_id = {id(v): value for v, value in zip(model.trainable_variables, values, strict=True)}
    non_trainable = [v.value.detach() for v in model.non_trainable_variables]
    with_grads = data[1] is not None
    perturbations: list[Any] = []

    def perturb(_: int, y: Any) -> Any:
        perturbations.append(torch.zeros_like(y, requires_grad=True))
        return perturbations[-1]

    recorder = PerturbationRecorder(len(layers), perturb if with_grads else None)
    # An unseeded dropout draws from torch's global generator: put it back after the pass.
    generator, grads_on = _keras.untouched_torch_generator(), torch.set_grad_enabled(with_grads)
    with generator, grads_on, recording(recorder):
        loss, _ = stateless_loss(model, values, non_trainable, data, training, loss_fn)
    calls = [[t.detach() for t in call] for call in recorder.calls]
    kernel_values = [None if k is None else k.value.detach() for k in kernels]
    variables = [*(v.detach() for v in values), *non_trainable]
    if not with_grads:
        return Pass(calls, None, kernel_values, [None] * len(layers), variables)
    sources = perturbations + [by_id[id(k)] for k in kernels if k is not None and id(k) in wanted]
    found = torch.autograd.grad(loss, sources, allow_unused=True)
    at_outputs, at_kernels = found[: len(perturbations)], iter(found[len(perturbations) :])
    grads = [
        [torch.zeros_like(t) if g is None else g for g, t in zip(gs, kept, strict=True)]
        for gs, kept in zip(by_layer(at_outputs, recorder.order), calls, strict=True)
    ]
    kernel_grads: list[Any] = []
    for kernel in kernels:
        if kernel is None:
            kernel_grads.append(None)
        elif id(kernel) in wanted:
            g = next(at_kernels)
            kernel_grads.append(torch.zeros_like(by_id[id(kernel)]) if g is None else g)
        else:
            kernel_grads.append(torch.zeros_like(kernel.value))
    return Pass(calls, grads, kernel_values, kernel_grads, variables)
