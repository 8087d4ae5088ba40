"""A fit with the monitor computes exactly what a fit without it computes, for every head.

Hooks outside the training step (default, probe every k batches, probe in training mode) must
leave every variable and History bit-identical; the in-step taps sit inside the step and may
only change float rounding (at most 1e-6 relative after 2 epochs). The heads are those where
Keras computes the loss from logits it finds on the output (softmax and sigmoid outputs read
through their ``_keras_logits``), a saturated one where losing that shortcut changes training
by orders of magnitude, ``from_logits=True``, several outputs and mixed precision.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_initlab.callbacks import VarianceMonitor

L = keras.layers
N, D, CLASSES = 48, 6, 5
RTOL_IN_STEP = 1e-6


def _data(head: str) -> tuple[np.ndarray, object]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype("float32")
    labels = rng.integers(0, CLASSES, N)
    onehot = keras.utils.to_categorical(labels, CLASSES)
    if head == "sigmoid":
        return x, (labels[:, None] % 2).astype("float32")
    if head == "two_outputs":
        return x, (onehot, rng.normal(size=(N, 1)).astype("float32"))
    return x, onehot


def _model(head: str) -> keras.Model:
    keras.utils.set_random_seed(7)
    inputs = keras.Input((D,))
    h = L.Dense(16, activation="relu", name="h")(inputs)
    h = L.Dropout(0.2, seed=3, name="drop")(h)
    if head == "sigmoid":
        outputs = L.Dense(1, activation="sigmoid", name="out")(h)
        loss = "binary_crossentropy"
    elif head == "logits":
        outputs = L.Dense(CLASSES, name="out")(h)
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    elif head == "two_outputs":
        outputs = [
            L.Dense(CLASSES, activation="softmax", name="out")(h),
            L.Dense(1, name="reg")(h),
        ]
        loss = ["categorical_crossentropy", "mse"]
    else:  # softmax, saturated, mixed_float16
        outputs = L.Dense(CLASSES, activation="softmax", dtype="float32", name="out")(h)
        loss = "categorical_crossentropy"
    model = keras.Model(inputs, outputs)
    if head == "saturated":  # predictions at 0/1: only the logits path keeps a gradient
        kernel = model.get_layer("out").kernel
        kernel.assign(kernel * 60.0)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss, metrics=None)
    return model


def _fit(head: str, monitor: VarianceMonitor | None) -> tuple[keras.Model, dict]:
    x, y = _data(head)
    model = _model(head)
    callbacks = [] if monitor is None else [monitor]
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=callbacks)
    return model, history.history


HEADS = ["softmax", "saturated", "sigmoid", "logits", "two_outputs", "mixed_float16"]


@pytest.fixture
def policy(request):
    if request.node.callspec.params["head"] == "mixed_float16":
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def _assert_same(watched, plain, rtol: float) -> None:
    (model, logs), (ref, ref_logs) = watched, plain
    assert logs.keys() == ref_logs.keys()
    # Same variables in the same order (seed generators take global names, so only the last
    # part of each path is compared): the monitor added none.
    names = [[v.path.rsplit("/", 1)[-1] for v in m.variables] for m in (model, ref)]
    assert names[0] == names[1]
    assert "seed_generator_state" in names[0]  # Dropout's seed stream is among those compared
    for key in ref_logs:
        a, b = np.asarray(logs[key]), np.asarray(ref_logs[key])
        if rtol == 0:
            np.testing.assert_array_equal(a, b, err_msg=key)
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=0, err_msg=key)
    for v, w in zip(model.variables, ref.variables, strict=True):
        a, b = np.asarray(v), np.asarray(w)
        if rtol == 0 or not np.issubdtype(a.dtype, np.floating):
            np.testing.assert_array_equal(a, b, err_msg=v.path)
        else:  # relative to the variable's own scale (a bias may start at exactly 0)
            scale = max(float(np.max(np.abs(b))), 1e-30)
            assert np.max(np.abs(a - b)) <= rtol * scale, v.path


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize(
    "kwargs",
    [{"every_n_batches": 2, "probe_mode": "inference"}, {"every_n_batches": 3}],
    ids=["probe", "probe_training"],
)
@pytest.mark.usefixtures("policy")
def test_probe_records_leave_training_bit_identical(head, kwargs):
    x, y = _data(head)
    monitor = VarianceMonitor((x[:16], _head_targets(y)), alert=False, **kwargs)
    _assert_same(_fit(head, monitor), _fit(head, None), rtol=0)
    assert {r["event"] for r in monitor.records} == {"train_begin", "batch", "epoch_end"}


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.usefixtures("policy")
def test_in_step_taps_change_training_only_by_rounding(head):
    x, y = _data(head)
    monitor = VarianceMonitor((x[:16], _head_targets(y)), every_n_batches=1, alert=False)
    _assert_same(_fit(head, monitor), _fit(head, None), rtol=RTOL_IN_STEP)
    steps = [r["step"] for r in monitor.records if r["source"] == "in_step" and r["layer"] == "h"]
    assert steps == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11]  # steps 6 and 12 are epoch ends


def _head_targets(y):
    return tuple(t[:16] for t in y) if isinstance(y, tuple) else y[:16]


def test_saturated_head_gradient_is_that_of_the_logits_path():
    """Keras' loss reads the logits of the saturated softmax, so dL/dh is large; through the
    clipped probabilities it would nearly vanish (the monitor's old number was 10x lower)."""
    x, y = _data("saturated")
    model = _model("saturated")
    import tensorflow as tf

    hidden = keras.Model(model.input, model.get_layer("h").output)
    with tf.GradientTape() as tape:
        h = hidden(x[:16])
        tape.watch(h)
        out = model.get_layer("out")(model.get_layer("drop")(h))
        loss = model.compute_loss(x[:16], y[:16], out, training=False)
    expected = np.var(np.asarray(tape.gradient(loss, h), np.float64))
    monitor = VarianceMonitor((x[:16], y[:16]), alert=False, probe_mode="inference")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False, callbacks=[monitor])
    begin = {r["layer"]: r for r in monitor.records if r["step"] == 0}
    np.testing.assert_allclose(begin["h"]["gradient_var"], expected, rtol=1e-4)
    assert begin["h"]["gradient_of"] == "output"
    assert begin["out"]["gradient_of"] == "logits"  # the loss does not read the probabilities


