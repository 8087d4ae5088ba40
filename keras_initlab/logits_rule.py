"""The logits rule: a classifier whose softmax starts saturated.

A model trained with cross-entropy reads its logits ``z`` (its output where the loss is
``from_logits``, or what Keras' cross-entropy reads under a softmax output). At
initialization the logits of one sample are close to iid over its ``C`` classes, with
variance ``s^2`` across them. Their log-partition ``log sum_c exp(z_c)`` has two regimes,
those of the random energy model (Derrida 1981; the same transition decides when a
softmax over ``t`` keys of iid scores collapses):

* ``s^2 < 2 ln C``: the sum self-averages, ``log Z ~ ln C + s^2 / 2``; the expected
  initial loss is about ``ln C + s^2 / 2``, at most ``2 ln C``;
* ``s^2 > 2 ln C``: the largest few terms dominate, ``log Z ~ s sqrt(2 ln C)``: the model
  starts confidently wrong, its initial loss about ``s sqrt(2 ln C)``, growing with the
  logits' scale, and the softmax passes back a gradient that is concentrated on a few
  classes.

The rule finds a fault when ``s^2`` exceeds `MARGIN` (2) times the transition, ``4 ln C``
(`LogitsFinding.exceeds`): the transition is asymptotic in ``C`` and smooth for the tens of
classes of an image classifier, and past twice it the initial loss is at least
``2 sqrt(2) ln C``, 2.8 times a uniform start's. ``s^2`` is the variance across classes
(unbiased, ``C - 1`` degrees of freedom), averaged over the samples (and positions) of the
probe: a shift common to a sample's logits changes no softmax. So a stock GPT-2 (embedding
std 0.02: logits' variance 0.006 over 1000 classes) passes, and the same model with its
tied embedding drawn at std 1 (variance 64 against 27.6; initial loss 28.0 against
``ln C = 6.9``) does not; a linear head on unit-variance features gives 1 under LeCun and 2
under He (ConvNeXtLarge under He: 4.75 over 10 classes, against 9.2).

`VarianceMonitor` applies it at step 0 where the depth rule found nothing (a signal that
explodes makes large logits too), on the probe in both modes, and alerts where the softmax
starts saturated in both: what one mode's one-off behaviour explains is not the weights'
(dropout's training noise, which inference removes: an 8-layer He MLP with Dropout(0.3)
after each layer has logits of variance 34 in training mode; BatchNorm's identity at
initialization in inference mode, which training replaces: EfficientNetV2 and ResNet
logits of 1e4 to 1e12 under He).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from keras_initlab import _keras

__all__ = ["MARGIN", "LogitsFinding", "judge_logits", "model_logits"]

MARGIN = 2.0  # the rule's limit in units of the transition's variance, 2 ln C (module doc)


@dataclass(frozen=True)
class LogitsFinding:
    """What the logits rule finds in one probe's logits.

    Attributes:
        variance: ``s^2``, the logits' variance across classes, averaged over samples.
        classes: ``C``, the size of the class axis (the last).
        loss: the cross-entropy of the logits against the probe's labels, averaged (None
            without labels).
    """

    variance: float
    classes: int
    loss: float | None = None

    @property
    def limit(self) -> float:
        """``MARGIN * 2 ln C``: the variance beyond which the softmax starts saturated."""
        return MARGIN * 2.0 * math.log(self.classes)

    @property
    def exceeds(self) -> bool:
        """Whether ``s^2`` is beyond `limit` (a non-finite variance is not judged here: it
        has its own alert)."""
        return math.isfinite(self.variance) and self.variance > self.limit

    @property
    def expected_loss(self) -> float:
        """The initial loss of iid Gaussian logits of this variance (module doc), in its
        large-``C`` form: ``ln C + s^2 / 2`` below ``s^2 = 2 ln C``, ``s sqrt(2 ln C)``
        beyond."""
        log_c = math.log(self.classes)
        if self.variance > 2.0 * log_c:
            return math.sqrt(2.0 * self.variance * log_c)
        return log_c + self.variance / 2.0

    def describe(self) -> str:
        """One sentence: the variance against its limit, and the loss it makes."""
        loss = "" if self.loss is None else f", measured {self.loss:.3g}"
        return (
            f"the logits' variance across the {self.classes} classes is {self.variance:.3g}, "
            f"above {self.limit:.3g} ({MARGIN:g} x 2 ln C): the softmax starts saturated, with "
            f"an initial loss of about {self.expected_loss:.3g}{loss}, against "
            f"ln C = {math.log(self.classes):.3g} for a uniform start"
        )


def judge_logits(logits: Any, labels: Any = None) -> LogitsFinding:
    """The logits rule (module doc) on one probe's logits.

    Args:
        logits: array of shape ``(..., C)``, ``C >= 2``.
        labels: None, class ids of shape ``logits.shape[:-1]``, or one-hot (or soft)
            targets of ``logits``' shape.

    Returns:
        A `LogitsFinding`.

    Raises:
        ValueError: ``logits`` has fewer than 2 classes, or ``labels`` fits neither form.

    Example:
    >>> z = np.random.default_rng(0).standard_normal((4096, 10))
    >>> finding = judge_logits(8.0 * z)
    >>> finding.exceeds, round(finding.limit, 2)
    (True, 9.21)
    >>> judge_logits(z).exceeds
    False
    """
    z = np.asarray(logits, np.float64)
    if z.ndim < 1 or z.shape[-1] < 2:
        raise ValueError(
            f"Argument `logits` must have at least 2 classes on its last axis. "
            f"Received: logits.shape={z.shape}"
        )
    variance = float(z.var(axis=-1, ddof=1).mean()) if z.size else math.nan
    loss = None
    if labels is not None:
        top = z.max(axis=-1, keepdims=True)
        log_z = top[..., 0] + np.log(np.exp(z - top).sum(axis=-1))
        y = np.asarray(labels)
        if y.shape == z.shape:
            loss = float((log_z - (y * z).sum(axis=-1) / y.sum(axis=-1)).mean())
        elif y.shape == z.shape[:-1] or (y.shape == (*z.shape[:-1], 1)):
            ids = y.reshape(z.shape[:-1]).astype(np.int64)
            if ids.min(initial=0) < 0 or ids.max(initial=0) >= z.shape[-1]:
                raise ValueError(
                    f"Argument `labels` holds class ids outside [0, {z.shape[-1]}). "
                    f"Received: ids from {ids.min()} to {ids.max()}"
                )
            loss = float((log_z - np.take_along_axis(z, ids[..., None], -1)[..., 0]).mean())
        else:
            raise ValueError(
                "Argument `labels` must be class ids of shape logits.shape[:-1] or targets of "
                f"logits' shape. Received: labels.shape={y.shape}, logits.shape={z.shape}"
            )
    return LogitsFinding(variance, int(z.shape[-1]), loss)


def model_logits(model: Any, x: Any, mode: str = "inference") -> np.ndarray | None:
    """The logits ``model``'s compiled cross-entropy reads on ``x``: its output where the
    loss is ``from_logits``, what Keras' cross-entropy reads under a softmax output
    otherwise; None for another loss, several outputs, or an output whose logits Keras does
    not keep.

    Args:
        model: a compiled Keras model.
        x: its inputs.
        mode: ``"inference"`` or ``"training"`` (BatchNorm on the batch's statistics,
            dropout drawn: the logits the first training step reads). Either way the model
            is left as it was: its moving statistics and seed states, and the global
            random state, are put back.
    """
    from_logits = _keras.cross_entropy_from_logits(model)
    if from_logits is None:
        return None
    with _keras.kept_state(model):
        y = model(x, training=mode == "training")
    if not hasattr(y, "shape"):
        return None
    z = y if from_logits else _keras.logits_of(y)
    return None if z is None else np.asarray(keras.ops.convert_to_numpy(z))
