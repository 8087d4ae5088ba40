"""`VarianceMonitor`: per-layer activation and gradient variance during `model.fit`."""

from __future__ import annotations

import csv
import inspect
import math
import warnings
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from keras_initlab._validation import check_positive
from keras_initlab.callbacks import _selection, _taps
from keras_initlab.callbacks._alerts import Alert, VarianceWarning, check_depth

RECORD_KEYS = (
    "epoch",
    "step",
    "event",
    "source",
    "layer",
    "layer_class",
    "activation",
    "mode",
    "gradient_of",
    *_taps.COLUMNS,
)
PROBE_MODES = ("inference", "training")
# Two units are the same unit when their output columns on the probe differ by at most this
# fraction of the larger column norm (float rounding can split exactly-symmetric units by
# ~1e-7 relative; a real feature differs by far more).
DISTINCT_RTOL = 1e-3
# Above this many units the U x U Gram matrix for `distinct_units` is skipped (None).
MAX_DISTINCT_UNITS = 2048
# Steps the in-step ring buffer holds: it is read (one device-to-host copy) at most this often.
IN_STEP_CAPACITY = 64
# Keys merged into Keras logs at epoch end when `log_summary=True`.
SUMMARY_KEYS = ("vm_activation_var_ratio", "vm_gradient_var_ratio", "vm_min_distinct_units")
_SATURATING = {"tanh", "sigmoid", "hard_sigmoid"}
_GRADIENT_KEYS = {"gradient_var", "weight_grad_var"}
_INT_KEYS = ("distinct_units", "non_finite_weights")