def test_gradients_include_the_regularization_train_step_differentiates():
    """``model.losses`` (here an L2 kernel penalty and an activity penalty) are part of the
    loss `train_step` differentiates, so they are part of the recorded gradients."""
    import tensorflow as tf

    x, y = _data("softmax")
    keras.utils.set_random_seed(1)
    h = L.Dense(
        16,
        activation="relu",
        kernel_regularizer=keras.regularizers.L2(0.5),
        activity_regularizer=keras.regularizers.L2(0.1),
        name="h",
    )
    out = L.Dense(CLASSES, activation="softmax", name="out")
    model = keras.Sequential([keras.Input((D,)), h, out])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="categorical_crossentropy")
    with tf.GradientTape(persistent=True) as tape:
        hidden = h(x[:16])
        data_loss = keras.losses.categorical_crossentropy(y[:16], out(hidden))
        data_loss = tf.reduce_mean(data_loss)
        # The penalties as the layer reports them after this call (0.5 sum(W^2), and the
        # activity penalty, which Keras >= 3.9 also averages over the batch).
        loss = data_loss + tf.add_n(h.losses)
    g_hidden, g_kernel = tape.gradient(loss, [hidden, h.kernel])
    plain = tape.gradient(data_loss, [hidden, h.kernel])
    monitor = VarianceMonitor((x[:16], y[:16]), alert=False)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[monitor])
    begin = {r["layer"]: r for r in monitor.records if r["step"] == 0}
    pairs = (("gradient_var", g_hidden, plain[0]), ("weight_grad_var", g_kernel, plain[1]))
    for key, g, g_plain in pairs:
        expected = np.var(np.asarray(g, np.float64))
        np.testing.assert_allclose(begin["h"][key], expected, rtol=1e-4, err_msg=key)
        # (the penalties matter: without them the variance is another number)
        assert not np.isclose(expected, np.var(np.asarray(g_plain, np.float64)), rtol=0.01)
