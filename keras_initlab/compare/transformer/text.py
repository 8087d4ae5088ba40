"""The transformer experiment's data: Python's own standard library source, read offline.

A fixed list of the standard library's modules (`STDLIB_FILES`, read from
``sysconfig.get_paths()["stdlib"]`` in that order and joined by a newline) is cut into
non-overlapping windows of ``length + 1`` bytes; each byte is a token (ASCII ``0..127``;
the rare non-ASCII byte becomes token 0, which source files never hold), the model reads a
window's first ``length`` and predicts its last ``length`` (the next byte at every
position). The windows are shuffled with the config's seed and 10% held out for testing.

The text is whatever this Python ships, so it differs between Python versions: its SHA-256
(`stdlib_text`) goes into ``results.json``, and `README_SHA256` is that of the README's
run, so a run on other text says so.
"""

from __future__ import annotations

import functools
import hashlib
import sysconfig
from pathlib import Path

import numpy as np

from keras_initlab.compare.datasets import Dataset, DatasetUnavailable

__all__ = [
    "README_SHA256",
    "STDLIB_FILES",
    "VOCABULARY",
    "load_stdlib",
    "stdlib_text",
    "unigram_loss",
]

STDLIB_FILES = (
    "difflib.py",
    "statistics.py",
    "fractions.py",
    "calendar.py",
    "pprint.py",
    "textwrap.py",
    "shlex.py",
    "heapq.py",
    "string.py",
    "fnmatch.py",
    "bisect.py",
    "colorsys.py",
    "graphlib.py",
    "queue.py",
    "sched.py",
    "json/decoder.py",
    "json/encoder.py",
)
"""Pure-Python modules present in every Python from 3.11 on (about 346 kB in 3.11)."""

VOCABULARY = 128
TEST_SHARE = 0.1
README_SHA256 = "3cdd9abca39866d75dd25f2418e036b894c7f23bc191caad648ee1bfb74be407"
"""The text's SHA-256 in the README's run (Python 3.11's standard library)."""


@functools.lru_cache(maxsize=2)
def stdlib_text(root: str | Path | None = None) -> tuple[bytes, str]:
    """``(text, sha256 hex digest)`` of `STDLIB_FILES` joined by newlines, read once per
    folder (`load_stdlib` and the report's digest both ask).

    Args:
        root: the standard library's folder (default: this Python's).

    Raises:
        DatasetUnavailable: a file is missing or unreadable (the message names it).

    Example:
    >>> text, digest = stdlib_text()
    >>> len(text) > 300_000, len(digest)
    (True, 64)
    """
    folder = Path(root or sysconfig.get_paths()["stdlib"])
    parts = []
    for name in STDLIB_FILES:
        try:
            parts.append((folder / name).read_bytes())
        except OSError as error:
            raise DatasetUnavailable(
                f"The transformer experiment reads the standard library's {name} from "
                f"{folder}, which cannot be read: {error}"
            ) from None
    text = b"\n".join(parts)
    return text, hashlib.sha256(text).hexdigest()


def _tokens(text: bytes) -> np.ndarray:
    tokens = np.frombuffer(text, dtype=np.uint8).astype(np.int32)
    tokens[tokens >= VOCABULARY] = 0
    return tokens


def load_stdlib(length: int, *, seed: int = 0, root: str | Path | None = None) -> Dataset:
    """The standard library's source as next-byte windows (module docstring).

    Args:
        length: tokens the model reads per window.
        seed: seed of the shuffle of the windows before the train/test split.
        root: the standard library's folder (default: this Python's).

    Returns:
        A `keras_initlab.compare.datasets.Dataset` whose ``x`` and ``y`` are int32
        ``(windows, length)`` (``y`` is ``x`` shifted by one byte), ``num_classes``
        `VOCABULARY`, and whose description ends in the text's SHA-256.

    Raises:
        DatasetUnavailable: a file cannot be read.

    Example:
    >>> data = load_stdlib(32)
    >>> data.x_train.shape[1], bool((data.x_train[:, 1:] == data.y_train[:, :-1]).all())
    (32, True)
    """
    text, digest = stdlib_text(root)
    tokens = _tokens(text)
    count = len(tokens) // (length + 1)
    windows = tokens[: count * (length + 1)].reshape(count, length + 1)
    windows = windows[np.random.default_rng(seed).permutation(count)]
    test = max(1, round(TEST_SHARE * count))
    train, held = windows[test:], windows[:test]
    return Dataset(
        name="stdlib",
        x_train=np.ascontiguousarray(train[:, :-1]),
        y_train=np.ascontiguousarray(train[:, 1:]),
        x_test=np.ascontiguousarray(held[:, :-1]),
        y_test=np.ascontiguousarray(held[:, 1:]),
        num_classes=VOCABULARY,
        description=f"Python {len(STDLIB_FILES)} standard-library modules as bytes, "
        f"{len(text)} bytes, windows of {length} + 1, sha256 {digest}",
    )


def unigram_loss(y: np.ndarray) -> float:
    """The cross-entropy (nats per token) of predicting ``y``'s byte frequencies alone:
    ``-sum_k p_k ln p_k``; a model whose loss stays above it has learned nothing of the
    context.

    Example:
    >>> round(unigram_loss(np.array([[0, 1], [0, 1]])), 6)  # two bytes, equally often: ln 2
    0.693147
    """
    counts = np.bincount(np.asarray(y).ravel(), minlength=VOCABULARY).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
