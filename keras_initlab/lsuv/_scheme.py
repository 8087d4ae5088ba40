"""LSUV as a scheme for ``keras_initlab.initialize``."""

from __future__ import annotations

from typing import Any

import keras

from keras_initlab._validation import check_positive, check_positive_int
from keras_initlab.lsuv._algorithm import DEFAULT_MAX_ITER, DEFAULT_TOL, lsuv
from keras_initlab.lsuv._report import LSUVReport


class LSUV:
    """LSUV as a scheme for ``keras_initlab.initialize``: the data and options it needs.

    ``initialize(model, LSUV(x), seed=s)`` runs ``lsuv(model, x, ..., seed=s)`` and keeps the
    report on the scheme as ``scheme.report``. LSUV needs a batch of data, so it has no
    scheme name of its own.

    Args:
        x: one batch of model inputs (see ``lsuv``).
        tol, max_iter, center, orthonormal: as for ``lsuv``.

    Example (``initialize(model, scheme, seed=0)`` makes the same call):
    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> scheme = LSUV(np.random.default_rng(0).normal(size=(64, 4)), tol=0.05)
    >>> scheme
    LSUV(x=<shape (64, 4)>, tol=0.05, max_iter=10, center=False, orthonormal=True)
    >>> scheme(model, seed=0).converged
    True
    """

    def __init__(
        self,
        x: Any,
        *,
        tol: float = DEFAULT_TOL,
        max_iter: int = DEFAULT_MAX_ITER,
        center: bool = False,
        orthonormal: bool = True,
    ):
        self.x = x
        self.tol = check_positive("tol", tol)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.center = bool(center)
        self.orthonormal = bool(orthonormal)
        self.report: LSUVReport | None = None

    def __call__(self, model: Any, *, seed: int | None = None) -> LSUVReport:
        """Run ``lsuv`` on ``model`` with these options; also stored as ``self.report``."""
        self.report = lsuv(
            model,
            self.x,
            tol=self.tol,
            max_iter=self.max_iter,
            seed=seed,
            center=self.center,
            orthonormal=self.orthonormal,
        )
        return self.report

    def __repr__(self) -> str:
        shapes = [tuple(getattr(leaf, "shape", ())) for leaf in keras.tree.flatten(self.x)]
        x = shapes[0] if len(shapes) == 1 else shapes
        return (
            f"LSUV(x=<shape {x}>, tol={self.tol:g}, max_iter={self.max_iter}, "
            f"center={self.center}, orthonormal={self.orthonormal})"
        )
