"""LSUV: layer-sequential unit-variance initialization (Mishkin & Matas 2015).

``lsuv(model, x)`` gives every Dense, EinsumDense, ConvND, ConvNDTranspose, DepthwiseConvND
and SeparableConvND layer of a built model an orthonormal kernel, then walks those layers in
the order the forward pass calls them and rescales each kernel until the variance of the
layer's own output on the batch ``x`` is within ``tol`` of 1:

    z_l = W_l * h_(l-1) + b_l              (the layer's output, before any fused activation)
    W_l <- W_l / sqrt(Var(z_l))            until |Var(z_l) - 1| <= tol, or max_iter times

``Var`` is the population variance over every element of the batch output (all samples,
positions and channels). With ``center=True`` the bias is also set so that every channel of
``z_l`` has mean 0 on ``x``.

**Pre-activation, for fused activations.** For ``Dense(64, activation="relu")`` LSUV
normalizes ``z_l``, the output *before* the activation, for three reasons:

* it makes ``Dense(64, activation="relu")`` and ``Dense(64)`` followed by
  ``Activation("relu")`` the same network with the same initialization (with a separate
  activation layer the Dense layer's own output is the pre-activation);
* unit variance after the activation is unreachable for bounded activations (the output of
  a sigmoid has variance at most 1/4, of a tanh less than 1), so a post-activation target
  would fail or saturate exactly where initialization matters most;
* the kernel scale acts linearly on ``z_l`` (``Var(s z) = s**2 Var(z)``), so one rescaling
  reaches the target up to rounding and every iteration is one forward pass.

**Cost.** The model is called once inside a single ``tf.function`` that returns, for every
LSUV layer, the variance and channel means of its output (scalars and one small vector per
layer, reduced on the device). It is traced once per ``lsuv`` call and then run once per
iteration: about ``1 + number of layers`` compiled forward passes in all, no model is
rebuilt, and nothing is kept after the call (the layers' ``call`` is wrapped only while
``lsuv`` runs). On backends other than TensorFlow the same function runs eagerly.

**Failure.** A layer whose output is all zeros (a dead ReLU before it, an all-zero input)
or not finite cannot be normalized: it keeps finite weights, its row of the report says
why, and an ``LSUVWarning`` names it. Bad arguments (x of the wrong shape, an empty x, an
unbuilt model) raise before anything is assigned; any error during the iterations restores
every weight ``lsuv`` had touched.

Layers LSUV does not normalize (Embedding, recurrent cells, normalization layers, custom
layers' own weights) keep their weights; the report lists every such weighted layer under
``skipped``, with the reason in ``skip_reasons``.

**Unbuilt models.** LSUV is given data, so a model that is not built yet (a Sequential
without an ``Input``) is built by calling it once on ``x``.

Reference: D. Mishkin and J. Matas, "All you need is a good init", ICLR 2016
(arXiv:1511.06422).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_initlab._validation import check_positive, check_positive_int
from keras_initlab.initializers import Orthogonal
from keras_initlab.layer_weights import WeightSpec, check_built, other_weights, weight_specs
from keras_initlab.schemes import base_seed, weight_seed
from keras_initlab.text_table import RowReport, format_table

__all__ = ["LSUV", "LSUVLayer", "LSUVReport", "LSUVWarning", "lsuv"]

DEFAULT_TOL = 0.1  # |Var - 1| accepted, the paper's Tol_var
DEFAULT_MAX_ITER = 10  # rescalings per layer, the paper's T_max
# With center=True, a within-channel variance below this share of the total variance is
# float32 rounding of per-channel constants (eps32**2 ~ 1.4e-14), not a signal to rescale.
_ROUNDING_SHARE = 1e-12
L = keras.layers
LSUV_LAYERS = (
    L.Dense,
    L.EinsumDense,
    L.Conv1D,
    L.Conv2D,
    L.Conv3D,
    L.Conv1DTranspose,
    L.Conv2DTranspose,
    L.Conv3DTranspose,
    L.DepthwiseConv1D,
    L.DepthwiseConv2D,
    L.SeparableConv1D,
    L.SeparableConv2D,
)
# Row statuses of the report; only the first one counts as converged.
CONVERGED = "converged"
STATUSES = {
    CONVERGED: "variance within tol of 1",
    "max_iter": "max_iter rescalings did not bring the variance within tol",
    "zero_output": "the output is all zeros (a dead ReLU before it, or an all-zero input)",
    "non_finite": "the output is NaN or Inf",
    "overflow": "the rescaled kernel would overflow its dtype",
    "not_called": "the forward pass never calls this layer",
    "changed": "a later rescaling changed its output (a layer called more than once)",
}


class LSUVWarning(RuntimeWarning):
    """Some layers could not be normalized by ``lsuv``; their weights are finite."""


@dataclass(frozen=True)
class LSUVLayer:
    """One normalized layer: rescalings made, and the variance and mean of its output at the end.

    ``variance`` and ``mean`` are measured on the batch LSUV saw, after every layer was done
    (None for a layer the forward pass never calls).
    """

    layer: str
    type: str
    iterations: int
    variance: float | None
    mean: float | None
    status: str

    @property
    def converged(self) -> bool:
        return self.status == CONVERGED


class LSUVReport(RowReport[LSUVLayer]):
    """What ``lsuv`` did, one row per layer in forward order; ``str(report)`` is a table.

    Attributes:
        rows: the ``LSUVLayer`` rows.
        skipped: names of weighted layers LSUV does not normalize (left as they were).
        skip_reasons: ``{name: reason}`` for each name in ``skipped``.
        passes: compiled forward passes run.
        tol: the tolerance used.
        seed: the base seed of the orthonormal pre-initialization (None if there was none).
    """

    _COLUMNS = ("layer", "type", "iterations", "variance", "mean", "status")

    def __init__(
        self,
        rows: list[LSUVLayer],
        *,
        skipped: list[str],
        passes: int,
        tol: float,
        seed: int | None,
    ):
        super().__init__(rows)
        self.skipped = skipped
        self.skip_reasons: dict[str, str] = {}
        self.passes = passes
        self.tol = tol
        self.seed = seed

    @property
    def converged(self) -> bool:
        """Whether every layer converged."""
        return all(r.converged for r in self.rows)

    @property
    def failed(self) -> list[LSUVLayer]:
        """The rows that did not converge."""
        return [r for r in self.rows if not r.converged]

    def __repr__(self) -> str:
        done = len(self.rows) - len(self.failed)
        return (
            f"LSUVReport({len(self.rows)} layers, {done} converged, "
            f"{self.passes} forward passes, tol={self.tol:g})"
        )

    def __str__(self) -> str:
        rows = [[getattr(r, c) for c in self._COLUMNS] for r in self.rows]
        lines = [repr(self), *format_table(self._COLUMNS, rows)]
        if self.skipped:
            lines.append("skipped (not normalized by LSUV):")
            lines += [
                f"  {name}: {self.skip_reasons.get(name, '')}".rstrip() for name in self.skipped
            ]
        return "\n".join(lines)


@dataclass
class _Target:
    """An LSUV layer: the kernel that is rescaled, the kernels to pre-initialize, the bias."""

    layer: Any
    scaled: WeightSpec
    kernels: list[WeightSpec]
    bias: WeightSpec | None
    iterations: int = 0
    status: str | None = None
    index: int = field(default=0)

    @property
    def variables(self) -> list[Any]:
        specs = [*self.kernels, *([self.bias] if self.bias is not None else [])]
        return [s.variable for s in specs]


def _skip_reason(layer: Any) -> str:
    if isinstance(layer, L.Embedding):
        return "embedding table: a lookup, no kernel whose output variance LSUV could set"
    return "recurrent cell: LSUV normalizes feed-forward kernels only"


def _targets(model: Any) -> tuple[list[_Target], dict[str, str]]:
    """The LSUV layers of ``model`` (in weight_specs order) and ``{name: reason}`` of the
    weighted layers it skips (known layers first, then the ``other_weights`` owners)."""
    by_layer: dict[int, list[WeightSpec]] = {}
    for spec in weight_specs(model):
        by_layer.setdefault(id(spec.layer), []).append(spec)
    targets: list[_Target] = []
    skipped: dict[str, str] = {}
    for specs in by_layer.values():
        layer = specs[0].layer
        if not isinstance(layer, LSUV_LAYERS):
            skipped[_name(layer)] = _skip_reason(layer)
            continue
        kernels = [s for s in specs if not s.is_bias]
        scaled = next(s for s in kernels if s.role in ("kernel", "pointwise_kernel"))
        bias = next((s for s in specs if s.is_bias), None)
        targets.append(_Target(layer, scaled, kernels, bias, index=len(targets)))
    for other in other_weights(model):
        skipped.setdefault(_name(other.layer), other.reason)
    return targets, skipped


def _name(layer: Any) -> str:
    return str(getattr(layer, "path", None) or layer.name)


def _orthonormal(spec: WeightSpec, seed: int) -> Any:
    """An orthonormal kernel for ``spec``: columns (or rows) of unit norm, orthogonal.

    Dense, ConvND, ConvNDTranspose: the kernel flattened to ``(prod(shape[:-1]), shape[-1])``
    (for a convolution, ``(prod(k) * in, out)``, the usual LSUV choice). Depthwise: one
    orthonormal ``(prod(k), mult)`` filter bank per input channel. EinsumDense: orthonormal
    as a ``(contracted axes, other axes)`` matrix.
    """
    shape = tuple(int(d) for d in spec.variable.shape)
    if spec.layout == "depthwise":
        taps, channels = math.prod(shape[:-2]), shape[-2] * shape[-1]
        init = Orthogonal(seed=seed, layout="recurrent", layout_args={"gates": shape[-2]})
        return ops.reshape(init((taps, channels), dtype="float32"), shape)
    if spec.layout == "einsum":
        in_axes = list(spec.layout_args["in_axes"])
        rest = [a for a in range(len(shape)) if a not in in_axes]
        order = in_axes + rest
        matrix = (math.prod(shape[a] for a in in_axes), math.prod(shape[a] for a in rest))
        q = Orthogonal(seed=seed)(matrix, dtype="float32")
        q = ops.reshape(q, [shape[a] for a in order])
        return ops.transpose(q, [order.index(a) for a in range(len(shape))])
    return Orthogonal(seed=seed)(shape, dtype="float32")


def _kept_axes(layer: Any, rank: int, bias_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The axes of a layer's output that its bias does not broadcast over (its channels)."""
    if bias_shape is None:
        return ()
    if getattr(layer, "data_format", None) == "channels_first":
        return (1,)
    first = rank - len(bias_shape)
    return tuple(first + i for i, d in enumerate(bias_shape) if d != 1)


