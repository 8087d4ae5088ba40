"""How well `keras_initlab.propagate` predicts a model: prediction against measurement.

``prediction_agreement(model, x)`` measures the model on ``x`` (`keras_initlab.measure`,
its default selection of layers) with the surrogate loss ``L = mean_n sum_j y_nj u_nj``
(``u`` iid N(0, 1) of the output's shape, passed as the targets), so that ``dL/dy_out =
u / N`` and every measured gradient variance divided by ``Var(u) / N^2`` is relative to the
output's, as `propagate` predicts it; then it predicts the model with the probe's input
moments and compares the two row by row (`compare_prediction`).

Nothing here imports TensorFlow or Keras when the module is imported: `measure` and
`propagate` are imported by the functions that use them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_initlab._validation import check_choice

MODES = ("inference", "training")
KEYS = ("activation_var", "gradient_var")  # the compared variances
TARGET_SEED_OFFSET = 10_000  # u is drawn with seed + this (the seed of the tests' measurement)
WORST = 5  # rows kept in `Agreement.worst`


def surrogate_loss(y_true: Any, y_pred: Any) -> Any:
    """Per sample ``sum_j y_j u_j`` summed over the outputs (``u`` = the targets).

    With `keras_initlab.measure`'s mean over the batch, ``dL/dy = u / N`` at every output.
    """
    import keras

    total = None
    for u, y in zip(keras.tree.flatten(y_true), keras.tree.flatten(y_pred), strict=True):
        axes = list(range(1, len(y.shape)))
        term = keras.ops.sum(y * keras.ops.cast(u, y.dtype), axis=axes)
        total = term if total is None else total + term
    return total


def surrogate_targets(model: Any, n: int, *, seed: int = 0, x: Any = None) -> list[np.ndarray]:
    """The targets ``u`` of the surrogate loss: iid N(0, 1) float32, one array per output of
    ``model`` with ``n`` samples (drawn with ``seed + TARGET_SEED_OFFSET``). Where an output
    has a size the model leaves unknown (a sequence length), or no recorded outputs (a
    subclassed model), the shapes are those of the model's outputs on ``x``."""
    import keras

    try:
        shapes: list[tuple] | None = [tuple(t.shape)[1:] for t in model.outputs]
    except AttributeError:  # a subclassed model records no outputs
        shapes = None
    if (shapes is None or any(d is None for s in shapes for d in s)) and x is not None:
        shapes = [tuple(t.shape)[1:] for t in keras.tree.flatten(model(x, training=False))]
    if shapes is None:
        raise ValueError("Argument `x` is needed: a subclassed model records no output shapes")
    rng = np.random.default_rng(seed + TARGET_SEED_OFFSET)
    return [rng.standard_normal((n, *shape)).astype("float32") for shape in shapes]


def surrogate_measure(
    model: Any,
    x: Any,
    *,
    layers: Sequence[Any] | None = None,
    mode: str = "inference",
    seed: int = 0,
    measurement: Any = None,
) -> dict[str, dict[str, Any]]:
    """``{layer path: record}`` of `keras_initlab.measure` with the surrogate loss, each
    ``gradient_var`` divided by the output's, ``Var(u) / N^2`` (``Var(u)``: the sample
    variance of all the targets), so it is relative to the model output's gradient.

    Args:
        model: a built Keras model.
        x: its inputs (an array or a list of arrays), ``N`` samples.
        layers: the layers to measure (default: `keras_initlab.measure`'s selection).
        mode: ``"inference"`` or ``"training"``.
        seed: the targets' seed (`surrogate_targets`).
        measurement: a `keras_initlab.measurement.Measurement` of ``model`` with the
            surrogate loss to call (several probes then share its trace); None: one is
            made with ``layers`` and ``mode``.
    """
    import keras

    from keras_initlab.measurement._measure import one_shot

    if measurement is None:
        measurement = one_shot(model, layers, mode=mode, loss=surrogate_loss)
    n = int(keras.tree.flatten(x)[0].shape[0])
    u = surrogate_targets(model, n, seed=seed, x=x)
    targets: Any = u[0] if len(u) == 1 else u
    records = measurement((x, targets))
    pooled = np.concatenate([t.astype(np.float64).ravel() for t in u])
    reference = float(np.var(pooled)) / n**2  # dL/dy_out = u / N
    out = {}
    for record in records:
        row = dict(record)
        grad = row.get("gradient_var")
        row["gradient_var"] = math.nan if grad is None else grad / reference
        out[row["layer"]] = row
    return out


