"""Named initialization recipes of language models, written with the library's own parts.

A recipe is what one model family's training code does to every weight at initialization:
a scheme for the kernels, a draw for the embedding tables and a depth rule for the residual
branches (`keras_initlab.residual_init`). ``initialize(model, name)`` applies it to any
model whose residual sums ``residual_blocks`` finds, and ``audit(model, name)`` holds a
model's weights against it (the stock keras_hub GPT-2 draws every kernel at 0.02, so audited
against ``"gpt2"`` its attention-output and FFN-output kernels are ``sqrt(2N)`` too large):

* ``"gpt2"`` (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners",
  section 2.3; Shoeybi et al. 2019, Megatron-LM): every kernel and embedding table drawn
  from N(0, 0.02^2), and the output projection of each residual branch (the last kernel
  before each sum) from N(0, (0.02 / sqrt(2N))^2) for ``N`` blocks, ``2N`` sums: the residual
  rule ``"scaled"`` (``1/sqrt(L)``, ``L`` the sums) on the N(0, 0.02) base.
* ``"olmo"``: OLMo 1's ``mitchell`` initialization (Groeneveld et al. 2024, "OLMo:
  Accelerating the Science of Language Models"; allenai/OLMo, ``olmo/initialization.py``
  and ``olmo/model.py``): every kernel N(0, 1/fan_in) (for the FFN's output projection,
  ``fan_in`` is its hidden width), the output projections of block ``l`` times
  ``1/sqrt(2 (l + 1))`` (the residual rule ``"depth"``), the token embedding N(0, 1/d) on
  its width ``d``. OLMo cuts its draws at +-3 std, which lowers their std by 1.3%; the
  draws here are not cut (the audit's ``expected_std`` is OLMo's std before the cut).
* ``"deepnet"`` (Wang et al. 2022, "DeepNet: Scaling Transformers to 1,000 Layers"): every
  kernel Xavier-normal (``2 / (fan_in + fan_out)``, not truncated), then the residual rule
  ``"deepnet"``: the value, output and FFN kernels times ``(8N)^(-1/4)`` and each post-LN
  block's fixed branch multiplier (a non-trainable ``ResidualGate``) at ``(2N)^(-1/4)``;
  embedding tables kept (the paper does not set them).
* ``"t_fixup"`` (Huang et al. 2020, "Improving Transformer Optimization Through Better
  Initialization"): every kernel Xavier-uniform (Glorot and Bengio's), the embedding tables
  N(0, 1/d), then the residual rule ``"t_fixup"``: the value, output and FFN kernels and the
  tables times ``(9N)^(-1/4)``; for transformers without normalization only.

Biases are drawn by each layer's own initializer (zeros), normalization weights are kept,
as by any ``initialize`` call. SmallInit (Nguyen and Salazar 2019, as in GPT-NeoX) is a
scheme, ``"small_init"`` (`keras_initlab.initializers.SmallInit`), not a recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keras_initlab import initializers as ini

__all__ = ["RECIPES", "Recipe", "recipe_parts"]


@dataclass(frozen=True)
class Recipe:
    """One recipe (module docstring): what ``initialize(model, name)`` does to each weight.

    Attributes:
        name: the name ``initialize`` and ``audit`` take.
        kernels: makes the scheme every kernel is drawn from, on its true fans.
        embeddings: makes the scheme every embedding table is drawn from, on its
            ``(vocabulary, width)`` layout (``fan_out`` is the width); None keeps them.
        residual: the residual rule applied after the draw (`keras_initlab.residual_init`).
        reference: where the recipe comes from.
    """

    name: str
    kernels: Callable[[], ini.Scheme]
    embeddings: Callable[[], ini.Scheme] | None
    residual: str
    reference: str


RECIPES: dict[str, Recipe] = {
    "gpt2": Recipe(
        "gpt2",
        lambda: ini.RandomNormal(0.0, 0.02),
        lambda: ini.RandomNormal(0.0, 0.02),
        "scaled",
        "Radford et al. 2019 (GPT-2), section 2.3; Shoeybi et al. 2019 (Megatron-LM)",
    ),
    "olmo": Recipe(
        "olmo",
        lambda: ini.VarianceScaling(1.0, "fan_in", "normal"),
        lambda: ini.VarianceScaling(1.0, "fan_out", "normal"),
        "depth",
        "Groeneveld et al. 2024 (OLMo 1), allenai/OLMo olmo/initialization.py: mitchell",
    ),
    "deepnet": Recipe(
        "deepnet",
        lambda: ini.VarianceScaling(1.0, "fan_avg", "normal"),
        None,
        "deepnet",
        "Wang et al. 2022 (DeepNet), DeepNorm for encoder-only and decoder-only models",
    ),
    "t_fixup": Recipe(
        "t_fixup",
        ini.GlorotUniform,
        lambda: ini.VarianceScaling(1.0, "fan_out", "normal"),
        "t_fixup",
        "Huang et al. 2020 (T-Fixup), the decoder's scaling",
    ),
}


def recipe_parts(scheme: Any, residual: str | None) -> tuple[Any, str | None, Any]:
    """``(kernel scheme, residual rule, embedding scheme)`` of ``scheme``: a recipe's parts
    when ``scheme`` names a recipe, else ``(scheme, residual, None)`` (tables kept).

    Raises:
        ValueError: a recipe name with a ``residual`` rule (the recipe carries its own).

    Example:
    >>> kernels, rule, embeddings = recipe_parts("gpt2", None)
    >>> kernels.stddev, rule, embeddings.stddev
    (0.02, 'scaled', 0.02)
    """
    recipe = RECIPES.get(scheme) if isinstance(scheme, str) else None
    if recipe is None:
        return scheme, residual, None
    if residual is not None:
        raise ValueError(
            f"Argument `residual` must be None with the recipe {scheme!r}, which applies "
            f"its own rule ({recipe.residual!r}). Received: residual={residual!r}"
        )
    embeddings = None if recipe.embeddings is None else recipe.embeddings()
    return recipe.kernels(), recipe.residual, embeddings
