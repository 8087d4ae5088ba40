"""The false-alarm budget is stated once and the profiles load as documented."""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings

from keras_initlab import testing as kt
from keras_initlab.testing import _budget


@pytest.fixture
def restore_profile():
    name = _budget.active_profile()
    yield
    kt.load_profile(name)


def test_alpha_is_rate_over_checks():
    b = kt.Budget(rate=1e-6, checks=5_000)
    assert b.alpha == pytest.approx(2e-10)
    assert b.z == pytest.approx(6.36, abs=0.01)
    assert "alpha=2e-10" in repr(b)
    assert kt.FALSE_ALARM_RATE <= 1e-6


@pytest.mark.usefixtures("restore_profile")
@pytest.mark.parametrize("name", sorted(kt.PROFILES))
def test_profiles_load_and_set_the_budget(name):
    assert kt.load_profile(name) == name
    assert kt.budget().checks == kt.CHECKS_PER_RUN[name]
    assert settings.default.deadline is None
    if name in ("ci", "mutation"):
        assert settings.default.derandomize
        assert settings.default.database is None
    if name == "mutation":
        assert Phase.shrink not in settings.default.phases


@pytest.mark.usefixtures("restore_profile")
def test_thorough_raises_examples_and_k_together():
    ci, thorough = kt.PROFILES["ci"], kt.PROFILES["thorough"]
    ratio = thorough["max_examples"] / ci["max_examples"]
    assert kt.CHECKS_PER_RUN["thorough"] / kt.CHECKS_PER_RUN["ci"] >= ratio


@pytest.mark.usefixtures("restore_profile")
def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "mutation")
    assert kt.load_profile() == "mutation"
    monkeypatch.delenv("HYPOTHESIS_PROFILE")
    monkeypatch.setenv("CI", "true")
    assert kt.load_profile() == "ci"


def test_unknown_profile():
    with pytest.raises(ValueError, match="Did you mean 'thorough'"):
        kt.load_profile("thorogh")


def test_devices_list_cpu_first():
    names = kt.devices()
    assert names
    assert names[0].upper().endswith("CPU:0")  # TensorFlow: .../device:CPU:0; else cpu:0
