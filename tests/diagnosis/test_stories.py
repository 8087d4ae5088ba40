"""The four debugging stories of the diagnosis issue, replayed on the digits.

Each broken network gets a step-0 alert that names its cause; following ``alert.fix``
literally, it trains (test accuracy >= 0.85 in every seed) with no alert at all; the deep
sigmoid stack gets no initialization as its fix (none is predicted to pass) and the
architectural change its alert names trains. After ``initialize(model, "auto")`` or any
residual rule the residual story gets no alert. Adam(1e-3), 10 epochs, seeds 0 to 2.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab.callbacks import VarianceMonitor
from tests.diagnosis import stories

# The stories train through tf.data (stories.train) and their thresholds were set on
# TensorFlow's weight draws: TensorFlow only (README: backend table).
pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]
SEEDS = (0, 1, 2)
PROBE = 64  # training rows in the monitor's probe
MIN_ACCURACY = 0.85  # the bar for a network that trains


def _data(model, seed):
    data = stories.digits(seed)
    x = stories.inputs_for(model, data.x_train[:PROBE])
    return data, (x, data.y_train[:PROBE])


def _fit(model, seed, *, epochs, **monitor_args):
    data, probe = _data(model, seed)
    monitor = VarianceMonitor(probe, **monitor_args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stories.train(model, data, seed=seed, epochs=epochs, callbacks=[monitor])
    return monitor, result


# What each story's step-0 alerts must say: the cause, the fix (None: not an
# initialization), and text the alert's why or advice must hold.
EXPECTED = {
    "sigmoid_mlp": ("architecture", None, "replace the 'sigmoid' activations with 'relu'"),
    "large_conv": ("weights", {"scheme": "he_normal"}, "12 kernel(s) depart"),
    "separable_cnn": ("weights", {"scheme": "auto"}, "fan_in = 576 instead of the true 9"),
    "residual_mlp": ("architecture", {"scheme": "he_normal", "residual": "zero"}, "no per-layer"),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("story", sorted(EXPECTED))
def test_a_broken_network_gets_a_step0_alert_naming_its_cause(story, seed):
    cause, fix, text = EXPECTED[story]
    monitor, _ = _fit(stories.build(story, seed), seed, epochs=0)
    alerts = [a for a in monitor.alerts if a.step == 0]
    assert alerts, story
    for alert in alerts:
        assert alert.kind in ("activation_var", "gradient_var")
        assert alert.cause == cause
        assert alert.fix == fix
        assert text in alert.why + alert.advice
        assert alert.checked == (fix is not None or cause == "architecture")
        for part in ("cause (", "fix", "predicted"):
            assert part in alert.message


def test_the_sigmoid_stack_is_offered_no_initialization_its_prediction_does_not_support():
    from keras_initlab.diagnosis import diagnose

    model = stories.build("sigmoid_mlp", 0)
    _, (x, _) = _data(model, 0)
    found = diagnose(model, x)
    initializations = [c for c in found.candidates if c.fix is not None]
    assert initializations  # tried: the healthy schemes and "auto"
    assert not any(c.passes for c in initializations)
    assert found.chosen is not None
    assert found.chosen.fix is None  # the change of activation
    assert found.chosen.passes


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("story", ["large_conv", "residual_mlp", "separable_cnn"])
def test_following_the_fix_literally_trains_without_any_alert(story, seed):
    model = stories.build(story, seed)
    _, fix, _ = EXPECTED[story]
    keras_initlab.initialize(model, **fix, seed=seed)  # seeded: the same draw in any order
    monitor, result = _fit(model, seed, epochs=stories.EPOCHS)
    assert [a.message for a in monitor.alerts] == []
    assert result["test_accuracy"] >= MIN_ACCURACY, result["test_accuracy"]


@pytest.mark.parametrize("seed", SEEDS)
def test_the_change_the_sigmoid_alert_names_trains(seed):
    model = stories.sigmoid_mlp(seed, activation="relu", kernel_initializer="he_normal")
    monitor, result = _fit(model, seed, epochs=stories.EPOCHS)
    assert [a.message for a in monitor.alerts] == []
    assert result["test_accuracy"] >= MIN_ACCURACY, result["test_accuracy"]


@pytest.mark.parametrize(
    "arguments",
    [
        {"scheme": "auto"},
        {"scheme": "he_normal", "residual": "zero"},
        {"scheme": "he_normal", "residual": "fixup"},
        {"scheme": "he_normal", "residual": "skipinit"},
        {"scheme": "he_normal", "residual": "scaled"},
    ],
    ids=lambda a: "+".join(a.values()),
)
def test_the_library_s_own_residual_results_draw_no_alert(arguments):
    """No depth alert on any residual rule's result (zeroed branches have a zero gradient
    inside them: off the main path, expected). ``"scaled"`` lets the 24 sums grow the
    stream linearly, to a second moment of about 17 at the head, whose He draw makes logits
    of variance about 34 over 10 classes: beyond the logits rule's 9.2 (initial loss about
    4x ln 10), so that rule's alert, and only it, fires there."""
    model = stories.residual_mlp(0, gated=True)
    keras_initlab.initialize(model, **arguments, seed=0)
    monitor, _ = _fit(model, 0, epochs=1)
    if arguments.get("residual") == "scaled":
        assert [(a.kind, a.layer) for a in monitor.alerts] == [("logits", "head")]
        assert 9.21 < monitor.alerts[0].factor < 100.0
    else:
        assert [a.message for a in monitor.alerts] == []


def test_a_fit_whose_alerts_fire_gives_the_weights_of_one_without_alerts():
    # The checked fixes are drawn on copies: no weight, no global or layer random state of
    # the user's moves (a Dropout in the model draws from its own seed state).
    def run(alert):
        keras.utils.set_random_seed(1)
        model = stories.build("residual_mlp", 1)
        monitor, _ = _fit(model, 1, epochs=2, alert=alert)
        after = keras.random.uniform((4,))  # the global random state after the fit
        return monitor, [w.numpy() for w in model.weights], np.asarray(after)

    fired, weights, state = run(True)
    assert fired.alerts  # the checks ran
    _, plain, plain_state = run(False)
    for a, b in zip(weights, plain, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(state, plain_state)


VERDICTS = {
    "sigmoid_mlp": "vanishing",
    "large_conv": "exploding",
    "separable_cnn": "vanishing",
    "residual_mlp": "exploding",
}


@pytest.mark.parametrize("story", sorted(VERDICTS))
def test_inspect_gives_the_verdict_and_the_fix_of_the_alert(story):
    from keras_initlab.compare.inspection import variance_profile

    model = stories.build(story, 0)
    profile = variance_profile(model)
    assert profile.verdict == VERDICTS[story]
    cause, fix, _ = EXPECTED[story]
    assert f"cause ({cause})" in str(profile)
    if fix is not None:
        keras_initlab.initialize(model, **fix, seed=0)
        assert variance_profile(model).verdict == "ok"
