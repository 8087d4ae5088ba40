"""The finite-width check: He's variance ratio across depth at initialization, per width.

It fluctuates from seed to seed with a spread that shrinks as the width grows (Hanin &
Rolnick 2018: ``Var[log(q_L / q_1)]`` grows like ``sum_l 1 / n_l``).
"""

from __future__ import annotations

from keras_initlab.compare.config import CompareConfig
from keras_initlab.compare.datasets import Dataset
from keras_initlab.compare.models import (
    build_stacked_mlp,
    hidden_names,
    tower_name,
)
from keras_initlab.compare.results import WidthCheck
from keras_initlab.compare.setups import apply_scheme
from keras_initlab.compare.trainer import as_float
from keras_initlab.compare.verdicts import backward_ratio, forward_ratio

WIDTH_CHECK_SCHEME = "he_normal"  # the scheme whose finite-width fluctuation is measured


def measure_width_check(data: Dataset, config: CompareConfig) -> WidthCheck:
    """He's variance ratios across depth at initialization, ``check_seeds`` seeds per width.

    For each width of ``config.check_widths``, one stacked model (a tower per seed,
    ``config.depth`` hidden layers, ``config.activation``) is initialized with
    ``WIDTH_CHECK_SCHEME`` and measured (`keras_initlab.measure`) on the same probe as the
    main runs, before any update.

    Returns:
        A ``WidthCheck``.
    """
    import keras

    from keras_initlab.measurement import measure

    seeds = [config.seed + i for i in range(config.check_seeds)]
    keys = [tower_name(s) for s in seeds]
    x, y = data.x_test[: config.probe_size], data.y_test[: config.probe_size]
    first, last = hidden_names(config.depth)[0], hidden_names(config.depth)[-1]
    act: dict[int, list[float]] = {}
    grad: dict[int, list[float]] = {}
    for width in config.check_widths:
        keras.utils.set_random_seed(config.seed)
        model = build_stacked_mlp(
            data.num_features,
            data.num_classes,
            seeds,
            depth=config.depth,
            width=width,
            activation=config.activation,
        )
        model.compile(
            optimizer="sgd",
            loss={k: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for k in keys},
        )
        for seed, key in zip(seeds, keys, strict=True):
            apply_scheme(
                model.get_layer(key),
                WIDTH_CHECK_SCHEME,
                seed=seed,
                width=width,
                activation=config.activation,
            )
        by_layer = {str(r["layer"]): r for r in measure(model, (x, {k: y for k in keys}))}
        act[width] = [
            forward_ratio([as_float(by_layer[f"{k}/{n}"]["activation_var"]) for n in (first, last)])
            for k in keys
        ]
        grad[width] = [
            backward_ratio([as_float(by_layer[f"{k}/{n}"]["gradient_var"]) for n in (first, last)])
            for k in keys
        ]
    return WidthCheck(config.activation, config.depth, seeds, act, grad)
