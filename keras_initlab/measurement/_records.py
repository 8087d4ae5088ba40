"""Records: one dict per measured layer (per call of a layer called more than once) and
measurement, the format every consumer reads.

`RECORD_KEYS` are the keys of a record: where and when (``epoch``, ``step``, ``event``,
``source``: ``"probe"`` or ``"in_step"``), which layer (``layer``: its path,
``layer_class``, ``activation``), how (``mode``: ``"inference"`` or ``"training"``;
``gradient_of``: ``"output"`` or ``"logits"``, None where no gradient was taken) and the
statistics (`COLUMNS`). A column that does not apply is None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from keras_initlab.measurement._calls import slot_names
from keras_initlab.measurement._statistics import COLUMNS, SATURATING

RECORD_KEYS = (
    "epoch",
    "step",
    "event",
    "source",
    "layer",
    "layer_class",
    "activation",
    "mode",
    "gradient_of",
    *COLUMNS,
)
_GRADIENT_KEYS = {"gradient_var", "weight_grad_var"}
_INT_KEYS = ("distinct_units", "non_finite_weights")


def _class_name(layer: Any) -> str:
    """A record's ``layer_class``: the layer's or operation's class (``"Add"`` for a sum
    inside a block's call, `_inner.InnerSum`)."""
    return str(getattr(layer, "record_class", type(layer).__name__))


class RecordTable:
    """Turns statistics matrices of a fixed list of layers into records.

    Args:
        entries: ``(path, layer)`` of the measured layers, in order.
        kernels: per layer, its kernel variable or None.
        activations: per layer, the name of its activation or None.
    """

    def __init__(
        self,
        entries: Sequence[tuple[str, Any]],
        kernels: Sequence[Any | None],
        activations: Sequence[str | None],
    ) -> None:
        self.paths = [path for path, _ in entries]
        self.templates = [
            dict.fromkeys(RECORD_KEYS)
            | {"layer": path, "layer_class": _class_name(layer), "activation": activation}
            for (path, layer), activation in zip(entries, activations, strict=True)
        ]
        self._unused = [
            (set() if kernel is not None else {"weight_var", "weight_grad_var"})
            | (set() if activation in SATURATING else {"saturation_fraction"})
            for kernel, activation in zip(kernels, activations, strict=True)
        ]
        # (path, source, reason) of each layer that did not run and has no records.
        self.skipped: list[tuple[str, str, str]] = []

    def __repr__(self) -> str:
        return f"RecordTable(layers={len(self.templates)})"

    def rows(
        self,
        matrix: Any,
        columns: Sequence[str],
        *,
        owner: Sequence[int],
        seen: Sequence[bool],
        gradient_of: Sequence[str | None],
        with_gradients: bool,
        **context: Any,
    ) -> list[dict[str, Any]]:
        """One record per call of each layer that ran, from a ``(slots, columns)`` matrix.

        ``owner`` gives each row's layer (`_calls.owners`: a row per call; the first call
        is named by the layer's path, the next ones ``path@2``, ...); ``seen`` and
        ``gradient_of`` are per row. ``context`` gives ``epoch``, ``step``, ``event``,
        ``source`` and ``mode``. A column that does not apply stays None: weight columns of
        a layer without a kernel, saturation of a non-saturating activation, gradients
        without targets (``with_gradients=False``) or where ``gradient_of`` is None (in the
        training step, a layer that depends on no trainable variable: the step's tape does
        not reach it). A layer that did not run for this source (a sublayer its parent does
        not call, such as the `Softmax` of a `MultiHeadAttention` on its fused path) has no
        record; it is listed once in `skipped`.
        """
        rows = []
        names = slot_names(self.paths, owner)
        for k, values in enumerate(matrix.tolist()):
            i = owner[k]
            if not seen[k]:
                entry = (names[k], str(context["source"]), "did not run")
                if entry not in self.skipped:
                    self.skipped.append(entry)
                continue
            row = dict(
                self.templates[i],
                **context,
                layer=names[k],
                gradient_of=gradient_of[k] if with_gradients else None,
            )
            unused = self._unused[i]
            gradients = with_gradients and gradient_of[k] is not None
            for key, value in zip(columns, values, strict=True):
                if key not in unused and (gradients or key not in _GRADIENT_KEYS):
                    row[key] = value
            for key in _INT_KEYS:
                value = row[key]
                if value is not None:
                    row[key] = int(value) if math.isfinite(value) else None
            rows.append(row)
        return rows
