"""``keras-initlab inspect``: the audit table and variance profile of a saved model.

The profile is one measurement (`keras_initlab.measure`, in training mode: the mode the
network trains in) on ``samples`` unit-variance
Gaussian inputs (integer inputs: 0/1), the model untouched (not compiled or trained), with
the surrogate loss ``L = mean over the batch of sum(r * y)``, ``r`` unit-variance Gaussian
noise shaped like the output ``y``: the gradient that enters the network from the output
then has unit variance (up to the batch factor, which cancels in every ratio), so the
backward profile, like the forward one, shows what the network does to a unit-variance
signal.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from keras_initlab.compare.verdicts import backward_ratio, forward_ratio
from keras_initlab.depth_rule import Judgement, judge, structural_factors
from keras_initlab.diagnosis import diagnose
from keras_initlab.model.path import model_path
from keras_initlab.text_table import format_table

INSPECT_SAMPLES = 256  # inputs of the variance profile
# The profile is measured and judged in training mode, the mode a network trains in
# (BatchNorm with batch statistics; `keras_initlab.depth_rule`).
JUDGED_MODE = "training"
FREE_DIM = 16  # size given to a free (None) non-batch input dimension
PROFILE_COLUMNS = ("layer", "activation_var", "gradient_var", "dead_fraction", "distinct_units")
PREDICTION_COLUMNS = ("predicted_activation_var", "predicted_gradient_var", "parts")
# Measured and predicted variance "part" when they differ by more than this factor: beyond
# the finite-width spread of a healthy layer (see `keras_initlab.propagate`).
PART_FACTOR = 2.0
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # the first bytes of an .h5 file
_UNKNOWN_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'")


class ModelUnreadable(RuntimeError):
    """A model file that does not exist or that Keras cannot load."""


def _unreadable(path: str, reason: str) -> ModelUnreadable:
    return ModelUnreadable(
        "Argument `model` must be a readable model file (.keras or .h5). "
        f"Received: model={path!r} ({reason})"
    )


def _format_problem(path: str) -> str | None:
    """Why ``path`` is not a model file at all (None: it may be one)."""
    file = Path(path)
    if file.is_dir():
        return "is a directory"
    if not file.exists():
        return "no such file"
    if not file.is_file():
        return "not a regular file"
    with file.open("rb") as f:
        head = f.read(len(HDF5_SIGNATURE))
    if file.suffix == ".h5":
        return None if head == HDF5_SIGNATURE else "corrupt or not an HDF5 model file"
    if file.suffix == ".keras":
        if not zipfile.is_zipfile(file):
            return "corrupt or not a Keras file: a .keras file is a zip archive and this is not"
        with zipfile.ZipFile(file) as archive:
            if "config.json" not in archive.namelist():
                return "corrupt or not a Keras file: the archive holds no config.json"
    return None


def _configs(value: Any) -> Iterator[dict[str, Any]]:
    """Every object config (a dict with a ``class_name``) nested in a model config."""
    if isinstance(value, dict):
        if "class_name" in value:
            yield value
        for item in value.values():
            yield from _configs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _configs(item)


def _unregistered_class(path: str, name: str) -> str:
    """The message for a class Keras cannot locate: its full name and how to register it."""
    full, registered = name, name
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        found = next((c for c in _configs(config) if c["class_name"] == name), None)
        if found is not None:
            full = f"{found['module']}.{name}" if found.get("module") else name
            registered = found.get("registered_name") or name
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        pass  # an .h5 file, or an archive without a readable config: the short name
    return (
        f"uses the custom class `{full}` (registered name {registered!r}), which is not "
        "registered; decorate the class with "
        "@keras.saving.register_keras_serializable() and import its module before loading, "
        f"or load the model in Python with keras.saving.load_model(path, custom_objects="
        f"{{{registered!r}: {name}}}) and call keras_initlab.audit on it"
    )


def load_model_file(path: str) -> Any:
    """Load a ``.keras`` / ``.h5`` model without compiling it.

    Raises:
        ModelUnreadable: the file is missing, a directory, corrupt or not a model file, or
            uses a custom class that is not registered (named in full, with how to
            register it); one line.

    Example:
    >>> load_model_file("no_such_model.keras")
    Traceback (most recent call last):
    ...
    keras_initlab.compare.inspection.ModelUnreadable: Argument `model` must be a readable \
