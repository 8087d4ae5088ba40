"""The LSUV algorithm: ``lsuv()``, one rescaling step, and the layer-by-layer iteration."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from keras import ops

from keras_initlab._validation import check_positive, check_positive_int
from keras_initlab.lsuv._inputs import _build_from, _check_x
from keras_initlab.lsuv._orthonormal import _orthonormal
from keras_initlab.lsuv._probe import _numpy, _Probe
from keras_initlab.lsuv._report import CONVERGED, LSUVLayer, LSUVReport, _warn
from keras_initlab.lsuv._targets import LSUV_LAYERS, _Target, _targets
from keras_initlab.schemes import base_seed, weight_seed

DEFAULT_TOL = 0.1  # |Var - 1| accepted, the paper's Tol_var
DEFAULT_MAX_ITER = 10  # rescalings per layer, the paper's T_max
# With center=True, a within-channel variance below this share of the total variance is
# float32 rounding of per-channel constants (eps32**2 ~ 1.4e-14), not a signal to rescale.
_ROUNDING_SHARE = 1e-12


def _step(target: _Target, variance: float, means: np.ndarray, center: bool) -> str | None:
    """Rescale (and centre) one layer; a failure status if it cannot be done."""
    if not math.isfinite(variance) or not np.all(np.isfinite(means)):
        return "non_finite"
    if center and target.bias is not None:
        between = float(np.mean(np.square(means - np.mean(means))))
        variance = variance - between if variance - between > _ROUNDING_SHARE * variance else 0.0
    if variance <= 0.0:
        return "zero_output"
    scale = 1.0 / math.sqrt(variance)
    kernel = target.scaled.variable
    new_kernel = ops.multiply(kernel.value, ops.cast(scale, kernel.dtype))
    if not bool(ops.all(ops.isfinite(new_kernel))):
        return "overflow"
    kernel.assign(new_kernel)
    if center and target.bias is not None:
        bias = target.bias.variable
        old = np.asarray(_numpy(bias), np.float64)
        new_bias = -scale * (means.reshape(old.shape) - old)  # the mean of W h, rescaled
        bias.assign(ops.cast(new_bias, bias.dtype))
    return None


def _done(variance: float, means: np.ndarray, tol: float, center: bool) -> bool:
    close = abs(variance - 1.0) <= tol
    if center:
        close = close and bool(np.all(np.abs(means) <= tol))
    return close


def lsuv(
    model: Any,
    x: Any,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int | None = None,
    center: bool = False,
    orthonormal: bool = True,
) -> LSUVReport:
    """Layer-sequential unit-variance initialization of a built model, in place.

    Each Dense, EinsumDense, ConvND, ConvNDTranspose, DepthwiseConvND and SeparableConvND
    layer gets an orthonormal kernel and a zero bias; then, in forward order, its kernel is
    rescaled ``W <- W / sqrt(Var(z))`` until the variance of its output ``z`` (before any
    fused activation: see the ``keras_initlab.lsuv`` docstring) on ``x`` satisfies
    ``|Var(z) - 1| <= tol``.

    Args:
        model: a Keras model or layer: Sequential (with or without an Input), Functional,
            nested or subclassed. One not built yet is built by calling it on ``x``.
        x: one batch of inputs (an array, a tensor, or a list/dict of them for a
            multi-input model). LSUV normalizes on exactly this batch; 256 samples or more
            give a variance close to the population's.
        tol: accepted distance of each variance from 1.
        max_iter: rescalings allowed per layer.
        seed: base seed of the orthonormal kernels (each kernel gets its own seed derived
            from it). None draws one from Python's RNG (reproducible under
            ``keras.utils.set_random_seed``).
        center: also set each bias so that every channel of the output has mean 0 on ``x``.
        orthonormal: pre-initialize kernels orthonormally and biases to 0 (the paper's
            LSUV). False only rescales the weights the model has (LSUV on top of an
            existing scheme).

    Returns:
        An ``LSUVReport``: per layer, the rescalings made, the final variance and mean of
        its output on ``x``, and whether it converged.

    Raises:
        ValueError: a model x cannot build, a model without LSUV layers, an empty or non-finite
            ``x`` or one that does not fit the model, a bad ``tol``/``max_iter``. The model
            is left untouched.
        TypeError: ``model`` is not a Keras model; a non-numeric ``tol``; a bad ``seed``.

    Warns:
        LSUVWarning: some layers did not converge (see ``report.failed``); their weights
            are finite.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
    ...                           keras.layers.Dense(8)])
    >>> x = np.random.default_rng(0).normal(size=(256, 16)).astype("float32")
    >>> report = lsuv(model, x, seed=0)
    >>> report.converged, [round(r.variance, 3) for r in report]
    (True, [1.0, 1.0])
    """
    tol = check_positive("tol", tol)
    max_iter = check_positive_int("max_iter", max_iter)
    seed = base_seed(seed)
    _build_from(model, x)
    targets, skipped = _targets(model)
    if not targets:
        raise ValueError(
            f"Argument `model` must contain a layer LSUV can normalize "
            f"({', '.join(c.__name__ for c in LSUV_LAYERS)}). Received: model={model.name!r}"
        )
    x = _check_x(model, x)
    # Pre-initialization values are computed before anything is assigned.
    fresh: list[tuple[Any, Any]] = []
    if orthonormal:
        for t in targets:
            fresh += [
                (s.variable, _orthonormal(s, weight_seed(seed, t.index * 2 + i)))
                for i, s in enumerate(t.kernels)
            ]
            if t.bias is not None:
                fresh.append((t.bias.variable, ops.zeros(t.bias.variable.shape)))
    saved = [(v, _numpy(v)) for t in targets for v in t.variables]
    try:
        with _Probe(model, targets, center) as probe:
            rows, passes = _run(probe, targets, x, fresh, saved, tol, max_iter, center)
    except BaseException:
        for variable, value in saved:
            variable.assign(value)
        raise
    report = LSUVReport(
        rows, skip_reasons=skipped, passes=passes, tol=tol, seed=seed if orthonormal else None
    )
    _warn(model, report)
    return report


def _run(
    probe: _Probe,
    targets: list[_Target],
    x: Any,
    fresh: list[tuple[Any, Any]],
    saved: list[tuple[Any, Any]],
    tol: float,
    max_iter: int,
    center: bool,
) -> tuple[list[LSUVLayer], int]:
    """Assign the fresh values, then rescale each target in the order the forward pass calls
    it; the report's rows (in that order, then the targets never called) and the passes run."""
    for variable, value in fresh:
        variable.assign(ops.cast(value, variable.dtype))
    try:
        measured = probe.forward(x)  # traces the model: the check that x fits a subclassed model
    except Exception as error:
        raise ValueError(
            f"Argument `x` must fit model {probe.model.name!r}: calling it on x failed with "
            f"{type(error).__name__}: {str(error).strip()}"
        ) from error
    stats = probe.host(measured)  # only the forward pass is blamed on x
    passes = 1
    called = set(probe.order)
    untouched = {id(v) for t in targets if t.index not in called for v in t.variables}
    for variable, value in saved:
        if id(variable) in untouched:
            variable.assign(value)
    for i in probe.order:
        target = targets[i]
        while target.status is None:
            variance, means = stats[i]
            if _done(variance, means, tol, center and target.bias is not None):
                target.status = CONVERGED
            elif target.iterations >= max_iter:
                target.status = "max_iter"
            else:
                target.status = _step(target, variance, means, center)
                if target.status is None:
                    target.iterations += 1
                    stats = probe(x)
                    passes += 1
    rows = []
    for i in probe.order:  # final values from the last pass: later layers cannot change them
        target, (variance, means) = targets[i], stats[i]
        status = target.status or CONVERGED
        if status == CONVERGED and not _done(
            variance, means, tol, center and target.bias is not None
        ):
            status = "changed"
        rows.append(
            LSUVLayer(
                target.path,
                type(target.layer).__name__,
                target.iterations,
                variance,
                float(np.mean(means)),
                status,
            )
        )
    rows += [
        LSUVLayer(t.path, type(t.layer).__name__, 0, None, None, "not_called")
        for t in targets
        if t.index not in called
    ]
    return rows, passes