# The statuses whose activation and whose gradient variance rest on rules only: an
# ``"upstream"`` row's activation is predicted, its gradient passes back through an
# assumption (or a softmax whose gradient `propagate` declines).
PREDICTS = (("predicted", "upstream"), ("predicted",))


def log_error(predicted: float | None, measured: float | None) -> float:
    """``|log(predicted / measured)|``, or NaN where either is None, NaN, infinite or <= 0.

    Example:
    >>> round(log_error(2.0, 1.0), 4), log_error(1.0, 0.0)
    (0.6931, nan)
    """
    if predicted is None or measured is None:
        return math.nan
    p, m = float(predicted), float(measured)
    if not (math.isfinite(p) and math.isfinite(m) and p > 0 and m > 0):
        return math.nan
    return abs(math.log(p / m))


@dataclass(frozen=True)
class ErrorSummary:
    """``|log(predicted / measured)|`` over the predicted rows: ``count`` rows compared,
    ``skipped`` predicted rows left out (a value 0, NaN or missing), and the ``median``,
    90th percentile ``p90`` (linear interpolation) and ``max`` (NaN when ``count`` is 0);
    ``str()`` prints them as ratios (`ratio_text`: 1.04x for a median of log 1.04)."""

    count: int
    skipped: int
    median: float
    p90: float
    max: float

    @classmethod
    def of(cls, errors: Sequence[float]) -> ErrorSummary:
        """The summary of ``errors``; NaN entries count as skipped."""
        values = np.array([e for e in errors if math.isfinite(e)], dtype=np.float64)
        skipped = len(errors) - len(values)
        if not len(values):
            return cls(0, skipped, math.nan, math.nan, math.nan)
        return cls(
            len(values),
            skipped,
            float(np.median(values)),
            float(np.quantile(values, 0.9)),
            float(values.max()),
        )

    def __str__(self) -> str:
        cells = "  ".join(ratio_text(v) for v in (self.median, self.p90, self.max))
        return f"{cells}  ({self.count} rows, {self.skipped} skipped)"


@dataclass(frozen=True)
class AgreementRow:
    """One recorded layer: its prediction, its measurement and their log errors.

    ``status`` is the `propagate` row's (``"no row"`` when the prediction has none for the
    layer), ``note`` its note; the errors are `log_error` (NaN where skipped or not
    predicted: the activation's where the status is ``"predicted"`` or ``"upstream"``, whose
    activation rests on rules only, the gradient's where it is ``"predicted"``);
    ``predicted`` is ``status == "predicted"``.
    """

    layer: str
    class_name: str
    status: str
    note: str
    predicted_activation_var: float
    measured_activation_var: float
    predicted_gradient_var: float
    measured_gradient_var: float
    activation_error: float
    gradient_error: float

    @property
    def predicted(self) -> bool:
        return self.status == "predicted"

    @property
    def error(self) -> float:
        """The larger finite error of the two (NaN when neither is)."""
        finite = [e for e in (self.activation_error, self.gradient_error) if math.isfinite(e)]
        return max(finite) if finite else math.nan

    def describe(self) -> str:
        """``layer (Class): act 1.02x (predicted vs measured), grad ...``."""
        act = (self.activation_error, self.predicted_activation_var, self.measured_activation_var)
        grad = (self.gradient_error, self.predicted_gradient_var, self.measured_gradient_var)
        parts = [
            f"{key} {ratio_text(err)} ({p:.3g} vs {m:.3g})"
            for key, (err, p, m) in (("act", act), ("grad", grad))
        ]
        return f"{self.layer} ({self.class_name}): " + ", ".join(parts)


