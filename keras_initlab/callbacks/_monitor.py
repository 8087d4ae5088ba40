"""`VarianceMonitor`: per-layer activation and gradient variance during `model.fit`."""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from keras_initlab import _keras
from keras_initlab._validation import check_choice, check_positive, check_positive_int
from keras_initlab.callbacks._alerts import (
    Alert,
    VarianceWarning,
    alerts_for,
    attention_alert,
    logits_alert,
)
from keras_initlab.measurement import (
    DISTINCT_RTOL,
    MODES,
    PRECISIONS,
    RECORD_KEYS,
    Measurement,
    check_precision,
    probe_data,
)
from keras_initlab.measurement._probe_data import check_probe, fit_probe, is_dataset
from keras_initlab.model.legacy import check_not_keras2

PROBE_MODES = MODES
# When `distinct_units` is counted: "ends" (the step-0 record and the last epoch's end
# record) or "every_record".
DISTINCT_AT = ("ends", "every_record")
# Steps the in-step ring buffer holds: it is read (one device-to-host copy) at most this often.
IN_STEP_CAPACITY = 64
# Keys merged into Keras logs at epoch end when `log_summary=True`.
SUMMARY_KEYS = ("vm_activation_var_ratio", "vm_gradient_var_ratio", "vm_min_distinct_units")


