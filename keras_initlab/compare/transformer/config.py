"""What defines a transformer experiment run, and its validation, without Keras.

The training settings below were fixed, each with its reason, before the first full run
(`TransformerConfig`); the command line checks every value with
`check_transformer_config` before TensorFlow starts.
"""

from __future__ import annotations

import dataclasses

from keras_initlab._validation import check_names, check_positive_int, unknown_name_message
from keras_initlab.compare.config import TrainingConfig, check_training

ARCHITECTURES = ("pre_ln", "post_ln", "no_norm")
"""Pre-LN (``x + f(LN(x))``, GPT-2), post-LN (``LN(x + f(x))``, the original Transformer)
and a transformer without any normalization layer (T-Fixup's setting)."""

SCHEMES_OF: dict[str, tuple[str, ...]] = {
    "pre_ln": ("normal_0.02", "he_normal", "lecun_normal", "small_init", "auto", "gpt2"),
    "post_ln": ("normal_0.02", "xavier_normal", "deepnet"),
    "no_norm": ("he_normal", "t_fixup"),
}
"""The schemes each architecture is initialized with: the flat N(0, 0.02) draw of keras_hub's
GPT-2 and the depth-scaled rules where the literature puts them (GPT-2's projections and
SmallInit on pre-LN, DeepNet on post-LN with its Xavier base without the depth factors as
the control, T-Fixup without normalization, He as that setting's control)."""

TRANSFORMER_SCHEMES = tuple(dict.fromkeys(s for schemes in SCHEMES_OF.values() for s in schemes))
DATASETS = ("stdlib",)


@dataclasses.dataclass(frozen=True)
class TransformerConfig(TrainingConfig):
    """Everything that defines a transformer experiment run (the defaults are the default run):
    the ``keras_initlab.compare.config.TrainingConfig`` fields and

    Attributes:
        schemes: `TRANSFORMER_SCHEMES` names; each runs on the architectures that list it
            in `SCHEMES_OF`.
        architectures: `ARCHITECTURES` names.
        depth: transformer blocks (each an attention and an FFN residual branch: ``2 depth``
            sums).
        width, heads: the stream's width and the attention heads (``width / heads`` each).
        length: tokens per training window (the context).
        epochs: evaluation rounds: each trains ``steps`` steps on fresh windows, then
            measures the test loss.
        steps: training steps per round.
        learning_rate, momentum, beta_2: Adam's peak rate, ``beta_1`` and ``beta_2``.
        warmup: the share of all steps over which the rate rises linearly from 0 to the
            peak; a cosine decay to a tenth of the peak follows.

    The settings, fixed before the first full run (the reasons):

    * Adam with ``beta_2 = 0.98`` (Vaswani et al. 2017; the setting of Liu et al. 2020 and
      Xiong et al. 2020, whose post-LN instability the experiment checks); peak rate
      ``1e-3``, the common rate of transformers of this width (GPT-style models of a few
      million weights use 6e-4 to 1e-3).
    * Warmup over 10% of the steps, then cosine decay to 10% (GPT-2/3's schedule). A short
      warmup, as a practitioner sets it, not the long warmup post-LN needs (Xiong et al.
      2020): the experiment asks whether the initialization alone makes it trainable.
    * No gradient clipping, no dropout, no weight decay: they would hide what the
      initialization does (clipping in particular hides a diverging run).
    * Batch 32 windows of 32 bytes, 4 rounds of 32 steps (128 steps, 131k tokens, every
      window seen once): what fits the 20-minute default run on one thread for 11
      architecture-scheme pairs and 3 seeds; the differences at initialization show in the
      first hundred steps (Liu et al. 2020, Fig. 1).
    * Width 64, 4 heads of 16, FFN 4x with GELU, 24 blocks: narrow and deep, the regime the
      depth rules are for.
    """

    dataset: str = "stdlib"
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 1e-3
    momentum: float = 0.9
    probe_size: int = 64
    test_limit: int | None = 256
    schemes: tuple[str, ...] = TRANSFORMER_SCHEMES
    architectures: tuple[str, ...] = ARCHITECTURES
    depth: int = 24
    width: int = 64
    heads: int = 4
    length: int = 32
    steps: int = 32
    beta_2: float = 0.98
    warmup: float = 0.1

    @property
    def setups(self) -> list[tuple[str, str]]:
        """The ``(architecture, scheme)`` pairs this config trains, in order."""
        return [
            (arch, scheme)
            for arch in self.architectures
            for scheme in SCHEMES_OF[arch]
            if scheme in self.schemes
        ]

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps


TRANSFORMER_QUICK = {
    "depth": 4,
    "width": 32,
    "heads": 2,
    "length": 16,
    "epochs": 2,
    "steps": 4,
    "batch_size": 16,
    "seeds": 2,
    "probe_size": 16,
    "test_limit": 64,
}
"""Overrides of ``--quick``: a smoke run of every setup."""


def check_transformer_config(config: TransformerConfig) -> TransformerConfig:
    """Validate a config before any training; return it.

    Raises:
        ValueError: an unknown dataset, scheme or architecture, a scheme none of the chosen
            architectures runs, a non-positive size, a width the heads do not divide, a
            warmup outside [0, 1) or ``beta_2`` outside [0, 1).

    Example:
    >>> check_transformer_config(TransformerConfig(depth=0))
    Traceback (most recent call last):
    ...
    ValueError: Argument `depth` must be a positive integer. Received: depth=0
    """
    if config.dataset not in DATASETS:
        raise ValueError(unknown_name_message("dataset", config.dataset, DATASETS))
    check_names("schemes", config.schemes, TRANSFORMER_SCHEMES)
    check_names("architectures", config.architectures, ARCHITECTURES)
    for field in ("depth", "width", "heads", "length", "steps"):
        check_positive_int(field, getattr(config, field))
    check_training(config)
    if not config.setups:
        runs = ", ".join(f"{a}: {', '.join(SCHEMES_OF[a])}" for a in config.architectures)
        raise ValueError(
            f"Argument `schemes` names no scheme of the chosen architectures ({runs}). "
            f"Received: schemes={config.schemes}"
        )
    if config.width % config.heads:
        raise ValueError(
            f"Argument `heads` must divide `width` ({config.width}). Received: heads={config.heads}"
        )
    for field in ("warmup", "beta_2"):
        value = getattr(config, field)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"Argument `{field}` must be in [0, 1). Received: {field}={value!r}")
    return config
