"""The depth rule: when a change of variance compounds with depth, and the one verdict.

A deep network trains when the variance of its activations (forward) and of its gradients
(backward) neither grows nor shrinks geometrically with depth. The rule judges one profile,
measured (a `VarianceMonitor` record, `keras_initlab.measure`) or predicted
(`keras_initlab.propagate`), by what it does, not by what some reference expects: the
monitor's alerts, ``keras-initlab inspect``, ``compare``'s verdicts and the checks of
every candidate fix (`keras_initlab.diagnosis`) call `judge`. The definition:

1. **Profile.** The rows of the layers on the main path (`keras_initlab.model.path`), in
   the direction each signal travels: activation variances forward, and backward the
   gradient's squared norm per sample, ``gradient_var`` times the elements of one sample
   of the layer's output. These are the quantities a fan-in scheme (He, LeCun) keeps
   through a layer of any width, kernel and stride: ``Var(y) = fan_in Var(W) E[x^2]``
   forward, ``|dL/dx|^2 = fan_in Var(W) |dL/dy|^2`` backward; a gradient's variance per
   element changes with every change of width or resolution (a U-Net's skip fork: 12x per
   element, 3x in norm). Left out: the model's output layer (its scale is set by the
   task: logits, a softmax), rows before the first layer with weights on the path and,
   forward, that layer's own (their scale is the input data's, mapped by the first layer:
   a tanh network fed unit-variance data starts in saturation, one fed small data in its
   linear range), rows whose scale a following normalization resets, one-off layers
   (rule 2), and values that are not finite or exactly 0 (each has its own finding).
2. **Resets and one-off changes.** A normalization that resets the scale (LayerNorm
   always, BatchNorm in training mode: `keras_initlab.model.path.normalizes`) cuts the
   profile into segments, and only points of one segment are compared: forward it divides
   by the scale it gets, backward the weights below it are scale-invariant (a BatchNorm
   network's raw gradient norm grows backward at initialization, Yang et al. 2019, which
   its scale-invariant weights do not feel as a larger step). A layer that moves or
   reduces values (pooling, reshaping, padding, upsampling) changes a variance once,
   where it sits: global average pooling divides a gradient's variance by (H*W)^2; a
   dropout layer adds noise that inference removes (x1/(1 - rate) in training mode). Its
   change, as `keras_initlab.propagate` predicts it, is divided out of the profile
   downstream (`structural_factors`). A sum whose branches read the stream through a
   normalization (a pre-norm Transformer block, `ModelPath.normalized_sums`) adds a
   variance that does not depend on the stream's: its measured change (forward from the
   point before it; backward, the gradient's across it) is divided out too, since it
   cannot compound however large it is (a stream that starts at a small embedding and
   gains unit-variance branches grows 1e4-fold over its first sum and then linearly).
   Nothing else is: a layer with weights, an activation or any other merge is judged as
   measured, so a prediction explains a change and never silences one.
3. **Compounding.** Between two points ``i`` before ``j`` in signal order the change is
   ``r = v_j / v_i``, for points at least `MIN_SPAN` (3) steps apart in one segment (over
   one or two steps a change is one-off: a squeeze-and-excite gate and its swish take
   EfficientNetB0's signal down 12.8-fold, and the next BatchNorm resets it). It
   **grows** beyond the rule when ``r > factor * (1 + factor * s)``, with ``s`` the
   sums between them on the path (residual sums for activations, forks for gradients,
   whose gradient sums its consumers'): a stream that adds ``s`` branches, each within
   ``factor`` of its starting variance, reaches at most ``1 + s * factor`` (it grows
   linearly with depth, as the sum of normalized branches of a pre-norm Transformer or a
   BatchNorm ResNet in training mode does), and the plain allowance ``factor`` covers the
   rest of the path. A change beyond compounds: 24 unnormalized He blocks grow about
   1e11-fold against 2,410; in ``keras-initlab residual``'s runs Xavier's 16-block CNN
   (196-fold, trains) stays within its 1,610 and its 32-block MLP (2e5-fold, diverges)
   does not. It **shrinks** beyond the rule when ``1 / r > factor`` (sums never
   shrink a signal). Of each kind the pair reported is the one whose ratio exceeds its
   threshold most (or comes closest to it), with its per-layer gain, the geometric mean
   ``r ** (1 / n)`` over the ``n`` path layers it spans.
4. **Verdict.** ``"exploding"``: a value that is not finite, or a growth beyond the rule;
   else ``"vanishing"``: a shrink beyond the rule, or a gradient that is exactly 0 on the
   main path (no signal reaches the weights there; the inside of a zero-initialized
   residual branch is off the path, so it does not count); else ``"ok"``.

The default ``factor`` (`DEPTH_FACTOR`, 10) is the monitor's ``alert_factor``. Known
limits: a network normalized after every layer (BatchNorm in training mode, post-LN
Transformers) is judged only within its segments, so a compounding change across
normalizations is not seen; nor is a pre-norm stack whose branches' own gains grow with
depth (each pre-norm sum's change is divided out); a subclassed model is read through its
traced ``call``, its layers taken as a chain only where the call cannot be traced
(`keras_initlab.model.path`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_initlab.model.path import ModelPath

DEPTH_FACTOR = 10.0
# A change is judged over at least this many steps of the profile: over one or two it is
# one-off, not compounding (EfficientNetB0's first squeeze-and-excite gate and swish take
# its signal down 12.8-fold in two steps, and the next BatchNorm resets it).
MIN_SPAN = 3
KEYS = ("activation_var", "gradient_var")
_DIRECTION = {"activation_var": "forward", "gradient_var": "backward"}


@dataclass(frozen=True)
class Change:
    """The largest growth or shrink of one profile (see the module doc, rule 3).

    Attributes:
        key: ``"activation_var"`` or ``"gradient_var"``.
        direction: ``"grows"`` or ``"shrinks"``, along the signal (forward for activations,
            backward for gradients).
        factor: the change, ``>= 1`` (``v_j / v_i`` for growth, ``v_i / v_j`` for shrinking).
        threshold: the factor beyond which it compounds (``factor * (1 + factor * sums)``
            for growth).
        start, end: the layers between which it happens, in signal order.
        layers: the path layers it spans (steps of the profile).
        sums: the sums between ``start`` and ``end`` (residual sums forward, forks backward).
    """

    key: str
    direction: str
    factor: float
    threshold: float
    start: str
    end: str
    layers: int
    sums: int

    @property
    def exceeds(self) -> bool:
        """Whether the change compounds beyond the rule."""
        return self.factor > self.threshold

    @property
    def per_layer(self) -> float:
        """Geometric-mean change per path layer, ``factor ** (1 / layers)``."""
        return self.factor ** (1.0 / max(self.layers, 1))

    @property
    def signal(self) -> str:
        """``"forward"`` (activations) or ``"backward"`` (gradients)."""
        return _DIRECTION[self.key]

    def describe(self) -> str:
        """One sentence: what changes, by how much, where."""
        what = "activation variance" if self.key == "activation_var" else "squared gradient norm"
        allowance = (
            f" (allowed: {self.threshold:.3g}, linear growth over {self.sums} sum(s))"
            if self.sums and self.direction == "grows"
            else f" (allowed: {self.threshold:.3g})"
        )
        return (
            f"the {what} {self.direction} by a factor of {self.factor:.3g} {self.signal} from "
            f"{self.start!r} to {self.end!r}, x{self.per_layer:.3g} per layer over "
            f"{self.layers} layer(s){allowance}"
        )


@dataclass(frozen=True)
class Judgement:
    """What the depth rule finds in one profile.

    Attributes:
        changes: the largest growth and shrink of each signal (whether beyond the rule or not).
        zero_gradient: path layers whose gradient variance is exactly 0, in backward order.
        non_finite: ``(key, layer)`` of values that are NaN or infinite.
    """

    changes: tuple[Change, ...]
    zero_gradient: tuple[str, ...] = ()
    non_finite: tuple[tuple[str, str], ...] = ()

    @property
    def faults(self) -> list[Change]:
        """The changes beyond the rule, largest excess first."""
        beyond = [c for c in self.changes if c.exceeds]
        return sorted(beyond, key=lambda c: -math.log(c.factor / c.threshold))

    @property
    def verdict(self) -> str:
        """``"exploding"``, ``"vanishing"`` or ``"ok"`` (module doc, rule 4)."""
        if self.non_finite or any(c.direction == "grows" for c in self.faults):
            return "exploding"
        if self.faults or self.zero_gradient:
            return "vanishing"
        return "ok"

    def change(self, key: str, direction: str) -> Change | None:
        """The change of ``key`` in ``direction``, if the profile had two points."""
        return next((c for c in self.changes if (c.key, c.direction) == (key, direction)), None)


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(float(value))


def judge(
    rows: Sequence[Mapping[str, Any]],
    *,
    factor: float = DEPTH_FACTOR,
    path: ModelPath | None = None,
    structural: Mapping[str, tuple[float, float]] | None = None,
) -> Judgement:
    """Judge one profile by the depth rule (module doc).

    Args:
        rows: per layer, in forward order, dicts with ``layer``, ``activation_var`` and
            ``gradient_var`` (records of `measure`/`VarianceMonitor`, or rows of
            `propagate` as dicts).
        factor: the allowed change across depth (> 1).
        path: the model's `ModelPath`; None: ``rows`` are a plain chain of hidden layers,
            every one judged.
        structural: per path name, the cumulative one-off factors ``(activation,
            gradient)`` of `structural_factors` (None: nothing divided out).

    Returns:
        A `Judgement`.

    Example:
    >>> rows = [{"layer": f"h{i}", "activation_var": 0.5**i, "gradient_var": 1.0}
    ...         for i in range(8)]
    >>> j = judge(rows)
    >>> j.verdict, round(j.faults[0].factor), round(j.faults[0].per_layer, 2)
    ('vanishing', 128, 2.0)
    """
    if not factor > 1.0:
        raise ValueError(f"Argument `factor` must be greater than 1. Received: factor={factor}")
    chosen, segments = _on_path(rows, path)
    non_finite = [
        (key, str(r["layer"]))
        for key in KEYS
        for r in (chosen if key == "activation_var" else reversed(chosen))
        if r.get(key) is not None and not math.isfinite(float(r[key]))
    ]
    zero = [str(r["layer"]) for r in reversed(chosen) if r.get("gradient_var") == 0.0]
    sums = {
        "activation_var": path.sums if path is not None else set(),
        "gradient_var": path.forks if path is not None else set(),
    }
    structural = structural or {}
    additive = path.normalized_sums if path is not None else set()
    elements = path.elements if path is not None else {}
    changes: list[Change] = []
    for k, key in enumerate(KEYS):
        # Forward, the first layer with weights maps the input data's scale (rule 1).
        start = 1 if key == "activation_var" and path is not None and path.weighted else 0
        points = [
            (str(r["layer"]), float(r[key]), str(r["layer"]) in sums[key])
            for r in chosen[start:]
            if _finite(r.get(key)) and float(r[key]) > 0
        ]
        values = np.log([v for _, v, _ in points]) if points else np.zeros(0)
        if key == "gradient_var":  # squared norm per sample (rule 1)
            values = values + np.log([elements.get(n, 1) for n, _, _ in points])
        offsets = np.array([math.log(structural.get(n, (1.0, 1.0))[k]) for n, _, _ in points])
        values = values - offsets if key == "activation_var" else values + offsets
        values = values - _additive_steps(values, [n in additive for n, _, _ in points], key)
        # Sums between two points: an Add's sum is in its own output (forward: counted at
        # it); a fork's sum is in the gradient of its output, which flows on to the points
        # before it (backward: counted after it, an exclusive count in forward order).
        own = np.array([s for _, _, s in points], float)
        counts = np.cumsum(own) - (own if key == "gradient_var" else 0.0)
        names = [n for n, _, _ in points]
        parts = np.array([segments.get(n, 0) for n in names])
        if key == "gradient_var":  # the gradient travels backward
            values, counts, names, parts = values[::-1], counts[::-1], names[::-1], parts[::-1]
        changes += _largest(key, values, counts, names, parts, factor)
    return Judgement(tuple(changes), tuple(zero), tuple(non_finite))


def _additive_steps(values: np.ndarray, marks: list[bool], key: str) -> np.ndarray:
    """Per point (forward order), the log changes of the profile ``values`` across the sums
    of normalized branches (``marks``) to divide out (rule 2): forward, the change from the
    point before each such sum to it, summed over the sums up to each point; backward, the
    gradient's change across it, summed over the sums after each point."""
    steps = np.zeros(len(values))
    for i in range(1, len(values)):
        if marks[i]:
            steps[i] = values[i] - values[i - 1]
    if key == "activation_var":
        return np.cumsum(steps)
    return -(np.cumsum(steps[::-1])[::-1] - steps)


