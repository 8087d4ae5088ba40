"""The data ``keras-initlab compare`` trains on: embedded, generated, downloaded or a user's.

* ``digits`` (default): the 8x8 handwritten digits (1,797 images, 10 classes, 64 pixels)
  that ship inside scikit-learn (``sklearn.datasets.load_digits``), so no network is needed.
* ``circles`` and ``spirals``: the 2-D toy sets of the deeplearning.ai initialization page,
  generated locally from the seed.
* ``mnist`` and ``fashion_mnist``: ``keras.datasets`` (downloaded once into ``~/.keras``;
  without a network and without a cached copy they raise ``DatasetUnavailable``).
* a path ending in ``.npz``: a user's arrays, either ``x_train, y_train, x_test, y_test``
  or ``x, y`` (split here).

Features are flattened to vectors and standardized with the training set's mean and std
(the tutorial's first rule of thumb: zero-mean inputs); labels are integer classes.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from keras_initlab._validation import unknown_name_message

BUILTIN_DATASETS = ("circles", "digits", "fashion_mnist", "mnist", "spirals")
NETWORK_DATASETS = ("fashion_mnist", "mnist")
TEST_FRACTION = 0.2  # share of the examples held out when a dataset has no test split
TOY_SAMPLES = 1000  # examples in each generated 2-D set
CIRCLES_FACTOR = 0.5  # radius of the inner circle relative to the outer one
CIRCLES_NOISE = 0.08  # std of the Gaussian noise added to each point of the circles
SPIRAL_ARMS = 3  # classes of the spirals set (one arm each)
SPIRAL_TURNS = 1.25  # how many turns each arm makes
SPIRAL_NOISE = 0.15  # std of the angular noise of the spirals, in radians
_STD_FLOOR = 1e-8  # features with a smaller std (constant pixels) are only centred
MIN_EXAMPLES = 2  # an x, y file is split: at least one example to train on and one to test


class DatasetUnavailable(RuntimeError):
    """A dataset that cannot be loaded here (no network, unreadable file, bad arrays)."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A classification dataset split in train and test, features standardized.

    Attributes:
        name: the name it was loaded by.
        x_train, y_train, x_test, y_test: float32 features ``(n, d)``, int32 labels ``(n,)``.
        num_classes: number of classes.
        description: one line for reports.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    description: str

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    def subset(self, train: int, test: int) -> Dataset:
        """The first ``train`` and ``test`` examples (the split is already shuffled)."""
        return dataclasses.replace(
            self,
            x_train=self.x_train[:train],
            y_train=self.y_train[:train],
            x_test=self.x_test[:test],
            y_test=self.y_test[:test],
        )

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"features={self.num_features}, classes={self.num_classes})"
        )