class VarianceMonitor(keras.callbacks.Callback):
    """Record per-layer activation and gradient variance during training.

    For each monitored layer that runs (see `records`), with ``y`` the layer's output on the
    probe and ``L`` the loss `train_step` differentiates, evaluated on the probe
    (``model.compute_loss``: the compiled loss with Keras' from-logits shortcut and its
    reductions, plus ``model.losses``, i.e. regularization and `add_loss` terms):
    ``activation_var = mean(y^2) - mean(y)^2`` over all elements, ``gradient_var`` the same for
    ``dL/dy``, ``weight_var`` / ``weight_grad_var`` the same for the kernel and ``dL/dW``,
    ``dead_fraction`` the share of units (last axis) that output 0 on the whole probe,
    ``distinct_units`` the number of units whose output columns differ by more than
    ``distinct_rtol`` relative (1 after a constant initialization), ``saturation_fraction``
    the share of tanh/sigmoid outputs within 0.01 of their bounds, ``non_finite_weights`` the
    number of NaN/Inf values among the layer's own weights (read from the weights: a fused
    MatMul + ReLU maps NaN to 0 on some CPUs, so outputs do not show them). Sums are taken on
    device in float64 and combined across replicas before any variance is formed; only a
    small matrix comes back to the host.

    Where a softmax or sigmoid output is read by a cross-entropy, Keras computes the loss from
    the logits, so the loss does not depend on ``y`` itself: ``gradient_var`` is then that of
    ``dL/dz`` for the logits ``z``, and the record says so (``gradient_of="logits"``, else
    ``"output"``). The monitor keeps that shortcut everywhere, so training computes what it
    computes without the monitor.

    Records are taken at the start of training (step 0, before any update), at every epoch
    end and, if ``every_n_batches`` is set, every that many optimizer steps. With
    ``every_n_batches=1`` (or ``in_step=True``) the batch records come from taps inside the
    training step itself (``source="in_step"``: the statistics of that step's training
    batch in training mode, taken with no extra pass and read from a device ring buffer every
    `IN_STEP_CAPACITY` steps; the weight and unit columns are None there). Other batch records
    and all step-0 / epoch-end records use the probe (``source="probe"``; ``mode`` says
    whether it ran in inference or training mode). Sources are never mixed in one alert
    comparison or one plot. A monitored layer that does not run (a sublayer its parent does
    not call, such as the `Softmax` of a `MultiHeadAttention` on its fused path) has no
    records; it is listed once in `skipped` as ``(layer, source, reason)``.

    BatchNorm: at initialization the moving statistics are (0, 1), so in inference mode
    (``probe_mode="inference"``, the default, what `evaluate` and `predict` see) BatchNorm is
    nearly an identity and the probe's picture differs from what training sees. With
    ``probe_mode="training"`` the probe uses batch statistics (and dropout) as training does;
    every non-trainable variable (moving statistics, seed states) is restored afterwards,
    so training is unchanged either way.

    Args:
        probe: ``x``, or a tuple ``(x, y)`` / ``(x, y, sample_weight)``, or a small
            `tf.data.Dataset` (read whole). A list or dict is ``x`` (multi-input). Default: a
            batch of the training data, taken when training starts and kept.
        every_n_batches: also record every that many optimizer steps. None: epoch ends only.
        layers: names, paths or layer objects to monitor (default: every layer with weights and
            every activation layer).
        log_dir: write TensorBoard scalars and kernel histograms there (needs tensorboard).
        alert: warn (`VarianceWarning`) and keep an `Alert` in `alerts` when a variance changes
            across depth by more than ``alert_factor`` or is NaN/Inf.
        alert_factor: the allowed max/min ratio of variances across depth.
        stop_on_nan: stop training when a recorded statistic is NaN/Inf.
        log_summary: merge `SUMMARY_KEYS` into the epoch logs (History, CSVLogger).
        in_step: take batch records inside the training step (default: when
            ``every_n_batches == 1``).
        distinct_rtol: relative tolerance of `distinct_units`.
        probe_mode: ``"inference"`` (default) or ``"training"``: the mode the probe runs in
            (see BatchNorm above).

    Example:
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
    ...                           keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x, y = np.ones((16, 4), "float32"), np.zeros((16, 1), "float32")
    >>> monitor = VarianceMonitor((x, y), alert=False)
    >>> _ = model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])
    >>> sorted({(r["event"], r["step"]) for r in monitor.records})
    [('epoch_end', 1), ('train_begin', 0)]
    """

    def __init__(
        self,
        probe: Any = None,
        *,
        every_n_batches: int | None = None,
        layers: Iterable[Any] | None = None,
        log_dir: str | None = None,
        alert: bool = True,
        alert_factor: float = 10.0,
        stop_on_nan: bool = False,
        log_summary: bool = False,
        in_step: bool | None = None,
        distinct_rtol: float = DISTINCT_RTOL,
        probe_mode: str = "inference",
    ) -> None:
        super().__init__()
        if every_n_batches is not None and (
            isinstance(every_n_batches, bool)
            or not isinstance(every_n_batches, int)
            or every_n_batches < 1
        ):
            raise ValueError(
                "Argument `every_n_batches` must be a positive integer or None. "
                f"Received: every_n_batches={every_n_batches!r}"
            )
        if probe_mode not in PROBE_MODES:
            raise ValueError(
                f"Argument `probe_mode` must be one of {PROBE_MODES}. "
                f"Received: probe_mode={probe_mode!r}"
            )
        if probe is not None and not _is_dataset(probe):
            _check_probe(probe)
        self.probe = probe
        self.probe_mode = probe_mode
        self.every_n_batches = every_n_batches
        self.layers = None if layers is None else list(layers)
        self.log_dir = log_dir
        self.alert = bool(alert)
        self.alert_factor = check_positive("alert_factor", alert_factor)
        self.stop_on_nan = bool(stop_on_nan)
        self.log_summary = bool(log_summary)
        self.in_step = (every_n_batches == 1) if in_step is None else bool(in_step)
        if self.in_step and every_n_batches is None:
            raise ValueError(
                "Argument `in_step` needs `every_n_batches`. Received: in_step=True, "
                "every_n_batches=None"
            )
        self.distinct_rtol = check_positive("distinct_rtol", distinct_rtol)
        self.records: list[dict[str, Any]] = []
        self.alerts: list[Alert] = []
        # (path, source, reason) of each monitored layer that did not run and has no records.
        self.skipped: list[tuple[str, str, str]] = []
        self._alerted: set[tuple[str, str, str]] = set()  # (source, kind, layer)
        self._entries: list[tuple[str, Any]] = []
        self._probe_fn: Any = None
        self._probe_key: Any = None
        self._in_step_taps: Any = None
        self._probe_data: Any = None
        self._writer: Any = None
        self._epoch = 0
        self._epoch_start_step = 0
        self._last_record_step = -1
        self._pending: list[tuple[int, int]] = []
        if every_n_batches is not None:
            # Only now does the callback have a batch hook: Keras skips batch hooks (and keeps
            # asynchronous dispatch) for callbacks that do not override them.
            self.on_train_batch_end = self._on_train_batch_end

    def __repr__(self) -> str:
        return (
            f"VarianceMonitor(every_n_batches={self.every_n_batches}, layers={self.layers}, "
            f"log_dir={self.log_dir!r}, alert={self.alert}, records={len(self.records)}, "
            f"alerts={len(self.alerts)})"
        )

    # ----------------------------------------------------------------- Keras hooks
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        model = self.model
        self._probe_data = _probe_tensors(self.probe if self.probe is not None else _fit_batch())
        _build(model, self._probe_data)
        self._entries = _selection.monitored_layers(model, self.layers)
        layers = [layer for _, layer in self._entries]
        self._kernels = [_selection.kernel_of(layer) for layer in layers]
        self._activations = [_selection.activation_name(layer) for layer in layers]
        self._templates: list[dict[str, Any]] = [
            dict.fromkeys(RECORD_KEYS)
            | {"layer": path, "layer_class": type(layer).__name__, "activation": activation}
            for (path, layer), activation in zip(self._entries, self._activations, strict=True)
        ]
        self._unused = [
            (set() if kernel is not None else {"weight_var", "weight_grad_var"})
            | (set() if activation in _SATURATING else {"saturation_fraction"})
            for kernel, activation in zip(self._kernels, self._activations, strict=True)
        ]
        _taps.install_taps(layers)
        key = (id(model), tuple(id(layer) for layer in layers), self.probe_mode)
        if self._probe_key != key:  # a later `fit` of the same model reuses the traced probe
            self._probe_key = key
            self._probe_fn = _taps.make_probe_function(
                model,
                layers,
                self._kernels,
                self._activations,
                rtol=self.distinct_rtol,
                max_units=MAX_DISTINCT_UNITS,
                training=self.probe_mode == "training",
            )
        if self.in_step:
            self._install_in_step()
        if self.log_dir is not None:
            from keras_initlab.callbacks._tensorboard import TensorBoardWriter

            self._writer = TensorBoardWriter(self.log_dir)
        self._record("train_begin")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._epoch_start_step = int(self.model.optimizer.iterations.numpy())

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._flush()
        rows = self._record("epoch_end")
        if self.log_summary and logs is not None:
            logs.update(summarize(rows))

    def _on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # `batch` is the index of the last step run in this execution (steps_per_execution).
        step = self._epoch_start_step + batch + 1
        n = self.every_n_batches
        assert n is not None
        if self.params and batch + 1 == self.params.get("steps"):
            return  # the epoch-end record follows at this very step
        if step // n <= self._last_record_step // n:
            return
        self._last_record_step = step
        if self._in_step_taps is None:
            self._record("batch", step=step)
            return
        # In-step statistics stay on device in a ring buffer; read it before it wraps.
        self._pending.append((step, self._epoch))
        spe = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if step - self._pending[0][0] >= self._in_step_taps.capacity - spe:
            self._flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._flush()
        _taps.remove_taps([layer for _, layer in self._entries])
        self._remove_in_step()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ----------------------------------------------------------------- outputs
    def to_dataframe(self) -> Any:
        """The records as a `pandas.DataFrame` (needs pandas: ``keras-initlab[data]``)."""
        import pandas as pd

        return pd.DataFrame(self.records, columns=list(RECORD_KEYS))

    def to_csv(self, path: Any) -> None:
        """Write the records to ``path`` as CSV (empty cell for None); no pandas needed."""
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(RECORD_KEYS))
            writer.writeheader()
            for record in self.records:
                writer.writerow({k: "" if record[k] is None else record[k] for k in RECORD_KEYS})

    # ----------------------------------------------------------------- internals
    def _install_in_step(self) -> None:
        model = self.model
        spe = int(getattr(model, "steps_per_execution", 1) or 1)
        taps = _taps.InStepTaps(model, self._activations, max(IN_STEP_CAPACITY, 2 * spe))
        self._in_step_taps = taps
        if "train_step" in vars(model):  # left by a `fit` that raised before `on_train_end`
            object.__delattr__(model, "train_step")
        object.__setattr__(model, "train_step", taps.wrap(model.train_step))
        model.make_train_function(force=True)

    def _remove_in_step(self) -> None:
        if self._in_step_taps is not None:
            if "train_step" in vars(self.model):
                object.__delattr__(self.model, "train_step")
            self.model.make_train_function(force=True)
            self._in_step_taps = None

    def _flush(self) -> None:
        """Turn the pending in-step batch records into records (one read of the ring buffer)."""
        if not self._pending or self._in_step_taps is None:
            return
        taps = self._in_step_taps
        buffer = taps.read().numpy()
        columns = ("activation_mean", "activation_var", "gradient_var", "saturation_fraction")
        pending, self._pending = self._pending, []
        for step, epoch in pending:
            matrix = buffer[(step - 1) % taps.capacity]
            rows = self._rows(
                matrix, columns, step, epoch, "batch", "in_step", taps.seen, taps.gradient_of
            )
            self._emit(rows, step)

    def _record(self, event: str, step: int | None = None) -> list[dict[str, Any]]:
        if step is None:
            step = int(self.model.optimizer.iterations.numpy())
        self._last_record_step = step
        x, y, sw = self._probe_data
        probe = self._probe_fn
        matrix = probe(x, y, sw)
        rows = self._rows(
            matrix, _taps.COLUMNS, step, self._epoch, event, "probe", probe.seen, probe.gradient_of
        )
        self._emit(rows, step)
        return rows

    def _rows(
        self,
        matrix: Any,
        columns: tuple[str, ...],
        step: int,
        epoch: int,
        event: str,
        source: str,
        seen: list[bool],
        gradient_of: list[str | None],
    ) -> list[dict[str, Any]]:
        """One record dict per monitored layer that ran, from a (layers, columns) matrix.

        A column that does not apply stays None: weight columns of a layer without a kernel,
        saturation of a non-saturating activation, gradients of a probe without targets. A
        layer that did not run for this source (a sublayer its parent does not call, such as
        the `Softmax` of a `MultiHeadAttention` on its fused path) has no record; it is listed
        once in `skipped`.
        """
        skip_gradients = source == "probe" and self._probe_data[1] is None
        mode = self.probe_mode if source == "probe" else "training"
        rows = []
        for i, values in enumerate(matrix.tolist()):
            if not seen[i]:
                entry = (self._templates[i]["layer"], source, "did not run")
                if entry not in self.skipped:
                    self.skipped.append(entry)
                continue
            row = dict(
                self._templates[i],
                epoch=epoch,
                step=step,
                event=event,
                source=source,
                mode=mode,
                gradient_of=None if skip_gradients else gradient_of[i],
            )
            unused = self._unused[i]
            for key, value in zip(columns, values, strict=True):
                if key not in unused and not (skip_gradients and key in _GRADIENT_KEYS):
                    row[key] = value
            for key in _INT_KEYS:
                value = row[key]
                if value is not None:
                    row[key] = int(value) if math.isfinite(value) else None
            rows.append(row)
        return rows

    def _emit(self, rows: list[dict[str, Any]], step: int) -> None:
        self.records.extend(rows)
        if self._writer is not None:
            self._writer.write(rows, step, self._entries, self._kernels)
        self._check(rows, step)

    def _check(self, rows: list[dict[str, Any]], step: int) -> None:
        if self.alert:
            source = rows[0]["source"] if rows else ""
            alerted = {(kind, layer) for s, kind, layer in self._alerted if s == source}
            alerts = check_depth(
                rows, self.alert_factor, epoch=self._epoch, step=step, skip=alerted
            )
            for a in alerts:
                self._alerted.add((source, a.kind, a.layer))
                self.alerts.append(a)
                warnings.warn(a.message, VarianceWarning, stacklevel=2)
        if self.stop_on_nan and any(
            (r[k] is not None and not math.isfinite(r[k])) or r["non_finite_weights"]
            for r in rows
            for k in ("activation_var", "gradient_var")
        ):
            self.model.stop_training = True


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The few numbers `log_summary` merges into the Keras logs for one record.

    ``vm_activation_var_ratio``: last hidden / first layer activation variance;
    ``vm_gradient_var_ratio``: first / last hidden layer gradient variance (the backward
    growth); ``vm_min_distinct_units``: the smallest distinct-unit count.
    """
    hidden = rows[:-1] if len(rows) >= 3 else rows

    def ratio(key: str, reverse: bool) -> float:
        values = [r[key] for r in hidden if r[key] is not None]
        if len(values) < 2 or values[0] == 0 or values[-1] == 0:
            return float("nan")
        return values[0] / values[-1] if reverse else values[-1] / values[0]

    distinct = [r["distinct_units"] for r in rows if r["distinct_units"] is not None]
    return {
        "vm_activation_var_ratio": ratio("activation_var", False),
        "vm_gradient_var_ratio": ratio("gradient_var", True),
        "vm_min_distinct_units": float(min(distinct)) if distinct else float("nan"),
    }


def _build(model: Any, probe: tuple[Any, Any, Any]) -> None:
    """Build the model, its compiled loss and optimizer before the first training step.

    TensorFlow's `fit` builds a Sequential without Input or a subclassed model only while
    tracing its first step (other backends build symbolically first); step 0 must be recorded
    before that step, so the symbolic build Keras uses elsewhere is run here, under the model's
    strategy.
    """
    compile_loss = getattr(model, "_compile_loss", None)
    if all(layer.built for layer in model._flatten_layers()) and (
        compile_loss is None or compile_loss.built
    ):
        return
    x, y, sample_weight = probe
    with model.distribute_strategy.scope():
        if y is None:  # no loss to build: build the layers with a call on one sample
            import tensorflow as tf

            model(tf.nest.map_structure(lambda t: t[:1], x), training=False)
        else:
            batch = (x, y) if sample_weight is None else (x, y, sample_weight)
            model._symbolic_build(data_batch=batch)


def _is_dataset(probe: Any) -> bool:
    import tensorflow as tf

    return isinstance(probe, tf.data.Dataset)


def _check_probe(probe: Any) -> None:
    """Reject a probe that cannot give statistics: no rows, or NaN/Inf values.

    Raises:
        ValueError: naming the part of the probe (``x``, ``y``, ``sample_weight``) at fault.
    """
    import tensorflow as tf

    parts = probe if isinstance(probe, tuple) else (probe,)
    for name, part in zip(("x", "y", "sample_weight"), parts, strict=False):
        for leaf in tf.nest.flatten(part):
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


def _probe_tensors(probe: Any) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` as tensors from any accepted probe form."""
    import tensorflow as tf

    if isinstance(probe, tf.data.Dataset):
        batches = list(probe.as_numpy_iterator())
        if not batches:
            raise ValueError("Argument `probe` must not be an empty dataset. Received: probe=...")
        probe = tf.nest.map_structure(lambda *b: np.concatenate(b, axis=0), *batches)
        _check_probe(probe)
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
        return None if t is None else tf.nest.map_structure(tf.convert_to_tensor, t)

    return convert(x), convert(y), convert(sw)


def _fit_batch() -> Any:
    """A batch of the training data of the `fit` call that is starting (the default probe).

    Keras does not hand data to callbacks; the `fit` frame's epoch iterator is found on the call
    stack and a fresh batch is drawn from its data adapter (arrays and `tf.data` pipelines are
    re-iterable, so training data is not consumed).
    """
    frame = inspect.currentframe()
    while frame is not None:
        iterator = frame.f_locals.get("epoch_iterator")
        if iterator is not None and hasattr(iterator, "data_adapter"):
            adapter = iterator.data_adapter
            name = type(adapter).__name__
            if name not in ("ArrayDataAdapter", "TFDatasetAdapter"):
                break
            batch = next(iter(adapter.get_tf_dataset()))
            return tuple(batch) if isinstance(batch, (tuple, list)) else batch
        frame = frame.f_back
    raise ValueError(
        "VarianceMonitor could not take a probe batch from this `fit` call (only arrays and "
        "tf.data datasets are read without consuming data). Pass one: "
        "VarianceMonitor(probe=(x, y))."
    )
