"""The std a scheme prescribes for each weight of a model, and how far the weight is from it.

`audit` reports these rows; `keras_initlab.healthy` reads them under each candidate scheme.
The expected std is the rule of `keras_initlab.draw.plan_weight` (what ``initialize``
draws), so an ``initialize``-d model is never flagged against its own scheme.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from keras_initlab import _keras
from keras_initlab.draw import plan_weight
from keras_initlab.fans import compute_fans
from keras_initlab.initializers._base import private_default_seeds
from keras_initlab.model.weights import OtherWeight, WeightSpec, weight_specs
from keras_initlab.recipes import recipe_parts
from keras_initlab.residual_init import plan_residual
from keras_initlab.schemes import as_scheme, for_weight

# Flag a weight when its variance ratio is further from 1 than AUDIT_Z standard errors.
# The standard error of the variance ratio is sqrt((k - 1) / n) with kurtosis k = 3 (normal:
# the widest of the families used here), so a correct draw is flagged with probability
# about 6e-5 per weight, and a depthwise kernel drawn on Keras' fans held to He on its true
# fans (8x in std) always.
AUDIT_Z = 4.0
_NORMAL_KURTOSIS = 3.0


@dataclass(frozen=True)
class AuditRow:
    """One weight: its true fans, its std, the std its scheme prescribes, and a flag.

    ``note`` is empty for a weight audit handles; for a weight with no known layout
    (normalization layers, custom layers' own weights) it says "not handled" and why, and
    the fans and expected std are None.

    ``healthy_scheme``, ``healthy_ratio`` and ``healthy_flagged`` compare a kernel with its
    *healthy reference* (`keras_initlab.healthy`), the same reference `VarianceMonitor`'s
    alerts name: the scheme that suits the activation the kernel feeds (`HealthyRow.scheme`),
    std over the std that scheme prescribes on the true fans (equal to the
    `HealthyRow.ratio` the alert shows) and whether the kernel fits none of the healthy
    schemes (`HealthyRow.flagged`). They are filled for the kernels of ``audit(model)``
    (``scheme=None``) only; biases, weights that are not kernels and every row of an audit
    against an explicit scheme keep None, None and False.

    ``repeats`` is the path of an earlier weight whose random draws this one repeats, up to
    a factor (`keras_initlab.repeated_draws`: one unseeded initializer instance passed to
    several layers), or "".
    """

    layer: str
    path: str
    layout: str
    fan_in: float | None
    fan_out: float | None
    std: float
    expected_std: float | None
    ratio: float | None
    flagged: bool
    note: str = ""
    healthy_scheme: str | None = None
    healthy_ratio: float | None = None
    healthy_flagged: bool = False
    repeats: str = ""

    @property
    def handled(self) -> bool:
        return not self.note


def _expected_std(
    spec: WeightSpec, scheme: Any, shape: tuple[int, ...], embeddings: Any = None
) -> float | None:
    """The std the weight should have: ``initialize``'s rule under ``scheme``, or (None)
    what the layer's own initializer draws as Keras calls it: with the weight's shape alone
    (Keras' shape rule for its fans, or the axes the initializer was configured with), or
    for an EinsumDense kernel drawn by VarianceScaling on the einsum's axes where this Keras
    does so (3.13 and later)."""
    if scheme is None:
        initializer = as_scheme(spec.initializer)
        if (
            initializer is not None
            and spec.layout == "einsum"
            and isinstance(spec.initializer, keras.initializers.VarianceScaling)
            and _keras.einsum_dense_draws_on_its_axes()
        ):
            initializer = for_weight(initializer, spec.layout, spec.layout_args, None)
    else:
        initializer = as_scheme(plan_weight(as_scheme(scheme), spec, None, embeddings).initializer)
    if initializer is None:
        return None
    try:
        return math.sqrt(initializer.variance(shape))
    except ValueError:  # the scheme does not apply to this shape (rank too small)
        return None


def weight_row(
    spec: WeightSpec, scheme: Any, z: float, factor: float = 1.0, embeddings: Any = None
) -> AuditRow:
    """The row of one weight; ``factor`` multiplies the expected std (a residual rule's)."""
    shape = tuple(spec.variable.shape)
    values = np.asarray(spec.variable.numpy(), dtype=np.float64)
    std = float(values.std()) if values.size else 0.0
    fans: tuple[float | None, float | None] = (None, None)
    if not spec.is_bias:
        fans = compute_fans(shape, spec.layout, **spec.layout_args)
    expected = _expected_std(spec, scheme, shape, embeddings) if values.size else None
    if expected is not None:
        expected *= factor
    ratio = std / expected if expected else None
    flagged = factor == 0.0 and bool(np.any(values))  # a weight the rule zeroes, not zero
    if ratio is not None:
        tolerance = z * math.sqrt((_NORMAL_KURTOSIS - 1.0) / values.size)
        flagged = abs(ratio**2 - 1.0) > tolerance
    return AuditRow(
        spec.layer_path, spec.path, spec.layout, fans[0], fans[1], std, expected, ratio, flagged
    )


def unhandled_row(other: OtherWeight) -> AuditRow:
    values = np.asarray(other.variable.numpy(), dtype=np.float64)
    std = float(values.std()) if values.size else 0.0
    return AuditRow(
        other.layer_path,
        other.path,
        "-",
        None,
        None,
        std,
        None,
        None,
        False,
        f"not handled: {other.reason}",
    )


def scheme_rows(
    model: Any, scheme: Any, z: float = AUDIT_Z, residual: str | None = None
) -> list[AuditRow]:
    """One `AuditRow` per weight the rule handles, against ``scheme`` (None: each layer's
    own initializer, a scheme name, a recipe name of `keras_initlab.recipes` or an
    initializer) and the ``residual`` rule's factors (`keras_initlab.residual_init`).

    Raises:
        TypeError: ``scheme`` is neither None, a scheme or recipe name nor an initializer.
        ValueError: an unknown ``residual`` rule, a model without residual sums, a residual
            rule with ``scheme=None`` or with a recipe.

    Example:
    >>> import keras
    >>> layer = keras.layers.Dense(64, kernel_initializer=keras.initializers.Zeros())
    >>> layer.build((None, 64))
    >>> [(r.path.split("/")[-1], r.flagged) for r in scheme_rows(layer, "he_normal")]
    [('kernel', True), ('bias', False)]
    """
    specs = weight_specs(model)
    # The schemes built here only give variances: their default seeds must not advance the
    # user's global random state.
    with private_default_seeds():
        scheme, residual, embeddings = recipe_parts(scheme, residual)
        if scheme is not None and as_scheme(scheme) is None:
            raise TypeError(
                "Argument `scheme` must be a scheme or recipe name or an initializer. "
                f"Received: scheme={scheme!r}"
            )
        factors = _residual_factors(model, scheme, residual, specs)
        return [
            weight_row(spec, scheme, z, factors.get(id(spec.variable), 1.0), embeddings)
            for spec in specs
        ]


def _residual_factors(
    model: Any, scheme: Any, residual: str | None, specs: list[WeightSpec]
) -> dict[int, float]:
    """The factor rule ``residual`` multiplies each weight by, by ``id`` of its variable."""
    if residual is None:
        return {}
    if scheme is None:
        raise ValueError(
            "Argument `residual` needs a scheme: a residual rule multiplies what the scheme "
            f"draws. Received: residual={residual!r} with scheme=None"
        )
    return plan_residual(model, residual, specs).factors()
