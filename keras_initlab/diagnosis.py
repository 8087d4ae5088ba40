"""Why a profile breaks the depth rule, and a fix checked by prediction before it is given.

`diagnose` names one of two causes of a change the depth rule (`keras_initlab.depth_rule`)
finds at initialization (the monitor adds the third, training dynamics, for values that
turn non-finite after step 0):

* ``"weights"``: kernels depart from the healthy scheme of the activation they feed, on
  their true fans (`keras_initlab.healthy`), and re-drawing them with that scheme is
  predicted to pass the rule. The kernels, their ratios and, where known, why (Keras'
  shape-rule fans of a depthwise kernel) are named.
* ``"architecture"``: no per-layer scheme is predicted to pass: the architecture itself
  vanishes or explodes (a deep sigmoid stack, unnormalized residual sums). What would is
  named: an architecture-aware initialization (`initialize(model, "auto")`, a residual
  rule) or an architectural change (another activation).

Every candidate fix is checked on the model itself: `keras_initlab.initialize` with the
candidate's arguments and ``seed=0``, `keras_initlab.propagate`'s profile on the probe's
input statistics, judged by the depth rule, then every weight set back to the value it had
(also when the try fails). A copy would not do: `keras.models.clone_model` unties a layer
that a nested model and the outer graph share (keras_hub's token embedding, reversed for
the logits) and cannot copy a subclassed model. A change of the architecture (the
activation swap below) is tried on a clone, which starts from its own draw. The
candidates, in order: the healthy scheme, each residual rule with it (where
`keras_initlab.residual_blocks` finds blocks), ``"auto"``, LSUV on the probe's inputs,
and, when none of those passes, each squashing activation (tanh, sigmoid) replaced by ReLU
under He. The first that passes is the fix;
it counts as checked only if no row the rule judges rests on an assumption of `propagate`
(a layer no rule covers, above the row for its activation or below it for its gradient; a
softmax saturated beyond float32's rounding, below it for its gradient), except that a
candidate whose predicted activations alone break the rule fails, checked.
The user's model, its weights and every global random state are left as they were
(`keras_initlab._keras.untouched_random_state`). The prediction is for the draw
``seed=0``; at narrow widths other draws spread around it (the finite-width effect).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import keras

from keras_initlab.depth_rule import DEPTH_FACTOR, Judgement, judge, structural_factors
from keras_initlab.healthy import (
    SQUASHING,
    HealthyRow,
    healthy_prediction,
    healthy_weights,
    probe_moments,
)
from keras_initlab.model.path import model_path


@dataclass(frozen=True)
class Candidate:
    """One fix, tried on the model (its weights set back after) and judged on its prediction.

    Attributes:
        label: the fix as code or as a change (``"initialize(model, 'he_normal')"``).
        fix: `keras_initlab.initialize` keyword arguments, or None for a change of the
            architecture.
        judgement: the depth rule on the predicted profile (None: it could not be tried).
        assumed: the layers whose rules do not predict what a judged row's prediction
            rests on (no rule covers them; a saturated softmax, for the gradient).
        error: why it could not be tried, or "".
    """

    label: str
    fix: dict[str, Any] | None
    judgement: Judgement | None = None
    assumed: tuple[str, ...] = ()
    error: str = ""

    @property
    def checked(self) -> bool:
        """Predicted, and no judged row rests on an assumption."""
        return self.judgement is not None and not self.assumed

    @property
    def passes(self) -> bool:
        """Checked, and the rule finds nothing in the predicted profile."""
        return self.checked and self.judgement is not None and self.judgement.verdict == "ok"

    def predicted(self) -> str:
        """The predicted effect, in words."""
        if self.judgement is None:
            return f"not predicted ({self.error})"
        parts = []
        for key, what in (
            ("activation_var", "activation variance"),
            ("gradient_var", "squared gradient norm"),
        ):
            grows, shrinks = (self.judgement.change(key, d) for d in ("grows", "shrinks"))
            if grows is None or shrinks is None:
                continue
            worst = max((grows, shrinks), key=lambda c: c.factor / c.threshold)
            parts.append(f"{what} {worst.direction} at most x{worst.factor:.3g}")
        text = ", ".join(parts) + f" across depth (verdict: {self.judgement.verdict})"
        if self.assumed:
            text += f"; unchecked: the prediction assumes {', '.join(self.assumed[:3])}"
        return text


@dataclass(frozen=True)
class Diagnosis:
    """The cause of a depth fault and its checked fix.

    Attributes:
        cause: ``"weights"`` or ``"architecture"``.
        why: the cause in words.
        weights: the kernels that fit no healthy scheme (`keras_initlab.healthy`).
        candidates: every fix tried, in order.
        chosen: the first that passes, or None.
        advice: the fix in words, with its predicted effect.
    """

    cause: str
    why: str
    weights: tuple[HealthyRow, ...] = ()
    candidates: tuple[Candidate, ...] = field(default=())
    chosen: Candidate | None = None
    advice: str = ""

    @property
    def fix(self) -> dict[str, Any] | None:
        """`initialize` keyword arguments of the chosen fix (None: not an initialization)."""
        return None if self.chosen is None or self.chosen.fix is None else dict(self.chosen.fix)

    @property
    def checked(self) -> bool:
        return self.chosen is not None and self.chosen.checked


def _label(fix: dict[str, Any]) -> str:
    scheme = fix["scheme"]
    name = repr(scheme) if isinstance(scheme, str) else "keras_initlab.LSUV(x)"
    args = ", ".join([name] + [f"{k}={v!r}" for k, v in fix.items() if k != "scheme"])
    return f"keras_initlab.initialize(model, {args})"


@contextlib.contextmanager
def _tried_on(model: Any, clone_function: Any = None) -> Iterator[Any]:
    """The model a fix is tried on: ``model`` itself, every weight set back on exit (the
    values, not only the shapes: a fix re-draws them in place), or a clone changed by
    ``clone_function``."""
    if clone_function is not None:
        yield keras.models.clone_model(model, clone_function=clone_function)
        return
    saved = model.get_weights()
    try:
        yield model
    finally:
        model.set_weights(saved)


def predict_fix(
    model: Any,
    fix: dict[str, Any] | None,
    x: Any,
    *,
    mode: str = "training",
    factor: float = DEPTH_FACTOR,
    label: str | None = None,
    clone_function: Any = None,
) -> Candidate:
    """Try one fix on ``model`` and judge its predicted profile.

    Args:
        model: a built Keras model; the fix is applied to it and every weight is set back
            afterwards (also when the try fails), so it is left as it was.
        fix: `keras_initlab.initialize` keyword arguments (``seed`` is set to 0).
        x: the probe's inputs (their mean and variance feed the prediction).
        mode: the mode the profile is judged in.
        factor: the depth rule's factor.
        label: the fix in words (default: the `initialize` call).
        clone_function: a change of the architecture applied by `keras.models.clone_model`
            (the clone then starts from its own draw, re-drawn by ``fix``).

    Returns:
        A `Candidate`.

    Example:
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((64,))] + [keras.layers.Dense(
    ...     64, activation="relu", kernel_initializer="glorot_normal") for _ in range(12)])
    >>> x = np.random.default_rng(0).standard_normal((32, 64))
    >>> predict_fix(model, {"scheme": "he_normal"}, x).passes
    True
    """
    from keras_initlab import _keras
    from keras_initlab.initialize import initialize
    from keras_initlab.propagate import propagate

    label = label or _label(fix or {})
    with _keras.untouched_random_state():
        try:
            with _tried_on(model, clone_function) as tried:
                if fix is not None:
                    initialize(tried, **fix, seed=0)
                report = propagate(tried, mode=mode, **probe_moments(x, tried))
                path = model_path(tried, mode)
        except (ValueError, TypeError, NotImplementedError) as error:
            return _untried(label, fix, error)
    return _judged(label, fix, report, path, factor)


def _untried(label: str, fix: dict[str, Any] | None, error: Exception) -> Candidate:
    """A `Candidate` that could not be tried, with the first line of its error."""
    text = str(error).strip()
    return Candidate(label, fix, error=text.splitlines()[0] if text else repr(error))


def _judged(
    label: str, fix: dict[str, Any] | None, report: Any, path: Any, factor: float
) -> Candidate:
    """A `Candidate` from a `propagate` report of the changed model."""
    rows = [
        {"layer": r.layer, "activation_var": r.activation_var, "gradient_var": r.gradient_var}
        for r in report
    ]
    judgement = judge(rows, factor=factor, path=path, structural=structural_factors(report, path))
    # A judged layer whose prediction rests on an assumed layer (its own, one above it for
    # the activation, one below it for the gradient), or that has no row at all, is not
    # checked; the assumed layers are named. A candidate whose predicted activations alone
    # (resting on nothing) break the rule fails whatever its gradients do: checked.
    rows_by = report.by_layer()
    forward: dict[str, None] = {}
    backward: dict[str, None] = {}
    for name in dict.fromkeys(path.nodes):
        row = rows_by.get(name)
        if name in path.outputs or (row is not None and row.predicted):
            continue
        forward.update(dict.fromkeys(row.assumes if row is not None else (name,)))
        backward.update(dict.fromkeys(row.gradient_assumes if row is not None else ()))
    fails_forward = any(c.key == "activation_var" for c in judgement.faults) or any(
        key == "activation_var" for key, _ in judgement.non_finite
    )
    assumed = forward if fails_forward and not forward else {**forward, **backward}
    return Candidate(label, fix, judgement, tuple(assumed))


def _squashing_swap(model: Any) -> tuple[str, Any] | None:
    """A clone function replacing every squashing activation by ReLU, and its label."""
    from keras_initlab.model.layers import activation_name
    from keras_initlab.model.tree import leaf_layers

    found = sorted(
        {a for _, layer in leaf_layers(model) if (a := activation_name(layer)) in SQUASHING}
    )
    if not found:
        return None

    def swap(layer: Any) -> Any:
        config = layer.get_config()
        if activation_name(layer) in SQUASHING and "activation" in config:
            config["activation"] = "relu"
        return type(layer).from_config(config)

    names = " and ".join(repr(a) for a in found)
    return f"replace the {names} activations with 'relu' and initialize with He", swap


def _candidates(model: Any, weights: list[HealthyRow], x: Any) -> Iterator[dict[str, Any]]:
    """The initializations tried, in order: each healthy scheme of the model's kernels (the
    most common first), each residual rule with the most common, ``"auto"``, LSUV on the
    probe's inputs ``x`` (``keras_initlab.LSUV(x)``: its fix holds that batch)."""
    from keras_initlab.lsuv import LSUV
    from keras_initlab.model.residual import residual_blocks
    from keras_initlab.residual_init import RULES

    names = [r.scheme for r in weights] or ["lecun_normal"]
    schemes = sorted(set(names), key=lambda s: (-names.count(s), s))
    scheme = schemes[0]
    for each in schemes:
        yield {"scheme": each}
    if list(residual_blocks(model)):
        for rule in RULES:
            yield {"scheme": scheme, "residual": rule}
    yield {"scheme": "auto"}
    yield {"scheme": LSUV(x)}


