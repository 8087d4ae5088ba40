"""Symmetry, exponential growth/decay across depth, the NaN path, alerts and options."""

from __future__ import annotations

import contextlib
import math
import warnings

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab.callbacks import VarianceMonitor, VarianceWarning

L = keras.layers


def _xy(n=32, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


def _mlp(init, width=8, depth=3, activation="relu", d=4):
    layers = [keras.Input((d,))]
    layers += [
        L.Dense(width, activation=activation, kernel_initializer=init, name=f"h{i}")
        for i in range(depth)
    ]
    layers.append(L.Dense(1, kernel_initializer=init, name="out"))
    return keras.Sequential(layers)


def test_constant_init_keeps_one_distinct_unit_and_he_gives_all():
    x, y = _xy()
    const = _mlp(keras_initlab.Constant(0.3))
    const.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    monitor = VarianceMonitor((x, y), every_n_batches=2, alert=False, distinct_units="every_record")
    const.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[monitor])
    hidden = [r for r in monitor.records if r["layer"].startswith("h")]
    assert len({r["step"] for r in hidden}) == 5  # step 0, 2 batch records, 2 epoch ends
    assert {r["distinct_units"] for r in hidden} == {1}

    he = _mlp(keras_initlab.HeNormal(seed=1), activation="tanh")
    he.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    monitor = VarianceMonitor((x, y), alert=False)
    he.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    assert {r["distinct_units"] for r in monitor.records if r["layer"].startswith("h")} == {8}


def test_distinct_units_are_counted_at_the_ends_by_default_as_every_record_counts_them():
    x, y = _xy()
    counts = {}
    for when in ("ends", "every_record"):
        model = _mlp(keras_initlab.HeNormal(seed=3), width=16)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        model.layers[1].kernel.assign(np.repeat(model.layers[1].kernel.numpy()[:, :4], 4, 1))
        monitor = VarianceMonitor((x, y), every_n_batches=2, alert=False, distinct_units=when)
        # Unshuffled: both fits see the same batches and end at the same weights (shuffled,
        # the second fit draws other batches, and how many ReLU units end dead, alike
        # columns of zeros, can differ between them).
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[monitor], shuffle=False)
        counts[when] = {
            (r["event"], r["step"], r["layer"]): r["distinct_units"] for r in monitor.records
        }
    ends = {k for k, v in counts["ends"].items() if v is not None}
    last = max(step for _, step, _ in counts["ends"])
    assert {(event, step) for event, step, _ in ends} == {("train_begin", 0), ("epoch_end", last)}
    assert all(counts["every_record"][k] == counts["ends"][k] for k in ends)
    assert all(v is not None for v in counts["every_record"].values())
    assert counts["ends"][("train_begin", 0, "h1")] == 4  # (its 16 units: 4 columns, 4 copies)
    with pytest.raises(ValueError, match=r"distinct_units.*'sometimes'"):
        VarianceMonitor(distinct_units="sometimes")


