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
1e-17) counts with its activation, which is predicted. After ``initialize(model, "auto")``
at least 90% of the recorded rows (the classifier excluded) lie within [0.25, 4] in
inference mode, leaving out the rows no kernel scale can bring there, each for a reason of
the architecture (`_out_of_reach`).
"""

from __future__ import annotations

import keras
import numpy as np
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


AUTO_BAND = (0.25, 4.0)  # the activation variance `auto` keeps a layer within (#26)
BOUNDED_TO_ONE = ("sigmoid", "hard_sigmoid")  # outputs in [0, 1]: variance below 1/4


def _out_of_reach(model: keras.Model) -> dict[str, str]:
    """``{recorded row: why}`` for the rows whose variance no kernel scale can bring within
    `AUTO_BAND`, each for a reason of the architecture:

    * an output in [0, 1] (a sigmoid gate): its variance is below 1/4 (Popoviciu's
      inequality), whatever feeds it;
    * a row before the first layer with a kernel: the model's fixed preprocessing of its
      input (EfficientNet's ``Normalization`` scales a unit-variance probe by 1/(255 std),
      about 1.5e-5 in variance), which no weight `auto` draws changes;
    * a residual branch after a learned per-channel scale the architecture draws and `auto`
      keeps (ConvNeXt's ``LayerScale`` at 1e-6: its output and what follows on the branch
      sit at 1e-12 times the branch, by design).
    """
    from keras_initlab.measurement._selection import activation_name
    from keras_initlab.model.layers import KERNEL_LAYERS
    from keras_initlab.model.registry import registered
    from keras_initlab.model.residual import residual_blocks

    rows = monitored_layers(model)
    path_of = {id(layer): path for path, layer in rows}
    why: dict[str, str] = {}
    for path, layer in rows:
        if isinstance(layer, KERNEL_LAYERS):
            break
        why[path] = "the model's fixed preprocessing of its input"
    for path, layer in rows:
        if activation_name(layer) in BOUNDED_TO_ONE:
            why[path] = "an output in [0, 1]: variance below 1/4"
    for block in residual_blocks(model):
        scaled = False
        for layer in block.tail_layers:
            kind = registered(layer)
            scaled = scaled or (kind is not None and kind.kind == "scale")
            if scaled and id(layer) in path_of:
                why[path_of[id(layer)]] = "after a learned scale the architecture draws"
    return why


@pytest.mark.parametrize("family", [_available(f) for f in sorted(FAMILIES)])
def test_auto_keeps_every_family_within_the_band(family: str) -> None:
    """After ``initialize(model, "auto")``, at least 90% of the rows `measure` records by
    default (the classifier excluded) have an activation variance within [0.25, 4] on a
    unit-variance probe of 16, in inference mode; the rows no kernel scale can bring there
    (`_out_of_reach`, each with its reason) are left out and counted in the message."""
    model, size = families.build_smallest(families.representative(FAMILIES[family]))
    keras_initlab.initialize(model, "he_normal", seed=0)
    keras_initlab.initialize(model, "auto", seed=0)
    x = np.random.default_rng(0).standard_normal((16, size, size, 3)).astype("float32")
    records = keras_initlab.measure(model, x, mode="inference")[:-1]
    reach = _out_of_reach(model)
    judged = [r for r in records if r["layer"] not in reach]
    outside = [
        (r["layer"], f"{r['activation_var']:.3g}")
        for r in judged
        if not AUTO_BAND[0] <= r["activation_var"] <= AUTO_BAND[1]
    ]
    share = 1.0 - len(outside) / len(judged)
    left_out = sorted(set(reach.values()))
    assert share >= SHARE, (f"{share:.0%}", outside[:8], len(records) - len(judged), left_out)
