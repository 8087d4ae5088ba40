"""Language-model recipes (`keras_initlab.recipes`), the ``"depth"`` residual rule, SmallInit
and ``audit(model, scheme, residual=...)``.

The reference of every std is the recipe's closed form (GPT-2: 0.02 and 0.02 / sqrt(2N);
OLMo: 1 / sqrt(fan_in) and that times 1 / sqrt(2 (l + 1))), written here from the papers'
formulas, and every drawn weight is checked by `keras_initlab.testing.assert_variance`
(the exact chi-square interval of a normal sample at the suite's alpha). The test model is
a pre-LN decoder stack written with Keras layers: per block ``x + Dense(LN(x))`` (attention
stands in as one projection) and ``x + Dense(Dense(LN(x), gelu))``, so its sums sit in no
layer of their own and ``"depth"`` pairs them; a subclassed block holding both sums checks
the other reading (the sums of one layer are one block).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab import audit, initialize
from keras_initlab.initializers import RandomNormal, SmallInit
from keras_initlab.model.weights import weight_specs
from keras_initlab.residual_init import plan_residual
from keras_initlab.testing import assert_variance, budget, variance_interval

L = keras.layers
VOCAB, WIDTH, HIDDEN, BLOCKS = 500, 64, 256, 3


def _stack(blocks=BLOCKS):
    x = keras.Input((8,), dtype="int32", name="tokens")
    h = L.Embedding(VOCAB, WIDTH, name="embed")(x)
    for b in range(blocks):
        a = L.Dense(WIDTH, name=f"b{b}_attn_out")(L.LayerNormalization(name=f"b{b}_ln1")(h))
        h = L.Add(name=f"b{b}_attn_add")([h, a])
        f = L.Dense(HIDDEN, activation="gelu", name=f"b{b}_ffn_in")(
            L.LayerNormalization(name=f"b{b}_ln2")(h)
        )
        h = L.Add(name=f"b{b}_ffn_add")([h, L.Dense(WIDTH, name=f"b{b}_ffn_out")(f)])
    return keras.Model(x, L.Dense(VOCAB, name="head")(L.LayerNormalization(name="ln")(h)))


def _kernels(model):
    return {s.layer_path: s.variable.numpy() for s in weight_specs(model) if not s.is_bias}


def _is_output(path):
    return path.endswith("_attn_out") or path.endswith("_ffn_out")


def test_gpt2_draws_every_weight_at_0_02_and_each_branch_output_at_0_02_over_sqrt_2n():
    model = _stack()
    initialize(model, "gpt2", seed=3)
    sums = 2 * BLOCKS
    for path, kernel in _kernels(model).items():
        std = 0.02 / math.sqrt(sums) if _is_output(path) else 0.02
        assert_variance(kernel, std**2)
    assert audit(model, "gpt2").flagged == []


def test_olmo_scales_block_l_outputs_by_one_over_sqrt_2_l_plus_1_on_lecun():
    model = _stack()
    report = initialize(model, "olmo", seed=4, report=True)
    kernels = _kernels(model)
    assert_variance(kernels["embed"], 1.0 / WIDTH)  # N(0, 1/d) on the table's width
    for path, kernel in kernels.items():
        if path == "embed":
            continue
        variance = 1.0 / kernel.shape[0]
        if _is_output(path):
            block = int(path[1 : path.index("_")])
            variance /= 2.0 * (block + 1)
        assert_variance(kernel, variance)
    reasons = [r.reason for r in report.residual]
    assert all("consecutive sums paired" in r for r in reasons), reasons
    assert audit(model, "olmo").flagged == []


class _Block(L.Layer):
    """A pre-LN block holding both of its sums (as keras_hub's transformer layers do)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.ln1, self.ln2 = L.LayerNormalization(), L.LayerNormalization()
        self.attn_out = L.Dense(WIDTH)
        self.ffn_in, self.ffn_out = L.Dense(HIDDEN, activation="gelu"), L.Dense(WIDTH)

    def call(self, x):
        x = x + self.attn_out(self.ln1(x))
        return x + self.ffn_out(self.ffn_in(self.ln2(x)))


def test_depth_reads_the_sums_of_one_layer_as_one_block():
    x = keras.Input((8, WIDTH))
    h = x
    for b in range(BLOCKS):
        h = _Block(name=f"block{b}")(h)
    model = keras.Model(x, h)
    plan = plan_residual(model, "depth", weight_specs(model))
    kernels = [r for r in plan if r.weight.endswith("kernel")]
    assert [(r.add.split("/")[0], r.factor) for r in kernels] == [
        (f"block{b}", pytest.approx(1.0 / math.sqrt(2 * (b + 1)), rel=1e-15))
        for b in range(BLOCKS)
        for _ in range(2)
    ]
    assert all(f"the sums of block{r.add.split('/')[0][5:]}" in r.reason for r in kernels)


def test_audit_against_gpt2_flags_the_branch_outputs_of_a_flat_0_02_draw_by_sqrt_2n():
    """What keras_hub's GPT-2 does (every kernel at 0.02): the 2N output projections are
    flagged, with a variance ratio ``2N`` within its sampling interval."""
    model = _stack()
    initialize(model, RandomNormal(0.0, 0.02), seed=5)
    model.get_layer("embed").embeddings.assign(
        keras.random.normal((VOCAB, WIDTH), stddev=0.02, seed=6)
    )
    report = audit(model, "gpt2")
    flagged = {r.layer for r in report.flagged}
    assert flagged == {p for p in _kernels(model) if _is_output(p)}
    for row in report.flagged:
        n = int(np.prod(model.get_layer(row.layer).kernel.shape))
        lo, hi = variance_interval(n, "normal", budget().alpha)
        assert lo <= row.ratio**2 / (2 * BLOCKS) <= hi


def test_audit_with_a_residual_rule_holds_the_weights_the_rule_changed():
    model = _stack()
    initialize(model, "he_normal", residual="zero", seed=7)
    assert audit(model, "he_normal", residual="zero").flagged == []
    zeroed = {r.layer for r in audit(model, "he_normal").flagged}
    assert zeroed == {p for p in _kernels(model) if _is_output(p)}
    initialize(model, "he_normal", seed=7)  # the branch outputs are no longer 0
    assert {r.layer for r in audit(model, "he_normal", residual="zero").flagged} == zeroed


def test_small_init_is_two_over_five_fan_in_on_true_fans():
    model = _stack()
    initialize(model, "small_init", seed=8)
    for path, kernel in _kernels(model).items():
        if path != "embed":  # tables keep their draw under a scheme
            assert_variance(kernel, 2.0 / (5.0 * kernel.shape[0]))
    assert keras_initlab.get_scheme("small_init").get_config() == SmallInit().get_config()


def test_bad_recipe_arguments_are_named_and_change_nothing():
    model = _stack()
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(ValueError, match=r"`residual`.*recipe 'gpt2'.*'scaled'.*residual='zero'"):
        initialize(model, "gpt2", residual="zero")
    with pytest.raises(ValueError, match=r"`residual` needs a scheme.*residual='scaled'"):
        audit(model, residual="scaled")
    with pytest.raises(ValueError, match=r"residual.*'deep'"):
        audit(model, "he_normal", residual="deep")
    with pytest.raises(ValueError, match=r"scheme.*'gpt3'"):
        initialize(model, "gpt3")
    plain = keras.Sequential([keras.Input((4,)), L.Dense(4)])
    with pytest.raises(ValueError, match="residual"):
        audit(plain, "olmo")
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights, strict=True))