def _per_layer_reference(
    model: Any, weights: list[HealthyRow], x: Any, mode: str, factor: float
) -> Candidate:
    """Every flagged kernel re-drawn with its own healthy scheme, the others kept, judged
    on its prediction (`keras_initlab.healthy.healthy_prediction`: nothing copied or
    changed)."""
    label = "every kernel that fits no healthy scheme re-drawn with that of its activation"
    try:
        report = healthy_prediction(model, x, mode, weights)
    except (ValueError, TypeError, NotImplementedError) as error:
        return _untried(label, None, error)
    return _judged(label, None, report, model_path(model, mode), factor)


def diagnose(
    model: Any, x: Any, *, mode: str = "training", factor: float = DEPTH_FACTOR
) -> Diagnosis:
    """The cause of a depth fault of ``model`` and the first fix predicted to pass.

    The cause is ``"weights"`` when some kernels fit no healthy scheme and the model with
    each of them re-drawn by its own healthy scheme is predicted to pass the rule, or when
    one per-layer scheme re-drawing every weight is; else ``"architecture"`` (no per-layer
    scheme keeps it). Where the prediction rests on layers no rule covers, the cause is
    not checked and ``why`` says so (``"weights"`` if some kernels fit no healthy scheme,
    else ``"architecture"``). The fix is the first candidate of the module doc that
    passes; a candidate whose judged layers the prediction assumes never passes.

    Args:
        model: a built Sequential or Functional model (left unchanged).
        x: the probe's inputs.
        mode: the mode the network trains in (`keras_initlab.depth_rule`).
        factor: the depth rule's factor.

    Returns:
        A `Diagnosis` (module doc).

    Example:
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((64,))] + [keras.layers.Dense(
    ...     64, activation="relu", kernel_initializer="glorot_normal") for _ in range(12)])
    >>> d = diagnose(model, np.random.default_rng(0).standard_normal((32, 64)))
    >>> d.cause, d.fix
    ('weights', {'scheme': 'he_normal'})
    """
    weights = healthy_weights(model)
    flagged = tuple(r for r in weights if r.flagged)
    reference = _per_layer_reference(model, weights, x, mode, factor)
    tried: list[Candidate] = []
    chosen = None
    for fix in _candidates(model, weights, x):
        candidate = predict_fix(model, fix, x, mode=mode, factor=factor)
        tried.append(candidate)
        if candidate.passes:
            chosen = candidate
            break
    if chosen is None:
        swap = _squashing_swap(model)
        if swap is not None:
            candidate = predict_fix(
                model,
                {"scheme": "he_normal"},
                x,
                mode=mode,
                factor=factor,
                label=swap[0],
                clone_function=swap[1],
            )
            candidate = dataclasses.replace(candidate, fix=None)  # its error kept
            tried.append(candidate)
            chosen = candidate if candidate.passes else None
    per_layer = next(
        (c for c in tried if c.fix is not None and set(c.fix) == {"scheme"} and c.passes), None
    )
    if flagged and reference.passes:
        cause, why = "weights", _weights_text(flagged)
    elif not reference.checked:
        cause = "weights" if flagged else "architecture"
        rests = ", ".join(reference.assumed[:3]) or reference.error
        why = (
            f"not checked: the prediction rests on {rests} (layers whose rules do not predict "
            "it), so whether a per-layer scheme keeps this network is not known"
        ) + ("; " + _weights_text(flagged) if flagged else "")
    elif per_layer is not None:
        cause = "weights"
        why = (
            "the kernels fit the healthy scheme of the activation they feed, yet re-drawing "
            f"every weight, biases included, as {per_layer.label} does is predicted to pass: "
            "the values at fault are ones the kernel audit does not judge (biases, a scale), "
            "or the scheme that keeps this network is another healthy one"
        )
    else:
        cause = "architecture"
        kernels = (
            f"even with the {len(flagged)} kernel(s) that fit none re-drawn by the healthy "
            "scheme of their activation"
            if flagged
            else "its kernels fit the healthy scheme of the activation each feeds, and"
        )
        why = (
            f"no per-layer scheme keeps this architecture: {kernels} the prediction is: "
            f"{reference.predicted()}"
        )
        if flagged:
            why += "; besides, " + _weights_text(flagged)
    return Diagnosis(cause, why, flagged, tuple(tried), chosen, _advice(chosen, tried))


def _weights_text(flagged: tuple[HealthyRow, ...]) -> str:
    named = ", ".join(f"{r.layer!r} (std x{r.ratio:.3g} of {r.scheme})" for r in flagged[:4]) + (
        f" and {len(flagged) - 4} more" if len(flagged) > 4 else ""
    )
    reasons = sorted({r.why for r in flagged if r.why})
    text = (
        f"{len(flagged)} kernel(s) depart from the healthy scheme of the activation they "
        f"feed, on their true fans: {named}"
    )
    return text + ("; " + "; ".join(reasons[:2]) if reasons else "")


def _advice(chosen: Candidate | None, tried: list[Candidate]) -> str:
    if chosen is not None:
        return f"{chosen.label} (predicted: {chosen.predicted()})"
    failed = "; ".join(f"{c.label}: {c.predicted()}" for c in tried)
    return (
        "none of the checked fixes is predicted to pass the depth rule "
        f"({failed}); change the architecture: add normalization (BatchNormalization, "
        "LayerNormalization) or residual connections (not checked)"
    )
