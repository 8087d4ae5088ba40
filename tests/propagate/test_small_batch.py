"""What a measurement on a small batch sees: training-mode BatchNormalization and a softmax.

Both predictions depend on the batch size ``propagate`` is given. Each is checked against
repeated GradientTape measurements of fresh batches on fixed weights, with a bound from the
number of repeats (a mean: z* standard errors; a median: the binomial count of the
repeats below it), and each check also shows that the large-batch prediction (no
``batch_size``) lies outside that bound, so the test can tell the two apart.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_initlab
from keras_initlab.propagate._moments import MIN_GROUPS, SOFTMAX_DRAWS
from keras_initlab.testing import budget

L = keras.layers


def _gradient_repeats(model, layer_name, batch, repeats, shape, seed):
    """Per repeat: the mean of ``(dL/dh)^2`` over the elements of ``layer_name``'s output
    ``h``, with ``L = sum y * u`` (``u`` iid N(0, 1): ``dL/dy = u``), in training mode."""
    index = [layer.name for layer in model.layers].index(layer_name)
    first, rest = model.layers[: index + 1], model.layers[index + 1 :]

    @tf.function
    def step(x, u):
        h = x
        for layer in first:
            h = layer(h, training=True)
        with tf.GradientTape() as tape:
            tape.watch(h)
            y = h
            for layer in rest:
                y = layer(y, training=True)
            loss = tf.reduce_sum(y * u)
        return tf.reduce_mean(tape.gradient(loss, h) ** 2)

    rng = np.random.default_rng(seed)
    values = []
    for _ in range(repeats):
        x = tf.constant(rng.standard_normal((batch, *shape)), tf.float32)
        u = tf.constant(rng.standard_normal((batch, *model.output_shape[1:])), tf.float32)
        values.append(float(step(x, u)))
    return np.array(values)


def _softmax_classifier(width: int, pre_std: float, bias_std: float = 0.0) -> keras.Model:
    """``Dense(width) -> Dense(10, softmax)``: the first layer's kernel N(0, pre_std^2) and
    bias N(0, bias_std^2) (a part of the logits common to all samples), the second's
    kernel N(0, 1/width)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((width,)),
            L.Dense(
                width,
                name="pre",
                kernel_initializer=keras.initializers.RandomNormal(stddev=pre_std, seed=0),
                bias_initializer=keras.initializers.RandomNormal(stddev=bias_std, seed=1),
            ),
            L.Dense(
                10,
                activation="softmax",
                name="out",
                kernel_initializer=keras.initializers.RandomNormal(
                    stddev=math.sqrt(1.0 / width), seed=2
                ),
            ),
        ]
    )


def _a_batch_median(measured: np.ndarray, value: float, batch: int) -> bool:
    """Whether ``value`` is a median of the measured batches: the share below it within
    the binomial bound of 1/2, the prediction's own groups of `SOFTMAX_DRAWS` fixed draws
    counted in."""
    groups = SOFTMAX_DRAWS // batch
    assert groups >= MIN_GROUPS
    below = float(np.mean(measured < value))
    return abs(below - 0.5) <= budget().z * math.sqrt(0.25 / len(measured) + 0.25 / groups)


def test_batch_normalization_backward_on_a_small_batch():
    """Dense -> BatchNormalization (training) -> Dense at batch 8 on a flat input (8 values
    per channel): the gradient at the normalization's input is ``(n - 2) / (n - 3)`` = 1.2
    times the large-batch ``gamma^2 / sigma^2`` (the batch variance's spread and the two
    projections); the mean of 3000 repeats lies within z* standard errors of the
    prediction and the large-batch one does not."""
    batch, repeats = 8, 3000
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32,)),
            L.Dense(64, use_bias=False, name="pre"),
            L.BatchNormalization(),
            L.Dense(10, name="out"),
        ]
    )
    measured = _gradient_repeats(model, "pre", batch, repeats, (32,), seed=1)
    small = keras_initlab.propagate(model, mode="training", batch_size=batch)
    large = keras_initlab.propagate(model, mode="training")
    row = next(r for r in small if r.layer == "pre")
    large_row = next(r for r in large if r.layer == "pre")
    assert row.gradient_var / large_row.gradient_var == pytest.approx(6 / 5)
    z = budget().z
    half = z * measured.std(ddof=1) / math.sqrt(repeats)
    assert abs(measured.mean() - row.gradient_var) <= half, (measured.mean(), row.gradient_var)
    assert abs(measured.mean() - large_row.gradient_var) > half  # the test has the power