def _on_path(
    rows: Sequence[Mapping[str, Any]], path: ModelPath | None
) -> tuple[list[Mapping[str, Any]], dict[str, int]]:
    """The rows the rule judges (module doc, rule 1), in forward order, and per path name
    its segment: the number of scale resets (`ModelPath.resets`) up to it."""
    if path is None:
        return list(rows), {}
    segments: dict[str, int] = {}
    resets = 0
    for name in path.nodes:
        resets += name in path.resets
        segments[name] = resets
    judged = set(segments) - path.outputs - path.one_off
    on_path = [r for r in rows if r["layer"] in judged]
    first = next((i for i, r in enumerate(on_path) if r["layer"] in path.weighted), 0)
    chosen = [r for r in on_path[first:] if r["layer"] not in path.normalized]
    return chosen, segments


def _largest(
    key: str,
    logs: np.ndarray,
    counts: np.ndarray,
    names: list[str],
    parts: np.ndarray,
    factor: float,
) -> list[Change]:
    """The largest growth and the largest shrink over the ordered pairs of a log-profile
    that lie in one segment (no scale reset between them)."""
    n = len(logs)
    upper = np.triu(np.ones((n, n), bool), k=MIN_SPAN) & (parts[None, :] == parts[:, None])
    if not upper.any():
        return []
    diff = logs[None, :] - logs[:, None]  # log(v_j / v_i)
    sums = np.abs(counts[None, :] - counts[:, None])
    allowed = np.log(factor * (1.0 + factor * sums))
    out = []
    for direction, change, limit in (
        ("grows", diff, allowed),
        ("shrinks", -diff, np.full_like(diff, math.log(factor))),
    ):
        excess = np.where(upper, change - limit, -np.inf)
        i, j = np.unravel_index(int(np.argmax(excess)), excess.shape)
        out.append(
            Change(
                key,
                direction,
                float(math.exp(change[i, j])),
                float(math.exp(limit[i, j])),
                names[i],
                names[j],
                int(j - i),
                int(sums[i, j]),
            )
        )
    return out


