"""Residual rules of ``initialize(model, scheme, residual=...)``: start each block near identity.

In a residual block ``y = s + f(x)`` the Add sums the variances of the skip and the branch, so
under a variance-preserving scheme the stream grows ``2x`` per block, and a stack of ``L``
blocks ``2^L`` (under He with a linear last layer, ``3^L``). The rules below change only
the weights named, after the scheme has drawn every kernel, on each block that
``keras_initlab.residual_blocks`` finds (``L`` = their number, ``m`` = the weighted layers
on a block's branch; the "last layer" is the branch's last normalization with a scale when
one follows its last kernel, as ResNet's ``_3_bn``, else its last kernel with its bias):

* ``"zero"`` (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): the last layer's scale
  (gamma) or kernel and bias set to 0. The branch then outputs what its layers after that
  weight give for 0 (0 for linear layers, ReLU, GELU, a BatchNormalization with beta 0, as
  initialized), so each block starts as its skip: ``Var(y) = Var(s)``.
* ``"fixup"`` (Zhang et al. 2019, "Fixup Initialization"): the last layer zeroed as above and
  the output kernel of every weighted layer of the branch before its last kernel multiplied
  by ``L^(-1/(2m-2))`` (nothing more when ``m = 1``; the last kernel itself is kept when a
  normalization after it is the zeroed layer). Fixup's scalar multiplier and scalar
  biases before each layer are parameters the architecture must have: they are not added
  here (``ResidualGate`` provides a multiplier); the shortcut's kernels are not scaled.
  ``m`` counts every weighted layer of the branch, parallel ones too (attention's query, key
  and value).
* ``"skipinit"`` (De and Smith 2020, "Batch Normalization Biases Residual Blocks Towards the
  Identity Function"): the learnable gate ending each branch set to 0: a
  ``keras_initlab.ResidualGate``, or a gate the model already has after the last kernel (a
  normalization layer's gamma, keras.applications ConvNeXt's ``LayerScale`` gamma); the one
  nearest the Add. A branch with none is an error that names the block and what to add:
  SkipInit's gate is a weight of the architecture, so none is made up.
* ``"scaled"`` (Radford et al. 2019, GPT-2: residual projections scaled by ``1/sqrt(2N)``
  with ``2N`` sums): the last layer multiplied by ``1/sqrt(L)`` (a gamma when the branch
  ends in a normalization, so that it holds with batch statistics too; else the last kernel
  and its bias). A branch of gain ``g = Var(f(x)) / Var(x)`` under the scheme then adds
  ``g / L``: ``E|y|^2 = (1 + g/L) E|x|^2`` per block and ``(1 + g/L)^L`` over the stack,
  below ``e^g`` (``e`` for a variance-preserving branch, ``g = 1``) instead of ``(1 + g)^L``.
* ``"depth"`` (OLMo's ``mitchell`` initialization, Groeneveld et al. 2024, allenai/OLMo
  ``olmo/initialization.py``: the output projections of block ``l`` drawn with
  ``1/sqrt(2 (l + 1))`` of the in-projections' std): the last layer of the branches of
  block ``l`` (0 first) multiplied by ``1/sqrt(2 (l + 1))``; the factor of a block does not
  depend on the depth of the stack. In a pre-LN stack, where a branch adds ``g`` times its
  factor squared whatever the stream's scale, block ``l`` adds ``g / (l + 1)`` and the
  stream has gained ``g (1 + 1/2 + ... + 1/(l + 1))`` after it (logarithmic in depth);
  where branches compound (no normalization) it grows as
  ``prod_l (1 + g / (2 (l + 1)))^2 ~ (l + 1)^g``. A block is the sums of one
  layer (a keras_hub transformer layer holds its attention and FFN sums); where the sums sit
  in no layer of their own, consecutive sums are paired, as a transformer block's two are
  (each row's reason says which).
* ``"deepnet"`` (Wang et al. 2022, "DeepNet: Scaling Transformers to 1,000 Layers",
  DeepNorm for encoder-only and decoder-only models, ``N`` blocks): the post-LN block
  ``LN(alpha x + f(x))`` with ``alpha = (2N)^(1/4)``, and the value, output and FFN kernels
  (every kernel of a branch but the query and key projections, `ResidualBlock.scores`)
  multiplied by ``beta = (8N)^(-1/4)`` (DeepNet draws them Xavier-normal with gain beta).
  ``alpha`` is part of the forward pass, not of the initialization: under LayerNorm's scale
  invariance ``LN(alpha x + f) = LN(x + f / alpha)`` (exactly, up to LayerNorm's epsilon),
  so the rule sets a fixed branch multiplier to ``1/alpha``: a non-trainable
  ``keras_initlab.ResidualGate(trainable=False)`` the model has last on each branch. Only
  post-LN blocks (a normalization alone reads each sum, `ResidualBlock.post_norm`) are
  accepted, and a branch without such a gate is an error that names it: the rule does not
  rebuild the model, so the blocks of a keras_hub layer cannot take DeepNet's ``alpha``.
* ``"t_fixup"`` (Huang et al. 2020, "Improving Transformer Optimization Through Better
  Initialization", decoder rule, ``N`` blocks): every kernel of a branch but the query and
  key projections, and every embedding table, multiplied by ``(9N)^(-1/4)``; for a
  transformer without normalization only (any normalization layer is an error that names
  it). T-Fixup's base is Xavier with N(0, 1/d) embeddings (the recipe ``"t_fixup"``); the
  encoder's ``0.67 N^(-1/4)`` of an encoder-decoder is not applied.

``N``, where a rule needs the blocks, counts them as ``"depth"`` does.

Every weight a rule touches is multiplied after the draw, ``new = factor * drawn`` (a gamma
or a gate: ``factor *`` the layer's own initializer), with the factors of a weight that
several blocks name multiplied together; nothing is assigned before every value is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import keras
from keras import ops

from keras_initlab._validation import unknown_name_message
from keras_initlab.model.layers import NORMALIZATION_LAYERS
from keras_initlab.model.path import normalizes
from keras_initlab.model.residual import ResidualBlock, ResidualReport, residual_blocks
from keras_initlab.model.tree import leaf_layers
from keras_initlab.model.weights import WeightSpec
from keras_initlab.residual_gate import ResidualGate
from keras_initlab.text_table import RowReport, format_table

__all__ = [
    "RULES",
    "TRANSFORMER_RULES",
    "ResidualChange",
    "ResidualInitReport",
    "apply_residual",
    "plan_residual",
]
RULES = ("zero", "fixup", "skipinit", "scaled", "depth", "deepnet", "t_fixup")
# The rules for transformer blocks (a block's two sums read as one block; attention's query
# and key projections kept): what a language-model recipe uses.
TRANSFORMER_RULES = ("depth", "deepnet", "t_fixup")


@dataclass(frozen=True)
class ResidualChange:
    """One weight set by a residual rule: ``new = factor * base``.

    Attributes:
        add: the block's Add (``ResidualBlock.add``; "" for a weight outside the blocks,
            T-Fixup's embedding tables).
        layer: the path of the layer that owns the weight.
        weight: the variable's path.
        factor: the multiplier (0 zeroes the weight).
        reason: which part of the block it is, in words.
        variable: the ``keras.Variable``.
        base: None (the value the scheme drew) or the initializer the weight is drawn from
            first (a gamma's ``gamma_initializer``).
    """

    add: str
    layer: str
    weight: str
    factor: float
    reason: str
    variable: Any = field(default=None, repr=False, compare=False)
    base: Any = field(default=None, repr=False, compare=False)


class ResidualInitReport(RowReport[ResidualChange]):
    """What a residual rule changed (``rows``) and the Adds it did not treat.

    Attributes:
        rule: the rule (one of ``RULES``).
        blocks: the ``ResidualReport`` of the model (``blocks.unresolved``: the Adds that
            are not residual, and why).
        rows: one ``ResidualChange`` per weight changed, block by block.
    """

    _COLUMNS = ("add", "layer", "weight", "factor", "reason")

    def __init__(self, rule: str, blocks: ResidualReport, rows: list[ResidualChange]) -> None:
        super().__init__(rows)
        self.rule = rule
        self.blocks = blocks

    def to_dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts, without the variable and initializer objects."""
        return [{c: getattr(r, c) for c in self._COLUMNS} for r in self.rows]

    def factors(self) -> dict[int, float]:
        """The factor each changed weight is multiplied by, by ``id`` of its variable (the
        product of its rows' factors, for a weight that several blocks name)."""
        factors: dict[int, float] = {}
        for row in self.rows:
            factors[id(row.variable)] = factors.get(id(row.variable), 1.0) * row.factor
        return factors

    @property
    def adds(self) -> list[str]:
        """The Adds treated as residual, in graph order."""
        return [b.add for b in self.blocks]

    def __repr__(self) -> str:
        return (
            f"ResidualInitReport(residual={self.rule!r}, {len(self.blocks)} blocks, "
            f"{len(self.rows)} weights changed, {len(self.blocks.unresolved)} not residual)"
        )

    def __str__(self) -> str:
        lines = [f"residual={self.rule!r} on {len(self.blocks)} residual blocks (L):"]
        lines += format_table(
            self._COLUMNS, [[getattr(r, c) for c in self._COLUMNS] for r in self.rows]
        )
        lines += [f"not residual: {u.name}: {u.reason}" for u in self.blocks.unresolved]
        return "\n".join(lines)


def check_rule(residual: Any) -> str | None:
    """``residual`` if it is None or one of ``RULES``; else the project's ValueError."""
    if residual is None or (isinstance(residual, str) and residual in RULES):
        return residual
    raise ValueError(unknown_name_message("residual", residual, RULES))


def plan_residual(model: Any, residual: str, specs: list[WeightSpec]) -> ResidualInitReport:
    """The changes of rule ``residual`` on ``model`` (module docstring), nothing assigned.

    Args:
        model: a built model.
        residual: one of ``RULES``.
        specs: ``keras_initlab.model.weights.weight_specs(model)``.

    Returns:
        A ``ResidualInitReport`` whose rows ``apply_residual`` assigns.

    Raises:
        ValueError: an unknown rule, no residual block in the model (with what was looked
            at: sums that are not residual, subclassed parts whose graph is hidden), or,
            for ``"skipinit"``, a branch with no gate.

    Example (two blocks, ``L = 2``; two layers on each branch, ``m = 2``):
    >>> import keras
    >>> from keras_initlab.model.weights import weight_specs
    >>> x = h = keras.Input((8,))
    >>> for b in range(2):
    ...     f = keras.layers.Dense(8, activation="relu", name=f"in{b}")(h)
    ...     h = keras.layers.Add(name=f"sum{b}")([h, keras.layers.Dense(8, name=f"out{b}")(f)])
    >>> model = keras.Model(x, h)
    >>> plan = plan_residual(model, "fixup", weight_specs(model))
    >>> [(r.add, r.weight, round(r.factor, 4)) for r in plan][:3]
    [('sum0', 'out0/kernel', 0.0), ('sum0', 'out0/bias', 0.0), ('sum0', 'in0/kernel', 0.7071)]
    """
    rule = check_rule(residual)
    if rule is None:
        raise ValueError(unknown_name_message("residual", residual, RULES))
    blocks = residual_blocks(model)
    blocks.require("residual", residual)
    by_layer: dict[str, list[WeightSpec]] = {}
    for spec in specs:
        by_layer.setdefault(spec.layer_path, []).append(spec)
    n = len(blocks)
    rows: list[ResidualChange] = []
    if rule == "skipinit":
        gates = [(block, _gate(block)) for block in blocks]
        missing = [block for block, gate in gates if gate is None]
        if missing:
            raise ValueError(_no_gate_message(missing))
        for block, gate in gates:
            rows += _gate_rows(block, gate)
        return ResidualInitReport("skipinit", blocks, rows)
    if rule == "deepnet":
        return ResidualInitReport(rule, blocks, _deepnet_rows(blocks, by_layer))
    if rule == "t_fixup":
        return ResidualInitReport(rule, blocks, _t_fixup_rows(model, blocks, by_layer, specs))
    if rule == "depth":
        for block, (index, how) in zip(blocks, _block_indices(blocks), strict=True):
            what = f"1/sqrt(2 (l + 1)), l={index} ({how})"
            rows += _last_rows(block, by_layer, 1.0 / math.sqrt(2.0 * (index + 1)), what)
        return ResidualInitReport(rule, blocks, rows)
    for block in blocks:
        factor = 0.0 if rule in ("zero", "fixup") else 1.0 / math.sqrt(n)
        what = "zeroed" if factor == 0.0 else f"1/sqrt(L), L={n}"
        rows += _last_rows(block, by_layer, factor, what)
        if rule == "fixup" and len(block.branch) > 1:
            m = len(block.branch)
            scale = float(n) ** (-1.0 / (2 * m - 2))
            reason = f"other layer of the branch: L^(-1/(2m-2)), L={n}, m={m}"
            for path in block.branch:
                if path != block.last_kernel:
                    spec = _output_kernel(by_layer[path])
                    rows.append(_row(block, path, spec.variable, scale, reason))
    return ResidualInitReport(rule, blocks, rows)


def apply_residual(
    plan: ResidualInitReport, specs: list[WeightSpec], values: list[Any]
) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """The values with the plan's factors applied, and the assignments outside ``specs``.

    Args:
        plan: from ``plan_residual``.
        specs: the specs the plan was made from.
        values: the value each spec's variable is about to be given (None: its current
            value, which a rule then multiplies; ``initialize`` passes None for a kept weight).

    Returns:
        ``(values, extra)``: the new list of values (one per spec) and ``(variable, value)``
        pairs for the weights not in ``specs`` (gammas, gates), all computed, none assigned.
    """
    factors = plan.factors()
    others: dict[int, ResidualChange] = {}
    for row in plan:
        others.setdefault(id(row.variable), row)
    new_values = list(values)
    for i, spec in enumerate(specs):
        key = id(spec.variable)
        if key in factors:
            value = spec.variable.value if values[i] is None else values[i]
            new_values[i] = _times(value, factors.pop(key))
    extra = []
    for key, factor in factors.items():
        row = others[key]
        variable = row.variable
        value = (
            variable.value
            if row.base is None
            else row.base(tuple(variable.shape), dtype=variable.dtype)
        )
        extra.append((variable, _times(value, factor)))
    return new_values, extra


def _times(value: Any, factor: float) -> Any:
    return ops.zeros_like(value) if factor == 0.0 else ops.multiply(value, factor)


def _row(
    block: ResidualBlock, layer: str, variable: Any, factor: float, reason: str, base: Any = None
) -> ResidualChange:
    return ResidualChange(block.add, layer, str(variable.path), factor, reason, variable, base)


def _output_kernel(specs: list[WeightSpec]) -> WeightSpec:
    """The kernel that makes a layer's output (a separable conv's pointwise kernel)."""
    return [s for s in specs if not s.is_bias and s.role != "recurrent_kernel"][-1]


def _layer_path(block: ResidualBlock, layer: Any) -> str:
    prefix = block.add.rpartition("/")[0]
    return f"{prefix}/{layer.name}" if prefix else layer.name


def _block_indices(blocks: ResidualReport) -> list[tuple[int, str]]:
    """Per sum, the index of its block and how it was found (module docstring, ``"depth"``)."""
    layers = [block.add.rpartition("/")[0] for block in blocks]
    if all(layers):
        order = list(dict.fromkeys(layers))
        return [(order.index(layer), f"the sums of {layer}") for layer in layers]
    return [(k // 2, "no block layer: consecutive sums paired") for k in range(len(layers))]


def _count_blocks(blocks: ResidualReport) -> int:
    """``N``: the number of blocks (module docstring, ``"depth"``)."""
    return 1 + max(index for index, _ in _block_indices(blocks))


def _kernel_rows(
    block: ResidualBlock, by_layer: dict[str, list[WeightSpec]], factor: float, what: str
) -> list[ResidualChange]:
    """Every kernel of the branch but its attention scores' (query, key) times ``factor``."""
    return [
        _row(block, path, _output_kernel(by_layer[path]).variable, factor, what)
        for path in block.branch
        if path not in block.scores
    ]


def _deepnet_rows(
    blocks: ResidualReport, by_layer: dict[str, list[WeightSpec]]
) -> list[ResidualChange]:
    n = _count_blocks(blocks)
    alpha, beta = (2.0 * n) ** 0.25, (8.0 * n) ** -0.25
    pre = [b.add for b in blocks if b.post_norm is None]
    if pre:
        raise ValueError(
            "Argument `residual` is 'deepnet', whose alpha is exact for post-LN blocks only "
            "(LN(alpha x + f) = LN(x + f / alpha)), but no normalization alone reads the "
            f"sum(s) {', '.join(pre)}. Received: residual='deepnet'"
        )
    gates = [(b, _gate(b)) for b in blocks]
    missing = [b.add for b, g in gates if not isinstance(g, ResidualGate) or g.trainable]
    if missing:
        raise ValueError(
            "Argument `residual` is 'deepnet', whose alpha = (2N)^(1/4) is a constant of the "
            "forward pass: each branch must end in `keras_initlab.ResidualGate("
            "trainable=False)`, which the rule sets to 1/alpha, and the branches of "
            f"{', '.join(missing)} do not. The rule inserts no layer: blocks the model "
            "holds as layers of their own (keras_hub's) cannot take DeepNet's alpha. "
            "Received: residual='deepnet'"
        )
    rows: list[ResidualChange] = []
    for block, gate in gates:
        path = _layer_path(block, gate)
        why = f"fixed branch multiplier 1/alpha, alpha = (2N)^(1/4), N={n}"
        rows.append(_row(block, path, gate.alpha, 1.0 / alpha, why, keras.initializers.Ones()))
        rows += _kernel_rows(block, by_layer, beta, f"beta = (8N)^(-1/4), N={n}")
    return rows


def _t_fixup_rows(
    model: Any,
    blocks: ResidualReport,
    by_layer: dict[str, list[WeightSpec]],
    specs: list[WeightSpec],
) -> list[ResidualChange]:
    norms = [path for path, layer in leaf_layers(model) if normalizes(layer, "training")]
    if norms:
        raise ValueError(
            "Argument `residual` is 't_fixup', which is for transformers without "
            f"normalization, but the model normalizes at {', '.join(norms[:4])}"
            f"{' and more' if len(norms) > 4 else ''}. Use 'scaled' or a recipe such as "
            "'gpt2' for a normalized stack. Received: residual='t_fixup'"
        )
    n = _count_blocks(blocks)
    factor, what = (9.0 * n) ** -0.25, f"(9N)^(-1/4), N={n}"
    rows = [
        ResidualChange("", s.layer_path, s.path, factor, f"embedding table: {what}", s.variable)
        for s in specs
        if s.layout == "embedding"
    ]
    for block in blocks:
        rows += _kernel_rows(block, by_layer, factor, what)
    return rows


def _last_rows(
    block: ResidualBlock, by_layer: dict[str, list[WeightSpec]], factor: float, what: str
) -> list[ResidualChange]:
    """The last layer of the branch times ``factor``: its norm's gamma, else kernel and bias."""
    norm = block.last_norm_layer
    if norm is not None:
        reason = f"last normalization of the branch: gamma {what}"
        base = norm.gamma_initializer if factor != 0.0 else None
        return [_row(block, str(block.last_norm), norm.gamma, factor, reason, base)]
    specs = by_layer[block.last_kernel]
    kernel = _output_kernel(specs)
    rows = [_row(block, block.last_kernel, kernel.variable, factor, f"last kernel: {what}")]
    rows += [
        _row(block, block.last_kernel, s.variable, factor, f"last kernel's bias: {what}")
        for s in specs
        if s.is_bias
    ]
    return rows


def _gate(block: ResidualBlock) -> Any:
    """The gate nearest the Add after the branch's last kernel, or None."""
    for layer in reversed(block.tail_layers):
        if isinstance(layer, ResidualGate):
            return layer
        if type(layer).__name__ == "LayerScale" and getattr(layer, "gamma", None) is not None:
            return layer
        if isinstance(layer, NORMALIZATION_LAYERS) and getattr(layer, "gamma", None) is not None:
            return layer
    return None


def _gate_rows(block: ResidualBlock, gate: Any) -> list[ResidualChange]:
    path = _layer_path(block, gate)
    if isinstance(gate, ResidualGate):
        return [_row(block, path, gate.alpha, 0.0, "ResidualGate alpha: set to 0")]
    kind = type(gate).__name__
    return [_row(block, path, gate.gamma, 0.0, f"{kind} gamma ending the branch: set to 0")]


def _no_gate_message(missing: list[ResidualBlock]) -> str:
    names = ", ".join(f"{b.add} (branch ends in {b.branch_output})" for b in missing)
    return (
        "Argument `residual` is 'skipinit', which sets a learnable gate at the end of each "
        f"residual branch to 0, but {len(missing)} block(s) have no gate after their last "
        f"kernel: {names}. Put `keras_initlab.ResidualGate()` last on each such branch, "
        "right before its Add (a BatchNormalization or a ConvNeXt LayerScale there is a gate "
        "too), or use residual='zero', which zeroes the last kernel instead. "
        "Received: residual='skipinit'"
    )
