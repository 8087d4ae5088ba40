"""Every family ``keras.applications`` exports is read, not guessed.

The families are found by introspection (`tests/model_reading/families.py`), so a family a
later Keras adds is tested without a change here; each is built from its smallest
constructor at the smallest input it accepts (``weights=None``) and re-drawn He normal. In
both modes, at least 90% of the rows `keras_initlab.measure` records by default must be
rows `propagate` calls predicted: their moments rest on rules alone, no assumed layer above
them and none below them for their gradient (#26's first acceptance line; the agreement of
those predictions with measurement, which does not hold on every family yet, is swept by
``benchmarks/bench_model_reading.py``). One exception, stated: a row whose gradient passes
back only through layers that are themselves predicted but whose rule declines to predict
the gradient they pass back (a softmax saturated beyond float32's rounding: NASNetMobile's
classifier under He in inference mode, its logits about 165 apart, passes back a gradient
of 1e-145 relative to its output's, which a float32 measurement sees as rounding, about
1e-17) counts with its activation, which is predicted.
"""

from __future__ import annotations

import keras
import pytest

import keras_initlab
from keras_initlab.measurement._selection import monitored_layers
from tests.model_reading import families

pytestmark = pytest.mark.slow
SHARE = 0.9
FAMILIES = families.application_families()


def test_the_families_are_found() -> None:
    assert {"resnet", "mobilenet_v3", "convnext", "efficientnet_v2"} <= set(FAMILIES)


def _available(family: str) -> object:
    """Keras builds no NASNet on the torch backend (keras.applications raises): that family
    is not run there."""
    if family == "nasnet" and keras.backend.backend() == "torch":
        reason = "keras.applications: NASNet is not available with the torch backend"
        return pytest.param(family, marks=pytest.mark.skip(reason=reason))
    return family


@pytest.mark.parametrize("family", [_available(f) for f in sorted(FAMILIES)])
def test_every_family_is_predicted_not_assumed(family: str) -> None:
    model, _ = families.build_smallest(families.representative(FAMILIES[family]))
    keras_initlab.initialize(model, "he_normal", seed=0)
    recorded = [path for path, _ in monitored_layers(model)]
    assert recorded
    for mode in ("inference", "training"):
        rows = keras_initlab.propagate(model, mode=mode).by_layer()
        missing = [name for name in recorded if name not in rows]
        assert not missing, (mode, missing[:5])
        # a predicted row named in a gradient's assumptions: a rule that predicts its
        # output and declines the gradient it passes back (not a layer without a rule)
        predicted_rows = {n for n, row in rows.items() if row.predicted}
        unpredicted = [
            (n, rows[n].status, rows[n].note)
            for n in recorded
            if not rows[n].predicted
            and not (
                rows[n].status == "upstream" and set(rows[n].gradient_assumes) <= predicted_rows
            )
        ]
        share = 1.0 - len(unpredicted) / len(recorded)
        assert share >= SHARE, (mode, f"{share:.0%}", unpredicted[:5])
