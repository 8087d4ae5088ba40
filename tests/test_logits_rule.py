"""The logits rule (`keras_initlab.logits_rule`) against NumPy references and its theory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_initlab.logits_rule import MARGIN, LogitsFinding, judge_logits


def _log_softmax(z):
    top = z.max(axis=-1, keepdims=True)
    return z - top - np.log(np.exp(z - top).sum(axis=-1, keepdims=True))


def test_the_variance_and_loss_are_the_numpy_ones():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 5, 7)) * 3.0 + rng.standard_normal((6, 5, 1))
    ids = rng.integers(0, 7, (6, 5))
    finding = judge_logits(z, ids)
    assert finding.classes == 7
    # Across classes, C - 1 degrees of freedom, averaged over samples and positions: the
    # per-sample shift (the second term) drops out.
    reference = np.mean([np.var(row, ddof=1) for row in z.reshape(-1, 7)])
    assert finding.variance == pytest.approx(reference, rel=1e-12)
    picked = np.take_along_axis(_log_softmax(z), ids[..., None], -1)
    assert finding.loss == pytest.approx(-picked.mean(), rel=1e-12)
    one_hot = np.eye(7)[ids]
    assert judge_logits(z, one_hot).loss == pytest.approx(finding.loss, rel=1e-12)
    assert judge_logits(z, ids[..., None]).loss == pytest.approx(finding.loss, rel=1e-12)


@pytest.mark.parametrize("classes", [2, 7, 10, 1000])
def test_the_limit_is_twice_the_transition(classes):
    limit = MARGIN * 2 * math.log(classes)
    assert LogitsFinding(limit, classes).limit == pytest.approx(limit, rel=1e-15)
    assert not LogitsFinding(limit, classes).exceeds
    assert LogitsFinding(limit * (1 + 1e-12), classes).exceeds
    assert not LogitsFinding(math.nan, classes).exceeds  # the non-finite alert's
    assert not LogitsFinding(math.inf, classes).exceeds


def test_below_the_transition_the_expected_loss_is_ln_c_plus_half_the_variance():
    """iid N(0, s2) logits, C = 1000, s2 = 1: E[loss] = ln C + s2 / 2 less (e^s2 - 1) / (2C)
    (the log of a sum of C log-normals, to second order): 0.0009. Over n = 20,000 samples
    the mean loss errs by its std over sqrt(n) (the loss of one sample has std about s = 1,
    measured below): within 5 standard errors plus that bias."""
    rng = np.random.default_rng(1)
    n, classes, s2 = 20_000, 1000, 1.0
    z = rng.standard_normal((n, classes)) * math.sqrt(s2)
    ids = rng.integers(0, classes, n)
    losses = -np.take_along_axis(_log_softmax(z), ids[:, None], -1)[:, 0]
    finding = judge_logits(z, ids)
    assert not finding.exceeds
    bound = 5 * losses.std() / math.sqrt(n) + (math.exp(s2) - 1) / (2 * classes)
    assert abs(finding.loss - finding.expected_loss) <= bound
    expected = math.log(classes) + finding.variance / 2  # its measured variance
    assert finding.expected_loss == pytest.approx(expected, rel=1e-15)


def test_beyond_the_transition_the_loss_grows_with_the_std():
    """s = 8 over 1000 classes (a tied embedding drawn at std 1 over 64 features): the
    softmax is dominated by its largest logits and the loss (28 measured on GPT-2) is of
    the order of s sqrt(2 ln C) = 29.7, far above ln C = 6.9; the random energy model's
    log Z lies between the largest logit and s sqrt(2 ln C)."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal((4000, 1000)) * 8.0
    ids = rng.integers(0, 1000, 4000)
    finding = judge_logits(z, ids)
    assert finding.exceeds
    expected = math.sqrt(finding.variance * 2 * math.log(1000))  # about 8 sqrt(2 ln C)
    assert finding.expected_loss == pytest.approx(expected, rel=1e-15)
    assert 3 * math.log(1000) < finding.loss <= finding.expected_loss


@pytest.mark.parametrize(
    ("logits", "labels", "named"),
    [
        (np.zeros((3, 1)), None, "logits"),
        (np.zeros((3, 4)), np.zeros((3, 2)), "labels"),
        (np.zeros((3, 4)), np.array([0, 4, 1]), "labels"),
        (np.zeros((3, 4)), np.array([0, -1, 1]), "labels"),
    ],
)
def test_bad_input_is_named(logits, labels, named):
    with pytest.raises(ValueError, match=f"`{named}`"):
        judge_logits(logits, labels)
