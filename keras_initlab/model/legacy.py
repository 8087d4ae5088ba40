"""Keras 2 objects (``tf_keras``, or ``tf.keras`` under ``TF_USE_LEGACY_KERAS=1``), told apart
and refused with an error that says so.

keras_initlab reads Keras 3 models. In Keras 2 only its initializer objects work, given to a
layer (``tf_keras.layers.Dense(64, kernel_initializer=keras_initlab.HeNormal())``); string
names do not, and a saved config or model loads only with the classes in ``custom_objects``
(``tf_keras.models.load_model(path, custom_objects={"HeNormal": keras_initlab.HeNormal})``).
Every model-level function (``initialize``, ``audit``,
``lsuv``, ``propagate``, ``measure``, ``residual_blocks``, ``VarianceMonitor``...) calls
``check_not_keras2`` on its model first, so that a Keras 2 model gets this message rather than
"must be a Keras model".

The check reads the modules of the object's classes (its MRO), so it needs neither
TensorFlow nor tf_keras, and importing keras_initlab stays free of both; a user's subclass of
a tf_keras model is recognised through its base classes.
"""

from __future__ import annotations

from typing import Any

# The packages whose classes are Keras 2: tf_keras (what tf.keras is under
# TF_USE_LEGACY_KERAS=1), Keras 2's own package (`keras.engine` up to 2.12,
# `keras.src.engine` from 2.13; Keras 3 has no `engine`) and TensorFlow's old internal copy.
KERAS2_MODULES = ("tf_keras", "keras.engine", "keras.src.engine", "tensorflow.python.keras")


def _is_keras2_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in KERAS2_MODULES)


def keras2_base(value: Any) -> type | None:
    """The first class of ``value``'s MRO that is Keras 2, or None for anything else.

    Args:
        value: any object (a model, a layer, a callback's model...).

    Returns:
        The Keras 2 class (``value``'s own class or a base of it), or None.

    Example:
    >>> import keras
    >>> keras2_base(keras.Sequential()) is None
    True
    >>> class Model:  # stands in for tf_keras.Model without importing TensorFlow
    ...     pass
    >>> Model.__module__ = "tf_keras.src.engine.training"
    >>> class MyModel(Model):
    ...     pass
    >>> keras2_base(MyModel()).__module__
    'tf_keras.src.engine.training'
    """
    for cls in type(value).__mro__:
        if _is_keras2_module(getattr(cls, "__module__", None) or ""):
            return cls
    return None


def check_not_keras2(name: str, value: Any) -> None:
    """Raise a TypeError that names Keras 2 when ``value`` is a Keras 2 (tf_keras) object.

    Anything else passes (the caller's own checks follow). Called first by every model-level
    function and by ``VarianceMonitor.set_model``.

    Args:
        name: the argument's name, for the message.
        value: the argument's value.

    Raises:
        TypeError: ``value`` is a Keras 2 object (its class or a base class comes from
            ``tf_keras``, Keras 2's ``keras`` or ``tensorflow.python.keras``).

    Example:
    >>> import keras
    >>> check_not_keras2("model", keras.Sequential(name="mlp"))
    >>> class Sequential:  # stands in for tf_keras.Sequential without importing TensorFlow
    ...     name = "mlp"
    >>> Sequential.__module__ = "tf_keras.src.engine.sequential"
    >>> check_not_keras2("model", Sequential())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: Argument `model` must be a Keras 3 object, not a Keras 2 one ...name='mlp'>
    """
    base = keras2_base(value)
    if base is None:
        return
    cls = type(value)
    described = f"<{cls.__module__}.{cls.__qualname__}"
    layer_name = getattr(value, "name", None)
    if isinstance(layer_name, str):
        described += f" name={layer_name!r}"
    described += ">"
    if base is not cls:
        described += f", a subclass of {base.__module__}.{base.__qualname__}"
    raise TypeError(
        f"Argument `{name}` must be a Keras 3 object, not a Keras 2 one (tf_keras, or tf.keras "
        "under TF_USE_LEGACY_KERAS=1): keras_initlab's model-level functions and "
        "VarianceMonitor read Keras 3 models only (build the model with `import keras`). "
        "In tf_keras only keras_initlab's initializer objects work, given to a "
        "layer (`kernel_initializer=keras_initlab.HeNormal()`); string names do not, and "
        "a saved config loads only with the class in `custom_objects`. "
        f"Received: {name}={described}"
    )
