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


def _attention_stack(blocks=BLOCKS, *, gate=False, norm=True, epsilon=1e-3, alpha=None):
    """Post-LN (``norm``) or normalization-free causal blocks of Keras MultiHeadAttention and
    a ReLU FFN; ``gate`` ends each branch in a fixed ``ResidualGate``; ``alpha`` multiplies
    each skip in the graph (DeepNet's forward pass written out, for the reference)."""
    x = keras.Input((8,), dtype="int32", name="tokens")
    h = L.Embedding(VOCAB, WIDTH, name="embed")(x)
    for b in range(blocks):
        for part in ("a", "f"):
            if part == "a":
                f = L.MultiHeadAttention(2, WIDTH // 2, name=f"mha{b}")(h, h, use_causal_mask=True)
            else:
                f = L.Dense(HIDDEN, activation="relu", name=f"in{b}")(h)
                f = L.Dense(WIDTH, name=f"out{b}")(f)
            if gate:
                f = keras_initlab.ResidualGate(1.0, trainable=False, name=f"g{b}{part}")(f)
            skip = h if alpha is None else keras.ops.multiply(h, alpha)
            h = L.Add(name=f"add{b}{part}")([skip, f])
            if norm:
                h = L.LayerNormalization(epsilon=epsilon, name=f"ln{b}{part}")(h)
    return keras.Model(x, h)


def _xavier(kernel, layer):
    """Xavier's variance on the true fans of an EinsumDense (attention) or Dense kernel."""
    fan_in, fan_out = (
        keras_initlab.compute_fans(kernel.shape, "einsum", **_einsum_axes(layer))
        if isinstance(layer, L.EinsumDense)
        else kernel.shape
    )
    return 2.0 / (fan_in + fan_out)


def _einsum_axes(layer):
    (spec,) = [s for s in weight_specs(layer) if s.role == "kernel"]
    return spec.layout_args


def test_deepnet_scales_value_output_and_ffn_by_beta_and_sets_each_gate_to_one_over_alpha():
    model = _attention_stack(gate=True)
    initialize(model, "deepnet", seed=9)
    alpha, beta = (2.0 * BLOCKS) ** 0.25, (8.0 * BLOCKS) ** -0.25
    for spec in weight_specs(model):
        if spec.is_bias or spec.layout == "embedding":
            continue
        kernel, scaled = spec.variable.numpy(), spec.layer.name not in ("query", "key")
        assert_variance(kernel, _xavier(kernel, spec.layer) * (beta**2 if scaled else 1.0))
    gates = [
        layer.alpha.numpy() for layer in model.layers if "ResidualGate" in type(layer).__name__
    ]
    assert gates == [np.float32(1.0 / alpha)] * 2 * BLOCKS
    assert audit(model, "deepnet").flagged == []


def test_deepnets_fixed_gate_is_its_alpha_skip_under_layernorms_scale_invariance():
    """``LN(alpha x + f) = LN(x + f / alpha)``: the model with its gates at ``1/alpha`` and
    the model whose graph multiplies each skip by ``alpha`` (same weights, gates at 1) agree
    to float32 rounding where LayerNorm's epsilon is negligible."""
    alpha = (2.0 * BLOCKS) ** 0.25
    model = _attention_stack(gate=True, epsilon=1e-12)
    initialize(model, "deepnet", seed=10)
    reference = _attention_stack(gate=True, epsilon=1e-12, alpha=alpha)
    reference.set_weights(model.get_weights())
    for layer in reference.layers:
        if isinstance(layer, keras_initlab.ResidualGate):
            layer.alpha.assign(1.0)
    tokens = np.random.default_rng(0).integers(0, VOCAB, (4, 8))
    outputs = [keras.ops.convert_to_numpy(m(tokens)) for m in (model, reference)]
    np.testing.assert_allclose(*outputs, rtol=1e-4, atol=1e-4)


def test_deepnet_refuses_pre_ln_blocks_and_branches_without_a_fixed_gate():
    with pytest.raises(ValueError, match=r"'deepnet'.*post-LN.*b0_attn_add, b0_ffn_add"):
        initialize(_stack(), "deepnet")
    trainable = _attention_stack(gate=True)
    for layer in trainable.layers:
        if isinstance(layer, keras_initlab.ResidualGate):
            layer.trainable = True
    for model in (_attention_stack(gate=False), trainable):
        with pytest.raises(ValueError, match=r"ResidualGate\(trainable=False\).*add0a, add0f"):
            initialize(model, "deepnet")


def test_t_fixup_scales_embeddings_value_output_and_ffn_by_9n_to_the_minus_quarter():
    model = _attention_stack(norm=False)
    initialize(model, "t_fixup", seed=11)
    factor2 = (9.0 * BLOCKS) ** -0.5  # the factor's square, on variances
    for spec in weight_specs(model):
        if spec.is_bias:
            continue
        values = spec.variable.numpy()
        if spec.layout == "embedding":
            assert_variance(values, factor2 / WIDTH)
            continue
        scaled = spec.layer.name not in ("query", "key")
        variance = _xavier(values, spec.layer) * (factor2 if scaled else 1.0)
        assert_variance(values, variance, family="uniform")
    assert audit(model, "t_fixup").flagged == []
    with pytest.raises(ValueError, match=r"'t_fixup'.*without normalization.*ln0a"):
        initialize(_attention_stack(), "t_fixup")
