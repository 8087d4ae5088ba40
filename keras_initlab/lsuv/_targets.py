"""Which layers LSUV normalizes (``LSUV_LAYERS``), their weights, and why others are skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keras_initlab.model.layers import EMBEDDINGS, KERNEL_LAYERS
from keras_initlab.model.weights import WeightSpec, other_weights, weight_specs

# The feed-forward kernel layers, whose output variance a scale of the kernel sets.
LSUV_LAYERS = KERNEL_LAYERS


@dataclass
class _Target:
    """An LSUV layer: the kernel that is rescaled, the kernels to pre-initialize, the bias."""

    layer: Any
    scaled: WeightSpec
    kernels: list[WeightSpec]
    bias: WeightSpec | None
    path: str = ""  # the layer's name in reports (`keras_initlab.model.tree`)
    iterations: int = 0
    status: str | None = None
    index: int = field(default=0)

    @property
    def variables(self) -> list[Any]:
        specs = [*self.kernels, *([self.bias] if self.bias is not None else [])]
        return [s.variable for s in specs]


def _skip_reason(layer: Any) -> str:
    if isinstance(layer, EMBEDDINGS):
        return "embedding table: a lookup, no kernel whose output variance LSUV could set"
    return "recurrent cell: LSUV normalizes feed-forward kernels only"


def _targets(model: Any) -> tuple[list[_Target], dict[str, str]]:
    """The LSUV layers of ``model`` (in weight_specs order) and ``{name: reason}`` of the
    weighted layers it skips (known layers first, then the ``other_weights`` owners)."""
    by_layer: dict[int, list[WeightSpec]] = {}
    for spec in weight_specs(model):
        by_layer.setdefault(id(spec.layer), []).append(spec)
    targets: list[_Target] = []
    skipped: dict[str, str] = {}
    for specs in by_layer.values():
        layer = specs[0].layer
        if not isinstance(layer, LSUV_LAYERS):
            skipped[specs[0].layer_path] = _skip_reason(layer)
            continue
        kernels = [s for s in specs if not s.is_bias]
        scaled = next(s for s in kernels if s.role in ("kernel", "pointwise_kernel"))
        bias = next((s for s in specs if s.is_bias), None)
        targets.append(
            _Target(layer, scaled, kernels, bias, path=specs[0].layer_path, index=len(targets))
        )
    for other in other_weights(model):
        skipped.setdefault(other.layer_path, other.reason)
    return targets, skipped
