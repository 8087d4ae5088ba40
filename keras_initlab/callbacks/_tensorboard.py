"""TensorBoard output of a `VarianceMonitor`: per-layer scalars and kernel histograms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras_initlab.measurement import COLUMNS


class TensorBoardWriter:
    """Writes one record (all layers) per call under ``log_dir``; needs tensorboard."""

    def __init__(self, log_dir: str) -> None:
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(log_dir))

    def __repr__(self) -> str:
        return f"TensorBoardWriter({self._writer!r})"

    def write(
        self,
        rows: Sequence[dict[str, Any]],
        step: int,
        entries: Sequence[tuple[str, Any]],
        kernels: Sequence[Any],
    ) -> None:
        tf = self._tf
        with self._writer.as_default(step=step):
            for row in rows:
                for key in COLUMNS:
                    if row.get(key) is not None:
                        tf.summary.scalar(f"variance_monitor/{row['layer']}/{key}", row[key])
            for (path, _), kernel in zip(entries, kernels, strict=False):
                if kernel is not None:
                    tf.summary.histogram(f"variance_monitor/{path}/kernel", kernel.value)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
