"""``keras-initlab transformer``: what initialization does to a deep language model.

Deep, narrow decoder-only transformers built from Keras layers (`models`: pre-LN, post-LN
and without normalization) are trained as byte-level causal language models on a fixed
list of Python's own standard-library modules (`text`, offline; the text's SHA-256 goes in
the report) under the flat N(0, 0.02) draw of keras_hub's GPT-2, He, LeCun, SmallInit,
``auto``, GPT-2's scaled projections, DeepNet (post-LN) and T-Fixup (no normalization);
the stream's growth at initialization is measured and predicted by
`keras_initlab.propagate`, and the claims (`claims`) are checked over seeds. The settings
and their reasons are `config.TransformerConfig`'s.

>>> from keras_initlab.compare.transformer.definition import TRANSFORMER
>>> TRANSFORMER.name
'transformer'
"""

from keras_initlab.compare.transformer.config import (
    ARCHITECTURES,
    SCHEMES_OF,
    TRANSFORMER_QUICK,
    TRANSFORMER_SCHEMES,
    TransformerConfig,
    check_transformer_config,
)

__all__ = [
    "ARCHITECTURES",
    "SCHEMES_OF",
    "TRANSFORMER_QUICK",
    "TRANSFORMER_SCHEMES",
    "TransformerConfig",
    "check_transformer_config",
]