def _step(model: Any) -> int:
    """The optimizer's step count."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


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
    the share of tanh/sigmoid outputs within 0.01 of their bounds, ``channel_mean_sq`` and
    ``channel_var`` the mean over units of the squared unit mean and of the unit variance
    (over batch and positions: Brock et al. 2021), ``non_finite_weights`` the
    number of NaN/Inf values among the layer's own weights (read from the weights: a fused
    MatMul + ReLU maps NaN to 0 on some CPUs, so outputs do not show them). The statistics
    are float32 on every backend, within a stated bound (``precision="float64"`` where the
    backend has it; a model on several `tf.distribute` replicas gets float64 sums combined
    across replicas; see `keras_initlab.measure`); only a few small arrays come back to the
    host.

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
    `IN_STEP_CAPACITY` steps; weight, unit and channel columns are None there, and so are
    the gradient and ``gradient_of`` of a layer that depends on no trainable variable, such
    as an input Rescaling: the step's tape does not reach it). That is TensorFlow; on JAX
    and PyTorch an in-step record is a training-mode record of the batch the step trained
    on (captured outside the step's jit), taken after the step, all columns. Other batch
    records and all step-0 / epoch-end records use the probe (``source="probe"``; ``mode`` says
    whether it ran in inference or training mode). Sources are never mixed in one alert
    comparison or one plot. A monitored layer that does not run (a sublayer its parent does
    not call, such as the `Softmax` of a `MultiHeadAttention` on its fused path) has no
    records; it is listed once in `skipped` as ``(layer, source, reason)``.

    ``distinct_units`` is counted where it can change what a reader concludes: by default
    (``distinct_units="ends"``) in the step-0 record and the end record of the fit's last
    epoch (``epochs``), None in the records between. Units that start as copies (a constant
    initialization) get equal gradients and stay copies, so the step-0 count tells
    symmetry, and the last one what training left; the units that die on the way (the
    common way units turn alike) are ``dead_fraction`` in every record. The count costs
    more than the rest of a record (a sketch of every compared output on the device, the
    comparisons on the host: on MobileNetV2 a record of 1.5 training steps becomes 2.1),
    so ``distinct_units="every_record"`` is an option. A fit stopped before its last epoch
    (``EarlyStopping``) has the step-0 count only; measure the model after it
    (`keras_initlab.measure`) or count every record.

    Mode: by default (``probe_mode="training"``) the probe runs in training mode, the mode
    the network trains in: BatchNormalization uses batch statistics and dropout is on, as in
    `train_step`; every non-trainable variable (moving statistics, seed states) is restored
    afterwards, so training is unchanged. With ``probe_mode="inference"`` (what `evaluate`
    and `predict` see) a BatchNorm at initialization (moving statistics (0, 1)) is nearly an
    identity, and its network's picture differs from what training sees: ResNet50's stream
    grows 1e5-fold in inference mode at initialization and linearly in training mode.

    Alerts: each record is judged by the depth rule (`keras_initlab.depth_rule`: a change of
    variance that compounds with depth along the main path, in the record's mode), and each
    finding names its cause and a fix checked by prediction on the model, its weights set
    back after (`keras_initlab.diagnosis`; `Alert` has the parts). Depth changes count in the record
    before the first update (step 0); later records alert on NaN/Inf and on gradients that
    turn exactly 0 (`docs/alerts.md`). One alert per kind and source per fit.

    Args:
        probe: ``x``, or a tuple ``(x, y)`` / ``(x, y, sample_weight)``, or a small
            `tf.data.Dataset` (read whole). A list or dict is ``x`` (multi-input). Default: a
            batch of the training data, taken when training starts and kept.
        every_n_batches: also record every that many optimizer steps. None: epoch ends only.
        layers: names, paths or layer objects to monitor (default: every layer with weights and
            every activation layer).
        log_dir: write TensorBoard scalars and kernel histograms there (needs tensorboard
            and the TensorFlow backend, whose summary writer it uses).
        alert: warn (`VarianceWarning`) and keep an `Alert` in `alerts` when the depth rule
            finds a change that compounds with depth, a zero gradient on the main path, or a
            NaN/Inf.
        alert_factor: the factor of the depth rule (a change beyond it compounds; residual
            sums allow linear growth on top).
        stop_on_nan: stop training when a recorded statistic is NaN/Inf.
        log_summary: merge `SUMMARY_KEYS` into the epoch logs (History, CSVLogger).
        in_step: take batch records inside the training step (default: when
            ``every_n_batches == 1``).
        distinct_rtol: relative tolerance of `distinct_units`.
        probe_mode: ``"training"`` (default) or ``"inference"``: the mode the probe runs in
            (see Mode above).
        precision: ``"float32"`` (default) or ``"float64"``: the dtype the statistics are
            computed in, probe and in-step records alike (`keras_initlab.measure`; in-step
            records on TensorFlow: `keras_initlab.measurement._in_step`).
        distinct_units: ``"ends"`` (default) or ``"every_record"``: the records that count
            `distinct_units` (None in the others; see above). With ``log_summary`` every
            epoch end counts it (its summary logs the count per epoch).

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
        probe_mode: str = "training",
        precision: str = "float32",
        distinct_units: str = "ends",
    ) -> None:
        super().__init__()
        if every_n_batches is not None:
            every_n_batches = check_positive_int("every_n_batches", every_n_batches)
        if probe_mode not in PROBE_MODES:
            raise ValueError(
                f"Argument `probe_mode` must be one of {PROBE_MODES}. "
                f"Received: probe_mode={probe_mode!r}"
            )
        if probe is not None and not is_dataset(probe):
            check_probe(probe)
        self.probe = probe
        self.probe_mode = probe_mode
        self.every_n_batches = every_n_batches
        self.layers = None if layers is None else list(layers)
        if log_dir is not None and keras.backend.backend() != "tensorflow":
            raise ValueError(
                "Argument `log_dir` needs the TensorFlow backend (TensorBoard is written with "
                f"tf.summary). Received: log_dir={log_dir!r} on backend "
                f"{keras.backend.backend()!r}; the records are in `records`, `to_csv` and "
                "`to_dataframe` on every backend"
            )
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
        self.precision = check_choice("precision", precision, PRECISIONS)
        check_precision(self.precision)
        self.distinct_units = check_choice("distinct_units", distinct_units, DISTINCT_AT)
        self.records: list[dict[str, Any]] = []
        self.alerts: list[Alert] = []
        self._alerted: set[tuple[str, str]] = set()  # (source, kind)
        self._measurement: Measurement | None = None
        self._judging: dict[str, Any] = {}  # mode -> (ModelPath | None, structural factors)
        self._diagnoses: dict[str, Any] = {}  # mode -> Diagnosis (or None)
        self._in_step_taps: Any = None
        self._train_function: Any = None
        self._captured: Any = None  # the last batch trained on (JAX, PyTorch: in-step)
        self._probe_data: Any = None
        self._writer: Any = None
        self._epoch = 0
        self._epoch_start_step = 0
        self._last_record_step = -1
        self._pending: list[tuple[int, int, int]] = []  # (step, epoch, ring buffer slot)
        self._epoch_start_slot = 0
        if every_n_batches is not None:
            # Only now does the callback have a batch hook: Keras skips batch hooks (and keeps
            # asynchronous dispatch) for callbacks that do not override them.
            _keras.add_batch_hook(self, "on_train_batch_end", self._on_train_batch_end)

    def __repr__(self) -> str:
        return (
            f"VarianceMonitor(every_n_batches={self.every_n_batches}, layers={self.layers}, "
            f"log_dir={self.log_dir!r}, alert={self.alert}, records={len(self.records)}, "
            f"alerts={len(self.alerts)})"
        )

    @property
    def skipped(self) -> list[tuple[str, str, str]]:
        """``(layer, source, reason)`` of each monitored layer that did not run (no records)."""
        return [] if self._measurement is None else self._measurement.skipped

    def _judging_path(self, mode: str) -> tuple[Any, dict[str, tuple[float, float]]]:
        """The model's main path and the one-off factors the depth rule divides out, for
        records in ``mode`` (computed once per fit: the one-off layers have no weights)."""
        if mode not in self._judging:
            from keras_initlab.depth_rule import structural_factors
            from keras_initlab.healthy import probe_moments
            from keras_initlab.model.path import model_path
            from keras_initlab.propagate import propagate

            path = model_path(self.model, mode)
            factors: dict[str, tuple[float, float]] = {}
            if path.one_off and not path.assumed:
                moments = probe_moments(self._probe_data[0], self.model)
                try:
                    report = propagate(self.model, mode=mode, **moments)
                    factors = structural_factors(report, path)
                except (ValueError, TypeError, NotImplementedError):
                    factors = {}  # nothing divided out: every change stays judged
            self._judging[mode] = (path, factors)
        return self._judging[mode]

    def _diagnosis(self, mode: str) -> Any:
        """The model's `keras_initlab.diagnosis.Diagnosis` in ``mode`` (computed once, at the
        first alert; None for a model with no inputs to read it from: a subclassed model
        whose first call did not record its shapes)."""
        if mode not in self._diagnoses:
            from keras_initlab.diagnosis import diagnose
            from keras_initlab.model.trace import model_inputs

            try:
                model_inputs(self.model)
            except ValueError:
                self._diagnoses[mode] = None
            else:
                self._diagnoses[mode] = diagnose(
                    self.model, self._probe_data[0], mode=mode, factor=self.alert_factor
                )
        return self._diagnoses[mode]

    @property
    def _settings(self) -> dict[str, Any]:
        """What every `Measurement` of this monitor shares."""
        return {"distinct_rtol": self.distinct_rtol, "precision": self.precision}

    @property
    def _active(self) -> Measurement:
        if self._measurement is None:
            raise RuntimeError(
                "VarianceMonitor has not started: it records while `model.fit` runs it "
                "(for a one-off measurement use `keras_initlab.measure`)"
            )
        return self._measurement

    # ----------------------------------------------------------------- Keras hooks
    def set_model(self, model: Any) -> None:
        check_not_keras2("model", model)  # tf_keras' fit calls this first
        super().set_model(model)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        model = self.model
        if keras.backend.backend() == "tensorflow":
            _keras.quiet_retracing_warnings("make_probe_function", "InStepTaps")
        self._probe_data = probe_data(self.probe if self.probe is not None else fit_probe())
        m = self._measurement
        if m is None or m.model is not model:  # monitors and fits of a model share one trace
            m = Measurement.shared(model, self.layers, mode=self.probe_mode, **self._settings)
            self._measurement = m
        self._judging, self._diagnoses = {}, {}
        m.prepare(self._probe_data)
        m.attach()
        if self.log_dir is not None:
            from keras_initlab.callbacks._tensorboard import TensorBoardWriter

            self._writer = TensorBoardWriter(self.log_dir)
        self._record("train_begin")
        if self.in_step:  # (after a probe pass: the taps take a row per call it found)
            self._install_in_step()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._epoch_start_step = _step(self.model)
        if self._in_step_taps is not None:  # the ring buffer's own count of steps run
            self._epoch_start_slot = int(self._in_step_taps.steps.numpy())

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
        if n is None:  # (the hook is set only with every_n_batches)
            return
        if self.params and batch + 1 == self.params.get("steps"):
            return  # the epoch-end record follows at this very step
        if step // n <= self._last_record_step // n:
            return
        self._last_record_step = step
        if self._captured is not None:
            _keras.sync_state(self.model)
            self._record("batch", step=step, probe=self._captured)
            return
        if self._in_step_taps is None:
            _keras.sync_state(self.model)
            self._record("batch", step=step)
            return
        # In-step statistics stay on device in a ring buffer; read it before it wraps.
        self._pending.append((step, self._epoch, self._epoch_start_slot + batch))
        spe = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if step - self._pending[0][0] >= self._in_step_taps.capacity - spe:
            self._flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._flush()
        self._remove_in_step()
        if self._measurement is not None:
            self._measurement.detach()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ----------------------------------------------------------------- outputs
    def to_dataframe(self) -> Any:
        """The records as a `pandas.DataFrame` (needs pandas: ``keras-initlab[data]``)."""
        import pandas as pd

        return pd.DataFrame(self.records, columns=list(RECORD_KEYS))

    def to_csv(self, path: Any) -> None:
        """Write the records to ``path`` as CSV (empty cell for None); no pandas needed.

        Args:
            path: a file path (str or ``os.PathLike``: the file is created or overwritten),
                or a text file object open for writing (``open(p, "w", newline="")``,
                ``io.StringIO()``): the CSV is written at its position and it is left open.

        Raises:
            TypeError: ``path`` is neither a path nor a text file object (a binary file, a
                number, None).
        """
        import io
        import os

        def write(f: Any) -> None:
            writer = csv.DictWriter(f, fieldnames=list(RECORD_KEYS))
            writer.writeheader()
            for record in self.records:
                writer.writerow({k: "" if record[k] is None else record[k] for k in RECORD_KEYS})

        if isinstance(path, (str, os.PathLike)):
            with open(path, "w", newline="") as f:
                write(f)
            return
        binary = isinstance(path, (io.RawIOBase, io.BufferedIOBase)) or "b" in str(
            getattr(path, "mode", "")
        )
        if binary or not callable(getattr(path, "write", None)):
            raise TypeError(
                "Argument `path` must be a str or os.PathLike path, or a text file object "
                f"open for writing{' (not a binary one)' if binary else ''}. "
                f"Received: path={path!r}"
            )
        write(path)

    # ----------------------------------------------------------------- internals
    def _install_in_step(self) -> None:
        model = self.model
        if keras.backend.backend() != "tensorflow":  # a record of the batch each step trains on
            self._train_function = _keras.capture_train_batches(model, self._keep_batch)
            return
        from keras_initlab.measurement._in_step import InStepTaps

        spe = int(getattr(model, "steps_per_execution", 1) or 1)
        active = self._active
        capacity = max(IN_STEP_CAPACITY, 2 * spe)
        taps = InStepTaps(model, active.activations, capacity, active.owner, self.precision)
        self._in_step_taps = taps
        self._train_function = _keras.patch_train_step(model, taps.wrap)

    def _keep_batch(self, batch: Any) -> None:
        self._captured = probe_data(tuple(batch) if isinstance(batch, (tuple, list)) else (batch,))

    def _remove_in_step(self) -> None:
        if self._captured is not None or (
            self._train_function is not None and self._in_step_taps is None
        ):
            _keras.restore_train_function(self.model, self._train_function)
            self._train_function = self._captured = None
        if self._in_step_taps is not None:
            _keras.restore_train_step(self.model, self._train_function)
            self._in_step_taps = self._train_function = None

    def _flush(self) -> None:
        """Turn the pending in-step batch records into records (one read of the ring buffer)."""
        if not self._pending or self._in_step_taps is None or self._measurement is None:
            return
        from keras_initlab.measurement._in_step import IN_STEP_COLUMNS

        taps = self._in_step_taps
        buffer = taps.read().numpy()
        pending, self._pending = self._pending, []
        for step, epoch, slot in pending:
            rows = self._measurement.table.rows(
                buffer[slot % taps.capacity],
                IN_STEP_COLUMNS,
                owner=taps.owner,
                seen=taps.seen,
                gradient_of=taps.gradient_of,
                with_gradients=True,
                epoch=epoch,
                step=step,
                event="batch",
                source="in_step",
                mode="training",
            )
            self._emit(rows, step)

    def _record(
        self, event: str, step: int | None = None, probe: Any = None
    ) -> list[dict[str, Any]]:
        """Records of the probe or, given ``probe``, of the batch a step trained on (JAX,
        PyTorch: ``source="in_step"``, training mode, the weights after that step)."""
        if step is None:
            step = _step(self.model)
        self._last_record_step = step
        distinct = self._counts_distinct(event)
        if probe is None:
            rows = self._active(
                self._probe_data, epoch=self._epoch, step=step, event=event, distinct=distinct
            )
        else:
            trained = Measurement.shared(self.model, self.layers, mode="training", **self._settings)
            rows = trained(probe, epoch=self._epoch, step=step, event=event, distinct=distinct)
            for row in rows:
                row["source"] = "in_step"
        self._emit(rows, step)
        return rows

    def _counts_distinct(self, event: str) -> bool:
        """Whether the record of ``event`` counts `distinct_units` (`DISTINCT_AT`)."""
        if self.distinct_units == "every_record" or event == "train_begin":
            return True
        if event != "epoch_end":
            return False
        epochs = (self.params or {}).get("epochs")
        return self.log_summary or epochs is None or self._epoch + 1 >= int(epochs)

    def _emit(self, rows: list[dict[str, Any]], step: int) -> None:
        self.records.extend(rows)
        if self._writer is not None:
            self._writer.write(rows, step, self._active.entries, self._active.kernels)
        self._check(rows, step)

    def _check(self, rows: list[dict[str, Any]], step: int) -> None:
        if self.alert and rows:
            from keras_initlab.depth_rule import judge

            source, mode = rows[0]["source"], rows[0]["mode"]
            path, factors = self._judging_path(mode)
            judgement = judge(rows, factor=self.alert_factor, path=path, structural=factors)
            foretold = next((a for a in self.alerts if a.step == 0), None)
            found = alerts_for(
                rows,
                judgement,
                epoch=self._epoch,
                step=step,
                diagnosis=lambda: self._diagnosis(mode),
                foretold=foretold,
            )
            if step == 0 and not found:  # an exploding signal makes large logits too
                found += self._attention_alerts() + self._logits_alerts(path)
            for a in found:
                if (source, a.kind) in self._alerted:
                    continue
                self._alerted.add((source, a.kind))
                self.alerts.append(a)
                warnings.warn(a.message, VarianceWarning, stacklevel=2)
        if self.stop_on_nan and any(
            (r[k] is not None and not math.isfinite(r[k])) or r["non_finite_weights"]
            for r in rows
            for k in ("activation_var", "gradient_var")
        ):
            self.model.stop_training = True

    def _attention_alerts(self) -> list[Alert]:
        """The attention rule's alert at step 0 (`keras_initlab.attention_rule`): on the
        probe in both modes, at the attention softmaxes whose scores start collapsed in
        both; the first of them is named, with the probe mode's finding (one call per
        softmax: its first)."""
        from keras_initlab.attention_rule import attention_scores, judge_scores

        collapsed: dict[str, dict[str, Any]] = {}
        count = 0
        for mode in PROBE_MODES:
            calls = attention_scores(self.model, self._probe_data[0], mode)
            count = len(calls)
            for path, ((scores, mask, weights), *_) in calls.items():
                finding = judge_scores(scores, mask, weights)
                if finding.exceeds:
                    collapsed.setdefault(path, {})[mode] = finding
        both = [p for p, f in collapsed.items() if len(f) == len(PROBE_MODES)]
        if not both:
            return []
        finding = collapsed[both[0]][self.probe_mode]
        return [attention_alert(self._epoch, 0, both[0], finding, len(both), count)]

    def _logits_alerts(self, path: Any) -> list[Alert]:
        """The logits rule's alert at step 0 (`keras_initlab.logits_rule`): on the probe in
        both modes, and only where the softmax starts saturated in both (what one mode's
        one-off behaviour explains is not the weights': dropout's training-mode noise, which
        inference removes; BatchNorm's identity at initialization in inference mode, which
        training replaces by batch statistics). The finding shown is the probe mode's."""
        from keras_initlab.logits_rule import judge_logits, model_logits

        x, y = self._probe_data[0], self._probe_data[1]
        labels = None if y is None else np.asarray(keras.ops.convert_to_numpy(y))
        findings = {}
        for mode in (self.probe_mode, *(m for m in PROBE_MODES if m != self.probe_mode)):
            logits = model_logits(self.model, x, mode)
            if logits is None or logits.shape[-1] < 2:
                return []
            try:
                findings[mode] = judge_logits(logits, labels)
            except ValueError:  # labels of another form: judged without the loss
                findings[mode] = judge_logits(logits)
            if not findings[mode].exceeds:
                return []
        layer = sorted(path.outputs)[0] if path.outputs else self.model.name
        return [logits_alert(self._epoch, 0, layer, findings[self.probe_mode])]


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