@dataclass(frozen=True)
class Agreement:
    """`propagate` against measurement, over the rows `keras_initlab.measure` records.

    Attributes:
        mode: ``"inference"`` or ``"training"``.
        rows: one `AgreementRow` per recorded layer, in model order.
        activation, gradient: `ErrorSummary` of each variance over the rows that predict
            it (the activation: ``"predicted"`` and ``"upstream"`` rows).
        both: `ErrorSummary` of the activation and the gradient errors pooled.
        not_predicted: the recorded rows whose status is not ``"predicted"``.
        worst: the rows with the largest error (`AgreementRow.error`), worst first.

    ``recorded``, ``predicted`` and ``share`` (predicted / recorded) count the rows;
    ``str()`` is a short summary with the errors printed as ratios (1.04x).
    """

    mode: str
    rows: tuple[AgreementRow, ...]
    activation: ErrorSummary
    gradient: ErrorSummary
    both: ErrorSummary
    not_predicted: tuple[AgreementRow, ...]
    worst: tuple[AgreementRow, ...]

    @property
    def recorded(self) -> int:
        return len(self.rows)

    @property
    def predicted(self) -> int:
        return sum(r.predicted for r in self.rows)

    @property
    def share(self) -> float:
        return self.predicted / self.recorded if self.rows else math.nan

    def __str__(self) -> str:
        lines = [
            f"prediction agreement ({self.mode}): {self.predicted} of {self.recorded} "
            f"recorded rows predicted ({100 * self.share:.0f}%)",
            "predicted / measured variance, as ratios: median  p90  max",
        ]
        for name in ("activation", "gradient", "both"):
            lines.append(f"  {name:10}  {getattr(self, name)}")
        if self.not_predicted:
            shown = ", ".join(f"{r.layer} ({r.status})" for r in self.not_predicted[:WORST])
            more = len(self.not_predicted) - WORST
            lines.append(
                f"not predicted: {len(self.not_predicted)}: {shown}"
                + (f", ... {more} more" if more > 0 else "")
            )
        if self.worst:
            lines.append("worst: " + self.worst[0].describe())
            lines += ["       " + r.describe() for r in self.worst[1:]]
        return "\n".join(lines)


def compare_prediction(
    report: Any, measured: Mapping[str, Mapping[str, Any]], *, mode: str = "inference"
) -> Agreement:
    """The `Agreement` of a `propagate` report with measured records.

    Args:
        report: `keras_initlab.propagate`'s report (rows with ``layer``, ``status``, ...).
        measured: ``{layer path: record}`` with ``activation_var`` and ``gradient_var``
            (relative to the output's), e.g. `surrogate_measure`'s. Every entry is a
            recorded row; one the report has no row for gets status ``"no row"``.
        mode: the mode both were taken in (kept for the summary).
    """
    predictions = {row.layer: row for row in report}
    rows = []
    for layer, record in measured.items():
        row = predictions.get(layer)
        values = [math.nan if record.get(k) is None else float(record[k]) for k in KEYS]
        if row is None:
            status, note, class_name = "no row", "propagate has no row for this layer", ""
            guesses = [math.nan, math.nan]
        else:
            status, note, class_name = row.status, row.note, row.class_name
            guesses = [float(getattr(row, k)) for k in KEYS]
        errors = [
            log_error(p, m) if status in ok else math.nan
            for p, m, ok in zip(guesses, values, PREDICTS, strict=True)
        ]
        rows.append(
            AgreementRow(
                layer=layer,
                class_name=class_name or str(record.get("layer_class", "")),
                status=status,
                note=note,
                predicted_activation_var=guesses[0],
                measured_activation_var=values[0],
                predicted_gradient_var=guesses[1],
                measured_gradient_var=values[1],
                activation_error=errors[0],
                gradient_error=errors[1],
            )
        )
    act = [r.activation_error for r in rows if r.status in PREDICTS[0]]
    grad = [r.gradient_error for r in rows if r.status in PREDICTS[1]]
    ranked = sorted((r for r in rows if math.isfinite(r.error)), key=lambda r: -r.error)
    return Agreement(
        mode=mode,
        rows=tuple(rows),
        activation=ErrorSummary.of(act),
        gradient=ErrorSummary.of(grad),
        both=ErrorSummary.of(act + grad),
        not_predicted=tuple(r for r in rows if not r.predicted),
        worst=tuple(ranked[:WORST]),
    )