def _gain(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or 1 where that is not a finite positive number."""
    gain = numerator / denominator if denominator > 0 else math.nan
    return gain if math.isfinite(gain) and gain > 0 else 1.0


def structural_factors(report: Any, path: ModelPath) -> dict[str, tuple[float, float]]:
    """Cumulative one-off factors along the path, from a `propagate` report.

    At each one-off layer ``n`` on the path (`ModelPath.one_off`) fed by ``p``, the
    predicted activation gain is ``act(n) / act(p)`` and the backward gain of the
    gradient's squared norm ``grad(p) e(p) / (grad(n) e(n))`` (``e``: elements per
    sample); each path name maps to the products of those gains over the one-off layers
    up to it (itself included). A gain that rests on an assumption of `propagate` (the
    activations of either row for the forward gain, their gradients for the backward one),
    or is not finite and positive, contributes 1: its change stays in the profile.

    Args:
        report: a `keras_initlab.propagate` report of the model.
        path: the model's `ModelPath`.

    Returns:
        ``{name: (activation factor, gradient factor)}`` for every path name.
    """
    rows = report.by_layer()
    act = grad = 1.0
    out: dict[str, tuple[float, float]] = {}
    for name in path.nodes:
        producer = path.producer.get(name, "")
        if name in path.one_off and producer in rows and name in rows:
            n, p = rows[name], rows[producer]
            norms = path.elements.get(producer, 1) / path.elements.get(name, 1)
            if not (n.assumes or p.assumes):
                act *= _gain(n.activation_var, p.activation_var)
            if not (n.gradient_assumes or p.gradient_assumes):
                grad *= _gain(p.gradient_var * norms, n.gradient_var)
        out[name] = (act, grad)
    return out