def circles(n: int = TOY_SAMPLES, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two noisy concentric circles, labels 0 (outer) and 1 (inner).

    Example:
    >>> x, y = circles(10, seed=0)
    >>> x.shape, sorted(set(y.tolist()))
    ((10, 2), [0, 1])
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    angle = rng.uniform(0.0, 2.0 * math.pi, n)
    radius = np.where(y == 1, CIRCLES_FACTOR, 1.0)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    x = x + rng.normal(0.0, CIRCLES_NOISE, x.shape)
    return x.astype(np.float32), y.astype(np.int32)


def spirals(n: int = TOY_SAMPLES, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``SPIRAL_ARMS`` interleaved spiral arms, one class each.

    Example:
    >>> x, y = spirals(9, seed=0)
    >>> x.shape, sorted(set(y.tolist()))
    ((9, 2), [0, 1, 2])
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % SPIRAL_ARMS
    t = rng.uniform(0.0, 1.0, n)
    angle = (
        2.0 * math.pi * SPIRAL_TURNS * t
        + 2.0 * math.pi * y / SPIRAL_ARMS
        + rng.normal(0.0, SPIRAL_NOISE, n)
    )
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return x.astype(np.float32), y.astype(np.int32)


def _split(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, round(TEST_FRACTION * len(y)))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _shuffle(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(y))
    return x[order], y[order]


def _finish(name: str, parts: tuple[np.ndarray, ...], description: str) -> Dataset:
    x_train, y_train, x_test, y_test = parts
    x_train = x_train.reshape(len(x_train), -1).astype(np.float64)
    x_test = x_test.reshape(len(x_test), -1).astype(np.float64)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > _STD_FLOOR, std, 1.0)
    labels = np.concatenate([y_train.reshape(-1), y_test.reshape(-1)]).astype(np.int64)
    if labels.size and (labels.min() < 0):
        raise DatasetUnavailable(
            f"Dataset `{name}` has negative labels; labels must be "
            f"integer classes 0..C-1. Received: min label={labels.min()}"
        )
    return Dataset(
        name=name,
        x_train=((x_train - mean) / std).astype(np.float32),
        y_train=y_train.reshape(-1).astype(np.int32),
        x_test=((x_test - mean) / std).astype(np.float32),
        y_test=y_test.reshape(-1).astype(np.int32),
        num_classes=int(labels.max()) + 1 if labels.size else 0,
        description=description,
    )


def _digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return _finish(
        "digits",
        _split(x, y, seed),
        "8x8 handwritten digits embedded in scikit-learn (1,797 images, 10 classes)",
    )


def _keras_dataset(name: str, seed: int) -> Dataset:
    import keras

    module = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as error:  # keras raises a bare Exception on a failed download
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DatasetUnavailable(
            f"Dataset `{name}` must be downloaded by keras.datasets.{name}.load_data() and "
            f"that failed (no network? {reason}). Use the embedded `--dataset digits`, "
            "`circles`, `spirals` or a local .npz file instead."
        ) from None
    x_train, y_train = _shuffle(x_train, y_train, seed)
    x_test, y_test = _shuffle(x_test, y_test, seed)
    return _finish(
        name,
        (x_train, y_train, x_test, y_test),
        f"keras.datasets.{name} ({len(y_train)} train, {len(y_test)} test images)",
    )


def _bad(path: str, rule: str, received: str) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"Argument `dataset` must {rule}. Received: dataset={path!r} with {received}"
    )


def check_arrays(path: str, arrays: dict[str, np.ndarray], pairs: list[tuple[str, str]]) -> None:
    """Raise DatasetUnavailable unless the ``(features, labels)`` arrays can be trained on.

    Each array is real numbers, all finite; features and labels have the same length, at
    least one example each (``MIN_EXAMPLES`` when there is a single pair, which is split);
    labels are one per example, integer classes 0, 1, ...; every pair has the same feature
    shape. The message names the file, the array, the value found and what is allowed.

    Example:
    >>> check_arrays("d.npz", {"x": np.zeros((3, 2)), "y": np.zeros(2)}, [("x", "y")])
    Traceback (most recent call last):
    ...
    keras_initlab.compare.datasets.DatasetUnavailable: Argument `dataset` must hold one \
label per example. Received: dataset='d.npz' with 3 examples in `x` and 2 labels in `y`
    """
    for name in (n for pair in pairs for n in pair):
        array = arrays[name]
        if not (
            np.issubdtype(array.dtype, np.integer)
            or np.issubdtype(array.dtype, np.floating)
            or array.dtype == np.bool_
        ):
            raise _bad(path, "hold arrays of real numbers", f"dtype {array.dtype} in `{name}`")
        if array.ndim == 0:
            raise _bad(path, "hold one row per example", f"a scalar `{name}`")
        finite = np.isfinite(array)
        if not finite.all():
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise _bad(
                path,
                "hold finite values only (no NaN or infinity)",
                f"{int(array.size - finite.sum())} non-finite values in `{name}` "
                f"({array[first]} at index {first})",
            )
    minimum = MIN_EXAMPLES if len(pairs) == 1 else 1
    for x_name, y_name in pairs:
        x, y = arrays[x_name], arrays[y_name]
        if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
            raise _bad(
                path,
                "hold labels as integer classes, one per example (shape (n,))",
                f"`{y_name}` of shape {y.shape}",
            )
        if len(x) != len(y):
            raise _bad(
                path,
                "hold one label per example",
                f"{len(x)} examples in `{x_name}` and {len(y)} labels in `{y_name}`",
            )
        if len(x) < minimum:
            need = "one to train on and one to test on" if len(pairs) == 1 else "one"
            raise _bad(
                path,
                f"hold at least {minimum} examples in `{x_name}` ({need})",
                f"{len(x)} examples in `{x_name}`",
            )
        if not np.all(np.mod(y, 1) == 0) or y.min() < 0:
            raise _bad(
                path,
                "have integer class labels 0, 1, ... (one per class)",
                f"`{y_name}` holding {y[(np.mod(y, 1) != 0) | (y < 0)].ravel()[0].item()!r}",
            )
    shapes = {x_name: arrays[x_name].shape[1:] for x_name, _ in pairs}
    if len(set(shapes.values())) > 1:
        found = " and ".join(f"`{k}` of {v}" for k, v in shapes.items())
        raise _bad(path, "hold examples of one feature shape", f"features {found}")