def test_saturated_softmax_gradient_is_a_batch_median():
    """A Dense softmax over 10 classes with logits of variance about 1e4: one batch of 16
    passes a gradient that varies by orders of magnitude with its draw, and its mean over
    batches rests on rare near ties. The prediction for ``batch_size=16`` is a median:
    the share of 400 measured batches below it is within the binomial bound of 1/2 (the
    prediction's own groups of fixed draws counted in); the expectation (no
    ``batch_size``), several times higher, is not a median of the batches, and the mean of
    the 400 batches lies within z* standard errors of it."""
    batch, repeats, width = 16, 400, 64
    model = _softmax_classifier(width, math.sqrt(1e4 / width))
    measured = _gradient_repeats(model, "pre", batch, repeats, (width,), seed=2)
    typical = [r for r in keras_initlab.propagate(model, batch_size=batch) if r.layer == "pre"]
    mean = [r for r in keras_initlab.propagate(model) if r.layer == "pre"]
    assert _a_batch_median(measured, typical[0].gradient_var, batch)
    assert not _a_batch_median(measured, mean[0].gradient_var, batch)  # the test has the power
    z = budget().z
    half = z * measured.std(ddof=1) / math.sqrt(repeats)
    assert abs(measured.mean() - mean[0].gradient_var) <= half, (measured.mean(), half)


def test_a_softmax_whose_logits_share_a_common_part():
    """A classifier's logits carry a part common to all samples (here the first layer's
    bias, through the second layer: std about 10 across the classes, against a per-sample
    spread of about 4), so one class wins for most samples and a batch's gradient rests on
    how close the runners-up come. The prediction for ``batch_size=16``, which draws each
    logit about its own mean, is a median of 400 measured batches (the binomial bound of
    `test_saturated_softmax_gradient_is_a_batch_median`); the iid stand-in that takes the
    common part as variance across the classes is not."""
    from keras_initlab.propagate._moments import softmax_sums

    batch, repeats, width, classes = 16, 400, 64, 10
    model = _softmax_classifier(width, 0.5, bias_std=10.0)
    measured = _gradient_repeats(model, "pre", batch, repeats, (width,), seed=3)
    row = next(r for r in keras_initlab.propagate(model, batch_size=batch) if r.layer == "pre")
    assert _a_batch_median(measured, row.gradient_var, batch)
    w1, b1 = model.get_layer("pre").get_weights()
    w2 = model.get_layer("out").get_weights()[0]
    common = b1 @ w2
    per_sample = (w1**2).sum(axis=0) @ w2**2
    spread = float(np.var(common) + per_sample.mean())
    stand_in = softmax_sums(spread, classes, batch)[1] * float((w2**2).sum(axis=1).mean())
    assert not _a_batch_median(measured, stand_in, batch)


@pytest.mark.parametrize(("gap", "std", "saturated"), [(200.0, 5.0, True), (2.0, 2.0, False)])
def test_a_softmax_saturated_beyond_float32_passes_back_no_predicted_gradient(gap, std, saturated):
    """Logits whose parts common to all samples lie ``gap`` apart (the bias), with a
    per-sample spread of std ``std``: at a gap of 200 (std 5) the softmax is one-hot to
    float32 and the
    gradient a batch of 16 passes back (float64 NumPy on the drawn weights: the median over
    256 batches of the batch's mean of ``E[dz^2] / E[dy^2]``) lies far below float32's
    rounding of it, ``(2^-24 / 10)^2``. propagate predicts the softmax's output, says why
    it does not predict the gradient it passes back, and the row below is ``"upstream"``,
    naming it. At a gap of 2 (std 2) float32 resolves the gradient, and batches of 16 agree
    within `SPREAD_LIMIT` (std 5 there: 2.4x, near saturation): all predicted."""
    width, classes, batch = 64, 10, 16
    keras.utils.set_random_seed(0)
    out = L.Dense(
        classes,
        activation="softmax",
        name="out",
        kernel_initializer=keras.initializers.RandomNormal(stddev=std / math.sqrt(width), seed=1),
        bias_initializer=keras.initializers.Constant(-gap * np.arange(classes)),
    )
    model = keras.Sequential([keras.Input((width,)), L.Dense(width, name="pre"), out])
    model.get_layer("pre").set_weights([np.eye(width), np.zeros(width)])
    rows = keras_initlab.propagate(model, batch_size=batch).by_layer()
    x = np.random.default_rng(0).standard_normal((256 * batch, width))
    w, b = (v.astype(np.float64) for v in out.get_weights())
    z = x @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    energy = np.sum(p * p * (1.0 - 2.0 * p + np.sum(p * p, axis=1, keepdims=True)), axis=1)
    typical = float(np.median(energy.reshape(-1, batch).mean(axis=1))) / classes
    assert (typical < (2.0**-24 / classes) ** 2) == saturated, typical
    assert rows["out"].status == "predicted"
    if saturated:
        assert "saturated beyond float32" in rows["out"].note
        assert rows["pre"].status == "upstream"
        assert rows["pre"].gradient_assumes == ("out",)
    else:
        assert rows["pre"].status == "predicted", rows["pre"].note


