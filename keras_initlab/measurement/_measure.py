"""`measure()` and `Measurement`: per-layer statistics of a model on a probe, now."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import keras

from keras_initlab import _keras
from keras_initlab._validation import check_choice, check_positive
from keras_initlab.initializers._base import available_float_dtypes
from keras_initlab.measurement import _probe_data, _routing, _selection
from keras_initlab.measurement._records import COLUMNS, RecordTable
from keras_initlab.measurement._statistics import DTYPES
from keras_initlab.model.layers import activation_name
from keras_initlab.model.legacy import check_not_keras2

MODES = ("inference", "training")
# The dtypes the statistics are computed in.
PRECISIONS = DTYPES
# Two units are the same unit when their output columns on the probe differ by at most this
# fraction of the larger column norm (float rounding can split exactly-symmetric units by
# ~1e-7 relative; a real feature differs by far more).
DISTINCT_RTOL = 1e-3
# Above this many units the U x U Gram matrix for `distinct_units` is skipped (None).
MAX_DISTINCT_UNITS = 2048


class Measurement:
    """The measured layers of a model and the traced probe pass that measures them.

    Build one to measure the same model repeatedly (the probe pass is traced on the first
    call and reused while the probe's shapes stay the same); `measure` is the one-shot form
    (on TensorFlow its pass runs eagerly: a trace costs several passes) and documents the
    statistics.

    Args:
        model: a Keras model (built on the first call if it is not yet).
        layers: names, paths or layer objects to measure (default: see `measure`).
        mode: ``"inference"`` or ``"training"`` (batch statistics and dropout; every
            non-trainable variable is restored after the pass).
        loss: a loss (name, function or `keras.losses.Loss`) to differentiate instead of the
            model's compiled loss.
        distinct_rtol: relative tolerance of ``distinct_units``.
        precision: ``"float32"`` or ``"float64"``, the dtype of the statistics (see
            `measure`).

    Example:
    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu")])
    >>> measurement = Measurement(model, loss="mse")
    >>> x, y = np.ones((16, 4), "float32"), np.zeros((16, 8), "float32")
    >>> [r["layer_class"] for r in measurement((x, y))]
    ['Dense']
    """

    def __init__(
        self,
        model: Any,
        layers: Iterable[Any] | None = None,
        *,
        mode: str = "inference",
        loss: Any = None,
        distinct_rtol: float = DISTINCT_RTOL,
        precision: str = "float32",
    ) -> None:
        check_not_keras2("model", model)
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"Argument `model` must be a Keras model. Received: model={type(model).__name__}"
            )
        self.model = model
        self.layers = None if layers is None else list(layers)
        self.mode = check_choice("mode", mode, MODES)
        self.loss = None if loss is None else _as_loss(loss)
        self.distinct_rtol = check_positive("distinct_rtol", distinct_rtol)
        self.precision = check_choice("precision", precision, PRECISIONS)
        check_precision(self.precision)
        self._ready = False
        self._one_shot = False  # (`measure`: its one pass runs eagerly on TensorFlow)
        self._attached = False
        self._fn: Any = None

    @classmethod
    def shared(
        cls,
        model: Any,
        layers: Iterable[Any] | None = None,
        *,
        mode: str = "inference",
        distinct_rtol: float = DISTINCT_RTOL,
        precision: str = "float32",
    ) -> Measurement:
        """The `Measurement` of ``model`` with these settings, made once per model.

        Kept on the model (it lives as long as the model does), so every monitor and every
        `fit` of one model reuse one traced probe pass (traced again only for a probe of a
        new shape). Layers are told apart by name or by identity.
        """
        check_not_keras2("model", model)
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"Argument `model` must be a Keras model. Received: model={type(model).__name__}"
            )
        names = (
            None if layers is None else tuple(x if isinstance(x, str) else id(x) for x in layers)
        )
        key = (names, mode, float(distinct_rtol), precision)
        cache = _keras.instance_cache(model, "_keras_initlab_measurements")
        if key not in cache:
            cache[key] = cls(
                model, layers, mode=mode, distinct_rtol=distinct_rtol, precision=precision
            )
        return cache[key]

    def __repr__(self) -> str:
        return f"Measurement(model={self.model.name!r}, layers={self.layers}, mode={self.mode!r})"

    def prepare(self, data: tuple[Any, Any, Any]) -> None:
        """Build the model if needed and fix the measured layers (done by the first call)."""
        if self._ready:
            return
        _probe_data.build(self.model, data)
        self.entries = _selection.monitored_layers(self.model, self.layers)
        layers = [layer for _, layer in self.entries]
        self.kernels = [_selection.kernel_of(layer) for layer in layers]
        self.activations = [activation_name(layer) for layer in layers]
        self.table = RecordTable(self.entries, self.kernels, self.activations)
        settings: dict[str, Any] = {
            "rtol": self.distinct_rtol,
            "max_units": MAX_DISTINCT_UNITS,
            "training": self.mode == "training",
            "loss_fn": self.loss,
        }
        if replicas(self.model) > 1:  # sums that add across replicas: TensorFlow's float64
            from keras_initlab.measurement._probe import make_probe_function

            self._fn = make_probe_function(
                self.model, layers, self.kernels, self.activations, **settings
            )
        else:
            from keras_initlab.measurement._core import NeutralProbe

            self._fn = NeutralProbe(
                self.model,
                layers,
                self.kernels,
                self.activations,
                dtype=self.precision,
                eager_first=self._one_shot,
                **settings,
            )
        self._ready = True

    @property
    def owner(self) -> list[int]:
        """Per row of the last measurement, its layer's index in ``entries``: a row per call
        of each layer (`_calls`). Read it after a measurement: the calls are found by the
        pass (empty before `prepare`)."""
        return list(self._fn.owner) if self._ready else []

    @property
    def skipped(self) -> list[tuple[str, str, str]]:
        """``(layer, source, reason)`` of each measured layer that did not run."""
        return self.table.skipped if self._ready else []

    def attach(self) -> None:
        """Keep the taps on the layers until `detach` (while a fit traces its steps)."""
        _routing.install_taps([layer for _, layer in self.entries])
        self._attached = True

    def detach(self) -> None:
        """Undo `attach`."""
        if self._attached:
            _routing.remove_taps([layer for _, layer in self.entries])
            self._attached = False

    @contextlib.contextmanager
    def _taps(self) -> Iterator[None]:
        """The taps for one pass: (re)installed, since another measurement of these layers
        may have put back their ``call`` since `attach` (installing is idempotent), and
        removed after it unless attached."""
        _routing.install_taps([layer for _, layer in self.entries])
        try:
            yield
        finally:
            if not self._attached:
                _routing.remove_taps([layer for _, layer in self.entries])

    def __call__(
        self,
        probe: Any,
        *,
        epoch: int | None = None,
        step: int | None = None,
        event: str = "measure",
        distinct: bool = True,
    ) -> list[dict[str, Any]]:
        """The records of the model as it is now on ``probe`` (see `measure`).

        ``distinct=False`` leaves ``distinct_units`` None and skips its work (the sketch
        of every compared output on the device, the screen and the comparisons on the
        host: on MobileNetV2 about 0.7 of a training step in a record of 1.0); one traced
        pass serves both."""
        data = probe if _is_data(probe) else _probe_data.probe_tensors(probe)
        self.prepare(data)
        if step is None:
            optimizer = getattr(self.model, "optimizer", None)
            built = getattr(optimizer, "built", False)
            step = (
                int(keras.ops.convert_to_numpy(optimizer.iterations))
                if optimizer is not None and built
                else 0
            )
        with self._taps():
            matrix = self._fn(*data, distinct=distinct)
        return self.table.rows(
            matrix,
            COLUMNS,
            owner=self._fn.owner,
            seen=self._fn.seen,
            gradient_of=self._fn.gradient_of,
            with_gradients=data[1] is not None,
            epoch=epoch,
            step=step,
            event=event,
            source="probe",
            mode=self.mode,
        )


def replicas(model: Any) -> int:
    """The replicas ``model`` trains on: those of its `tf.distribute` strategy (1 off
    TensorFlow)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    return int(model.distribute_strategy.num_replicas_in_sync)


def check_precision(precision: str) -> None:
    """Raise where the backend cannot compute in ``precision`` (float64 on JAX without
    x64)."""
    if precision not in available_float_dtypes():  # (float64 on JAX without x64)
        raise ValueError(
            "Argument `precision` is 'float64', which JAX computes only with x64 on "
            "(jax.config.update('jax_enable_x64', True) before building the model); "
            "without it JAX runs in float32. Received: precision='float64' on JAX "
            "without x64; use precision='float32' (the default)"
        )


def _as_loss(loss: Any) -> Any:
    """``loss`` as ``f(y_true, y_pred, sample_weight) -> scalar`` (mean over the batch)."""
    fn = keras.losses.get(loss)
    if isinstance(fn, keras.losses.Loss):
        return fn
    if not callable(fn):
        raise ValueError(
            f"Argument `loss` must be a Keras loss, its name or a function (y_true, y_pred). "
            f"Received: loss={loss!r}"
        )

    def weighted_mean(y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        values = fn(y_true, y_pred)
        if sample_weight is not None:
            values = values * keras.ops.cast(sample_weight, values.dtype)
        return keras.ops.mean(values)

    return weighted_mean


class _Data(tuple):
    """``(x, y, sample_weight)`` already converted by `probe_tensors`."""


def _is_data(probe: Any) -> bool:
    return isinstance(probe, _Data)


def probe_data(probe: Any) -> _Data:
    """The probe converted once, for repeated `Measurement` calls."""
    return _Data(_probe_data.probe_tensors(probe))


def measure(
    model: Any,
    probe: Any,
    *,
    layers: Iterable[Any] | None = None,
    mode: str = "inference",
    loss: Any = None,
    distinct_rtol: float = DISTINCT_RTOL,
    precision: str = "float32",
) -> list[dict[str, Any]]:
    """Per-layer activation and gradient statistics of ``model`` on ``probe``, now.

    Runs the model once on the probe (no `fit`, nothing changes: weights, moving
    statistics, optimizer and seed states are as before) and returns one record per
    measured layer that ran, with the keys of `RECORD_KEYS`, the records a
    `VarianceMonitor` takes. For a layer with output ``y`` and ``L`` the loss on the probe
    (the compiled loss as `train_step` computes it, Keras' from-logits shortcut and
    ``model.losses`` included; or ``loss``):

        activation_mean = mean(y),  activation_var = mean(y^2) - mean(y)^2   (all elements)
        gradient_var    = Var(dL/dy)  (``gradient_of="logits"``: Var(dL/dz) for the logits
                                       z the loss reads instead of a softmax/sigmoid y)
        weight_var, weight_grad_var = Var(W), Var(dL/dW)   (the layer's kernel)
        channel_mean_sq = mean_c m_c^2,  channel_var = mean_c v_c
                                      (m_c, v_c: mean and variance of unit c, the last
                                       axis, over the batch and all positions)

    plus ``dead_fraction`` (share of units, the last axis, that output 0 on the whole
    probe), ``distinct_units`` (units whose output columns differ by more than
    ``distinct_rtol`` relative: 1 after a constant initialization; compared on a sign sketch
    of the rows for layers with many probe rows, with the error stated in
    `keras_initlab.measurement._twins`), ``saturation_fraction`` (tanh/sigmoid outputs
    within 0.01 of a bound) and ``non_finite_weights``. The channel statistics are those of
    Brock et al. 2021's signal propagation plot (`keras_initlab.callbacks.plot_signal`);
    ``channel_var + channel_mean_sq - activation_mean^2 = activation_var``.

    The statistics are computed on the device in ``precision`` (float32 by default, on every
    backend), blocked and two-pass, within the relative error
    `keras_initlab.measurement._statistics.variance_bound` states (under 2e-4 for a million
    centred float32 values); ``precision="float64"`` where the backend has it (JAX with
    x64). A model trained by a `tf.distribute` strategy on several replicas is measured by
    sums taken on each replica in float64 and added across replicas (whatever
    ``precision``).

    Measured by default: every layer with weights, every activation layer, every merge
    layer (Add, Concatenate, Multiply, ...), every normalization layer and every residual
    sum no layer computes (``x + h`` in a Functional graph, named by its operation; a sum
    inside a subclassed block's ``call``, ``"block3/add"``, recorded by replaying the
    block's traced call on the probe: see `keras_initlab.measurement._inner`), named by
    their path below the model (``"encoder/dense_1"``, see `keras_initlab.model.tree`). A layer
    called more than once in a pass (a shared tower, a tied embedding called as the lookup
    and reversed for the logits) gets a record per call, in the order the model runs them:
    its path for the first, ``path@2``, ``path@3``, ... for the next (the names of
    `keras_initlab.propagate`'s rows); its kernel's columns are on each.

    Args:
        model: a Keras model (compiled, unless ``loss`` is given or ``probe`` has no ``y``).
        probe: ``x`` (forward statistics only), ``(x, y)`` or ``(x, y, sample_weight)``, or a
            small `tf.data.Dataset` (read whole).
        layers: names, paths or layer objects of the leaf layers to measure (any leaf
            layer: pooling and reshaping layers too).
        mode: ``"inference"`` (what `evaluate`/`predict` see: BatchNorm uses its moving
            statistics) or ``"training"`` (batch statistics and dropout).
        loss: a loss to differentiate instead of the compiled loss.
        distinct_rtol: relative tolerance of ``distinct_units``.
        precision: ``"float32"`` (default) or ``"float64"``, the dtype of the statistics.

    Returns:
        A list of records (dicts), in model order (a layer's calls together);
        ``event="measure"``, ``source="probe"``, ``step`` the optimizer's step count (0
        without an optimizer), ``epoch`` None.

    Raises:
        ValueError: an empty or non-finite probe, an unknown layer name, a bad ``mode`` or
            ``precision`` (float64 on JAX without x64), targets but neither a compiled loss
            nor ``loss``.
        TypeError: ``model`` is not a Keras model.

    Example:
    >>> import numpy as np
    >>> from keras_initlab import HeNormal
    >>> model = keras.Sequential([keras.Input((256,))] + [keras.layers.Dense(
    ...     256, activation="relu", kernel_initializer=HeNormal(seed=i)) for i in range(3)])
    >>> x = np.random.default_rng(0).standard_normal((1024, 256)).astype("float32")
    >>> he = 1 - 1 / np.pi  # He: each ReLU layer's variance, for an infinite width
    >>> [abs(r["activation_var"] / he - 1) < 0.2 for r in measure(model, x)]
    [True, True, True]
    """
    return one_shot(
        model, layers, mode=mode, loss=loss, distinct_rtol=distinct_rtol, precision=precision
    )(probe)


def one_shot(model: Any, layers: Iterable[Any] | None = None, **settings: Any) -> Measurement:
    """A `Measurement` for one call (`measure`'s): on TensorFlow its pass runs eagerly
    instead of being traced (a trace costs several passes)."""
    measurement = Measurement(model, layers, **settings)
    measurement._one_shot = True
    return measurement
