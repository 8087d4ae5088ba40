"""What defines a comparison run, and its validation, without Keras.

`CompareConfig`, the scheme and activation names and `check_config` live here so that the
``keras-initlab`` command checks every argument value before TensorFlow starts (the
modules that train import Keras).
"""

from __future__ import annotations

import dataclasses

from keras_initlab._validation import (
    check_choice,
    check_positive,
    check_positive_int,
    unknown_name_message,
)
from keras_initlab.compare.datasets import check_dataset_name

ACTIVATIONS = ("elu", "gelu", "linear", "relu", "selu", "sigmoid", "silu", "tanh")
# Schemes trained again under the contrast activation (Xavier vs He, claims 6-8).
CONTRAST_SCHEMES = ("xavier_normal", "he_normal")

COMPARE_SCHEMES = (
    "zeros",
    "constant",
    "too_small",
    "too_large",
    "identity_1.5",
    "identity_0.5",
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "orthogonal",
    "lsuv",
    "auto",
)


def check_scheme_names(names: list[str]) -> list[str]:
    """Return ``names`` if each is a compare scheme, else raise ValueError (close matches).

    Example:
    >>> check_scheme_names(["zeros", "he_normal"])
    ['zeros', 'he_normal']
    """
    for name in names:
        if name not in COMPARE_SCHEMES:
            raise ValueError(unknown_name_message("scheme", name, COMPARE_SCHEMES))
    return names


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """What every training command's run shares: data, optimizer, schedule and seeds.

    Attributes:
        dataset: dataset name or ``.npz`` path (``keras_initlab.compare.datasets``).
        epochs, batch_size, learning_rate, momentum: SGD with momentum and its schedule,
            the same for every scheme.
        seed: seed of the split and of the batch order; the weights of seed ``i`` of
            ``seeds`` are drawn with ``seed + i``.
        seeds: how many seeds each scheme is trained with.
        probe_size: held-out examples the variances are measured on.
        train_limit, test_limit: keep only the first examples of each split (None: all).
    """

    dataset: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.02
    momentum: float = 0.9
    seed: int = 0
    seeds: int = 3
    probe_size: int = 256
    train_limit: int | None = None
    test_limit: int | None = None

    @property
    def seed_values(self) -> list[int]:
        """The weight seeds of every scheme: ``seed, seed + 1, ...``."""
        return [self.seed + i for i in range(self.seeds)]


@dataclasses.dataclass(frozen=True)
class CompareConfig(TrainingConfig):
    """Everything that defines a comparison run (the defaults are the default run): the
    `TrainingConfig` fields and

    Attributes:
        schemes: compare scheme names (`COMPARE_SCHEMES`).
        depth, width, activation: the MLP (``models.build_mlp``); the seeds of a scheme
            are trained together, one model holding a network per seed.
        contrast_activation: the activation ``CONTRAST_SCHEMES`` are trained again with
            (None: no contrast run).
        check_widths: widths of the finite-width check at initialization (``()``: none).
        check_seeds: seeds per width of that check.
    """

    schemes: tuple[str, ...] = COMPARE_SCHEMES
    depth: int = 10
    width: int = 64
    activation: str = "relu"
    contrast_activation: str | None = "tanh"
    check_widths: tuple[int, ...] = (64, 256)
    check_seeds: int = 12


QUICK = {
    "depth": 6,
    "width": 32,
    "epochs": 2,
    "probe_size": 128,
    "train_limit": 512,
    "test_limit": 128,
    "check_seeds": 6,
}
"""Overrides of ``--quick``: a smoke run of every scheme in seconds."""


def check_config(config: CompareConfig) -> CompareConfig:
    """Validate a config before any training; return it.

    Raises:
        ValueError: an unknown scheme or activation, or a non-positive size.
    """
    check_dataset_name(config.dataset)
    if not config.schemes:
        raise ValueError("Argument `schemes` must name at least one scheme. Received: schemes=()")
    check_scheme_names(list(config.schemes))
    check_choice("activation", config.activation, ACTIVATIONS)
    if config.contrast_activation is not None:
        check_choice("contrast_activation", config.contrast_activation, ACTIVATIONS)
    check_training(config)
    for field in ("depth", "width", "check_seeds"):
        check_positive_int(field, getattr(config, field))
    for width in config.check_widths:
        check_positive_int("check_widths", width)
    if config.check_widths and config.check_seeds < 2:
        raise ValueError(
            "Argument `check_seeds` must be at least 2 (a spread needs two seeds). "
            f"Received: check_seeds={config.check_seeds}"
        )
    if config.depth < 2:
        raise ValueError(
            f"Argument `depth` must be at least 2 (a first and a last hidden "
            f"layer to compare). Received: depth={config.depth}"
        )
    return config


def check_training(config: TrainingConfig) -> None:
    """Check the training fields every run config has (``compare``'s and ``residual``'s):
    ``epochs``, ``batch_size``, ``seeds``, ``probe_size`` and the optional ``train_limit``
    / ``test_limit`` positive integers, ``learning_rate`` positive, ``momentum`` in [0, 1).

    Example:
    >>> check_training(CompareConfig(momentum=1.0))
    Traceback (most recent call last):
    ...
    ValueError: Argument `momentum` must be in [0, 1). Received: momentum=1.0
    """
    for field in ("epochs", "batch_size", "seeds", "probe_size"):
        check_positive_int(field, getattr(config, field))
    for field in ("train_limit", "test_limit"):
        if getattr(config, field) is not None:
            check_positive_int(field, getattr(config, field))
    check_positive("learning_rate", config.learning_rate)
    if not 0.0 <= config.momentum < 1.0:
        raise ValueError(
            f"Argument `momentum` must be in [0, 1). Received: momentum={config.momentum!r}"
        )
