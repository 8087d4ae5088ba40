"""The decoder-only transformers of the transformer experiment, from Keras layers alone.

``build_decoder(architecture, ...)`` is a causal language model over byte tokens:
``Embedding`` (``"tokens"``), ``depth`` blocks of a causal ``MultiHeadAttention`` branch and
a ``Dense(4 width, gelu) -> Dense(width)`` branch, each added to the stream
(``block_{b}_attention_sum``, ``block_{b}_ffn_sum``), then a ``Dense(vocabulary)`` head
(``"logits"``). The architectures:

* ``"pre_ln"`` (GPT-2): ``x + f(LN(x))``, a final LN before the head;
* ``"post_ln"`` (Vaswani et al. 2017): ``LN(x + g f(x))``, where ``g`` is a fixed
  `keras_initlab.ResidualGate` at 1 (DeepNet's ``1/alpha`` goes there,
  `keras_initlab.residual_init`; at 1 it changes nothing);
* ``"no_norm"``: ``x + f(x)`` and no normalization layer at all (T-Fixup's setting).

There is no position embedding: a causal transformer learns positions from its mask
(Haviv et al. 2022, "Transformer Language Models without Positional Encodings Still Learn
Positional Information"), and a learned position table would be one more weight every
scheme must draw.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EMBEDDING", "build_decoder", "sum_names"]

EMBEDDING = "tokens"


def sum_names(depth: int) -> list[str]:
    """The residual sums in stream order: two per block.

    Example:
    >>> sum_names(2)
    ['block_0_attention_sum', 'block_0_ffn_sum', 'block_1_attention_sum', 'block_1_ffn_sum']
    """
    return [f"block_{b}_{part}_sum" for b in range(depth) for part in ("attention", "ffn")]


def build_decoder(
    architecture: str,
    *,
    vocabulary: int,
    length: int,
    depth: int,
    width: int,
    heads: int,
    name: str | None = None,
) -> Any:
    """A causal transformer language model (module docstring).

    Args:
        architecture: ``"pre_ln"``, ``"post_ln"`` or ``"no_norm"``.
        vocabulary: tokens (the input ids and the logits).
        length: tokens per sequence.
        depth, width, heads: blocks, the stream's width, attention heads.
        name: the model's name (default ``f"{architecture}_{depth}"``).

    Returns:
        A built ``keras.Model`` from int ids ``(batch, length)`` to logits
        ``(batch, length, vocabulary)``.

    Example:
    >>> model = build_decoder("post_ln", vocabulary=16, length=8, depth=2, width=8, heads=2)
    >>> model.output_shape, len(model.get_layer("block_1_ffn_sum").input)
    ((None, 8, 16), 2)
    """
    import keras

    from keras_initlab.residual_gate import ResidualGate

    layers = keras.layers
    x = keras.Input((length,), dtype="int32", name="ids")
    h = layers.Embedding(vocabulary, width, name=EMBEDDING)(x)
    for b in range(depth):
        for part in ("attention", "ffn"):
            prefix = f"block_{b}_{part}"
            u = (
                layers.LayerNormalization(name=f"{prefix}_norm")(h)
                if architecture == "pre_ln"
                else h
            )
            if part == "attention":
                f = layers.MultiHeadAttention(heads, width // heads, name=f"{prefix}")(
                    u, u, use_causal_mask=True
                )
            else:
                f = layers.Dense(4 * width, activation="gelu", name=f"{prefix}_in")(u)
                f = layers.Dense(width, name=f"{prefix}_out")(f)
            if architecture == "post_ln":
                f = ResidualGate(1.0, trainable=False, name=f"{prefix}_gate")(f)
            h = layers.Add(name=f"{prefix}_sum")([h, f])
            if architecture == "post_ln":
                h = layers.LayerNormalization(name=f"{prefix}_norm")(h)
    if architecture == "pre_ln":
        h = layers.LayerNormalization(name="final_norm")(h)
    logits = layers.Dense(vocabulary, name="logits")(h)
    return keras.Model(x, logits, name=name or f"{architecture}_{depth}")