@pytest.mark.parametrize("scale", [1.5, 0.5])
def test_identity_stack_grows_and_decays_as_scale_squared_per_layer(scale):
    depth, width = 6, 2
    x, y = _xy(n=64, d=width, seed=2)
    model = keras.Sequential(
        [keras.Input((width,))]
        + [
            L.Dense(
                width,
                use_bias=False,
                name=f"l{i}",
                kernel_initializer=keras_initlab.ScaledIdentity(scale),
            )
            for i in range(depth)
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    monitor = VarianceMonitor((x, np.zeros((64, width), "float32")), alert=False)
    model.fit(x, y.repeat(width, 1), batch_size=64, epochs=1, verbose=0, callbacks=[monitor])
    rows = [r for r in monitor.records if r["step"] == 0]
    act = np.array([r["activation_var"] for r in rows])
    grad = np.array([r["gradient_var"] for r in rows])
    # y_l = scale^(l+1) x: Var y_l = scale^(2(l+1)) Var x. With zero targets and MSE,
    # dL/dy_l = scale^(L-1-l) dL/dy_(L-1), and dL/dy_(L-1) = 2 y_(L-1) / size.
    np.testing.assert_allclose(act / act[0], (scale**2) ** np.arange(depth), rtol=1e-5)
    np.testing.assert_allclose(
        grad / grad[-1], (scale**2) ** np.arange(depth - 1, -1, -1), rtol=1e-5
    )
    np.testing.assert_allclose(act[0], np.var(x.astype(np.float64) * scale), rtol=1e-5)


def _nan_model():
    model = _mlp("glorot_uniform")
    model.layers[1].kernel.assign(np.full((8, 8), np.nan, "float32"))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def test_nan_is_recorded_alerted_and_training_continues():
    x, y = _xy()
    monitor = VarianceMonitor((x, y))
    # Other alerts may follow, depending on what the CPU makes of NaN (see below).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _nan_model().fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[monitor])
    assert any(issubclass(w.category, VarianceWarning) for w in caught)
    assert len(history.history["loss"]) == 2
    h1 = [r for r in monitor.records if r["layer"] == "h1"]
    # Read from the weights, whatever the CPU's fused MatMul + ReLU makes of NaN: before any
    # update the 8 x 8 NaN kernel values alone; they stay NaN, and the SGD updates may turn
    # h1's 8 biases NaN too (a CPU whose fused MatMul + ReLU maps NaN to 0 may keep them
    # finite), so later records count 64 to 72 (kernel and bias).
    assert [r["non_finite_weights"] for r in h1 if r["step"] == 0] == [64]
    assert all(64 <= r["non_finite_weights"] <= 8 * 8 + 8 for r in h1)
    assert all(math.isnan(r["weight_var"]) for r in h1)
    # Before any update, no other layer holds one (training then spreads NaN into h0).
    begin = [r for r in monitor.records if r["step"] == 0 and r["layer"] != "h1"]
    assert [r["non_finite_weights"] for r in begin] == [0, 0, 0]
    assert monitor.alerts[0].kind == "non_finite"
    assert monitor.alerts[0].layer == "h1"
    assert "'h1' holds 64 weight value(s) that are not finite" in monitor.alerts[0].message


def test_stop_on_nan_stops_training():
    x, y = _xy()
    monitor = VarianceMonitor((x, y), stop_on_nan=True, alert=False)
    history = _nan_model().fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[monitor])
    assert len(history.history["loss"]) == 1


@contextlib.contextmanager
def _keras_numpy2_quiet():
    """Drop the DeprecationWarning Keras < 3.13's own `fit` logs raise under NumPy 2, which
    `pytest.warns` would re-raise from the test's line (past the module filter)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        yield


def test_depth_alert_names_layer_factor_and_he_fix():
    x, y = _xy(d=16)
    model = _mlp(keras.initializers.RandomNormal(stddev=0.05, seed=3), width=16, depth=5, d=16)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    monitor = VarianceMonitor((x, y), alert_factor=10.0)
    with _keras_numpy2_quiet(), pytest.warns(VarianceWarning, match="variance shrinks") as caught:
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    ours = [w for w in caught if issubclass(w.category, VarianceWarning)]
    assert len(ours) == len(monitor.alerts) == 2  # activations and gradients both shrink
    alert = next(a for a in monitor.alerts if a.kind == "activation_var")
    assert alert.factor > 10.0
    assert alert.layer.startswith("h")
    assert alert.cause == "weights"
    assert alert.fix == {"scheme": "he_normal"}
    assert alert.checked
    assert "keras_initlab.initialize(model, 'he_normal')" in alert.advice
    assert str(alert) == alert.message
    assert alert.layer in alert.message


def test_probe_without_targets_gives_activations_only():
    x, y = _xy()
    model = _mlp("glorot_uniform")
    model.compile(optimizer="sgd", loss="mse")
    monitor = VarianceMonitor(x, alert=False)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    assert all(r["gradient_var"] is None and r["weight_grad_var"] is None for r in monitor.records)
    assert all(r["activation_var"] > 0 for r in monitor.records)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"every_n_batches": 0}, "every_n_batches"),
        ({"alert_factor": -1.0}, "alert_factor"),
        ({"in_step": True}, "in_step"),
        ({"layers": ["dense_typo"]}, "Did you mean"),
        ({"probe_mode": "train"}, r"`probe_mode` must be one of \('inference', 'training'\)"),
    ],
)
def test_bad_arguments(kwargs, match):
    x, y = _xy()

    def run():
        monitor = VarianceMonitor((x, y), **kwargs)
        model = keras.Sequential([keras.Input((4,)), L.Dense(2, name="dense_typ")])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, y.repeat(2, 1), epochs=1, verbose=0, callbacks=[monitor])

    with pytest.raises(ValueError, match=match):
        run()


@pytest.mark.parametrize(
    ("probe", "match"),
    [
        (np.zeros((0, 4), "float32"), r"at least one sample. Received: x of shape \(0, 4\)"),
        (
            (np.zeros((4, 4), "float32"), np.full((4, 1), np.nan, "float32")),
            r"finite values. Received: y with 4 NaN or Inf value\(s\) of 4",
        ),
        (np.array([[1.0, np.inf, 0.0, 0.0]], "float32"), "finite values. Received: x with 1"),
    ],
)
def test_empty_or_non_finite_probe_is_refused_at_once(probe, match):
    with pytest.raises(ValueError, match=match):
        VarianceMonitor(probe)


def test_empty_probe_dataset_is_refused_when_training_starts():
    import tensorflow as tf

    x, y = _xy()
    empty = tf.data.Dataset.from_tensor_slices((x, y)).take(0).batch(4)
    model = keras.Sequential([keras.Input((4,)), L.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="empty dataset"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[VarianceMonitor(empty)])


def _bn_dropout_model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(8, activation="relu", name="h0"),
            L.BatchNormalization(name="bn"),
            L.Dropout(0.3, seed=5, name="drop"),
            L.Dense(8, activation="tanh", name="h1"),
            L.Dense(1, name="out"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    return model


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"every_n_batches": 2}, {"every_n_batches": 1}],
    ids=["default", "probe", "in_step"],
)
def test_training_is_the_same_with_and_without_the_monitor(kwargs):
    """The probe pass runs in inference mode with the loss trackers untouched: BatchNorm's
    moving statistics, the dropout seed stream, the optimizer and History are those of a fit
    without the monitor (the in-step taps are identities in the forward and backward pass)."""
    x, y = _xy(n=48)
    fits = []
    for monitor in (None, VarianceMonitor((x, y), alert=False, **kwargs)):
        model = _bn_dropout_model()
        history = model.fit(
            x,
            y,
            batch_size=8,
            epochs=2,
            verbose=0,
            shuffle=False,
            callbacks=[] if monitor is None else [monitor],
        )
        fits.append((model, history.history))
    (plain, plain_logs), (watched, watched_logs) = fits
    assert watched_logs.keys() == plain_logs.keys()
    for key in plain_logs:
        np.testing.assert_allclose(watched_logs[key], plain_logs[key], rtol=1e-6, err_msg=key)
    names = [[v.path.split("/", 1)[1] for v in m.variables] for m in (watched, plain)]
    assert names[0] == names[1]  # no variable added to the model
    # BatchNorm's moving statistics and Dropout's seed state are among those compared.
    assert {"bn/moving_variance", "seed_generator_state"} <= set(names[0])
    for a, b in zip(watched.variables, plain.variables, strict=True):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7, err_msg=a.path
        )
    assert int(watched.optimizer.iterations) == int(plain.optimizer.iterations) == 12


def test_records_hold_only_python_scalars_per_layer_and_record():
    """Memory is O(layers x records) scalars: no tensor or array is kept in a record."""
    x, y = _xy()
    model = _mlp("he_normal")
    model.compile(optimizer="sgd", loss="mse")
    monitor = VarianceMonitor((x, y), every_n_batches=1, alert=False)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[monitor])
    layers = len(model.layers)
    # step 0, steps 1-3 and 5-7 in step, two epoch ends (steps 4 and 8)
    assert len(monitor.records) == layers * (1 + 6 + 2)
    kinds = {type(v) for r in monitor.records for v in r.values()}
    assert kinds <= {int, float, str, type(None)}, kinds


def test_in_step_records_of_a_layer_before_the_first_weights():
    """An input Normalization (as in EfficientNet) has no gradient in the training step,
    whose tape does not watch the inputs: its in-step records say so (``gradient_of`` and
    ``gradient_var`` None, not a zero that reads as a vanished gradient), its probe records
    have the gradient, and the other layers' records are whole."""
    x, y = _xy()
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Normalization(axis=-1, name="scale"),
            keras.layers.Dense(8, activation="relu", name="h"),
            keras.layers.Dense(y.shape[1], name="out"),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    monitor = VarianceMonitor((x, y), every_n_batches=1, alert=False)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    in_step = [r for r in monitor.records if r["source"] == "in_step"]
    scale = [r for r in in_step if r["layer"] == "scale"]
    assert scale
    assert all(r["gradient_var"] is None and r["gradient_of"] is None for r in scale)
    assert all(math.isfinite(r["activation_var"]) for r in scale)
    probed = [r for r in monitor.records if r["source"] == "probe" and r["layer"] == "scale"]
    assert probed
    assert all(r["gradient_var"] > 0 and r["gradient_of"] == "output" for r in probed)
    assert all(
        math.isfinite(r["activation_var"]) and r["gradient_var"] > 0
        for r in in_step
        if r["layer"] != "scale"
    )


def test_tensorflow_retracing_warning_about_the_monitor_is_dropped():
    """Each monitor traces its own probe once per model; TensorFlow's detector (keyed on the
    code object) would call that "retracing" after a few models. Other warnings pass."""
    import logging

    import tensorflow as tf

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = tf.get_logger()
    logger.addHandler(handler)
    try:
        template = (
            "5 out of the last 9 calls to <function {} at 0x1> triggered tf.function retracing."
        )
        for name in ("make_probe_function.<locals>.probe", "InStepTaps._read_impl", "user_fn"):
            logger.warning(template.format(name))
    finally:
        logger.removeHandler(handler)
    assert seen == [template.format("user_fn")]


def test_a_gradient_that_is_exactly_zero_below_a_dead_layer_is_alerted():
    """Every unit of h1 is dead (bias -100), so no gradient reaches h1's kernel or h0: a
    max/min ratio over the positive values cannot see that; the zero-gradient alert does."""
    x, y = _xy()
    model = _mlp("glorot_uniform", depth=3)
    model.get_layer("h1").bias.assign(np.full((8,), -100.0, "float32"))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    monitor = VarianceMonitor((x, y))
    with _keras_numpy2_quiet(), pytest.warns(VarianceWarning, match="exactly 0 on the main"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    begin = {r["layer"]: r for r in monitor.records if r["step"] == 0}
    assert begin["h1"]["dead_fraction"] == 1.0
    assert begin["h1"]["gradient_var"] == begin["h0"]["gradient_var"] == 0.0
    zero = [a for a in monitor.alerts if a.kind == "gradient_zero"]
    assert [a.layer for a in zero] == ["h1"]  # the deepest layer it reaches no more
    assert "2 layer(s)" in zero[0].what
    assert "'h1' is dead" in zero[0].what  # every unit outputs 0 on the probe
    # Re-drawing the weights (the biases with them) is predicted to pass: the cause is them.
    assert zero[0].cause == "weights"
    assert zero[0].fix == {"scheme": "he_normal"}


def test_one_alert_never_suppresses_another():
    """A NaN layer must not hide a depth change (an old check returned at the first
    non-finite value): both are found in one record."""
    from keras_initlab.callbacks._alerts import alerts_for
    from keras_initlab.depth_rule import judge

    rows = [
        {
            "layer": f"d{i}",
            "activation_var": 100.0**i,
            "gradient_var": 1.0,
            "non_finite_weights": 0,
        }
        for i in range(4)
    ]
    rows.append(dict(rows[0], layer="nan", activation_var=math.nan, non_finite_weights=3))
    found = alerts_for(rows, judge(rows), epoch=0, step=0, diagnosis=None)
    assert [(a.kind, a.layer) for a in found] == [("non_finite", "nan"), ("activation_var", "d0")]
    assert all(not a.checked and a.fix is None for a in found)  # no model: nothing checked
