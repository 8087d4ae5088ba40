"""One pass's tensors to the `COLUMNS` matrix: on the device, then on the host.

On the device (`reduce_pass`, inside JAX's jit and TensorFlow's trace), each layer's
output gets its passes over the data (`_statistics.unit_terms`: per unit, the sums the
statistics need; small outputs of the same shape stacked first, one set of ops for them);
every layer's per-unit vectors are then finished together (`_statistics.layer_statistics`:
two segment sums over all units laid end to end; kernels of the same size stacked whole,
`_statistics.kernel_statistics`): the data is never copied, and the ops after the passes
do not grow with the layers or their shapes, which keeps the trace short and, on
TensorFlow and PyTorch, the launches per record few. Every layer's
compared rows (`_twins.sketch`) are set side by side per shape and screened
(`_twins.screen_terms`). Four small arrays go to the host at each pass (the statistics,
which layers ran, the screen terms, the finite check) and a layer's rows only when its
screen finds candidate twins (`host_matrix`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from keras_initlab.measurement._calls import by_slot, owners, split_calls
from keras_initlab.measurement._statistics import (
    COLUMNS,
    DEVICE_COLUMNS,
    KERNEL_COLUMNS,
    SATURATING,
    UnitTerms,
    all_finite,
    as_rows,
    kernel_statistics,
    layer_statistics,
    non_finite_count,
    unit_terms,
)
from keras_initlab.measurement._twins import (
    SCREEN,
    SKETCH_ROWS,
    Screened,
    distinct_counts,
    screen_terms,
    sketch,
)

ops = keras.ops


@dataclass
class Pass:
    """One pass's tensors: per layer its outputs and the loss's gradients at them (None
    without targets), per layer its kernel's values and gradient (None where it has none),
    and the values of every model variable (the finite check); all values are the pass's
    own (arguments of JAX's jitted function). ``distinct``: whether the compared rows of
    ``distinct_units`` are computed (a Python bool, or a device bool: one trace serves
    both, the rows in a `keras.ops.cond` branch that runs only when it is true)."""

    outputs: list[list[Any]]
    grads: list[list[Any]] | None
    kernels: list[Any]
    kernel_grads: list[Any]
    variables: list[Any]
    distinct: Any = True


@dataclass
class Reduced:
    """One pass reduced, as device values, a row per call of each layer (a slot,
    `_calls.owners`): ``matrix`` (slots, `DEVICE_COLUMNS`; NaN rows for a layer that did
    not run), ``seen`` (per slot, whether it ran), ``owner`` (per slot, its layer),
    ``terms`` (the screen terms of every compared slot side by side; None when none is),
    ``index`` (per compared slot: its index, its first column in ``terms``, its units, its
    stack and its first column there), ``stacks`` (per stack, the compared rows side by
    side) and ``finite`` (every variable finite; see `_statistics.all_finite`)."""

    matrix: Any
    seen: Any
    owner: Any
    terms: Any
    index: Any
    stacks: list[Any]
    finite: Any

    def parts(self) -> tuple[Any, ...]:
        """The fields as a tuple (what a jitted or traced function returns)."""
        return (
            self.matrix,
            self.seen,
            self.owner,
            self.terms,
            self.index,
            self.stacks,
            self.finite,
        )


# Layers of the same shape with at most this many elements are stacked before their passes
# over the data (copying them costs less than the ops it saves); larger ones are reduced
# where they are and only their per-unit sums are stacked.
STACKED_ELEMENTS = 2**16


def _stacked_terms(slots: list[int], rows: Sequence[Any], saturating: str | None) -> UnitTerms:
    """`_statistics.unit_terms` of same-shaped ``rows`` (each (n, units)) of ``slots``: the
    small ones stacked before their passes (one set of ops), the others each on its own
    (no copy of the data)."""
    n, units = rows[0].shape
    if len(rows) > 1 and n * units <= STACKED_ELEMENTS:
        means, squares, residuals, hits = unit_terms(ops.stack(rows), saturating)
        return UnitTerms(slots, n, units, [means], [squares], [residuals], hits)
    each = [unit_terms(r, saturating) for r in rows]
    hits = None if each[0][3] is None else ops.stack([t[3] for t in each])
    means, squares, residuals = ([t[k] for t in each] for k in range(3))
    return UnitTerms(slots, n, units, means, squares, residuals, hits)


def _placed(blocks: list[Any], order: list[int], layers: int, width: int, dtype: str) -> Any:
    """The rows ``blocks`` (stacked in ``order`` of layers) at their layers' places in a
    (layers, width) matrix, NaN rows elsewhere."""
    nan = ops.full((1, width), math.nan, dtype)
    at = {layer: k for k, layer in enumerate(order)}
    place = np.array([at.get(i, len(order)) for i in range(layers)], np.int32)
    return ops.take(ops.concatenate([*blocks, nan], axis=0), place, axis=0)


def reduce_pass(
    tensors: Pass, activations: Sequence[str | None], dtype: str, max_units: int
) -> Reduced:
    """The device statistics of every call of every layer of one pass (a row per slot,
    `_calls.owners`), stacked by shape (traceable)."""
    owner = owners(tensors.outputs)
    tensors = Pass(
        split_calls(tensors.outputs),
        None if tensors.grads is None else split_calls(tensors.grads),
        by_slot(tensors.kernels, owner),
        by_slot(tensors.kernel_grads, owner),
        tensors.variables,
        tensors.distinct,
    )
    activations = by_slot(activations, owner)
    n_layers = len(tensors.outputs)
    stacks: dict[tuple[Any, ...], list[int]] = {}
    rows: dict[int, Any] = {}
    for i, outputs in enumerate(tensors.outputs):
        if outputs:
            rows[i] = as_rows(outputs[0], dtype)  # (one call: a slot)
            saturating = activations[i] if activations[i] in SATURATING else None
            stacks.setdefault((tuple(rows[i].shape), saturating), []).append(i)
    measured: list[UnitTerms] = []
    grad_terms: list[UnitTerms] = []
    order: list[int] = []
    sides: list[list[int]] = []  # per compared stack, its layers
    index: list[tuple[int, ...]] = []
    column = 0
    for (shape, saturating), members in stacks.items():
        if tensors.grads is not None:
            at = [as_rows(tensors.grads[i][0], dtype) for i in members]
            grad_terms.append(_stacked_terms(members, at, None))
        measured.append(_stacked_terms(members, [rows[i] for i in members], saturating))
        order += members
        units = shape[1]
        if units <= max_units:
            for k, i in enumerate(members):
                index.append((i, column + k * units, units, len(sides), k * units))
            sides.append(members)
            column += units * len(members)
    kernel_stacks: dict[int, list[int]] = {}
    for i in order:
        if tensors.kernels[i] is not None:
            size = math.prod(tensors.kernels[i].shape)
            kernel_stacks.setdefault(size, []).append(i)
    kernel_blocks, kernel_order = [], []
    for members in kernel_stacks.values():
        flat = [ops.reshape(ops.cast(tensors.kernels[i], dtype), (-1,)) for i in members]
        grads = None
        if tensors.grads is not None:
            grads = ops.stack(
                [ops.reshape(ops.cast(tensors.kernel_grads[i], dtype), (-1,)) for i in members]
            )
        kernel_blocks.append(kernel_statistics(ops.stack(flat), grads))
        kernel_order += members
    matrix = ops.concatenate(
        [
            layer_statistics(
                measured, grad_terms if tensors.grads is not None else None, n_layers, dtype
            ),
            _placed(kernel_blocks, kernel_order, n_layers, len(KERNEL_COLUMNS), dtype),
        ],
        axis=1,
    )
    terms, compared = _compared(rows, sides, dtype, tensors.distinct)
    return Reduced(
        matrix,
        ops.convert_to_tensor([i in rows for i in range(n_layers)]),
        ops.convert_to_tensor(np.array(owner, np.int32)),
        terms,
        ops.convert_to_tensor(np.array(index, np.int32).reshape(-1, 5)),
        compared,
        all_finite(tensors.variables),
    )


def _compared(
    rows: dict[int, Any], sides: list[list[int]], dtype: str, distinct: Any
) -> tuple[Any, list[Any]]:
    """The compared rows of each stack of layers (their `_twins.sketch` side by side) and
    their `_twins.screen_terms` side by side (None when no layer is compared); zeros of
    those shapes where ``distinct`` is false (a device bool: a `keras.ops.cond`, whose
    other branch is not run)."""
    if not sides:
        return None, []

    def compare() -> tuple[Any, list[Any]]:
        signs: dict[Any, Any] = {}  # (one constant per row count in the trace)
        compared = [
            ops.concatenate([sketch(rows[i], signs=signs) for i in m], axis=1) for m in sides
        ]
        terms = ops.concatenate([screen_terms(side, dtype) for side in compared], axis=1)
        return terms, compared

    if isinstance(distinct, bool):
        return compare() if distinct else _skipped(rows, sides, dtype)
    return ops.cond(distinct, compare, lambda: _skipped(rows, sides, dtype))


def _skipped(rows: dict[int, Any], sides: list[list[int]], dtype: str) -> tuple[Any, list[Any]]:
    """Zeros in the shapes `_compared` gives (``distinct_units`` not computed)."""
    shapes = [(min(rows[m[0]].shape[0], SKETCH_ROWS), rows[m[0]].shape[1] * len(m)) for m in sides]
    terms = ops.zeros((1 + SCREEN, sum(units for _, units in shapes)), dtype)
    return terms, [ops.zeros(shape, dtype) for shape in shapes]


def host_matrix(
    reduced: Reduced,
    weights: Sequence[Sequence[Any]],
    rtol: float,
    dtype: str,
    distinct: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(matrix, seen, owner)``: all `COLUMNS` (slots, len(COLUMNS)) float64, which slots
    ran and their layers (`Reduced`).

    ``non_finite_weights`` is 0 where every variable of the model is finite, else counted
    per slot from its layer's ``weights``; ``distinct_units`` is counted (`_twins.distinct_counts`)
    where the activation variance is finite, else NaN, and NaN for a layer not compared
    and everywhere when ``distinct`` is false (the pass's ``distinct`` was false).
    """
    seen = np.asarray(ops.convert_to_numpy(reduced.seen), bool)
    owner = [int(i) for i in ops.convert_to_numpy(reduced.owner)]
    device = np.asarray(ops.convert_to_numpy(reduced.matrix), np.float64)
    out = np.full((device.shape[0], len(COLUMNS)), np.nan)
    out[:, [COLUMNS.index(c) for c in DEVICE_COLUMNS]] = device
    at = COLUMNS.index("non_finite_weights")
    if bool(ops.convert_to_numpy(reduced.finite)):
        out[seen, at] = 0.0
    else:
        for i in map(int, np.flatnonzero(seen)):
            out[i, at] = non_finite_count(weights[owner[i]])
    if reduced.terms is None or not distinct:
        return out, seen, owner
    terms = np.asarray(ops.convert_to_numpy(reduced.terms), np.float64)
    fetched: dict[int, np.ndarray] = {}

    def rows_of(stack: int, start: int, units: int) -> np.ndarray:
        if stack not in fetched:
            fetched[stack] = np.asarray(ops.convert_to_numpy(reduced.stacks[stack]))
        return fetched[stack][:, start : start + units]

    variance = device[:, DEVICE_COLUMNS.index("activation_var")]
    layers, screened = [], []
    for i, column, units, stack, start in np.asarray(ops.convert_to_numpy(reduced.index)):
        if np.isfinite(variance[i]):
            count = reduced.stacks[stack].shape[0]
            fetch = functools.partial(rows_of, int(stack), int(start), int(units))
            layers.append(int(i))
            screened.append(Screened(terms[:, column : column + units], fetch, count, dtype))
    out[layers, COLUMNS.index("distinct_units")] = distinct_counts(screened, rtol)
    return out, seen, owner
