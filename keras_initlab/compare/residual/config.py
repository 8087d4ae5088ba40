"""What defines a residual experiment run, and its validation, without Keras.

The command line checks every argument value with `check_residual_config` before
TensorFlow starts, as ``keras-initlab compare`` does with its own config.
"""

from __future__ import annotations

import dataclasses

from keras_initlab._validation import check_names, check_positive_int
from keras_initlab.compare.config import TrainingConfig, check_training
from keras_initlab.compare.datasets import check_dataset_name

# Plain schemes, LSUV, the architecture-aware `auto`, and He with each residual rule
# (``initialize(model, "he_normal", residual=rule)``; the rules of
# `keras_initlab.residual_init.RULES` but its TRANSFORMER_RULES, named here without
# importing Keras: a test checks).
RESIDUAL_RULES = ("zero", "fixup", "skipinit", "scaled")
RESIDUAL_SCHEMES = (
    "he_normal",
    "xavier_normal",
    "lsuv",
    "auto",
    *(f"he_normal+{rule}" for rule in RESIDUAL_RULES),
)
ARCHITECTURES = ("mlp", "cnn")


def split_scheme(name: str) -> tuple[str, str | None]:
    """``(scheme, residual rule or None)`` of an experiment scheme name.

    Example:
    >>> split_scheme("he_normal+fixup"), split_scheme("auto")
    (('he_normal', 'fixup'), ('auto', None))
    """
    base, _, rule = name.partition("+")
    return base, rule or None


@dataclasses.dataclass(frozen=True)
class ResidualConfig(TrainingConfig):
    """Everything that defines a residual experiment (the defaults are the default run): the
    ``keras_initlab.compare.config.TrainingConfig`` fields and

    Attributes:
        schemes: `RESIDUAL_SCHEMES` names.
        architectures: ``"mlp"`` (``blocks`` blocks ``x + Dense(relu(Dense(x)))`` of
            ``width`` units) and/or ``"cnn"`` (``cnn_blocks`` blocks of two 3x3 convs of
            ``channels`` channels, on square images: the dataset's features a perfect
            square, digits are 8 x 8); neither has normalization layers.
        blocks, width, cnn_blocks, channels: their sizes.
        learning_rate: 0.002 by default, a tenth of ``compare``'s: the last layers of all
            ``L`` branches move together, so one step changes the stream about ``L`` times
            as much as one layer's step. Measured on digits, 3 seeds, 10 epochs: at 0.02
            even zero-initialized branches diverge on the 32-block MLP; at 0.005 the MLP's
            ``scaled`` runs and one of three CNN ``auto`` runs still diverge; at 0.002
            every scheme with a bounded stream trains (test accuracy 0.92-0.98).
    """

    learning_rate: float = 0.002
    schemes: tuple[str, ...] = RESIDUAL_SCHEMES
    architectures: tuple[str, ...] = ARCHITECTURES
    blocks: int = 32
    width: int = 64
    cnn_blocks: int = 16
    channels: int = 16

    def depth(self, architecture: str) -> int:
        """Residual blocks of ``architecture``."""
        return self.blocks if architecture == "mlp" else self.cnn_blocks


RESIDUAL_QUICK = {
    "blocks": 6,
    "width": 16,
    "cnn_blocks": 3,
    "channels": 8,
    "epochs": 2,
    "seeds": 2,
    "probe_size": 64,
    "train_limit": 256,
    "test_limit": 64,
}
"""Overrides of ``--quick``: a smoke run of every scheme in seconds."""


def check_residual_config(config: ResidualConfig) -> ResidualConfig:
    """Validate a config before any training; return it.

    Raises:
        ValueError: an unknown scheme or architecture, or a non-positive size.

    Example:
    >>> check_residual_config(ResidualConfig(blocks=0))
    Traceback (most recent call last):
    ...
    ValueError: Argument `blocks` must be a positive integer. Received: blocks=0
    """
    check_dataset_name(config.dataset)
    check_names("schemes", config.schemes, RESIDUAL_SCHEMES)
    check_names("architectures", config.architectures, ARCHITECTURES)
    for field in ("blocks", "width", "cnn_blocks", "channels"):
        check_positive_int(field, getattr(config, field))
    check_training(config)
    return config