def _npz(path: str, seed: int) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise DatasetUnavailable(
            f"Argument `dataset` must be a readable .npz file. Received: dataset={path!r} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    parts: tuple[np.ndarray, ...]
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        check_arrays(path, arrays, [("x_train", "y_train"), ("x_test", "y_test")])
        parts = (arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])
        parts = (*_shuffle(parts[0], parts[1], seed), *_shuffle(parts[2], parts[3], seed))
    elif {"x", "y"} <= arrays.keys():
        check_arrays(path, arrays, [("x", "y")])
        parts = _split(arrays["x"], arrays["y"], seed)
    else:
        raise DatasetUnavailable(
            "Argument `dataset` must be an .npz file with arrays x_train, y_train, x_test, "
            f"y_test (or x, y). Received: dataset={path!r} with arrays {sorted(arrays)}"
        )
    return _finish(os.path.basename(path), parts, f"arrays from {path}")


def check_dataset_name(name: str) -> str:
    """Return ``name`` if it names a dataset (built-in or ``*.npz``), else raise ValueError.

    Example:
    >>> check_dataset_name("digits")
    'digits'
    """
    if name in BUILTIN_DATASETS or name.endswith(".npz"):
        return name
    raise ValueError(unknown_name_message("dataset", name, [*BUILTIN_DATASETS, "PATH.npz"]))


def load_dataset(name: str = "digits", *, seed: int = 0) -> Dataset:
    """Load a dataset by name, split (seeded) and standardized.

    Args:
        name: ``digits``, ``circles``, ``spirals``, ``mnist``, ``fashion_mnist`` or a path to
            an ``.npz`` file.
        seed: seed of the split and of the generated toy sets.

    Returns:
        A ``Dataset``.

    Raises:
        ValueError: an unknown name (close matches suggested).
        DatasetUnavailable: a download that failed, or an unreadable or malformed file.

    Example:
    >>> load_dataset("circles")
    Dataset('circles', train=800, test=200, features=2, classes=2)
    """
    check_dataset_name(name)
    if name == "digits":
        return _digits(seed)
    if name in NETWORK_DATASETS:
        return _keras_dataset(name, seed)
    if name == "circles":
        return _finish(
            "circles",
            _split(*circles(seed=seed), seed),
            f"two noisy concentric circles ({TOY_SAMPLES} points, generated)",
        )
    if name == "spirals":
        return _finish(
            "spirals",
            _split(*spirals(seed=seed), seed),
            f"{SPIRAL_ARMS} interleaved spirals ({TOY_SAMPLES} points, generated)",
        )
    return _npz(name, seed)


def describe(dataset: Dataset) -> dict[str, Any]:
    """A JSON-ready summary of a dataset."""
    return {
        "name": dataset.name,
        "description": dataset.description,
        "train": len(dataset.y_train),
        "test": len(dataset.y_test),
        "features": dataset.num_features,
        "classes": dataset.num_classes,
    }