def _layer_stats(outputs: list[Any], kept: tuple[int, ...]) -> tuple[Any, Any]:
    """Variance over all elements and per-channel means of a layer's outputs, float32."""
    flats = []
    for y in outputs:
        y = ops.cast(y, "float32")
        rank = len(y.shape)
        rest = [a for a in range(rank) if a not in kept]
        if kept and list(kept) != list(range(rank - len(kept), rank)):
            y = ops.transpose(y, rest + list(kept))
        channels = math.prod(int(y.shape[a]) for a in range(rank - len(kept), rank))
        flats.append(ops.reshape(y, (-1, channels)))
    flat = flats[0] if len(flats) == 1 else ops.concatenate(flats, axis=0)
    means = ops.mean(flat, axis=0)
    variance = ops.mean(ops.square(flat - ops.mean(means)))  # equal counts per channel
    return variance, means


# --- the one framework-specific step -------------------------------------------------------
def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled once as a graph (TensorFlow); run eagerly on other backends."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    return fn


def _numpy(value: Any) -> np.ndarray:
    """A tensor or variable as a NumPy copy (``.numpy()``: TensorFlow's ``__array__`` warns)."""
    return np.array(value.numpy() if hasattr(value, "numpy") else ops.convert_to_numpy(value))


# --------------------------------------------------------------------------------------------