def prediction_agreement(
    model: Any, x: Any, *, mode: str = "inference", seed: int = 0
) -> Agreement:
    """How well `keras_initlab.propagate` predicts ``model`` on the inputs ``x``.

    Measures every layer `keras_initlab.measure` records by default with the surrogate loss
    ``L = mean_n sum_j y_nj u_nj`` (``u`` iid N(0, 1) of the output's shape), so
    ``dL/dy_out = u / N`` and each gradient variance divided by ``Var(u) / N^2`` is relative
    to the output's (`surrogate_measure`); predicts the model with
    ``propagate(model, mode=mode, input_mean=mean(x), input_var=var(x), batch_size=len(x))``
    (`keras_initlab.healthy.probe_moments`); and compares each
    recorded row the prediction calls ``"predicted"``:

        error = |log(predicted / measured)|   for activation_var and for gradient_var

    A row where either value is 0, NaN or missing is skipped (counted in
    ``ErrorSummary.skipped``); rows of any other status are listed in ``not_predicted``.
    The same as `pooled_agreement` of the one probe ``[x]``.

    Args:
        model: a built Keras model (Sequential, Functional or nested).
        x: the probe's inputs, e.g. 16 samples of N(0, 1) of the input's shape.
        mode: ``"inference"`` or ``"training"`` (batch statistics and dropout), for both
            the measurement and the prediction.
        seed: the seed of the targets ``u``.

    Returns:
        An `Agreement`.

    Example:
    >>> import keras, numpy as np
    >>> from keras_initlab.testing import prediction_agreement
    >>> model = keras.Sequential([keras.Input((64,)),
    ...     keras.layers.Dense(64, activation="relu"), keras.layers.Dense(8)])
    >>> x = np.random.default_rng(0).standard_normal((256, 64)).astype("float32")
    >>> agreement = prediction_agreement(model, x)
    >>> agreement.recorded, agreement.predicted
    (2, 2)
    >>> print(agreement)  # doctest: +SKIP
    prediction agreement (inference): 2 of 2 recorded rows predicted (100%)
    predicted / measured variance, as ratios: median  p90  max
      activation  1.01x  1.03x  1.03x  (2 rows, 0 skipped)
      ...
    """
    return pooled_agreement(model, [x], mode=mode, seed=seed)


def pooled_agreement(
    model: Any,
    probes: Sequence[Any],
    *,
    mode: str = "inference",
    seed: int = 0,
    report: Any = None,
) -> Agreement:
    """`prediction_agreement` against the geometric mean of several probes' measurements.

    A measured variance is itself a random variable of the probe: below a classifier, every
    row's gradient inherits the noise of the few ``batch * classes`` values it starts from,
    a factor shared by all the rows that no prediction can follow. Each probe ``x_k`` of
    ``probes`` (``K`` of them, the same batch size ``N``) is measured as
    `prediction_agreement` measures one (`surrogate_measure`, targets seeded ``seed + k``),
    and each row's measured value is

        m = exp(mean_k log m_k)    (NaN where a probe's value is 0, NaN or missing)

    whose log has the standard error of one probe's divided by ``sqrt(K)``; the prediction
    takes the moments of all the probes together and the batch size ``N`` of one. In
    training mode each probe draws its own dropout and noise (the model's seed generators
    move on between probes: a measurement leaves them as it found them), and they are set
    back after the last.

    Args:
        model: a built Keras model.
        probes: one or more probes, each an input of the model (an array or a list of
            arrays) with ``N`` samples.
        mode: ``"inference"`` or ``"training"``.
        seed: the targets' seed of the first probe.
        report: the `keras_initlab.propagate` report to compare (taken in ``mode``);
            None: predicted here with the probes' moments.

    Returns:
        An `Agreement` (its rows carry the pooled measured values).

    Example:
    >>> import keras, numpy as np
    >>> from keras_initlab.testing import pooled_agreement
    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    >>> rng = np.random.default_rng(0)
    >>> probes = [rng.standard_normal((16, 64)).astype("float32") for _ in range(3)]
    >>> pooled_agreement(model, probes).predicted
    1
    """
    from keras_initlab.healthy import probe_moments

    mode = check_choice("mode", mode, MODES)
    if not len(probes):
        raise ValueError("Argument `probes` must hold at least one probe. Received: none")
    moments = [probe_moments(x, model) for x in probes]
    sizes = sorted({m["batch_size"] for m in moments})
    if len(sizes) > 1:
        raise ValueError(
            f"Argument `probes` must hold probes of one batch size. Received: batch sizes {sizes}"
        )
    from keras_initlab.measurement import Measurement

    measurement = Measurement(model, mode=mode, loss=surrogate_loss)  # one trace for all
    with _fresh_draws(model, mode) as move_on:
        runs = []
        for k, x in enumerate(probes):
            runs.append(surrogate_measure(model, x, seed=seed + k, measurement=measurement))
            move_on()
    measured = {layer: _geometric_mean(layer, runs) for layer in runs[0]}
    if report is None:
        report = _predicted(model, moments, mode)
    return compare_prediction(report, measured, mode=mode)


