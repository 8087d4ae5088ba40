"""What a plot reads: the records of a monitor (one source at a time) and the layer axis.

Shared by `plot_variance` (`_plot`) and `plot_signal` (`_signal_plot`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_LAYER_TICKS = 40
# The block a layer belongs to, from Keras' naming in keras.applications and common code:
# "conv2_block1_1_conv" -> "conv2_block1", "block_3_expand" -> "block_3", "block1a_dwconv" ->
# "block1a", "..._stage_0_block_2_..." -> "..._stage_0_block_2", "stage3_conv" -> "stage3".
_NUMBERED = re.compile(r"_\d+$")  # a repeated layer's name: "transformer_layer_3"
_BLOCK = re.compile(r"^(.*?(?:block|stage)_?\d+[a-z]?)(?:_|$)")


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _not_records(monitor_or_records: Any, detail: str = "") -> TypeError:
    """The TypeError of a `monitor_or_records` that is neither a monitor nor its records."""
    import keras

    if isinstance(monitor_or_records, keras.Model):
        detail += (
            ". A model goes in the `model=` argument, after the monitor or its records: "
            "`plot_variance(monitor, model=model)`, `plot_signal(records, model)`"
        )
    return TypeError(
        "Argument `monitor_or_records` must be a VarianceMonitor or its `records` (a list of "
        "record dicts, as `measure()` also returns). Received: "
        f"monitor_or_records={_short_repr(monitor_or_records)} of type "
        f"{type(monitor_or_records).__name__}{detail}"
    )


def _records_of(monitor_or_records: Any) -> list[dict[str, Any]]:
    """The records of a `VarianceMonitor` (its ``records``), or a list of record dicts.

    Raises:
        TypeError: anything else (a model, one record dict alone, a DataFrame, a number).
        ValueError: no records.
    """
    import keras

    records = getattr(monitor_or_records, "records", monitor_or_records)
    if isinstance(records, Mapping):
        raise _not_records(monitor_or_records, " (one record: pass a list of records)")
    if isinstance(records, (str, bytes, keras.Model)) or not isinstance(records, Iterable):
        raise _not_records(monitor_or_records)
    records = list(records)
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise _not_records(
                monitor_or_records, f" (item {i} is of type {type(record).__name__}, not a dict)"
            )
    if not records:
        raise ValueError(
            "Argument `monitor_or_records` must hold at least one record. Received: no records "
            "(was the monitor passed to `model.fit`?)"
        )
    return records


def block_of(layer: str) -> str | None:
    """The block name of a layer record name, or None when the name shows no block.

    A nested path gives the innermost numbered layer that holds it
    (``"gpt2_backbone/transformer_layer_3/add"`` -> ``"transformer_layer_3"``), else its
    outer model or layer (``"encoder/dense"`` -> ``"encoder"``); otherwise Keras' block
    naming is read (see `_BLOCK`).

    Example:
    >>> [block_of(n) for n in ("conv2_block1_1_conv", "block_3_expand", "dense_2", "enc/d")]
    ['conv2_block1', 'block_3', None, 'enc']
    >>> block_of("gpt2_backbone/transformer_layer_3/self_attention/query")
    'transformer_layer_3'
    """
    if "/" in layer:
        parts = layer.split("/")
        numbered = [p for p in parts[:-1] if _NUMBERED.search(p)]
        return numbered[-1] if numbered else parts[0]
    match = _BLOCK.match(layer)
    return match.group(1) if match else None


def layer_ticks(
    layers: Sequence[str], max_ticks: int = MAX_LAYER_TICKS
) -> tuple[list[int], list[str]]:
    """Positions and labels of the layer axis: every layer when there are few, else the first
    layer of each block (thinned to ``max_ticks``) or, without block names, every k-th layer
    labelled ``"index: name"``.

    Example:
    >>> layer_ticks(["a", "b"])
    ([0, 1], ['a', 'b'])
    >>> pos, labels = layer_ticks([f"block{i // 3}_{i % 3}" for i in range(300)])
    >>> len(pos) <= 40, labels[:2]
    (True, ['block0', 'block3'])
    """
    n = len(layers)
    if n <= max_ticks:
        return list(range(n)), list(layers)
    blocks = [block_of(name) for name in layers]
    starts = [
        i for i in range(n) if blocks[i] is not None and (i == 0 or blocks[i] != blocks[i - 1])
    ]
    if len(starts) >= 2 and sum(b is not None for b in blocks) >= n // 2:
        every = math.ceil(len(starts) / max_ticks)
        chosen = starts[::every]
        return chosen, [str(blocks[i]) for i in chosen]
    every = math.ceil(n / max_ticks)
    chosen = list(range(0, n, every))
    return chosen, [f"{i}: {layers[i]}" for i in chosen]


def set_layer_ticks(ax: Any, layers: Sequence[str]) -> None:
    """Label ``ax``'s x axis with `layer_ticks` of ``layers`` (at 0, 1, ...), upright for a
    few labels and turned 90 degrees beyond 8."""
    positions, labels = layer_ticks(layers)
    rotate = 90 if len(labels) > 8 else 0
    ax.set_xticks(positions, labels, rotation=rotate, fontsize=7 if rotate else 8)


def _of_source(records: Sequence[dict[str, Any]], source: str | None) -> list[dict[str, Any]]:
    """The records of one source (``"probe"`` or ``"in_step"``): one picture never mixes the
    probe in inference mode with training batches in training mode."""
    sources = list(dict.fromkeys(str(r.get("source", "probe")) for r in records))
    if source is None:
        source = "probe" if "probe" in sources else sources[0]
    chosen = [r for r in records if str(r.get("source", "probe")) == source]
    if not chosen:
        raise ValueError(
            f"Argument `source` must be one of the recorded sources {sources}. "
            f"Received: source={source!r}"
        )
    return chosen