@pytest.mark.parametrize(("logit_var", "near"), [(1e4, True), (1.0, False)])
def test_a_softmax_near_saturation_passes_back_no_predicted_gradient(logit_var, near):
    """Logits of variance 1e4 over 10 classes: the gradient a batch of 16 passes back moves
    by orders of magnitude from batch to batch (400 measured batches: their 90th percentile
    over their 10th, far above `SPREAD_LIMIT`), so one batch's value is luck; propagate
    predicts the softmax's output, names the spread, and the row below is ``"upstream"``.
    Logits of variance 1: the batches agree within a few percent, all predicted."""
    from keras_initlab.propagate._activations import SPREAD_LIMIT

    batch, repeats, width = 16, 400, 64
    model = _softmax_classifier(width, math.sqrt(logit_var / width))
    measured = _gradient_repeats(model, "pre", batch, repeats, (width,), seed=4)
    low, high = np.quantile(measured, [0.1, 0.9])
    assert (high > SPREAD_LIMIT * low) == near, (low, high)
    rows = keras_initlab.propagate(model, batch_size=batch).by_layer()
    assert rows["out"].status == "predicted"
    if near:
        assert "near saturation" in rows["out"].note, rows["out"].note
        assert rows["pre"].status == "upstream"
        assert rows["pre"].gradient_assumes == ("out",)
    else:
        assert rows["pre"].status == "predicted", rows["pre"].note


class _CausalSoftmax(L.Layer):
    """A softmax over the keys each query sees (query ``t``: keys ``0..t``)."""

    def __init__(self, length: int, **kwargs):
        super().__init__(**kwargs)
        self.length = length
        self.softmax = L.Softmax(name="softmax")

    def call(self, logits):
        mask = keras.ops.cast(keras.ops.tril(keras.ops.ones((self.length, self.length))), "bool")
        return self.softmax(logits, mask=mask[None])


def test_a_causal_softmax_spreads_as_all_its_rows_together():
    """Logits of variance 9 over causal prefixes of 16 keys: the second query's two keys
    alone pass back a gradient that moves by far more than `SPREAD_LIMIT` between batches
    of 16, but a measurement sees all 16 queries together, whose sum moves by less (400
    measured batches); the softmax's gradient is predicted."""
    from keras_initlab.propagate import _moments
    from keras_initlab.propagate._activations import SPREAD_LIMIT

    batch, repeats, t, width = 16, 400, 16, 32
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((t, width)),
            L.Dense(
                t,
                name="pre",
                kernel_initializer=keras.initializers.RandomNormal(
                    stddev=math.sqrt(9.0 / width), seed=0
                ),
            ),
            _CausalSoftmax(t, name="out"),
        ]
    )
    two_keys = _moments._drawn_sums(3.0 * _moments._softmax_draws(2), batch)[3]
    assert _moments._spread(two_keys) > SPREAD_LIMIT
    measured = _gradient_repeats(model, "pre", batch, repeats, (t, width), seed=5)
    low, high = np.quantile(measured, [0.1, 0.9])
    assert high < SPREAD_LIMIT * low, (low, high)
    rows = keras_initlab.propagate(model, batch_size=batch).by_layer()
    assert rows["pre"].status == "predicted", rows["pre"].note
