"""Run an experiment: its data, its runs one after another with progress lines, and Ctrl-C.

`run_experiment` is the same for every experiment: it checks the config, loads the data
and cuts it to the config's limits, writes the plan's header and one progress line per
run (`keras_initlab.compare.progress.Progress`), and on Ctrl-C raises
`ExperimentInterrupted` holding a partial result built from the runs that finished.

Same config, same machine: the same numbers (`make_reproducible`; fixed seeds).
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from keras_initlab.compare.config import TrainingConfig
from keras_initlab.compare.datasets import Dataset, load_dataset
from keras_initlab.compare.harness.experiment import Experiment
from keras_initlab.compare.progress import Progress

__all__ = [
    "ExperimentInterrupted",
    "limit_data",
    "load_data",
    "make_reproducible",
    "run_experiment",
]


class ExperimentInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run_experiment`; ``result`` holds the runs that finished (partial)."""

    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result


def run_experiment(
    experiment: Experiment,
    config: Any = None,
    *,
    progress: TextIO | None = None,
    data: Dataset | None = None,
) -> Any:
    """Train every run of ``experiment``'s plan for ``config`` and collect the result.

    Args:
        experiment: the definition.
        config: the run (default: ``experiment.config_type()``, the default run).
        progress: stream for the progress lines, e.g. ``sys.stderr`` (None: silent).
        data: an already loaded dataset (default: `load_data`).

    Returns:
        The result ``experiment``'s plan collects.

    Raises:
        ValueError: an invalid config, or data the runs cannot use.
        DatasetUnavailable: the dataset cannot be loaded.
        ExperimentInterrupted: Ctrl-C; its ``result`` holds the runs that finished.

    Example:
    >>> from keras_initlab.compare.definition import COMPARE
    >>> from keras_initlab.compare.config import CompareConfig
    >>> config = CompareConfig(dataset="circles", schemes=("he_normal",), depth=2, width=8,
    ...     epochs=1, contrast_activation=None, train_limit=64, test_limit=32)
    >>> run_experiment(COMPARE, config).schemes["he_normal"].verdict
    'ok'
    """
    config = experiment.check(config or experiment.config_type())
    start = time.perf_counter()
    data = limit_data(load_data(experiment, config) if data is None else data, config)
    if experiment.check_data is not None:  # before any training
        experiment.check_data(config, data)
    plan = experiment.plan(config, data)
    if progress is not None and plan.header is not None:
        progress.write(f"{plan.header}\n")
    bars = Progress(progress, len(plan.runs), config.epochs)
    finished: list[Any] = []
    try:
        for label, train in plan.runs:
            finished.append(train(bars.start(label, config.epochs)))
        after = plan.after() if plan.after is not None else None
    except KeyboardInterrupt:
        partial = plan.collect(finished, None, time.perf_counter() - start, True)
        raise ExperimentInterrupted(partial) from None
    return plan.collect(finished, after, time.perf_counter() - start, False)


def load_data(experiment: Experiment, config: Any) -> Dataset:
    """The data of a run: ``experiment.load_data(config)``, or when the experiment has no
    loader of its own, ``load_dataset(config.dataset, seed=config.seed)``.

    Raises:
        ValueError, DatasetUnavailable: the data cannot be loaded.

    Example:
    >>> from keras_initlab.compare.definition import COMPARE
    >>> from keras_initlab.compare.config import CompareConfig
    >>> load_data(COMPARE, CompareConfig(dataset="circles")).num_features
    2
    """
    if experiment.load_data is not None:
        data: Dataset = experiment.load_data(config)
        return data
    return load_dataset(config.dataset, seed=config.seed)


def limit_data(data: Dataset, config: TrainingConfig) -> Dataset:
    """``data`` cut to ``config.train_limit`` / ``test_limit`` examples (the data trained on).

    Example:
    >>> from keras_initlab.compare.config import CompareConfig
    >>> limit_data(load_dataset("circles"), CompareConfig(train_limit=10)).x_train.shape
    (10, 2)
    """
    return data.subset(
        config.train_limit or len(data.y_train), config.test_limit or len(data.y_test)
    )


def make_reproducible() -> None:
    """Make the backend give the same numbers on every rerun of the same run, on this machine.

    TensorFlow: one intra-op and one inter-op thread (the order of float additions then no longer
    depends on scheduling; a small MLP loses little from it) where TensorFlow has not
    started yet, and ``tf.config.experimental.enable_op_determinism()``. Seeds are set by
    the experiments themselves (``keras.utils.set_random_seed`` before every run). PyTorch:
    one thread and its deterministic algorithms; JAX: nothing to set. It changes
    process-wide settings: the ``keras-initlab`` command calls it, a library user may.
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
