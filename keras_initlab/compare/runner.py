"""Train the deep MLP under every scheme and several seeds, with the same data and optimizer.

For each scheme, the seeds ``config.seed, config.seed + 1, ...`` are trained together: one
stacked model (``models.build_stacked_mlp``) holds an independent MLP per seed, each
re-initialized by ``setups.apply_scheme(tower, ..., seed=seed)``; one ``fit`` with SGD
with momentum trains all of them on the same batches (the sum of the towers' losses gives
each tower the gradient of its own loss). A ``keras_initlab.callbacks.VarianceMonitor``
watches every tower's layers on a fixed probe of held-out examples, at initialization
(step 0) and after training. Every number is then kept per seed (``SeedRun``) and
summarized as the median and range over seeds (``SchemeResult``).

``width_check`` measures the finite-width effect at initialization: He's variance ratio
across depth fluctuates from seed to seed with a spread that shrinks as the width grows
(Hanin & Rolnick 2018: ``Var[log(q_L / q_1)]`` grows like ``sum_l 1 / n_l``).

Same config, same machine: the same numbers (``make_reproducible``; fixed seeds).
"""

from __future__ import annotations

import time
from typing import TextIO

from keras_initlab.compare.config import CONTRAST_SCHEMES, CompareConfig, check_config
from keras_initlab.compare.datasets import Dataset, describe, load_dataset
from keras_initlab.compare.progress import Progress
from keras_initlab.compare.results import CompareResult, ComparisonInterrupted, SchemeResult
from keras_initlab.compare.trainer import Trainer
from keras_initlab.compare.width_check import WIDTH_CHECK_SCHEME, measure_width_check

__all__ = [  # ComparisonInterrupted: what run_comparison raises, imported from here by the CLI
    "ComparisonInterrupted",
    "contrast_schemes",
    "describe_run",
    "limit_data",
    "make_reproducible",
    "run_comparison",
]


def run_comparison(
    config: CompareConfig | None = None,
    *,
    progress: TextIO | None = None,
    data: Dataset | None = None,
) -> CompareResult:
    """Train every scheme of ``config`` (then the contrast schemes) and collect the results.

    Args:
        config: the run (default: ``CompareConfig()``, the default run).
        progress: stream for the progress bars, e.g. ``sys.stderr`` (None: silent).
        data: an already loaded dataset (default: ``load_dataset(config.dataset)``).

    Returns:
        A ``CompareResult``.

    Raises:
        ValueError: an invalid config.
        DatasetUnavailable: the dataset cannot be loaded.
        ComparisonInterrupted: Ctrl-C; its ``result`` holds the runs that finished.

    Example:
    >>> config = CompareConfig(dataset="circles", schemes=("he_normal",), depth=2, width=8,
    ...     epochs=1, contrast_activation=None, train_limit=64, test_limit=32)
    >>> run_comparison(config, progress=None).schemes["he_normal"].verdict
    'ok'
    """
    config = check_config(config or CompareConfig())
    start = time.perf_counter()
    if data is None:
        data = load_dataset(config.dataset, seed=config.seed)
    data = limit_data(data, config)
    contrast = contrast_schemes(config)
    runs = len(config.schemes) + len(contrast)
    if progress is not None:
        progress.write(f"{describe_run(config, data)}\n")
    bars = Progress(progress, runs, config.epochs)
    trainer = Trainer(data, config)
    results: dict[str, SchemeResult] = {}
    contrasts: dict[str, SchemeResult] = {}
    try:
        for name in config.schemes:
            results[name] = trainer.train(
                name,
                activation=config.activation,
                on_epoch=bars.start(f"{name} ({config.activation})", config.epochs),
            )
        for name in contrast:
            act = str(config.contrast_activation)
            contrasts[name] = trainer.train(
                name, activation=act, on_epoch=bars.start(f"{name} ({act})", config.epochs)
            )
        widths = measure_width_check(data, config) if config.check_widths else None
    except KeyboardInterrupt:
        done = CompareResult(
            config, describe(data), results, contrasts, time.perf_counter() - start, partial=True
        )
        raise ComparisonInterrupted(done) from None
    seconds = time.perf_counter() - start
    return CompareResult(config, describe(data), results, contrasts, seconds, widths)


def limit_data(data: Dataset, config: CompareConfig) -> Dataset:
    """``data`` cut to ``config.train_limit`` / ``test_limit`` examples (the data trained on)."""
    return data.subset(
        config.train_limit or len(data.y_train), config.test_limit or len(data.y_test)
    )


def contrast_schemes(config: CompareConfig) -> tuple[str, ...]:
    """The schemes trained again with ``config.contrast_activation``."""
    if config.contrast_activation in (None, config.activation):
        return ()
    return tuple(s for s in CONTRAST_SCHEMES if s in config.schemes)


def describe_run(config: CompareConfig, data: Dataset) -> str:
    """One line: the data used (after the limits) and what is counted by the progress lines.

    Example:
    >>> from keras_initlab.compare.datasets import load_dataset
    >>> config = CompareConfig(schemes=("zeros", "he_normal"), train_limit=100)
    >>> data = limit_data(load_dataset("digits", seed=0), config)
    >>> for part in describe_run(config, data).split("; "):
    ...     print(part)
    digits: 100 training / 359 test examples, 64 features, 10 classes
    3 runs (2 schemes + 1 with tanh) x 3 seeds x 10 epochs
    width check: he_normal at widths 64, 256, 12 seeds each
    """
    info = describe(data)
    contrast = contrast_schemes(config)
    extra = f" + {len(contrast)} with {config.contrast_activation}" if contrast else ""
    runs = len(config.schemes) + len(contrast)
    line = (
        f"{info['name']}: {info['train']} training / {info['test']} test examples, "
        f"{info['features']} features, {info['classes']} classes; {runs} runs "
        f"({len(config.schemes)} schemes{extra}) x {config.seeds} seeds x {config.epochs} epochs"
    )
    if config.check_widths:
        widths = ", ".join(str(w) for w in config.check_widths)
        line += (
            f"; width check: {WIDTH_CHECK_SCHEME} at widths {widths}, "
            f"{config.check_seeds} seeds each"
        )
    return line


def make_reproducible() -> None:
    """Make the backend give the same numbers on every rerun of the same run, on this machine.

    TensorFlow: one intra-op and one inter-op thread (the order of float additions then no longer
    depends on scheduling; a small MLP loses little from it) where TensorFlow has not
    started yet, and ``tf.config.experimental.enable_op_determinism()``. Seeds are set by
    the runner itself (``keras.utils.set_random_seed`` before every scheme). PyTorch: one
    thread and its deterministic algorithms; JAX: nothing to set. It changes
    process-wide settings: the ``keras-initlab compare`` command calls it, a library user
    may.
    """
    import keras

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True, warn_only=True)
        return
    if keras.backend.backend() != "tensorflow":
        return  # JAX on a CPU: one XLA program per step, deterministic as it is
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialized: its thread pools are fixed
        pass
    tf.config.experimental.enable_op_determinism()