model file (.keras or .h5). Received: model='no_such_model.keras' (no such file)
    """
    problem = _format_problem(path)
    if problem is not None:
        raise _unreadable(path, problem)
    import keras

    from keras_initlab import initializers  # noqa: F401  (registers them for loading)

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad archive
        text = str(error)
        unknown = _UNKNOWN_CLASS.search(text)
        if unknown:
            raise _unreadable(path, _unregistered_class(path, unknown[1])) from None
        reason = text.strip().splitlines()[0] if text.strip() else ""
        raise _unreadable(path, f"{type(error).__name__}: {reason}") from None


@dataclasses.dataclass
class Profile:
    """Per measured layer (model order): the measured rows, the prediction, the verdict.

    ``predicted`` maps a layer to ``(activation_var, gradient_var)`` predicted by
    `keras_initlab.propagate` for this input (gradients relative to the output's; the
    measured gradients are shown relative to the last layer's for the comparison).
    ``judgement`` is the depth rule on the rows (`keras_initlab.depth_rule`: the verdict the
    monitor's alerts and ``compare`` use) and ``fix`` the checked fix of
    `keras_initlab.diagnosis` when the verdict is not ``"ok"``, as the alert words it.
    ``unpredicted`` maps each layer whose prediction rests on an assumption to its
    ``PropagateRow.status`` and note; the table shows the status in place of the numbers.
    """

    rows: list[dict[str, Any]]
    predicted: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    judgement: Judgement | None = None
    fix: str = ""
    unpredicted: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def activation_ratio(self) -> float:
        return forward_ratio([_f(r["activation_var"]) for r in self.rows])

    @property
    def gradient_ratio(self) -> float:
        return backward_ratio([_f(r["gradient_var"]) for r in self.rows])

    @property
    def verdict(self) -> str:
        judgement = self.judgement if self.judgement is not None else judge(self.rows)
        return judgement.verdict

    @property
    def parted(self) -> list[str]:
        """The layers where measurement and prediction differ by more than `PART_FACTOR`."""
        return [r["layer"] for r in self.rows if self._parts(r)]

    def _parts(self, row: dict[str, Any]) -> str:
        if row["layer"] not in self.predicted:
            return ""
        act, grad = self.predicted[row["layer"]]
        measured = (_f(row["activation_var"]), self._relative_gradient(row))
        parts = [
            name
            for name, m, p in zip(("act", "grad"), measured, (act, grad), strict=True)
            if math.isfinite(m) and m > 0 and p > 0 and abs(math.log(m / p)) > math.log(PART_FACTOR)
        ]
        return "+".join(parts)

    def _relative_gradient(self, row: dict[str, Any]) -> float:
        last = _f(self.rows[-1]["gradient_var"]) if self.rows else math.nan
        return _f(row["gradient_var"]) / last if last > 0 else math.nan

    def __str__(self) -> str:
        columns = PROFILE_COLUMNS + (PREDICTION_COLUMNS if self.predicted else ())
        table = []
        for r in self.rows:
            line = [r[k] for k in PROFILE_COLUMNS]
            if self.predicted:
                status, _ = self.unpredicted.get(r["layer"], (None, ""))
                act, grad = self.predicted.get(r["layer"], (status, status))
                line += [act, grad, self._parts(r)]
            table.append(line)
        lines = format_table(columns, table)
        lines.append(
            f"activation variance last/first: {self.activation_ratio:.4g}; gradient "
            f"variance first/last: {self.gradient_ratio:.4g}; verdict: {self.verdict}"
        )
        faults = [] if self.judgement is None else self.judgement.faults
        lines += [f"  {change.describe()}" for change in faults]
        if self.fix:
            lines.append(self.fix)
        if self.predicted:
            parted = self.parted
            lines.append(
                f"measured and predicted (keras_initlab.propagate) part by more than "
                f"{PART_FACTOR:g}x at {len(parted)} of {len(self.rows)} layers"
                + (f": {', '.join(parted[:10])}" if parted else "")
            )
        shown = [n for n in self.unpredicted if n in {r["layer"] for r in self.rows}]
        if shown:
            first = self.unpredicted[shown[0]]
            lines.append(
                f"{len(shown)} of {len(self.rows)} layers have no prediction of their own "
                f"(it rests on an assumption); first: {shown[0]} ({first[0]}: {first[1]})"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Profile({len(self.rows)} layers, verdict={self.verdict!r})"


def _f(value: Any) -> float:
    return math.nan if value is None else float(value)


def _random_input(tensor: Any, samples: int, rng: np.random.Generator) -> np.ndarray:
    shape = (samples, *(FREE_DIM if d is None else int(d) for d in tensor.shape[1:]))
    dtype = str(getattr(tensor, "dtype", "float32"))
    if "int" in dtype:
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype("float32")


def _surrogate_loss(y_true: Any, y_pred: Any) -> Any:
    from keras import ops

    return ops.sum(ops.reshape(y_true * y_pred, (ops.shape(y_pred)[0], -1)), axis=-1)


def variance_profile(model: Any, *, samples: int = INSPECT_SAMPLES, seed: int = 0) -> Profile:
    """Forward and backward variance per layer of a built model on unit-variance input.

    Args:
        model: a built Keras model (single output for the backward part; with several
            outputs the gradient columns are empty).
        samples: batch size of the random input.
        seed: seed of the input and of the output noise.

    Returns:
        A ``Profile`` (``str()`` is a table).

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((32,))] + [keras.layers.Dense(
    ...     32, activation="relu", kernel_initializer="he_normal") for _ in range(3)])
    >>> variance_profile(model).verdict
    'ok'
    """
    from keras_initlab.measurement import measure

    rng = np.random.default_rng(seed)
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"Argument `model` must have known inputs (a Functional or "
            f"Sequential model with an Input). Received: model={model.name!r}"
        )
    x = [_random_input(t, samples, rng) for t in inputs]
    probe_x: Any = x[0] if len(x) == 1 else x
    outputs = model.outputs
    probe: Any = probe_x
    if len(outputs) == 1:
        shape = (samples, *(FREE_DIM if d is None else int(d) for d in outputs[0].shape[1:]))
        probe = (probe_x, rng.standard_normal(shape).astype("float32"))
    rows = measure(model, probe, loss=_surrogate_loss, mode=JUDGED_MODE)
    report = _prediction(model, x)
    path = model_path(model, JUDGED_MODE)
    judgement = judge(rows, path=path, structural=structural_factors(report, path))
    fix = ""
    if judgement.verdict != "ok":
        found = diagnose(model, probe_x, mode=JUDGED_MODE)
        checked = "" if found.checked else " [not checked]"
        fix = f"cause ({found.cause}): {found.why}\nfix{checked}: {found.advice}"
    predicted = {r.layer: (r.activation_var, r.gradient_var) for r in report if r.predicted}
    unpredicted = {r.layer: (r.status, r.note) for r in report if not r.predicted}
    return Profile(rows, predicted, judgement, fix, unpredicted)


def _prediction(model: Any, x: list[np.ndarray]) -> Any:
    """`keras_initlab.propagate` on the profile's input statistics, in the judged mode."""
    from keras_initlab.propagate import propagate

    first = np.asarray(x[0], np.float64)
    return propagate(
        model, input_mean=float(first.mean()), input_var=float(first.var()), mode=JUDGED_MODE
    )
