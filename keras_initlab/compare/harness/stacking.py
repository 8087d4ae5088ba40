"""Seeds trained together: one model holding an independent tower per seed.

Compiled with one loss per tower output, the model's loss is the sum of the towers'
losses and a tower's weights get the gradient of its own loss only: one ``fit`` trains
every seed exactly as a separate ``fit`` would on the same batches, and Keras traces one
training step for all of them. An experiment re-initializes each tower with its own seed
(``model.get_layer(tower_name(seed))``), then reads each tower's history
(`tower_history`) and records (`split_tower`) back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["build_stacked", "split_tower", "tower_history", "tower_name"]


def tower_name(seed: int) -> str:
    """Name of the tower of one seed inside a stacked model (and of its output).

    Example:
    >>> tower_name(3)
    'seed_3'
    """
    return f"seed_{seed}"


def build_stacked(
    input_shape: tuple[int, ...],
    seeds: Sequence[int],
    build_tower: Callable[[str], Any],
    *,
    name: str,
) -> Any:
    """One functional model holding ``build_tower(tower_name(seed))`` per seed, side by side.

    Every tower reads the same input and has its own output, keyed by its name.

    Args:
        input_shape: the shape of one example.
        seeds: one tower per seed (distinct values).
        build_tower: builds a model of the given name.
        name: the stacked model's name.

    Returns:
        A built ``keras.Model``; ``model.get_layer(tower_name(seed))`` is a tower.

    Raises:
        ValueError: ``seeds`` empty or repeated.

    Example:
    >>> import keras
    >>> def tower(name):
    ...     return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name=name)
    >>> model = build_stacked((4,), [0, 1], tower, name="two")
    >>> sorted(model.output)
    ['seed_0', 'seed_1']
    """
    import keras

    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(
            f"Argument `seeds` must be distinct and non-empty. Received: seeds={list(seeds)}"
        )
    inputs = keras.Input(input_shape)
    outputs = {tower_name(seed): build_tower(tower_name(seed))(inputs) for seed in seeds}
    return keras.Model(inputs, outputs, name=name)


def split_tower(path: str) -> tuple[str, str]:
    """``(tower, layer)`` of a layer path inside a stacked model (``""``: no tower).

    Example:
    >>> split_tower("stacked/seed_3/hidden_2"), split_tower("output")
    (('seed_3', 'hidden_2'), ('', 'output'))
    """
    parts = str(path).split("/")
    return (parts[-2] if len(parts) > 1 else ""), parts[-1]


def tower_history(
    logs: dict[str, list[float]], tower: str, metric: str, single: bool
) -> list[float]:
    """One tower's per-epoch ``metric`` (``loss``, ``val_accuracy``, ...) from the
    ``History`` of a stacked model (``single``: one tower, whose keys have no prefix).

    Example:
    >>> logs = {"seed_0_loss": [2.0, 1.0], "val_seed_0_accuracy": [0.5, 0.7]}
    >>> tower_history(logs, "seed_0", "val_accuracy", single=False)
    [0.5, 0.7]
    """
    key = metric if single else f"{tower}_{metric}"
    if metric.startswith("val_"):
        key = metric if single else f"val_{tower}_{metric[4:]}"
    return [float(v) for v in logs[key]]