_MISSING = object()


class _Probe:
    """Wraps each target's ``call`` to record its pre-activation output; one compiled pass.

    While installed, a target layer's fused activation is taken out of its own ``call``
    and applied by the wrapper to the recorded output, so the model computes the same
    function and the pre-activation is observed.
    """

    def __init__(self, model: Any, targets: list[_Target], center: bool):
        self.model = model
        self.targets = targets
        self.center = center
        self.outputs: dict[int, list[Any]] = {}
        self.order: list[int] = []  # target indices in the order of their first call
        self._saved: list[tuple[Any, Any]] = []
        self._forward = _compiled(self._run)

    def __enter__(self) -> _Probe:
        for target in self.targets:
            layer = target.layer
            self._saved.append((layer, layer.__dict__.get("call", _MISSING)))
            object.__setattr__(layer, "call", self._wrap(target, layer.call))
        return self

    def __exit__(self, *exc: Any) -> None:
        for layer, saved in reversed(self._saved):
            if saved is _MISSING:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", saved)
        self._saved.clear()

    def _wrap(self, target: _Target, call: Callable[..., Any]) -> Callable[..., Any]:
        layer = target.layer

        def recording_call(*args: Any, **kwargs: Any) -> Any:
            activation = getattr(layer, "activation", None)
            object.__setattr__(layer, "activation", None)
            try:
                y = call(*args, **kwargs)
            finally:
                object.__setattr__(layer, "activation", activation)
            if target.index not in self.outputs:
                self.order.append(target.index)
            self.outputs.setdefault(target.index, []).append(y)
            return y if activation is None else activation(y)

        return recording_call

    def _run(self, x: Any) -> list[tuple[Any, Any]]:
        self.outputs.clear()
        self.order.clear()
        self.model(x, training=False)
        stats = []
        for i in self.order:
            target, ys = self.targets[i], self.outputs[i]
            bias_shape = tuple(target.bias.variable.shape) if target.bias is not None else None
            kept = _kept_axes(target.layer, len(ys[0].shape), bias_shape if self.center else None)
            stats.append(_layer_stats(ys, kept))
        self.outputs.clear()  # no tensor outlives the pass
        return stats

    def __call__(self, x: Any) -> dict[int, tuple[float, np.ndarray]]:
        """One forward pass: target index -> (variance, channel means) on the host."""
        stats = self._forward(x)
        return {
            i: (float(_numpy(v)), np.asarray(_numpy(m), np.float64))
            for i, (v, m) in zip(self.order, stats, strict=True)
        }


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
    if isinstance(model, L.Layer) and not (model.built and model.weights):
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


