"""The keras_hub models the hub tests build: tiny configs from their constructors (2 blocks,
width 64, vocabulary 1000; ViT on 32x32 images in 8x8 patches; no preset, no network) and
their inputs."""

from __future__ import annotations

from typing import Any

import keras
import keras_hub
import numpy as np

VOCAB, WIDTH, BLOCKS, TOKENS = 1000, 64, 2, 16
_SHARED = {"num_layers": BLOCKS, "hidden_dim": WIDTH, "intermediate_dim": 2 * WIDTH}
# name: (the class prefix in keras_hub.models, its backbone's own arguments)
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "gpt2": ("GPT2", {"num_heads": 2, "max_sequence_length": 4 * TOKENS}),
    "bert": ("Bert", {"num_heads": 2, "max_sequence_length": 4 * TOKENS}),
    "llama": ("Llama", {"num_query_heads": 4, "num_key_value_heads": 2}),
    "gemma": ("Gemma", {"num_query_heads": 2, "num_key_value_heads": 1, "head_dim": 32}),
    # Beyond the transformer issue's five: GPT-NeoX's attention returns ``(output, None)``
    # without a cache; Falcon builds an ALiBi bias from its padding mask with a backend
    # array of slopes.
    "gptneox": ("GPTNeoX", {"num_heads": 2, "max_sequence_length": 4 * TOKENS}),
    "falcon": ("Falcon", {"num_attention_heads": 2}),
}


def backbone(name: str) -> Any:
    """The backbone ``name`` (a key of `CONFIGS`), drawn under seed 0."""
    keras.utils.set_random_seed(0)
    prefix, own = CONFIGS[name]
    cls = getattr(keras_hub.models, f"{prefix}Backbone")
    return cls(vocabulary_size=VOCAB, **_SHARED, **own)


def causal_lm(name: str) -> Any:
    """The causal LM task model of ``name`` on `backbone` (no preprocessor)."""
    model = backbone(name)
    prefix = CONFIGS[name][0]
    return getattr(keras_hub.models, f"{prefix}CausalLM")(backbone=model, preprocessor=None)


def tokens(name: str, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``batch`` sequences of `TOKENS` random token ids, no padding (and BERT's segments)."""
    rng = np.random.default_rng(seed)
    x = {
        "token_ids": rng.integers(0, VOCAB, (batch, TOKENS)).astype("int32"),
        "padding_mask": np.ones((batch, TOKENS), "int32"),
    }
    if name == "bert":
        x["segment_ids"] = np.zeros((batch, TOKENS), "int32")
    return x


IMAGE, PATCH = 32, 8


def vit_classifier(classes: int = 10) -> Any:
    """ViT's image classifier on a tiny backbone (2 blocks, width 64, 16 patches and a
    class token), drawn under seed 0."""
    keras.utils.set_random_seed(0)
    model = keras_hub.models.ViTBackbone(
        image_shape=(IMAGE, IMAGE, 3),
        patch_size=PATCH,
        num_layers=BLOCKS,
        num_heads=2,
        hidden_dim=WIDTH,
        mlp_dim=2 * WIDTH,
    )
    return keras_hub.models.ViTImageClassifier(backbone=model, num_classes=classes)


def bert_classifier(classes: int = 4) -> Any:
    """BERT's text classifier on `backbone` (no preprocessor)."""
    return keras_hub.models.BertTextClassifier(
        backbone=backbone("bert"), num_classes=classes, preprocessor=None
    )