@contextlib.contextmanager
def _fresh_draws(model: Any, mode: str) -> Iterator[Callable[[], None]]:
    """A function that moves every seed generator of ``model`` on (training mode; a no-op
    in inference), their states set back on exit."""
    import keras

    from keras_initlab._keras import seed_generators

    generators = seed_generators(model) if mode == "training" else []
    states = [np.array(keras.ops.convert_to_numpy(g.state.value)) for g in generators]

    def move_on() -> None:
        for generator in generators:
            generator.next()

    try:
        yield move_on
    finally:
        for generator, state in zip(generators, states, strict=True):
            generator.state.assign(state)


def _predicted(model: Any, moments: Sequence[Mapping[str, Any]], mode: str) -> Any:
    """`keras_initlab.propagate` of ``model`` in ``mode`` with the probes' ``moments``
    (`keras_initlab.healthy.probe_moments`, one batch size) taken together."""
    from keras_initlab.propagate import propagate

    pooled = dict(moments[0])
    means = np.array([m["input_mean"] for m in moments])
    pooled["input_mean"] = float(means.mean())
    pooled["input_var"] = float(np.mean([m["input_var"] for m in moments]) + means.var())
    return propagate(model, mode=mode, **pooled)


def _geometric_mean(layer: str, runs: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The record of ``layer`` in the first run with each compared variance replaced by its
    geometric mean over the runs (NaN where a run's value is 0, NaN or missing)."""
    row = dict(runs[0][layer])
    if len(runs) == 1:
        return row  # one probe: its values as measured (a 0 stays 0, counted as skipped)
    for key in KEYS:
        values = [run.get(layer, {}).get(key) for run in runs]
        logs = [
            math.log(float(v)) if v is not None and math.isfinite(float(v)) and v > 0 else None
            for v in values
        ]
        finite = [v for v in logs if v is not None]
        row[key] = math.exp(sum(finite) / len(finite)) if len(finite) == len(logs) else math.nan
    return row


def ratio_text(error: float) -> str:
    """An error ``|log(p / m)|`` as the ratio ``exp(error)``: ``1.04x``, from 100 on
    ``2.5e6x`` (no overflow however large), ``-`` for NaN.

    Example:
    >>> ratio_text(math.log(1.04)), ratio_text(math.log(2.5e6)), ratio_text(math.nan)
    ('1.04x', '2.5e6x', '-')
    """
    if not math.isfinite(error):
        return "-"
    if error < math.log(100.0):
        return f"{math.exp(error):.2f}x"
    decades = error / math.log(10.0)
    exponent = math.floor(decades)
    mantissa = 10.0 ** (decades - exponent)
    if mantissa >= 9.95:  # rounds up to the next decade
        mantissa, exponent = 1.0, exponent + 1
    return f"{mantissa:.1f}e{exponent}x"