def _check_max_iter(max_iter: Any) -> int:
    return check_positive_int("max_iter", max_iter)


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
    fused activation: see the module docstring) on ``x`` satisfies ``|Var(z) - 1| <= tol``.

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
    >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
    ...                           keras.layers.Dense(8)])
    >>> x = np.random.default_rng(0).normal(size=(256, 16)).astype("float32")
    >>> report = lsuv(model, x, seed=0)
    >>> report.converged, [round(r.variance, 3) for r in report]
    (True, [1.0, 1.0])
    """
    tol = check_positive("tol", tol)
    max_iter = _check_max_iter(max_iter)
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
            report = _run(probe, targets, x, fresh, saved, tol, max_iter, center)
    except BaseException:
        for variable, value in saved:
            variable.assign(value)
        raise
    report.skipped, report.seed = list(skipped), seed if orthonormal else None
    report.skip_reasons = skipped
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
) -> LSUVReport:
    for variable, value in fresh:
        variable.assign(ops.cast(value, variable.dtype))
    try:
        stats = probe(x)  # traces the model: the check that x fits a subclassed model
    except Exception as error:
        raise ValueError(
            f"Argument `x` must fit model {probe.model.name!r}: calling it on x failed with "
            f"{type(error).__name__}: {str(error).strip()}"
        ) from error
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
                _name(target.layer),
                type(target.layer).__name__,
                target.iterations,
                variance,
                float(np.mean(means)),
                status,
            )
        )
    rows += [
        LSUVLayer(_name(t.layer), type(t.layer).__name__, 0, None, None, "not_called")
        for t in targets
        if t.index not in called
    ]
    return LSUVReport(rows, skipped=[], passes=passes, tol=tol, seed=None)


def _warn(model: Any, report: LSUVReport) -> None:
    failed = report.failed
    if failed:
        details = "; ".join(f"{r.layer}: {STATUSES[r.status]}" for r in failed)
        warnings.warn(
            f"LSUV left {len(failed)} of {len(report)} layers of model {model.name!r} "
            f"without unit variance (their weights are finite): {details}",
            LSUVWarning,
            stacklevel=3,
        )


class LSUV:
    """LSUV as a scheme for ``keras_initlab.initialize``: the data and options it needs.

    ``initialize(model, LSUV(x), seed=s)`` runs ``lsuv(model, x, ..., seed=s)`` and keeps the
    report on the scheme as ``scheme.report``. LSUV needs a batch of data, so it has no
    scheme name of its own.

    Args:
        x: one batch of model inputs (see ``lsuv``).
        tol, max_iter, center, orthonormal: as for ``lsuv``.

    Example (``initialize(model, scheme, seed=0)`` makes the same call):
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> scheme = LSUV(np.random.default_rng(0).normal(size=(64, 4)), tol=0.05)
    >>> scheme
    LSUV(x=<shape (64, 4)>, tol=0.05, max_iter=10, center=False, orthonormal=True)
    >>> scheme(model, seed=0).converged
    True
    """

    def __init__(
        self,
        x: Any,
        *,
        tol: float = DEFAULT_TOL,
        max_iter: int = DEFAULT_MAX_ITER,
        center: bool = False,
        orthonormal: bool = True,
    ):
        self.x = x
        self.tol = check_positive("tol", tol)
        self.max_iter = _check_max_iter(max_iter)
        self.center = bool(center)
        self.orthonormal = bool(orthonormal)
        self.report: LSUVReport | None = None

    def __call__(self, model: Any, *, seed: int | None = None) -> LSUVReport:
        """Run ``lsuv`` on ``model`` with these options; also stored as ``self.report``."""
        self.report = lsuv(
            model,
            self.x,
            tol=self.tol,
            max_iter=self.max_iter,
            seed=seed,
            center=self.center,
            orthonormal=self.orthonormal,
        )
        return self.report

    def __repr__(self) -> str:
        shapes = [tuple(getattr(leaf, "shape", ())) for leaf in keras.tree.flatten(self.x)]
        x = shapes[0] if len(shapes) == 1 else shapes
        return (
            f"LSUV(x=<shape {x}>, tol={self.tol:g}, max_iter={self.max_iter}, "
            f"center={self.center}, orthonormal={self.orthonormal})"
        )
